"""The project a README reader would have: its file blocks plus ``tests/readme_project``.

Fixtures for ``tests/test_readme.py``: ``project`` (a session's directory on
``sys.path``) and ``in_project`` (a test working in it).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.readme_blocks import BLOCKS, ROOT


# -- the project a reader would have: README files plus tests/readme_project ----------------
@pytest.fixture(scope="session")
def project(tmp_path_factory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("readme_project")
    shutil.copytree(ROOT / "tests" / "readme_project", directory, dirs_exist_ok=True)
    for block in BLOCKS:
        if block.filename:
            path = directory / block.filename
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.text)
    saved = os.environ.get("DJANGO_SETTINGS_MODULE")
    sys.path.insert(0, str(directory))
    try:
        yield directory
    finally:
        sys.path.remove(str(directory))
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", "") or "").startswith(str(directory)):
                del sys.modules[name]
        if saved is None:
            os.environ.pop("DJANGO_SETTINGS_MODULE", None)
        else:
            os.environ["DJANGO_SETTINGS_MODULE"] = saved


@pytest.fixture
def in_project(project, monkeypatch) -> Path:
    """Work as a reader would, in the project directory (Django's env var undone after)."""
    monkeypatch.chdir(project)
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    return project


def subprocess_env(project: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = os.pathsep.join([str(project), str(ROOT)])
    return env
