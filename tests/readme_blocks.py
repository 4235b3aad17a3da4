"""README.md's fenced blocks, each named ``<nearest heading>-<index>``, as ``Block``s.

The reader behind ``tests/test_readme.py`` and ``tests/test_readme_nginx.py``.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


# -- reading the README ---------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Block:
    id: str
    lang: str
    text: str
    line: int  # of the opening fence, 1-based

    @property
    def filename(self) -> str | None:
        """``myapp.py`` when the block opens with ``# myapp.py``: the block is that file."""
        first = self.text.split("\n", 1)[0]
        found = re.fullmatch(r"# ([\w/]+\.(?:py|toml|ini))", first.strip())
        return found.group(1) if found else None


def slug(heading: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")


def readme_blocks(text: str) -> list[Block]:
    """Every fenced block, named after the nearest heading above it."""
    blocks: list[Block] = []
    heading, counts = "top", {}
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        fence = re.fullmatch(r"( *)```(\S*)\s*", line)
        if fence is None:
            title = re.fullmatch(r"#{1,6} +(.+)", line)
            if title:
                heading = slug(title.group(1))
            index += 1
            continue
        indent, lang = len(fence.group(1)), fence.group(2)
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index].strip() != "```":
            body.append(lines[index][indent:] if lines[index].strip() else "")
            index += 1
        assert index < len(lines), f"README.md:{index - len(body)}: a block is never closed"
        counts[heading] = counts.get(heading, 0) + 1
        start = index - len(body)
        blocks.append(Block(f"{heading}-{counts[heading]}", lang, "\n".join(body) + "\n", start))
        index += 1
    return blocks


BLOCKS = readme_blocks(README.read_text())
