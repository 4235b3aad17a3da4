"""HTTPS connections: the TLS handshake in the worker's loop, then ``Connection`` over TLS.

Rules.  Only binds that speak HTTP get TLS (``ServerConfig.tls_for``).  The
plain path never asks "is this TLS?": a TLS listener's connections are
``Handshake`` objects until their handshake ends, then ``TLSConnection``, which
overrides the few calls that touch the socket.

- The handshake never waits: the loop steps it each time its socket is ready
  (``Handshake.step``), bounded by --timeout as a request head is (the sweep).
  A failed one (a scanner, an untrusted or missing client certificate) is one
  INFO line, as nginx's "SSL_do_handshake() failed"; no traceback.
- Plain HTTP sent to the TLS port (its first byte is a letter, not a TLS
  record's 0x16) is answered ``400`` in plain text, as nginx answers it, then
  closed lingering.
- A TLS socket cannot wait in the kernel (``SO_RCVTIMEO`` would make OpenSSL
  retry for ever): its descriptor stays non-blocking, with Python's timeout
  (--timeout) while a pool thread owns it and none in the loop.
- Every read takes all OpenSSL has decrypted (``pending()``), so no byte of a
  pipelined request or of a body waits inside OpenSSL for a poller that
  cannot see it.
- A close sends TLS's close_notify first (a body ended by the close is then
  known to be whole), except for a response cut off (``cut_off``).

    handshake = Handshake(sock, peer, context, environ_base)
    shake(worker, handshake)   # in the loop, each time its socket is ready
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import time
from typing import TYPE_CHECKING, Any

from ..iotext import closed_without_notice, io_failure, tls_reason
from .answers import ClientGone, client_of
from .clientcert import client_cert_keys
from .connection import Connection
from .discard import linger
from .environ import build_environ
from .response import response_head
from .tlsfacts import NOT_ASCII_NAME, connection_keys

if TYPE_CHECKING:
    from .worker import Worker

__all__ = ["Handshake", "HandshakeFailed", "PlainHTTP", "TLSConnection", "shake"]

log = logging.getLogger("wsgistack.server")

#: A TLS record of the handshake starts with this byte (RFC 8446 5.1, RFC 5246 6.2.1).
_HANDSHAKE_RECORD = 0x16

_PLAIN_HTTP_BODY = b"400 Bad Request: The plain HTTP request was sent to HTTPS port\n"


class HandshakeFailed(Exception):
    """The handshake failed; ``str()`` says why in a few words, for the log line."""


class PlainHTTP(Exception):
    """The client spoke plain HTTP to a TLS port (it is answered 400 in plain text)."""


def plain_http_answer() -> bytes:
    """nginx's answer to plain HTTP on an HTTPS port, in plain text, closing."""
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(_PLAIN_HTTP_BODY))),
    ]
    return response_head("400 Bad Request", headers, b"Connection: close\r\n") + _PLAIN_HTTP_BODY


