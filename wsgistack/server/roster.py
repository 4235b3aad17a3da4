"""The master's table of its workers: when each started, its listeners, and where it stands.

Rules: every worker forked and not yet reaped is in ``started``, and in
``listening`` with the master's listeners at its fork: a forked worker has a
copy of each of them (and of no other, ``Arbiter._child``) until it exits, so
a listener a reload dropped is the master's to close once none of these is
left (``Dropped.release``), whatever else still drains.  Its
standing is a set it belongs to: ``retiring`` (the old set of a reload
under way, serving until the new one is ready), ``leaving`` (told to stop
for good: drained, surplus after SIGTTOU, or a failed reload's), and
``ready`` (it has loaded the app, ``ready.py``).  A worker neither retiring
nor leaving is active: the active ones are those the master keeps at
--workers.  The master decides who moves where; the table names the sets
it asks about, and sends the signals.

    workers = Roster()
    workers.add(pid, time.monotonic(), listeners)      # forked, with these listeners
    workers.send_away(workers.active(), signal.SIGTERM)
    started = workers.reaped(pid)                      # waitpid() returned it
    workers.forget(pid)                                # once its exit is judged
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterable, Iterator

from .listener import among

__all__ = ["Roster"]


class Roster:
    """Every worker the master runs: pid -> start time (monotonic), its listeners, its standing."""

    def __init__(self) -> None:
        self.started: dict[int, float] = {}
        self.listening: dict[int, tuple[socket.socket, ...]] = {}  # the master's, at its fork
        self.retiring: set[int] = set()  # the old set, during a reload
        self.leaving: set[int] = set()  # told to stop for good (drained, or failed a reload)
        self.ready: set[int] = set()  # has loaded the app

    def __len__(self) -> int:
        return len(self.started)

    def __iter__(self) -> Iterator[int]:
        return iter(self.started)

    def add(self, pid: int, now: float, listeners: Iterable[socket.socket]) -> None:
        """A worker just forked, with a copy of each of the master's ``listeners``."""
        self.started[pid] = now
        self.listening[pid] = tuple(listeners)

    def reaped(self, pid: int) -> float | None:
        """A worker that exited leaves the table; its start time (None: not ours)."""
        self.listening.pop(pid, None)
        return self.started.pop(pid, None)

    def holding(self, sock: socket.socket) -> set[int]:
        """The workers with a copy of listener ``sock``: those forked while the master listed it."""
        return {pid for pid, listeners in self.listening.items() if among(sock, listeners)}

    def forget(self, pid: int) -> None:
        """Drop a reaped worker's standing, once its exit has been judged by it."""
        self.retiring.discard(pid)
        self.leaving.discard(pid)
        self.ready.discard(pid)

    def active(self) -> set[int]:
        """The workers that count toward --workers: neither retiring nor leaving."""
        return set(self.started) - self.retiring - self.leaving

    def loading(self) -> dict[int, float]:
        """pid -> start time of the active workers still loading the app."""
        return {
            pid: started
            for pid, started in self.started.items()
            if pid not in self.ready and pid not in self.retiring and pid not in self.leaving
        }

    def surplus_order(self) -> list[int]:
        """The active workers, those to let go first first: still loading, then the oldest."""
        return sorted(self.active(), key=lambda pid: (pid in self.ready, self.started[pid]))

    def signal(self, pids: Iterable[int], signum: int) -> None:
        """Send ``signum`` to each of ``pids``; one that has exited meanwhile is passed over."""
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def signal_all(self, signum: int) -> None:
        """Send ``signum`` to every worker."""
        self.signal(list(self.started), signum)

    def send_away(self, pids: Iterable[int], signum: int) -> None:
        """Tell ``pids`` to stop (``signum``) for good: none of them is replaced."""
        pids = set(pids)
        self.signal(pids, signum)
        self.leaving |= pids
