"""What the server's log says of a TLS client that leaves, or whose TLS fails, mid-request.

A client that goes away reads as it does on a plain bind (test_client_gone_log.py):
one DEBUG line in plain words, never OpenSSL's text or CPython's ``_ssl.c``
line numbers.  A real TLS failure (a record that does not decrypt) is an
INFO line that says it is a TLS error.  Real TLS clients (Python's ``ssl``)
against the server on port 0.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from wsgiref.validate import validator

import pytest

from .conftest import echo_app
from .live import live_server
from .served import poll
from .test_client_gone_log import big, reset
from .test_tls import client_context, tls_options


@pytest.fixture
def leveled(caplog):
    """The server's log lines as (level, message), DEBUG ones included."""
    caplog.set_level(logging.DEBUG, logger="wsgistack.server")
    return lambda: [
        (r.levelno, r.getMessage()) for r in caplog.records if r.name == "wsgistack.server"
    ]


def tls_connect(server, files):
    raw = socket.create_connection(server.address, timeout=10)
    return client_context(files).wrap_socket(raw, server_hostname="127.0.0.1")


def _said_of(leveled, start: str) -> tuple[int, str]:
    return poll(lambda: next(((lv, m) for lv, m in leveled() if m.startswith(start)), None))


@pytest.mark.parametrize("leave", ["close", "reset"])
def test_a_tls_client_that_leaves_mid_response_is_one_plain_debug_line(tls_files, leveled, leave):
    with live_server(big, **tls_options(tls_files)) as server:
        sock = tls_connect(server, tls_files)
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        sock.recv(1)  # the response has begun
        if leave == "reset":
            reset(sock)
        else:
            sock.close()  # the TCP close, no close_notify (no unwrap)
        level, line = _said_of(leveled, "GET /big from 127.0.0.1")
    assert level == logging.DEBUG
    assert line.startswith("GET /big from 127.0.0.1: the client closed the connection"), line
    assert line.endswith("before the response ended"), line
    assert not [m for _, m in leveled() if "_ssl.c" in m or "EOF occurred" in m]
    assert [m for lv, m in leveled() if lv >= logging.INFO and "127.0.0.1" in m] == []


#: A TLS 1.3 application-data record whose bytes are no encryption of anything.
FORGED_RECORD = b"\x17\x03\x03\x00\x20" + b"\x5a" * 32


@contextlib.contextmanager
def _mid_upload(tls_files) -> Iterator[ssl.SSLSocket]:
    """A TLS client two bytes into a 100-byte upload, as the app reads it."""
    reading = threading.Event()

    @validator
    def upload(environ, start_response):
        reading.set()  # the app reads the body: the next record is its pool thread's
        body = environ["wsgi.input"].read(100)
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    with live_server(upload, **tls_options(tls_files)) as server:
        sock = tls_connect(server, tls_files)
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nxx")
        assert reading.wait(10)
        yield sock


def test_a_record_that_does_not_decrypt_mid_body_is_a_tls_error_line(tls_files, leveled):
    with _mid_upload(tls_files) as sock:
        os.write(sock.fileno(), FORGED_RECORD)  # under the TLS layer: as if forged on the way
        level, line = _said_of(leveled, "POST /upload from 127.0.0.1")
        sock.close()
    assert level == logging.INFO
    assert line.startswith(
        "POST /upload from 127.0.0.1: reading the request body failed: TLS error: "
    ), line
    assert line.endswith("(400)"), line
    assert "_ssl.c" not in line and "[SSL" not in line, line


@pytest.mark.parametrize("leave", ["close", "reset"])
def test_a_tls_client_that_leaves_mid_body_reads_as_a_close(tls_files, leveled, leave):
    # OpenSSL loses a reset's errno: either reads as a close, in the words of a
    # plain bind's ("the client closed the connection ..."), never a TLS error.
    with _mid_upload(tls_files) as sock:
        if leave == "reset":
            reset(sock)
        else:
            sock.close()  # the TCP close, no close_notify (no unwrap)
        level, line = _said_of(leveled, "POST /upload from 127.0.0.1")
    assert (level, line) == (
        logging.INFO,
        "POST /upload from 127.0.0.1: the client closed the connection before the body ended (400)",
    )


def test_a_record_that_does_not_decrypt_between_requests_is_a_tls_error_line(tls_files, leveled):
    with live_server(echo_app, **tls_options(tls_files)) as server:
        sock = tls_connect(server, tls_files)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        sock.recv(65536)  # answered; the connection is idle in the worker's loop
        os.write(sock.fileno(), FORGED_RECORD)
        level, line = _said_of(leveled, "127.0.0.1: TLS error: ")
        sock.close()
    assert level == logging.INFO
    assert line.endswith(", closed"), line
    assert "_ssl.c" not in line and "[SSL" not in line, line


@pytest.mark.parametrize(
    ("leave", "said"),
    [
        ("reset", "127.0.0.1 closed the connection in the middle of a request head"),
        ("close", "127.0.0.1 closed the connection in the middle of a request head"),
        ("forged", "127.0.0.1: reading the request head failed: TLS error: "),
    ],
)
def test_a_head_cut_short_over_tls_is_an_info_line_and_a_400(
    tls_files, leveled, tmp_path, leave, said
):
    # A record that does not decrypt mid-head had its line but no access line.
    # A reset reads as a close without close_notify does (OpenSSL loses its errno).
    log = tmp_path / "access.log"
    with (
        live_server(echo_app, access_log=str(log), **tls_options(tls_files)) as server,
        tls_connect(server, tls_files) as sock,
    ):
        sock.sendall(b"GET / HTTP/1.1\r\nHo")
        poll(lambda: any(each.parser.mid_request for each in server._worker.connections()))
        if leave == "reset":
            reset(sock)
        elif leave == "close":
            sock.close()  # the TCP close, no close_notify
        else:
            os.write(sock.fileno(), FORGED_RECORD)
        level, line = _said_of(leveled, "127.0.0.1")
        poll(lambda: " 400 " in log.read_text())
    assert level == logging.INFO
    if leave == "forged":
        assert line.startswith(said) and line.endswith(", closed"), line
    else:  # OpenSSL reports a reset as it does a close: its errno lost
        assert line == said
    assert [m for _, m in leveled() if "127.0.0.1" in m] == [line]
    (cut,) = log.read_text().splitlines()
    assert cut.startswith("127.0.0.1 - - [") and cut.endswith('] "-" 400 - "-" "-"')
