"""A worker's side of the PROXY protocol: who may send a header, and reading it.

Rules (the header's grammar is ``proxyproto.py``'s).
- A peer not in ``--proxy-allow-from`` is closed at accept, unread, and
  logged once per address (per worker): nothing tells a forged header from
  a real one.
- A connection from an allowed peer that does not open with a whole, valid
  header within --timeout is closed with one INFO line, as nginx closes it:
  there is no HTTP to answer yet.
- The header is read exactly: peeked, then only its own bytes taken, so what
  follows (a request, or the TLS ClientHello on an HTTPS bind) is read as
  if the connection began there.
- Binds without it pay nothing: the worker chooses once per accepted
  connection (see ``Worker._accept``).

    gate = ProxyGate(config.proxy_allow_from)
    if gate.admits(peer):
        wait = HeaderWait(sock, peer, environ_base, tls)   # stepped by the loop
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import TYPE_CHECKING, Any

from ..netset import TrustedPeers
from .answers import client_of
from .connection import Connection
from .proxyproto import V1_MAX, V2_MAX, ProxyHeader, ProxyHeaderError, parse_header
from .tlsconnection import Handshake, shake

if TYPE_CHECKING:
    from .worker import Worker

__all__ = ["HeaderWait", "ProxyGate", "await_header"]

log = logging.getLogger("wsgistack.server")

#: At most this many refused peers' addresses are remembered for "logged once".
_WARNED_MAX = 1024


class ProxyGate:
    """A worker's PROXY protocol policy: who may send a header, and who was refused."""

    __slots__ = ("_warned", "allowed")

    def __init__(self, allow_from: tuple[str, ...]) -> None:
        self.allowed = TrustedPeers(allow_from, "proxy_allow_from")
        self._warned: set[str] = set()

    def admits(self, peer: Any) -> bool:
        """Whether ``peer`` may send a header; a refused one is logged once per address."""
        if self.allowed.trusts(peer):
            return True
        client = client_of(peer)
        if client not in self._warned:
            if len(self._warned) >= _WARNED_MAX:
                self._warned.clear()  # bounded: many addresses log again, never grow memory
            self._warned.add(client)
            log.warning(
                "PROXY protocol: connection from %s refused: not in --proxy-allow-from", client
            )
        return False


class HeaderWait:
    """A connection on a PROXY protocol bind whose header is still arriving.

    It sits among the worker's handshakes (``Worker.handshakes``): the loop
    steps it when its socket is readable, the sweep ends it after --timeout.
    """

    __slots__ = ("base", "deadline", "fd", "peer", "read", "sock", "started", "tls")

    what = "PROXY protocol header from"  # for the sweep's line

    def __init__(
        self, sock: socket.socket, peer: Any, base: dict[str, Any], tls: ssl.SSLContext | None
    ) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer  # the balancer's address, until the header names the client
        self.base = base
        self.tls = tls  # the bind's TLS context: a handshake follows the header
        self.deadline = 0.0
        self.read = b""  # the header's bytes taken so far (a split header)
        self.started = False

    def step(self) -> ProxyHeader | None:
        """Take what arrived of the header without waiting; the header once whole.

        Only the header's own bytes leave the socket: they are peeked first,
        and while the header is incomplete every byte peeked belongs to it.
        Raises ``ProxyHeaderError`` (bad bytes, or the peer left).
        """
        limit = (V1_MAX if self.read[:1] == b"P" else V2_MAX) - len(self.read)
        try:
            data = self.sock.recv(limit, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            raise ProxyHeaderError(exc.strerror or str(exc)) from None
        if not data:
            raise ProxyHeaderError("the peer closed before the header ended" if self.read else "")
        self.started = True
        header = parse_header(self.read + data)
        taken = len(data) if header is None else header.length - len(self.read)
        self.read += self.sock.recv(taken)  # there already: recv returns them all
        return header

    def advance(self, worker: Worker) -> None:
        """The loop's step: wait for more, close on a bad header, or start serving."""
        try:
            header = self.step()
        except ProxyHeaderError as exc:
            if str(exc):
                log.info("PROXY protocol: %s from %s, closed", exc, client_of(self.peer))
            worker.handshakes.end(self)
            return
        if header is None:
            worker.handshakes.wait(self)
            return
        peer = self.peer if header.source is None else header.source
        worker.handshakes.done(self)
        if self.tls is not None:  # the ClientHello follows: the handshake, for the client
            handshake = Handshake(self.sock, peer, self.tls, self.base)
            handshake.deadline = self.deadline  # header and handshake within --timeout
            worker.handshakes.follow(handshake)
            shake(worker, handshake)
            return
        # The request often came with the header: adopt reads it.
        worker.adopt(Connection(self.sock, peer, worker, self.base))


def await_header(
    worker: Worker,
    sock: socket.socket,
    peer: Any,
    base: dict[str, Any],
    tls: ssl.SSLContext | None,
    gate: ProxyGate,
) -> None:
    """A connection just accepted on a --proxy-protocol bind: its header first."""
    if not gate.admits(peer):
        sock.close()
        return
    wait = HeaderWait(sock, peer, base, tls)
    wait.deadline = worker.clock() + worker.config.timeout
    worker.handshakes.begin(wait)
    wait.advance(worker)  # the header often came with the connection
