"""A request line that names another protocol than HTTP is refused, never served as HTTP/1.0.

llhttp (httptools) also parses RTSP and ICE (Icecast's SOURCE), and reports
their version alone: ``GET / RTSP/1.0`` reached the app as an HTTP/1.0
request.  nginx answers 400, as for any name but ``HTTP`` (RFC 9112 2.3:
case-sensitive, so ``http/1.1`` too).  The corpus (``tests/corpus``) has the
single requests, whole and split; here, what needs a connection.
"""

from __future__ import annotations

import logging

import pytest

from .conftest import recording_echo
from .live import RawClient, live_server
from .served import poll


@pytest.mark.parametrize(
    ("pieces", "status"),
    [
        pytest.param([b"GET /live ", b"RTSP/1.0\r\nHost: a\r\n\r\n"], 400, id="rtsp"),
        pytest.param([b"SOURCE /mount ", b"ICE/1.0\r\nHost: a\r\n\r\n"], 400, id="ice"),
        pytest.param([b"GET /live R", b"TSP/1.0\r\nHost: a\r\n\r\n"], 400, id="inside-the-name"),
        pytest.param([b"GET /live ", b"http/1.1\r\nHost: a\r\n\r\n"], 400, id="lowercase"),
        pytest.param(
            [b"ANNOUNCE /live ", b"HTTP/1.1\r\nHost: a\r\n\r\n"], 501, id="rtsp-method-over-http"
        ),
    ],
)
def test_a_protocol_name_arriving_in_a_later_read_is_judged(pieces, status, tmp_path, caplog):
    calls: list[str] = []
    log = tmp_path / "access.log"
    with (
        caplog.at_level(logging.DEBUG, logger="wsgistack.server"),
        live_server(recording_echo(calls, "PATH_INFO"), access_log=str(log)) as server,
        RawClient(server.address) as client,
    ):
        first, rest = pieces
        client.send(first)
        # The target's end in one read, the protocol name in the next.
        worker = server._worker
        poll(lambda: any(each.parser.mid_request for each in worker.connections()))
        client.send(rest)
        answer, headers, body = client.response()
        assert (answer, headers["connection"]) == (status, "close")
        assert client.closed_by_peer()
    assert calls == []  # the app never saw it
    # Logged as the other malformed heads are: no request line, the refusal's size.
    (line,) = log.read_text().splitlines()
    assert line.endswith(f'] "-" {status} {len(body)} "-" "-"')
    assert "refused" in caplog.text


def test_a_request_naming_rtsp_pipelined_after_an_http_one_is_refused_after_its_answer():
    calls: list[str] = []
    with (
        live_server(recording_echo(calls, "PATH_INFO")) as server,
        RawClient(server.address) as client,
    ):
        client.send(
            b"GET /first HTTP/1.1\r\nHost: a\r\n\r\nGET /second RTSP/1.0\r\nHost: a\r\n\r\n"
        )
        assert client.response()[0] == 200
        status, headers, _ = client.response()
        assert (status, headers["connection"]) == (400, "close")
    assert calls == ["/first"]


def test_an_rtsp_request_line_inside_a_body_does_not_refuse_the_next_request():
    # Bytes that look like a request line naming RTSP, in a body, before an HTTP
    # request for the same target in the same read: that request is served.
    fake = b"GET /next RTSP/1.0\r\n"
    calls: list[str] = []
    with (
        live_server(recording_echo(calls, "PATH_INFO")) as server,
        RawClient(server.address) as client,
    ):
        client.send(
            b"POST /first HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%b" % (len(fake), fake)
            + b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        assert client.response()[0] == 200
        assert client.response()[0] == 200
    assert calls == ["/first", "/next"]
