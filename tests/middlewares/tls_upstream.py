"""A real HTTPS upstream for the forwarder's TLS tests: http.server over ssl, on loopback.

Each connection's handshake runs in its own thread (a silent client holds up
only itself), and is counted, so a test sees how many TLS sessions the
forwarder opened and how many of them resumed an earlier one (the server's
``session_reused``); a failed one is kept with its reason.  HTTP/1.1 keep-alive.

The fixtures: ``server_context`` (the test CA's server certificate, for
127.0.0.1), ``tls_upstream(name, context)`` and ``trusting(upstreams, **options)``
(a LoadBalancer that trusts the test CA).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from wsgistack.middlewares import LoadBalancer

__all__ = ["TLSUpstream", "server_context", "tls_upstream", "trusting"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TLSUpstream

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: the tests assert what they need

    def do_GET(self) -> None:
        self._answer(b"")

    def do_POST(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._answer(body)

    def _answer(self, body: bytes) -> None:
        self.server.requests.append((self.command, self.path, dict(self.headers), body))
        if self.path.startswith("/redirect"):  # to itself, by the Host it was sent
            self.send_response(302)
            self.send_header("Location", f"https://{self.headers['Host']}/landed")
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/stall"):  # no answer until the test ends (10 s at most)
            self.server.released.wait(10)
        status = self.server.status
        text = f"{self.server.name} {self.command} {self.path} {len(body)}\n".encode() + body
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("X-Upstream", self.server.name)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)
        if self.path.startswith("/bye"):  # then a close_notify, keep-alive though it said
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.unwrap()  # (waits for the peer's, which may never come)


class TLSUpstream(ThreadingHTTPServer):
    """An HTTPS server on 127.0.0.1:0 with ``context``; ``handshakes`` counts the good ones.

    ``status``: what it answers (a health check sees it too); ``failures``:
    the reasons of handshakes that failed; ``requests``: (method, path, headers, body);
    ``resumed``: the good handshakes that resumed a session; ``versions``: each
    good handshake's protocol ("TLSv1.3").  ``context`` may be replaced between
    connections: a restart with new session ticket keys, on the same port.
    """

    daemon_threads = True

    def __init__(self, context: ssl.SSLContext, name: str = "tls") -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.context = context
        self.name = name
        self.status = 200
        self.handshakes = 0
        self.resumed = 0
        self.versions: list[str | None] = []
        self.failures: list[str] = []
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.released = threading.Event()
        self.port = self.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    def finish_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        request.settimeout(10)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            self.failures.append(str(exc))
            return
        self.handshakes += 1
        self.resumed += tls.session_reused
        self.versions.append(tls.version())
        with tls:  # (wrapping detached ``request``: socketserver closes only that one)
            super().finish_request(tls, client_address)

    def close(self) -> None:
        self.released.set()
        self.shutdown()
        self.server_close()


@pytest.fixture
def server_context(tls_files) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files.server_cert, tls_files.server_key)
    return context


@pytest.fixture
def tls_upstream(server_context) -> Iterator[Callable[..., TLSUpstream]]:
    """tls_upstream(name="tls", context=None): an HTTPS upstream, closed after the test."""
    made: list[TLSUpstream] = []

    def make(name: str = "tls", context: ssl.SSLContext | None = None) -> TLSUpstream:
        made.append(TLSUpstream(context or server_context, name))
        return made[-1]

    yield make
    for upstream in made:
        upstream.close()


@pytest.fixture
def trusting(lb, tls_files) -> Callable[..., LoadBalancer]:
    """trusting(upstreams, **options): a LoadBalancer that trusts the test CA."""

    def make(upstreams, **options):
        return lb(upstreams, tls_ca_certs=str(tls_files.ca), **options)

    return make
