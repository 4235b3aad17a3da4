"""A worker's table of connections not yet speaking HTTP: a TLS handshake or a PROXY header.

Rules.  Only the worker's loop thread touches it.  Each entry's socket is in
the worker's poller (one-shot) while it waits: the loop steps the entry when
its socket is ready (``advance``), the sweep ends those past their deadline
(``overdue``).  An entry leaves the table in one of two ways: ``end`` (it
failed or took too long: its socket is closed) or ``done`` (it went on as a
connection, or as the next step on the same socket, which keeps its place in
the poller).  ``tlsconnection.py`` and ``proxyconnection.py`` make the
entries; this is all of the worker they touch besides ``Worker.adopt``.

    handshakes.begin(Handshake(sock, peer, context, base))
    handshakes.wait(handshake, writable=True)   # OpenSSL wants to write
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .poller import EpollPoller, SelectorPoller
    from .worker import Worker

__all__ = ["Handshakes", "SetUp"]


class SetUp(Protocol):
    """What the worker needs of an entry: its socket, its deadline, and a step."""

    sock: socket.socket
    fd: int
    peer: Any
    deadline: float
    started: bool  # a byte came: running out of time is worth a log line
    what: str  # "TLS handshake with": the sweep's line

    def advance(self, worker: Worker) -> None: ...


class Handshakes:
    """The connections a worker is setting up, by descriptor (see the module's rules)."""

    __slots__ = ("_poller", "_table")

    def __init__(self, poller: EpollPoller | SelectorPoller) -> None:
        self._poller = poller
        self._table: dict[int, SetUp] = {}

    def __len__(self) -> int:
        return len(self._table)

    def get(self, fd: int) -> SetUp | None:
        return self._table.get(fd)

    def all(self) -> list[SetUp]:
        """Every entry, copied: ending one while looping is safe."""
        return list(self._table.values())

    def overdue(self, now: float) -> list[SetUp]:
        """The entries whose deadline has passed."""
        return [each for each in self._table.values() if each.deadline <= now]

    def begin(self, entry: SetUp) -> None:
        """A connection just accepted: watch its socket for its first step."""
        self._table[entry.fd] = entry
        self._poller.add(entry.fd, oneshot=True)

    def follow(self, entry: SetUp) -> None:
        """The next step on a socket already watched (a TLS handshake after its PROXY header)."""
        self._table[entry.fd] = entry

    def wait(self, entry: SetUp, writable: bool = False) -> None:
        """Step ``entry`` again once its socket is readable (or writable)."""
        self._poller.rearm(entry.fd, writable=writable)

    def done(self, entry: SetUp) -> None:
        """Forget ``entry``: what follows on its socket (still watched) takes over."""
        del self._table[entry.fd]

    def end(self, entry: SetUp) -> None:
        """Forget and close a connection whose set-up failed or took too long."""
        del self._table[entry.fd]
        self._poller.remove(entry.fd)
        entry.sock.close()
