"""What the server's log says of a client that leaves or stalls mid-request.

A body or head cut short or stalled is an INFO line, as nginx's "client
prematurely closed connection" and "client timed out" are at info: an
operator whose access log shows a 400 or 408 learns why.  A client that
leaves as the response goes out (a cancelled download) is a DEBUG line, as
gunicorn's "Ignoring EPIPE": on a busy site it would drown real errors.  An
ordinary close between requests (keep-alive) says nothing.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from wsgiref.validate import validator

import pytest

from wsgistack.middlewares import ErrorCatcher

from .conftest import echo_app
from .live import RawClient, live_server
from .served import poll

UPLOAD = b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n" + b"x" * 10


def big(environ, start_response):
    """A response larger than any socket buffer: the client leaves before its end."""
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return (b"y" * 65536 for _ in range(1024))


@pytest.fixture
def info(caplog):
    caplog.set_level(logging.INFO, logger="wsgistack.server")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "wsgistack.server"]


@pytest.fixture
def leveled(caplog):
    """The server's log lines as (level, message), DEBUG ones included."""
    caplog.set_level(logging.DEBUG, logger="wsgistack.server")
    return lambda: [
        (r.levelno, r.getMessage()) for r in caplog.records if r.name == "wsgistack.server"
    ]


def reset(sock: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0), as a client killed mid-request does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_a_client_that_closes_mid_body_is_logged_with_its_request(info):
    with live_server(echo_app) as server:
        client = RawClient(server.address)
        client.send(UPLOAD)
        client.sock.shutdown(socket.SHUT_WR)
        status, _, _ = client.response()
        client.close()
    assert status == 400
    line = "POST /upload from 127.0.0.1: the client closed the connection before the body ended"
    assert f"{line} (400)" in info()


def test_a_client_that_resets_mid_body_is_said_as_its_other_lines_say_it(info):
    # It read "reading the request body failed: Connection reset by peer", where
    # a reset mid-head or mid-response says "the client reset the connection".
    reading = threading.Event()

    @validator
    def upload(environ, start_response):
        reading.set()  # the app reads the body now: the reset reaches its read
        body = environ["wsgi.input"].read(100)
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    with live_server(upload) as server:
        client = RawClient(server.address)
        client.send(UPLOAD)
        assert reading.wait(10)
        reset(client.sock)
        line = "POST /upload from 127.0.0.1: the client reset the connection before the body ended"
        poll(lambda: f"{line} (400)" in info())
    assert [m for m in info() if "127.0.0.1" in m] == [f"{line} (400)"]


def test_a_body_that_stalls_past_the_timeout_is_logged_with_its_request(info):
    with live_server(echo_app, timeout=0.5) as server, RawClient(server.address) as client:
        client.send(UPLOAD)
        status, _, _ = client.response()  # after --timeout
    assert status == 408
    assert "POST /upload from 127.0.0.1: timed out reading the request body (408)" in info()


def test_a_head_that_stalls_past_the_timeout_is_logged(info):
    with live_server(echo_app, timeout=0.5) as server, RawClient(server.address) as client:
        client.send(b"GET / HTTP/1.1\r\nHost: a\r\n")
        status, _, _ = client.response()
    assert status == 408
    assert (
        "request head from 127.0.0.1: not complete within --timeout (0.5 s), answered 408" in info()
    )


def test_a_head_cut_short_by_a_stop_does_not_blame_the_timeout(info):
    with live_server(echo_app, timeout=60) as server, RawClient(server.address) as client:
        client.send(b"GET / HTTP/1.1\r\nHost: a\r\n")
        worker = server._worker
        poll(lambda: any(each.parser.mid_request for each in worker.connections()))
        server.stop()
        status, _, _ = client.response()  # after the stop's grace, not --timeout
    assert status == 408
    assert "request head from 127.0.0.1: not complete as the worker stopped, answered 408" in (
        info()
    )


def test_a_client_that_closes_mid_head_is_an_info_line(leveled):
    # INFO, unlike a close mid-response (DEBUG): the access log's "-" 400 says
    # only that it happened (as nginx's "client prematurely closed connection"
    # is at info, like a body cut short); browsers send a head in one write, so
    # it is seldom.
    with live_server(echo_app) as server:
        with RawClient(server.address) as client:
            client.send(b"GET / HTTP/1.1\r\nHo")
        line = "127.0.0.1 closed the connection in the middle of a request head"
        poll(lambda: (logging.INFO, line) in leveled())
    assert [m for lv, m in leveled() if "127.0.0.1" in m] == [line]


