"""Helpers to test anything served over real sockets: a live server and a raw HTTP client.

Other test packages reuse them:

    from tests.server.live import RawClient, live_server
    with live_server(app) as server, RawClient(server.address) as client:
        status, headers, body = client.request(b"GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n")
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from collections.abc import Iterator
from typing import Any
from wsgiref.validate import validator

from wsgistack.server import Server

__all__ = ["RawClient", "Response", "live_server", "read_until_close", "uwsgi_packet"]

Response = tuple[int, dict[str, str], bytes]


@contextlib.contextmanager
def live_server(app: Any, *, validate: bool = True, **options: Any) -> Iterator[Server]:
    """Serve ``app`` (inside wsgiref's validator) in this process on a free loopback port."""
    options.setdefault("bind", "127.0.0.1:0")
    options.setdefault("workers", 0)
    options.setdefault("timeout", 5)
    with Server(validator(app) if validate else app, **options) as server:
        server.address = server.addresses[0]  # type: ignore[attr-defined]
        yield server


def uwsgi_packet(
    variables: dict[str, str] | list[tuple[str, str]],
    body: bytes = b"",
    modifier1: int = 0,
    modifier2: int = 0,
) -> bytes:
    """A uwsgi request packet as nginx's uwsgi_pass writes it."""
    pairs = variables.items() if isinstance(variables, dict) else variables
    block = b""
    for key, value in pairs:
        for item in (key.encode("latin-1"), value.encode("latin-1")):
            block += len(item).to_bytes(2, "little") + item
    head = bytes([modifier1]) + len(block).to_bytes(2, "little") + bytes([modifier2])
    return head + block + body


def post_chunked(address, path: str, blocks) -> tuple[int, bytes]:
    """POST ``blocks`` (an iterable of bytes) chunked, as a streaming client does."""
    conn = http.client.HTTPConnection(*address, timeout=30)
    try:
        conn.request("POST", path, body=blocks, headers={"Content-Type": "text/plain"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def read_until_close(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes (a reset counts as a close)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def exchange(app: Any, request: bytes, **options: Any) -> bytes:
    """Serve ``app`` (validated) over a real socket, send ``request``, read to the close."""
    with (
        live_server(app, **options) as front,
        socket.create_connection(front.address, timeout=5) as client,
    ):
        client.sendall(request)
        return read_until_close(client)


class RawClient:
    """A socket that sends raw bytes and parses responses (keep-alive aware)."""

    def __init__(self, address: Any, timeout: float = 5.0) -> None:
        if isinstance(address, str):  # a unix socket's path
            family = socket.AF_UNIX
        else:
            family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        if family != socket.AF_UNIX:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.was_reset = False  # read_to_close() ended with a reset, not an orderly close

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self._fill():
                raise ConnectionError(f"closed before {marker!r}: {self.buffer!r}")
        data, _, self.buffer = self.buffer.partition(marker)
        return data

    def _read_exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise ConnectionError("closed mid-body")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def response(self, head_only: bool = False) -> Response:
        """Read one response: (status, headers with lower-case names, body)."""
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        status_line, *lines = head.split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            key = name.lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        if head_only or status in (100, 204, 304):
            return status, headers, b""
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(self._read_until(b"\r\n").split(b";")[0], 16):
                body += self._read_exact(size)
                self._read_exact(2)
            self._read_until(b"\r\n")
            return status, headers, body
        if "content-length" in headers:
            return status, headers, self._read_exact(int(headers["content-length"]))
        return status, headers, self.read_to_close()

    def request(self, data: bytes, head_only: bool = False) -> Response:
        self.send(data)
        return self.response(head_only)

    def read_to_close(self) -> bytes:
        """Everything until the server closes; ``was_reset`` tells a reset from a FIN."""
        try:
            while self._fill():
                pass
        except ConnectionResetError:
            self.was_reset = True
        data, self.buffer = self.buffer, b""
        return data

    def closed_by_peer(self) -> bool:
        """True when the server has closed its side (reads EOF, or a reset)."""
        try:
            return not self._fill()
        except ConnectionResetError:
            return True


class HeldApp:
    """A WSGI app whose requests wait until the test releases them: one in flight on demand.

    ``entered`` is set once a request is inside the app; ``release`` lets every
    request answer ``body`` (each waits ``wait`` seconds at most).
    """

    def __init__(self, body: bytes = b"finished", wait: float = 10.0) -> None:
        self.body = body
        self.wait = wait
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.entered.set()
        self.release.wait(self.wait)
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(self.body)))]
        )
        return [self.body]
