"""A body that raises ``ResponseCut`` (a layer's upstream broke, and that layer said so).

The server cuts the client's connection with a reset once a header went out,
or answers the cut's 502/504 before; it logs nothing more (the layer did), and
the access log says what the client got.  Any other ``ConnectionResetError``
from the app is the app's failure, never taken for the client having gone.
"""

from __future__ import annotations

import io
import logging
from http import HTTPStatus
from typing import Any

import pytest

from wsgistack.errors import ResponseCut
from wsgistack.middlewares import ErrorCatcher

from .live import RawClient, live_server, uwsgi_packet


class CutStream(io.RawIOBase):
    """A file-like body (not a real file: no sendfile) whose second read breaks."""

    def __init__(self) -> None:
        self.reads = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self.reads += 1
        if self.reads > 1:
            raise ResponseCut("upstream closed mid-body", 502)
        buffer[:5] = b"first"
        return 5


def cutting_app(environ, start_response):
    path = environ["PATH_INFO"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    if path == "/file":
        return environ["wsgi.file_wrapper"](CutStream(), 5)

    def body():
        if path == "/stalled":
            raise ResponseCut("upstream timed out", 504)
        if path == "/closed":
            raise ResponseCut("upstream closed", 502)
        yield b"first"
        if path == "/reset":
            raise ConnectionResetError("the app's own socket was reset")
        raise ResponseCut("upstream closed mid-body", 502)

    return body()


def packet(path: str, method: str = "GET") -> bytes:
    return uwsgi_packet(
        {
            "REQUEST_METHOD": method,
            "REQUEST_URI": path,
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "SERVER_NAME": "example.org",
            "SERVER_PORT": "80",
            "REMOTE_ADDR": "203.0.113.9",
        }
    )


def http_request(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode()


def errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(("path", "status"), [("/stalled", 504), ("/closed", 502)])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("uwsgi", [False, True], ids=["http", "uwsgi"])
def test_a_cut_before_any_header_is_answered_with_its_status(
    path, status, method, uwsgi, tmp_path, caplog
):
    access_log = tmp_path / "access.log"
    bind = "uwsgi://127.0.0.1:0" if uwsgi else "127.0.0.1:0"
    request = packet(path, method) if uwsgi else http_request(path, method)
    with (
        live_server(cutting_app, bind=bind, access_log=str(access_log)) as server,
        RawClient(server.address) as client,
    ):
        got, headers, body = client.request(request, head_only=method == "HEAD")
    assert got == status and headers["connection"] == "close"
    text = f"{status} {HTTPStatus(status).phrase}\n".encode()
    assert body == (b"" if method == "HEAD" else text)
    assert errors(caplog) == []  # the layer that raised it logged why
    size = "-" if method == "HEAD" else str(len(text))
    assert f'"{method} {path} HTTP/1.1" {status} {size} ' in access_log.read_text()


@pytest.mark.parametrize("path", ["/midway", "/file"])
@pytest.mark.parametrize("uwsgi", [False, True], ids=["http", "uwsgi"])
def test_a_cut_after_the_head_resets_the_connection_and_logs_what_went_out(
    path, uwsgi, tmp_path, caplog
):
    # Ended by an orderly close, a uwsgi response (or an HTTP/1.0 one) would
    # look whole to nginx and its client: only a reset says it broke.
    access_log = tmp_path / "access.log"
    bind = "uwsgi://127.0.0.1:0" if uwsgi else "127.0.0.1:0"
    with (
        live_server(cutting_app, bind=bind, access_log=str(access_log)) as server,
        RawClient(server.address) as client,
    ):
        client.send(packet(path) if uwsgi else http_request(path))
        data = client.read_to_close()
        assert client.was_reset
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"first" in data
    assert not data.endswith(b"0\r\n\r\n")  # never the end of a whole chunked body
    assert errors(caplog) == []
    assert f'"GET {path} HTTP/1.1" 200 5 ' in access_log.read_text()


def test_the_apps_own_connection_reset_is_its_failure_not_the_client_gone(caplog):
    with live_server(cutting_app) as server, RawClient(server.address) as client:
        client.send(b"GET /reset HTTP/1.1\r\nHost: a\r\n\r\n")
        client.read_to_close()
        assert client.was_reset  # cut off: the body was chunked and unfinished
    assert errors(caplog) == ["GET /reset from 127.0.0.1: the application raised while iterating"]


class FailingClose:
    """A body that breaks after its first chunk, and whose close() fails too."""

    def __iter__(self):
        yield b"first"
        raise KeyError("while iterating")

    def close(self) -> None:
        raise LookupError("in close")


def failing_close_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return FailingClose()


def chain(error: BaseException | None) -> list[str]:
    """The names of an exception and of those it was raised while handling."""
    names = []
    while error is not None:
        names.append(type(error).__name__)
        error = error.__context__
    return names


@pytest.mark.parametrize("catcher", [False, True], ids=["server", "error_catcher"])
def test_a_close_that_fails_after_a_cut_is_reported_alone(catcher, caplog):
    # The close() error was raised while the server handled its own
    # AbortConnection (and the catcher's ResponseCut), so its traceback, and the
    # exception an on_error hook (Sentry) received, carried the server's
    # internals as "During handling of the above exception".
    reported = []
    app: Any = failing_close_app
    if catcher:
        app = ErrorCatcher(
            app, on_error=lambda exc_info, environ, error_id: reported.append(exc_info[1])
        )
    with live_server(app) as server, RawClient(server.address) as client:
        client.send(http_request("/close"))
        client.read_to_close()
        assert client.was_reset
    closing = [r for r in caplog.records if r.exc_info and r.exc_info[1].args == ("in close",)]
    assert len(closing) == 1
    assert chain(closing[0].exc_info[1]) == ["LookupError"]
    if catcher:
        assert [chain(error) for error in reported] == [["KeyError"], ["LookupError"]]