def test_a_client_that_resets_mid_head_is_an_info_line_and_a_400(leveled, tmp_path):
    # A reset (a killed client, a proxy giving up) used to leave no line at all
    # where a close left both; nginx logs both, the reset's errno named.
    log = tmp_path / "access.log"
    with live_server(echo_app, access_log=str(log)) as server:
        client = RawClient(server.address)
        client.send(b"GET / HTTP/1.1\r\nHo")
        poll(lambda: any(each.parser.mid_request for each in server._worker.connections()))
        reset(client.sock)
        line = "127.0.0.1 reset the connection in the middle of a request head"
        poll(lambda: (logging.INFO, line) in leveled())
        poll(lambda: " 400 " in log.read_text())
    assert [m for lv, m in leveled() if "127.0.0.1" in m] == [line]
    (cut,) = log.read_text().splitlines()
    assert cut.startswith("127.0.0.1 - - [") and cut.endswith('] "-" 400 - "-" "-"')


def test_a_reset_between_requests_says_nothing(leveled, tmp_path):
    log = tmp_path / "access.log"
    with live_server(echo_app, access_log=str(log)) as server:
        client = RawClient(server.address)
        assert client.request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")[0] == 200
        reset(client.sock)
        poll(lambda: not server._worker.connections())
    assert [m for lv, m in leveled() if lv >= logging.INFO and "127.0.0.1" in m] == []
    assert [" 200 " in each for each in log.read_text().splitlines()] == [True]


def _leaves_big(leveled, app) -> tuple[int, str]:
    """Start ``app``'s big response, reset the connection: the (level, line) said of it."""
    with live_server(app) as server:
        client = RawClient(server.address)
        client.send(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        client.sock.recv(1)  # the response has begun
        reset(client.sock)
        return poll(
            lambda: next(
                ((lv, m) for lv, m in leveled() if m.startswith("GET /big from 127.0.0.1")), None
            )
        )


def test_a_client_that_leaves_during_the_response_is_a_debug_line_naming_it(leveled):
    # A cancelled download is no fault of the server's: at the default level
    # (INFO) it says nothing, as gunicorn, and nginx at its default level.
    level, line = _leaves_big(leveled, big)
    assert level == logging.DEBUG
    # Worded as the forwarder words an upstream's reset, not "closed (Connection reset by peer)".
    assert (
        line == "GET /big from 127.0.0.1: the client reset the connection before the response ended"
    )
    assert [m for lv, m in leveled() if lv >= logging.INFO and "127.0.0.1" in m] == []


def test_a_client_that_stops_reading_the_response_is_an_info_line(info):
    # Unlike a close, a stalled reader held a thread for --timeout: it shows.
    with live_server(big, timeout=0.5) as server, RawClient(server.address) as client:
        client.send(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        client.sock.recv(1)  # the response has begun; then nothing is read
        poll(lambda: any("read nothing for --timeout (0.5 s), dropped" in m for m in info()))
    assert any(m.startswith("GET /big from 127.0.0.1: the client read nothing") for m in info())


def test_keep_alive_requests_and_their_close_log_nothing(info):
    with live_server(echo_app) as server:
        with RawClient(server.address) as client:
            for _ in range(3):
                assert client.request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")[0] == 200
        with RawClient(server.address):
            pass  # connected, sent nothing, left: a preconnect
        with RawClient(server.address) as client:
            assert client.request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")[0] == 200
    assert [m for m in info() if "closed" in m or "timed out" in m or "408" in m] == []


def big_by_write(environ, start_response):
    """``big`` through the legacy write(): the server's send fails inside the app."""
    write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
    for _ in range(1024):
        write(b"y" * 65536)
    return []


def test_a_client_leaving_a_write_app_behind_error_catcher_is_no_app_error(leveled, caplog):
    # The server's write() failed inside the app, so ErrorCatcher took the
    # client's leaving for the app's failure: an ERROR with a traceback, the
    # on_error hooks (a Sentry report per disconnect), and no line of ours.
    hooked: list[str] = []
    caplog.set_level(logging.DEBUG, logger="wsgistack.errors")  # keeps the handler at DEBUG
    app = ErrorCatcher(validator(big_by_write), on_error=lambda *args: hooked.append(args[2]))
    level, line = _leaves_big(leveled, validator(app))
    assert (level, "the client reset" in line) == (logging.DEBUG, True), line
    assert [r.getMessage() for r in caplog.records if r.name == "wsgistack.errors"] == []
    assert hooked == []