class Handshake:
    """A TLS connection accepted, its handshake under way in the worker's loop."""

    __slots__ = ("base", "context", "deadline", "fd", "peer", "sock", "started")

    what = "TLS handshake with"  # for the sweep's line when it is not done in time

    def __init__(
        self, sock: socket.socket, peer: Any, context: ssl.SSLContext, base: dict[str, Any]
    ) -> None:
        sock.setblocking(False)
        self.sock: socket.socket = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.context = context
        self.base = base  # the listener's environ keys
        self.deadline = 0.0
        self.started = False  # a byte came: a timeout is worth a log line

    def step(self) -> str | None:
        """Go on without waiting: None once done, else ``"read"``/``"write"`` to wait for.

        Raises ``PlainHTTP`` or ``HandshakeFailed`` (the peer closed, or TLS failed).
        """
        sock = self.sock
        if not isinstance(sock, ssl.SSLSocket):
            try:
                first = sock.recv(1, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                return "read"
            except OSError as exc:
                raise HandshakeFailed(exc.strerror or str(exc)) from None
            if not first:
                raise HandshakeFailed("")  # connected and left: no line for that
            self.started = True
            if first[0] != _HANDSHAKE_RECORD:
                if first.isalpha():
                    raise PlainHTTP
                raise HandshakeFailed(f"not TLS (first byte {first[0]:#04x})")
            sock = self.sock = self.context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            return "read"
        except ssl.SSLWantWriteError:
            return "write"
        except ssl.SSLCertVerificationError as exc:
            raise HandshakeFailed(f"client certificate refused: {exc.verify_message}") from None
        except ssl.SSLError as exc:
            raise HandshakeFailed(_reason(exc)) from None
        except OSError as exc:
            raise HandshakeFailed(exc.strerror or str(exc)) from None
        return None

    def advance(self, worker: Worker) -> None:
        """The loop's step, each time the socket is ready (see ``shake``)."""
        shake(worker, self)


def shake(worker: Worker, handshake: Handshake) -> None:
    """Step a handshake in the worker's loop; once done, serve it as any connection."""
    try:
        wait = handshake.step()
    except PlainHTTP:
        _answer_plain_http(worker, handshake)
        return
    except HandshakeFailed as exc:
        if str(exc):
            log.info("TLS handshake with %s failed: %s", client_of(handshake.peer), exc)
        worker.handshakes.end(handshake)
        return
    if wait is not None:
        worker.handshakes.wait(handshake, writable=wait == "write")
        return
    worker.handshakes.done(handshake)
    sock: Any = handshake.sock  # an SSLSocket now
    # The request may have come with the handshake's end: adopt reads it.
    worker.adopt(TLSConnection(sock, handshake.peer, worker, handshake.base))


def _answer_plain_http(worker: Worker, handshake: Handshake) -> None:
    """Plain HTTP on a TLS port: nginx's 400, in plain text, then a lingering close."""
    worker.handshakes.done(handshake)
    connection = Connection(handshake.sock, handshake.peer, worker, handshake.base)
    worker.adopt(connection, read=False)
    log.info("plain HTTP from %s to an HTTPS port, answered 400", client_of(handshake.peer))
    answer, sent = plain_http_answer(), 0
    with contextlib.suppress(OSError):
        sent = connection.send_now(answer)
    if worker.access_log is not None:
        body = max(0, sent - answer.index(b"\r\n\r\n") - 4)  # of the body, sent
        worker.access_log.refused(handshake.peer, 400, size=body)
    linger(worker, connection)


def _reason(exc: ssl.SSLError) -> str:
    """OpenSSL's reason, readable: ``PEER_DID_NOT_RETURN_A_CERTIFICATE`` -> its words."""
    if closed_without_notice(exc):
        return "the client closed the connection"
    if getattr(exc, "reason", None) == "CALLBACK_FAILED":  # the only callback: sni_callback's
        return NOT_ASCII_NAME
    return tls_reason(exc)


class TLSConnection(Connection):
    """A ``Connection`` over an ``ssl.SSLSocket`` whose handshake is done.

    ``wsgi.url_scheme`` is ``https`` from the listener's environ, whoever
    the peer (no ``X-Forwarded-Proto`` can make it ``http``); the protocol,
    cipher and SNI (``tlsfacts.py``) and the client's certificate, if it
    showed one (``SSL_CLIENT_*``, ``clientcert.py``), are mod_ssl's keys,
    added once to this connection's copy of that environ.
    sendfile is not used (the kernel cannot encrypt), files are read and written.
    """

    __slots__ = ("_cut", "_waits")

    can_sendfile = False

    def __init__(
        self, sock: ssl.SSLSocket, peer: Any, worker: Any, environ_base: dict[str, Any]
    ) -> None:
        tls_keys = connection_keys(sock) | client_cert_keys(sock, time.time())
        super().__init__(sock, peer, worker, environ_base | tls_keys)
        self._build_environ = build_environ  # the scheme is the connection's: https
        self._waits = False  # Python's timeout set: a pool thread's blocking calls
        self._cut = False  # cut off: no close_notify, which would say the body was whole

    def _now(self) -> None:
        """The loop's mode: every call returns at once."""
        if self._waits:
            self.sock.settimeout(0.0)
            self._waits = False

    def bound_waits(self) -> None:
        """A pool thread's mode: each call waits up to --timeout (Python polls first)."""
        if not self._waits:
            self.sock.settimeout(self.timeout)
            self._waits = True

    def _read(self) -> bytes:
        """What arrived, with all OpenSSL decrypted beyond it (``pending()``)."""
        sock: Any = self.sock
        data: bytes = sock.recv(65536)
        while data and (more := sock.pending()):
            data += sock.recv(more)
        return data

    def _recv_waiting(self) -> bytes:
        return self._read()

    def recv_now(self) -> bytes | None:
        self._now()
        try:
            return self._read()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None

    def receive(self) -> bool:
        try:
            data = self.recv_now()
        except OSError as exc:
            if self.parser.mid_request:  # a head cut short: said as on a plain bind
                self._peer_closed(exc)
            elif isinstance(exc, ssl.SSLError) and not closed_without_notice(exc):
                # Between requests a reset says nothing, as on a plain bind; a bad record does.
                log.info("%s: %s, closed", client_of(self.peer), io_failure(exc))
            return False
        if data is None:
            return True  # a TLS record not whole yet, or one with no data (a ticket)
        if not data:
            self._peer_closed()
            return False
        self.feed(data)
        return True

    def send_now(self, data: bytes) -> int:
        self._now()
        try:
            return int(self.sock.send(data))
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return 0

    def sendall(self, data: bytes) -> None:
        self.bound_waits()
        try:
            self.sock.sendall(data)
        except OSError as exc:  # TimeoutError: --timeout passed
            # Nothing of a failed write counts: OpenSSL (as Python sets it up, with no
            # SSL_MODE_ENABLE_PARTIAL_WRITE) reports a write done whole or not at all.
            raise ClientGone.from_error(exc, self.timeout) from None

    def _close_notify(self) -> None:
        """Send TLS's close_notify, without waiting for the client's."""
        self._now()
        with contextlib.suppress(OSError, ValueError):
            self.sock.unwrap()  # type: ignore[attr-defined]

    def half_close(self) -> None:
        """close_notify, then the TCP half-close; the bytes read after it are dropped unread."""
        if not self._cut:
            self._close_notify()
        # SSLSocket.shutdown lets go of the TLS layer: ``drain`` then reads raw bytes.
        self.sock.shutdown(socket.SHUT_WR)

    def cut_off(self) -> None:
        self._cut = True
        super().cut_off()

    def close(self) -> None:
        if not self._cut:
            self._close_notify()
        self.sock.close()
