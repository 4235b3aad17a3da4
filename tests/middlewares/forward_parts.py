"""Real upstreams for the LoadBalancer tests: reference servers and scripted raw sockets."""

from __future__ import annotations

import collections
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from wsgiref.validate import validator

import pytest

from wsgistack.middlewares import LoadBalancer
from wsgistack.server import Server

__all__ = [
    "DyingUpstream",
    "HastyUpstream",
    "RawUpstream",
    "ResettingUpstream",
    "Upstreams",
    "dying",
    "lb",
    "raw",
    "upstreams",
]


class Upstreams:
    """Real reference servers (apps inside wsgiref's validator), each restartable on its port."""

    def __init__(self) -> None:
        self.servers: dict[str, Server] = {}
        self.apps: dict[str, object] = {}
        self.ports: dict[str, int] = {}
        self.received: collections.Counter = collections.Counter()

    def start(self, name: str, app=None, **options) -> str:
        app = app or self.named(name)
        self.apps[name] = app
        bind = f"127.0.0.1:{self.ports.get(name, 0)}"
        server = Server(validator(app), bind=bind, workers=0, threads=4, **options)
        self.servers[name] = server.start()
        self.ports[name] = server.addresses[0][1]
        return server.url

    def stop(self, name: str) -> None:
        self.servers.pop(name).close()

    def restart(self, name: str) -> None:
        self.start(name, self.apps[name])

    def named(self, name: str):
        def app(environ, start_response):
            body = b""
            while chunk := environ["wsgi.input"].read(65536):
                body += chunk
            self.received[(name, environ["REQUEST_METHOD"])] += 1
            text = f"{name} {environ['PATH_INFO']} {len(body)}".encode()
            start_response(
                "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))]
            )
            return [text]

        return app

    def close(self) -> None:
        for server in self.servers.values():
            server.close()


class DyingUpstream:
    """A raw server that reads each whole request, counts it, and hangs up unanswered."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(
                    dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:]).get(
                        b"Content-Length", b"0"
                    )
                )
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests.append(head.split(b" ")[0] + b" " + body)

    def close(self) -> None:
        self.sock.close()


class _RawServer:
    """A loopback listener whose accept loop hands each connection to ``accepted``."""

    def __init__(self, accepted: Callable[[socket.socket], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, args=(accepted,), daemon=True).start()

    def _serve(self, accepted: Callable[[socket.socket], None]) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return  # closed
            accepted(sock)

    def close(self) -> None:
        self.listener.close()


class HastyUpstream(_RawServer):
    """A raw server that answers ``reply`` once a request's head is in, never reading its body.

    Then, by ``then``: "close" (with the body unread, the kernel sends a reset)
    or "hold" (open and unread until ``close()``), as servers refusing a large
    upload (413) or an unauthorised one (401) do.
    """

    def __init__(self, reply: bytes, then: str) -> None:
        self.reply = reply
        self.then = then
        self.held: list[socket.socket] = []
        super().__init__(self._accepted)

    def _accepted(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)  # byte by byte: not one byte of the body
        sock.sendall(self.reply)
        if self.then == "hold":
            self.held.append(sock)
        else:
            sock.close()

    def close(self) -> None:
        super().close()
        for sock in self.held:
            sock.close()


class ResettingUpstream(_RawServer):
    """A raw server that resets each connection (SO_LINGER 0), as a crashed or killed one.

    Once a request's head is in (and no more of it read), after sending
    ``reply``: a part of an answer, or nothing.
    """

    def __init__(self, reply: bytes = b"") -> None:
        self.reply = reply
        super().__init__(self._accepted)

    def _accepted(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        with sock:
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(65536)
            sock.sendall(self.reply)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _body_end(head: bytes, buffer: bytes) -> int | None:
    """Where the body after ``head`` ends in ``buffer``; None if it has not all come.

    Content-Length, or chunked (small test bodies: up to the last-chunk).
    """
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            return int(value) if len(buffer) >= int(value) else None
        if name == b"transfer-encoding" and b"chunked" in value.lower():
            end = buffer.find(b"0\r\n\r\n")
            return None if end == -1 else end + 5
    return 0


class RawUpstream(_RawServer):
    """A socket server answering each request with ``reply`` (bytes parts), or a queued one.

    Each part is sent on its own, a moment apart, so a body can arrive after its
    head.  ``queue(*parts)`` sets the answer to the next request only (no parts:
    hang up unanswered, as a server that crashed on it);
    ``close_after=True`` hangs up after each answer (with no warning in it).
    ``heads`` records each request head, ``replied`` is released once an answer
    is fully out (and the socket closed, with ``close_after``).
    """

    def __init__(self, *reply: bytes, close_after: bool = False) -> None:
        self.reply = reply
        self.close_after = close_after
        self.queued: collections.deque[tuple[bytes, ...]] = collections.deque()
        self.heads: list[bytes] = []
        self.replied = threading.Semaphore(0)
        self.connections = 0
        super().__init__(self._accepted)

    def queue(self, *parts: bytes) -> None:
        self.queued.append(parts)

    def _accepted(self, sock: socket.socket) -> None:
        self.connections += 1
        threading.Thread(target=self._answer, args=(sock,), daemon=True).start()

    def _answer(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        with sock:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                self.heads.append(head)
                while (end := _body_end(head, buffer)) is None:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buffer += data
                buffer = buffer[end:]
                parts = self.queued.popleft() if self.queued else self.reply
                if not parts:
                    self.replied.release()
                    return  # hang up unanswered
                for index, part in enumerate(parts):
                    if index:
                        threading.Event().wait(0.02)
                    sock.sendall(part)
                if self.close_after:
                    sock.close()
                    self.replied.release()
                    return
                self.replied.release()

    def header(self, name: bytes, index: int = -1) -> list[bytes]:
        """The values of header ``name`` in request ``index``."""
        values = []
        for line in self.heads[index].split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower():
                values.append(value.strip())
        return values


@pytest.fixture
def upstreams() -> Iterator[Upstreams]:
    pool = Upstreams()
    yield pool
    pool.close()


@pytest.fixture
def lb() -> Iterator[Callable[..., LoadBalancer]]:
    """lb(upstreams, **options): a LoadBalancer whose pooled connections close after the test."""
    made = []

    def make(*args, **options):
        balancer = LoadBalancer(*args, **options)
        made.append(balancer)
        return balancer

    yield make
    for balancer in made:
        balancer.close()


@pytest.fixture
def dying() -> Iterator[DyingUpstream]:
    upstream = DyingUpstream()
    yield upstream
    upstream.close()


@pytest.fixture
def raw() -> Iterator[Callable[..., RawUpstream]]:
    """raw(*reply, close_after=False): a RawUpstream closed after the test."""
    made = []

    def make(*reply: bytes, close_after: bool = False) -> RawUpstream:
        upstream = RawUpstream(*reply, close_after=close_after)
        made.append(upstream)
        return upstream

    yield make
    for upstream in made:
        upstream.close()
