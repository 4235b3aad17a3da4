"""Shared test helpers: every app checked by wsgiref's PEP 3333 validator."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from wsgiref.validate import validator

import pytest

from wsgistack._types import StartResponse, WSGIApplication, WSGIEnvironment


def hello_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The plainest app: 200, text/plain, a body naming the path it saw."""
    body = f"hello {environ.get('SCRIPT_NAME', '')}|{environ.get('PATH_INFO', '')}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture
def checked() -> Callable[[WSGIApplication], WSGIApplication]:
    """Wrap an app in wsgiref's validator, so PEP 3333 is checked, not assumed."""
    return validator
