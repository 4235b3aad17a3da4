"""ErrorCatcher holds the app's head until the body's first byte (issue 9).

A server that appends a replacement head's fields (gunicorn) or cannot take
``exc_info`` (uWSGI) must never need to replace one: the error page is the
only head it sees when the body fails before its first byte.
"""

from __future__ import annotations

from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator

import pytest

from tests.harness import serve_once
from tests.server.live import RawClient, live_server
from wsgistack.middlewares import ErrorCatcher


class RecordingServer:
    """A server's ``start_response`` that records each call and what was written."""

    def __init__(self, refuse: str | None = None) -> None:
        self.calls: list[tuple[str, list[tuple[str, str]], bool]] = []
        self.written: list[bytes] = []
        self.refuse = refuse

    def start_response(self, status, headers, exc_info=None):
        self.calls.append((status, list(headers), exc_info is not None))
        if self.refuse and any(name == self.refuse for name, _ in headers):
            raise ValueError(f"invalid header {self.refuse}")
        return self.written.append

    def run(self, app, method="GET"):
        environ: dict = {"REQUEST_METHOD": method}
        setup_testing_defaults(environ)
        body = app(environ, self.start_response)
        try:
            return b"".join(body)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()


def failing_first(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/csv"), ("Content-Length", "10")])

    def rows():
        raise RuntimeError("no rows")
        yield b"never"

    return rows()


def test_a_body_failing_before_its_first_byte_gives_the_server_one_head_without_exc_info():
    # The server saw the app's 200 head, then the error page's with exc_info:
    # gunicorn sends both heads' fields, uWSGI raises SystemError.
    server = RecordingServer()
    body = server.run(ErrorCatcher(failing_first))
    [(status, headers, replaced)] = server.calls
    assert (status, replaced) == ("500 Internal Server Error", False)
    assert [v for k, v in headers if k == "Content-Length"] == [str(len(body))]
    assert "text/csv" not in [v for k, v in headers if k == "Content-Type"]


def test_the_head_goes_out_with_the_first_chunk_or_as_an_empty_body_ends():
    def streamed(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"a"
        yield b"b"

    def empty(environ, start_response):
        start_response("204 No Content", [])
        return iter(())

    server = RecordingServer()
    assert server.run(ErrorCatcher(streamed)) == b"ab"
    assert server.calls == [("200 OK", [("Content-Type", "text/plain")], False)]
    assert serve_once(validator(ErrorCatcher(validator(empty)))).status == "204 No Content"


def test_write_sends_the_head_with_its_first_byte_and_holds_it_for_an_empty_one():
    def writer(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"")
        assert server.calls == []  # nothing to send yet: still replaceable
        write(b"hello")
        return [b" world"]

    server = RecordingServer()
    assert server.run(ErrorCatcher(writer)) == b" world"
    assert server.calls == [("200 OK", [("Content-Type", "text/plain")], False)]
    assert server.written == [b"hello"]


def test_the_app_replacing_its_own_unsent_head_with_exc_info_reaches_the_server_once():
    def own_handler(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise KeyError("x")
        except KeyError:
            import sys

            start_response("404 Not Found", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"gone"]

    server = RecordingServer()
    assert server.run(ErrorCatcher(own_handler)) == b"gone"
    assert server.calls == [("404 Not Found", [("Content-Type", "text/plain")], False)]


def test_a_second_start_response_without_exc_info_is_refused_as_servers_do():
    def twice(environ, start_response):
        start_response("200 OK", [])
        start_response("200 OK", [])
        return [b""]

    server = RecordingServer()
    assert b"Error id" in server.run(ErrorCatcher(twice))
    [(status, _, _)] = server.calls
    assert status == "500 Internal Server Error"


@pytest.mark.parametrize("body", [[b"fine"], "generator"], ids=["list", "generator"])
def test_a_head_the_server_refuses_is_answered_with_the_error_page(body):
    # The server refused a field of the app's head when it got it: the page
    # replaces the head the server took (with exc_info), as before the head was held.
    def bad_field(environ, start_response):
        start_response("200 OK", [("X-Bad", "v")])
        return body if isinstance(body, list) else iter([b"fine"])

    server = RecordingServer(refuse="X-Bad")
    page = server.run(ErrorCatcher(bad_field))
    assert [(status, replaced) for status, _, replaced in server.calls] == [
        ("200 OK", False),
        ("500 Internal Server Error", True),
    ]
    assert b"Error id" in page


@pytest.mark.parametrize(
    ("request_line", "status", "body"),
    [
        pytest.param(b"HEAD /rows", 200, b"", id="head"),
        pytest.param(b"GET /unchanged", 304, b"", id="304"),
        pytest.param(b"GET /rows", 200, b"row", id="get"),
    ],
)
def test_held_heads_over_the_reference_server(request_line, status, body):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/unchanged":
            start_response("304 Not Modified", [("ETag", '"v1"')])
            return iter(())
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
        return iter([b"row"] if environ["REQUEST_METHOD"] == "GET" else [])

    with live_server(ErrorCatcher(validator(app))) as server, RawClient(server.address) as client:
        got = client.request(
            request_line + b" HTTP/1.1\r\nHost: a\r\n\r\n", head_only=b"HEAD" in request_line
        )
    assert (got[0], got[2]) == (status, body)
    if status == 304:
        assert got[1].get("etag") == '"v1"'


def empty_first_then(failing: bool):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/csv")])
        yield b""
        yield b""
        if failing:
            raise RuntimeError("the rows failed after an empty first chunk")
        yield b"row"
        yield b""
        yield b"row"

    return app


def test_empty_chunks_before_the_first_byte_do_not_release_the_head():
    # The empty chunk went to the server with the head: gunicorn sends a head on
    # write(b""), so the failure after it was a cut 200 instead of the error page.
    server = RecordingServer()
    page = server.run(ErrorCatcher(empty_first_then(failing=True)))
    [(status, _, replaced)] = server.calls
    assert (status, replaced, b"Error id" in page) == ("500 Internal Server Error", False, True)


def test_empty_chunks_still_end_in_the_apps_body_when_nothing_fails():
    server = RecordingServer()
    got = server.run(ErrorCatcher(empty_first_then(failing=False)))
    assert (got, server.calls) == (b"rowrow", [("200 OK", [("Content-Type", "text/csv")], False)])
    assert serve_once(validator(ErrorCatcher(validator(empty_first_then(False))))).body == b"rowrow"

    def only_empty(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b""

    assert serve_once(validator(ErrorCatcher(validator(only_empty)))).status == "200 OK"
