"""The access log's size is the body bytes handed to the kernel, as nginx's ``$body_bytes_sent``.

A client that leaves mid-response (a reset) or stops reading (--timeout)
gets less than the app gave: the line counts what the server's send calls
took, to the byte, over plain HTTP, TLS and uwsgi, for a streamed body (with
a Content-Length, or chunked) and for a file (``sendfile``, or read and
written over TLS).  The calls are watched by spies that still send.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import struct
import threading
from pathlib import Path

import pytest

from .live import live_server, read_until_close, uwsgi_packet
from .served import poll

BLOCK = 65536
#: Far more than loopback's buffers hold for a client that stops reading (the
#: server's send buffer grows to tcp_wmem's largest, 4 MiB by default, and the
#: client's receive buffer is set to 64 KiB): the client never gets it all.
TOTAL = 256 * BLOCK  # 16 MiB
#: What the client reads of the body before it leaves or stops reading.
READ = 4 * BLOCK

PACKET = uwsgi_packet(
    {
        "REQUEST_METHOD": "GET",
        "REQUEST_URI": "/big",
        "PATH_INFO": "/big",
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "example.org",
        "SERVER_PORT": "80",
    }
)
REQUEST = b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n"


@pytest.fixture
def taken(monkeypatch) -> bytearray:
    """The bytes the server's socket sends handed to the kernel (the calls still send).

    ``socket.send`` for plain HTTP and uwsgi, ``SSLSocket.send`` (the plaintext
    OpenSSL wrote) over TLS, ``os.sendfile`` for files; the test's own client
    runs in the main thread, and its sends are left out, as are the worker's
    wake-ups (a socketpair).
    """
    stream = bytearray()
    lock = threading.Lock()
    main = threading.main_thread()

    def spy_on(owner, name):
        real = getattr(owner, name)

        def spy(self, data, *args):
            count = real(self, data, *args)
            if self.family != socket.AF_UNIX and threading.current_thread() is not main:
                with lock:
                    stream.extend(memoryview(data)[:count])
            return count

        monkeypatch.setattr(owner, name, spy)

    spy_on(socket.socket, "send")
    spy_on(ssl.SSLSocket, "send")
    real_sendfile = os.sendfile

    def sendfile(out_fd, in_fd, offset, count):
        done = real_sendfile(out_fd, in_fd, offset, count)
        with lock:
            stream.extend(os.pread(in_fd, done, offset))
        return done

    monkeypatch.setattr(os, "sendfile", sendfile)
    return stream


def body_bytes(stream: bytes) -> int:
    """The body bytes in what was sent (a chunked body's data, not its framing)."""
    head, _, body = bytes(stream).partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" not in head.lower():
        return len(body)
    count = 0
    while b"\r\n" in body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        count += min(size, len(body))
        body = body[size + 2 :]
    return count


def streamed(framing):
    def app(environ, start_response):
        headers = [("Content-Type", "application/octet-stream")]
        if framing == "length":
            headers.append(("Content-Length", str(TOTAL)))
        start_response("200 OK", headers)
        return (b"y" * BLOCK for _ in range(TOTAL // BLOCK))

    return app


def a_file(path: Path):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](path.open("rb"))

    return app


def served(transport, body, tmp_path, tls_files, **options):
    """The server for ``transport`` with the access log in tmp_path, and its request."""
    if transport == "tls":
        options |= {"certfile": str(tls_files.server_cert), "keyfile": str(tls_files.server_key)}
    elif transport == "uwsgi":
        options["bind"] = "uwsgi://127.0.0.1:0"
    if body == "file":
        path = tmp_path / "big.bin"
        path.write_bytes(b"f" * TOTAL)
        # Not validated: wsgiref's validator hides the file wrapper behind its iterator.
        app, options["validate"] = a_file(path), False
    else:
        app = streamed(body)
    server = live_server(app, access_log=str(tmp_path / "access.log"), **options)
    return server, PACKET if transport == "uwsgi" else REQUEST


def connect(server, transport, tls_files) -> socket.socket:
    """A client whose receive buffer stays small: the server's sends soon wait for it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BLOCK)
    sock.settimeout(10)
    sock.connect(server.address)
    if transport != "tls":
        return sock
    context = ssl.create_default_context(cafile=str(tls_files.ca))
    return context.wrap_socket(sock, server_hostname="127.0.0.1")


def read_some(sock: socket.socket) -> int:
    """Read the head and at least ``READ`` body bytes; the body bytes read."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < READ:
        chunk = sock.recv(BLOCK)
        assert chunk, data[:200]
        data += chunk
    return body_bytes(data)


def logged_size(log: Path) -> int:
    poll(lambda: log.exists() and log.read_text().endswith("\n"))
    (line,) = log.read_text().splitlines()
    size = re.search(r'" [0-9]{3} (\S+) "', line)  # "request" status size "referer"
    assert size is not None, line
    return 0 if size[1] == "-" else int(size[1])


CASES = [
    ("plain", "length"),
    ("plain", "chunked"),
    ("plain", "file"),  # sendfile
    ("tls", "length"),
    ("tls", "chunked"),
    ("tls", "file"),  # read and written
    ("uwsgi", "length"),
    ("uwsgi", "file"),
]


@pytest.mark.parametrize(("transport", "body"), CASES, ids=["-".join(case) for case in CASES])
def test_a_client_that_resets_mid_body_is_logged_with_the_bytes_the_kernel_took(
    transport, body, tmp_path, tls_files, taken
):
    # The line counted the block whose send failed as sent, up to 64 KiB
    # more than the kernel took (and nginx's $body_bytes_sent counts).
    server, request = served(transport, body, tmp_path, tls_files)
    with server as live, connect(live, transport, tls_files) as sock:
        sock.sendall(request)
        read = read_some(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # a reset (no close_notify over TLS): the server's next send fails
    size = logged_size(tmp_path / "access.log")
    assert read <= size < TOTAL
    assert size == body_bytes(taken)


@pytest.mark.parametrize(
    ("transport", "body"),
    [("plain", "chunked"), ("plain", "file"), ("tls", "length"), ("uwsgi", "length")],
)
def test_a_client_that_stops_reading_is_logged_with_the_bytes_the_kernel_took(
    transport, body, tmp_path, tls_files, taken
):
    # --timeout passes in a send that waits: a partial send counts its part.
    server, request = served(transport, body, tmp_path, tls_files, timeout=0.5)
    with server as live, connect(live, transport, tls_files) as sock:
        sock.sendall(request)
        read = read_some(sock)
        size = logged_size(tmp_path / "access.log")  # once --timeout has passed
    assert read <= size < TOTAL
    assert size == body_bytes(taken)


@pytest.mark.parametrize(("transport", "body"), CASES, ids=["-".join(case) for case in CASES])
def test_a_whole_response_is_logged_with_its_body_length(
    transport, body, tmp_path, tls_files, taken
):
    server, request = served(transport, body, tmp_path, tls_files)
    with server as live, connect(live, transport, tls_files) as sock:
        sock.sendall(request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1))
        data = read_until_close(sock)
        size = logged_size(tmp_path / "access.log")
    assert size == TOTAL == body_bytes(data) == body_bytes(taken)
