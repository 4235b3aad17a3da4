"""A body the app left unread, still arriving: read away after the response, connection kept."""

from __future__ import annotations

import contextlib
import socket

import pytest

from wsgistack.server.discard import DISCARD_MAX

from .conftest import echo_app
from .live import RawClient, live_server

GET = b"GET /%s HTTP/1.1\r\nHost: a\r\n\r\n"


def not_found(environ, start_response):
    """Answers a POST without reading its body (as a 404 to an upload does); echoes a GET."""
    if environ["REQUEST_METHOD"] != "POST":
        return echo_app(environ, start_response)
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "4")])
    return [b"gone"]


#: (head, first part of the body, the rest of it), per framing.
BODIES = {
    "content-length": (
        b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n",
        b"01234",
        b"56789",
    ),
    "chunked": (
        b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"5\r\n01234\r\n",
        b"5;ext=1\r\n56789\r\n0\r\nX-Trailer: t\r\n\r\n",
    ),
}


@pytest.mark.parametrize("framing", BODIES)
def test_an_unread_body_still_arriving_keeps_the_connection(framing):
    head, first, rest = BODIES[framing]
    with live_server(not_found) as server, RawClient(server.address) as client:
        status, headers, body = client.request(head + first)
        assert (status, body) == (404, b"gone")
        assert "connection" not in headers  # the client may send its next request here
        # The rest of the body, then two requests pipelined behind it: answered in order.
        client.send(rest + GET % b"one" + GET % b"two")
        assert client.response()[2] == b"GET /one  "
        assert client.response()[2] == b"GET /two  "


@pytest.mark.parametrize("framing", BODIES)
def test_an_unread_body_arriving_slowly_is_read_away_by_the_loop(framing):
    # One pool thread: it must not be the one that waits for the body, or the
    # second client would be served only once the first one's timeout passed.
    head, first, rest = BODIES[framing]
    with (
        live_server(not_found, threads=1, timeout=30) as server,
        RawClient(server.address) as slow,
        RawClient(server.address) as other,
    ):
        assert slow.request(head + first)[0] == 404
        assert other.request(GET % b"other")[2] == b"GET /other  "
        slow.send(rest[:3])  # in pieces, over the loop's reads
        assert other.request(GET % b"again")[2] == b"GET /again  "
        slow.send(rest[3:] + GET % b"next")
        assert slow.response()[2] == b"GET /next  "


def test_a_client_that_stops_sending_its_body_is_closed_after_the_timeout():
    head, first, _ = BODIES["content-length"]
    with live_server(not_found, timeout=0.5) as server, RawClient(server.address) as client:
        assert client.request(head + first)[0] == 404
        assert client.closed_by_peer()  # within --timeout, as a head that stops


def test_a_content_length_body_too_large_to_read_away_closes_the_connection():
    head = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (DISCARD_MAX + 1001)
    with live_server(not_found) as server, RawClient(server.address) as client:
        _, headers, _ = client.request(head + b"x" * 1000)
        assert headers["connection"] == "close"  # said at once: the rest would not be read


def test_a_chunked_body_past_the_bound_closes_the_connection():
    head, first, _ = BODIES["chunked"]
    block = b"x" * 65536
    with live_server(not_found) as server, RawClient(server.address) as client:
        _, headers, _ = client.request(head + first)
        assert "connection" not in headers  # its size was unknown
        with contextlib.suppress(OSError):  # the server may close before we end
            for _ in range(DISCARD_MAX // len(block) + 2):
                client.send(b"%x\r\n%s\r\n" % (len(block), block))
            client.sock.shutdown(socket.SHUT_WR)
        assert client.closed_by_peer()
        assert client.buffer == b""  # closed without another word


def test_a_broken_chunk_in_a_body_being_read_away_closes_without_an_answer():
    head, first, _ = BODIES["chunked"]
    with live_server(not_found) as server, RawClient(server.address) as client:
        assert client.request(head + first)[0] == 404
        client.send(b"zz\r\n" + GET % b"smuggled")
        assert client.read_to_close() == b""  # the response was sent: nothing more to say
