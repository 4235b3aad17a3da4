"""Fixtures for the server tests: an echo app that shows what the server parsed."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from wsgistack._types import StartResponse, WSGIEnvironment


def echo_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Answers 'METHOD PATH_INFO QUERY_STRING BODY' so a test sees what was parsed."""
    body = b"".join(iter(lambda: environ["wsgi.input"].read(65536), b""))
    text = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']} {environ['QUERY_STRING']} "
    data = text.encode("utf-8") + body
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]


@pytest.fixture
def echo() -> object:
    return echo_app
