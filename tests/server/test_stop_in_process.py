"""An in-process server's stop (``Server.close()``, ``--workers 0``): what a cut request's client sees.

A thread cannot be killed: a request still in the app at the graceful
deadline runs on in its thread after ``close()`` returns.  Its client must
see the cut then, as it does when a prefork worker exits, not the rest of
the body later, followed by a reset.
"""

from __future__ import annotations

import logging
import threading

import pytest

from wsgistack.server import Server

from .live import RawClient, uwsgi_packet

PACKET = uwsgi_packet(
    {
        "REQUEST_METHOD": "GET",
        "REQUEST_URI": "/slow",
        "PATH_INFO": "/slow",
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.0",
        "SERVER_NAME": "example.org",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "203.0.113.9",
    }
)


@pytest.mark.parametrize(
    ("bind", "request_bytes"),
    [
        ("127.0.0.1:0", b"GET /slow HTTP/1.0\r\nHost: a\r\n\r\n"),  # ended by the close
        ("uwsgi://127.0.0.1:0", PACKET),  # a worker whose threads accept (uwsgi only)
    ],
)
def test_a_request_cut_at_the_deadline_is_reset_then_and_sends_nothing_more(
    bind, request_bytes, tmp_path, caplog
):
    # close() logged "cutting it" and returned, but the request ran on: its
    # client got the rest of the body whenever the app produced it, then a
    # reset (which could also drop the end of it), and the thread's access
    # log line failed on the closed file with an "unexpected error" traceback.
    entered, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            try:
                yield b"first part, "
                entered.set()
                release.wait(30)
                yield b"the part after the deadline"
            finally:
                finished.set()

        return body()

    access_log = tmp_path / "access.log"
    server = Server(
        slow, bind=bind, workers=0, graceful_timeout=0.2, access_log=str(access_log)
    ).start()
    worker = server._worker
    assert worker is not None
    try:
        with RawClient(server.addresses[0], timeout=10) as client:
            client.send(request_bytes)
            assert entered.wait(10)
            with caplog.at_level(logging.INFO, logger="wsgistack.server"):
                server.close()
                data = client.read_to_close()  # before the app goes on
                assert client.was_reset
                assert data.endswith(b"first part, ")
                release.set()
                assert finished.wait(10)  # the app's thread went on, and ended
                for thread in worker._threads:  # then the server's part of it
                    thread.join(10)
    finally:
        release.set()
        server.close()
    messages = [record.getMessage() for record in caplog.records]
    assert any("in flight, cutting it" in message for message in messages), messages
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], messages
    assert "/slow" not in access_log.read_text()  # cut: said by the warning, as a worker's exit
