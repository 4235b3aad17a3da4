"""Fixtures for the server tests: an echo app that shows what the server parsed, and
``serve``, the CLI in a subprocess (see ``served.py``)."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from wsgistack._types import StartResponse, WSGIEnvironment

from ..middlewares.forward_parts import upstreams  # noqa: F401 - real upstreams, as there
from .served import APP, Served, launched, limit_files


def echo_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Answers 'METHOD PATH_INFO QUERY_STRING BODY' so a test sees what was parsed."""
    body = b"".join(iter(lambda: environ["wsgi.input"].read(65536), b""))
    text = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']} {environ['QUERY_STRING']} "
    data = text.encode("utf-8") + body
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]


def recording_echo(calls: list[str], key: str = "REQUEST_METHOD"):
    """``echo_app`` that first notes ``environ[key]`` in ``calls``: whether a request reached it."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        calls.append(environ[key])
        return echo_app(environ, start_response)

    return app


@pytest.fixture
def echo() -> object:
    return echo_app


@pytest.fixture
def serve(tmp_path) -> Iterator:
    (tmp_path / "slowapp.py").write_text(APP)

    with launched(tmp_path) as launch:

        def start(
            *options: str,
            target: tuple[str, ...] = ("slowapp:app",),
            wait: bool = True,
            max_files: int = 0,
            launcher: tuple[str, ...] = ("-m", "wsgistack.cli"),
            cwd: Path = tmp_path,
            bind: tuple[str, ...] = ("--bind", "127.0.0.1:0"),
        ) -> Served:
            return launch(
                [sys.executable, *launcher, "serve", *target, *bind, *options],
                cwd=cwd,
                # PWD as a shell sets it: the directory as named, symlinks kept.
                env={**os.environ, "MARKER": str(tmp_path / "marker"), "PWD": str(cwd)},
                preexec_fn=(lambda: limit_files(max_files)) if max_files else None,
                wait=wait,
            )

        yield start


#: A validated app that answers its worker's pid: which worker served, for the
#: tests of a pipeline file's [server] table (start-up and SIGHUP's re-read).
CHECKED_APP = """
import os
from wsgiref.validate import validator


@validator
def app(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


@pytest.fixture
def stack(tmp_path):
    """Write ``stack.toml``: the given ``[server]`` lines, then ``CHECKED_APP``; its name."""
    (tmp_path / "checkedapp.py").write_text(CHECKED_APP)

    def write(server: str) -> str:
        text = f"[server]\n{textwrap.dedent(server)}\n[app]\nuse = 'checkedapp:app'\n"
        (tmp_path / "stack.toml").write_text(text)
        return "stack.toml"

    return write
