"""A response whose body ends before its first byte goes out with ``Content-Length: 0``.

An app that answers ``[]``, a generator that yields nothing, or Django's
redirect (its content ``b""``, no length given) went out chunked, a lone
``0\\r\\n\\r\\n``, and to an HTTP/1.0 client close-delimited, so its
keep-alive was lost.  The length is known once the body has ended: 0.
"""

from __future__ import annotations

import re
import socket

import pytest

from .live import RawClient, live_server, read_until_close

HEAD = b"Content-Type: text/plain\r\nContent-Length: 0\r\nDate: D\r\nServer: wsgistack\r\n"


def nothing(environ, start_response):
    """Answers ``/<status>`` with no body, in the shape ``?shape=`` names."""
    status = environ["PATH_INFO"].strip("/") or "200"
    bodiless = status in ("204", "304")  # no Content-Type either (wsgiref's validator)
    headers = [] if bodiless else [("Content-Type", "text/plain")]
    start_response(f"{status} {_REASONS[status]}", headers)
    shape = environ["QUERY_STRING"]
    if shape == "generator":
        return (chunk for chunk in [b"skipped"] if False)
    if shape == "empties":
        return iter([b"", b""])
    if shape == "one-empty":
        return [b""]
    return []


_REASONS = {"200": "OK", "204": "No Content", "205": "Reset Content", "304": "Not Modified"}


def dated(data: bytes) -> bytes:
    """``data`` with each Date header's value replaced by ``D``: the rest is compared exactly."""
    return re.sub(rb"\r\nDate: [^\r]*\r\n", b"\r\nDate: D\r\n", data)


def exchange(requests: bytes) -> bytes:
    """Send ``requests`` on one connection; what the server sent until it closed."""
    with (
        live_server(nothing) as server,
        socket.create_connection(server.address, timeout=5) as client,
    ):
        client.sendall(requests)
        return dated(read_until_close(client))


@pytest.mark.parametrize("shape", ["list", "generator", "empties", "one-empty"])
def test_an_empty_body_is_content_length_0_and_the_connection_stays(shape):
    get = b"GET /?%b HTTP/1.1\r\nHost: a\r\n\r\n" % shape.encode()
    last = b"GET /?%b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % shape.encode()
    answer = b"HTTP/1.1 200 OK\r\n" + HEAD + b"\r\n"
    closing = b"HTTP/1.1 200 OK\r\n" + HEAD + b"Connection: close\r\n\r\n"
    assert exchange(get + last) == answer + closing


@pytest.mark.parametrize("shape", ["list", "generator"])
def test_an_http10_client_keeps_its_connection_after_an_empty_body(shape):
    get = b"GET /?%b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" % shape.encode()
    kept = b"HTTP/1.1 200 OK\r\n" + HEAD + b"Connection: keep-alive\r\n\r\n"
    closing = b"HTTP/1.1 200 OK\r\n" + HEAD + b"Connection: close\r\n\r\n"
    assert exchange(get + b"GET / HTTP/1.0\r\n\r\n") == kept + closing


@pytest.mark.parametrize(
    ("request_line", "status"),
    [
        pytest.param(b"HEAD / HTTP/1.1", b"200 OK", id="head"),
        pytest.param(b"GET /204 HTTP/1.1", b"204 No Content", id="204"),
        pytest.param(b"GET /304 HTTP/1.1", b"304 Not Modified", id="304"),
    ],
)
def test_no_length_is_made_up_for_a_head_or_a_bodiless_status(request_line, status):
    # A HEAD's app may send a body to the same GET (RFC 9110 8.6: no length
    # but the GET's); a 204 never has one, a 304 only the app's (RFC 9110 8.6).
    request = request_line + b"\r\nHost: a\r\nConnection: close\r\n\r\n"
    typed = b"Content-Type: text/plain\r\n" if request_line.startswith(b"HEAD") else b""
    stamps = b"Date: D\r\nServer: wsgistack\r\nConnection: close\r\n\r\n"
    assert exchange(request) == b"HTTP/1.1 " + status + b"\r\n" + typed + stamps


def test_a_205_says_its_length_is_0():
    # RFC 9110 15.3.6: a 205 has no content, and says so (unlike a 204) like any response.
    request = b"GET /205 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    answer = b"HTTP/1.1 205 Reset Content\r\n" + HEAD + b"Connection: close\r\n\r\n"
    assert exchange(request) == answer


def test_an_empty_file_through_the_file_wrapper_is_content_length_0(tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](empty.open("rb"))

    with live_server(app) as server, RawClient(server.address) as client:
        for _ in range(2):  # the connection stays
            _status, headers, body = client.request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert (headers.get("content-length"), body) == ("0", b"")
            assert "transfer-encoding" not in headers


def test_a_django_redirect_goes_out_with_content_length_0():
    from tests import djangoapp

    with live_server(djangoapp.application) as server, RawClient(server.address) as client:
        for _ in range(2):
            status, headers, body = client.request(b"GET /old/ HTTP/1.1\r\nHost: a\r\n\r\n")
            assert (status, headers["location"], body) == (302, "/articles/home/", b"")
            assert headers["content-length"] == "0" and "transfer-encoding" not in headers
