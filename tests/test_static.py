"""The code stays ruff-clean, formatted and type-checked.

CI runs only the README's test command, so the static checks run here: the
package ships ``py.typed``, so a type error in it is a user's problem too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "command", [("ruff", "check", "."), ("ruff", "format", "--check", ".")], ids=["lint", "format"]
)
def test_ruff_finds_nothing(command):
    result = run(*command)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_passes_on_the_package(tmp_path):
    result = run("mypy", "--cache-dir", str(tmp_path))  # files and options: pyproject.toml
    assert result.returncode == 0, result.stdout + result.stderr
