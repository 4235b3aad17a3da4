"""Readiness polling with one-shot registrations that any thread may re-arm.

On Linux this is ``epoll`` with ``EPOLLONESHOT``: a pool thread that finishes
a keep-alive response re-arms the connection itself, without waking the
worker's loop (the cheapest hand-back there is).  Elsewhere a ``selectors``
fallback emulates it with a queue and a wake-up socket.

    poller = make_poller()
    poller.add(sock.fileno(), oneshot=True)
    for fd in poller.poll(0.5): ...
    poller.rearm(fd)            # from any thread

``AcceptWaiter`` is the other kind of wait: a pool thread that accepts
connections itself (a uwsgi-only worker) sleeps in it until its listener
has one, or until the worker stops.
"""

from __future__ import annotations

import contextlib
import queue
import select
import selectors
import socket

__all__ = ["AcceptWaiter", "make_poller"]


class _Wake:
    """A socketpair whose read end makes ``poll()`` return early."""

    def __init__(self) -> None:
        self.reader, self.writer = socket.socketpair()
        self.reader.setblocking(False)
        self.writer.setblocking(False)

    def wake(self) -> None:
        # A full buffer means a wake-up is already pending; a closed one, we are done.
        with contextlib.suppress(OSError):
            self.writer.send(b"x")

    def drain(self) -> None:
        with contextlib.suppress(OSError):
            while self.reader.recv(4096):
                pass

    def close(self) -> None:
        self.reader.close()
        self.writer.close()


class EpollPoller:
    """Linux: level-triggered epoll; connections registered one-shot."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._wake = _Wake()
        self._epoll.register(self._wake.reader.fileno(), select.EPOLLIN)

    def add(self, fd: int, oneshot: bool) -> None:
        self._epoll.register(fd, select.EPOLLIN | (select.EPOLLONESHOT if oneshot else 0))

    def rearm(self, fd: int, writable: bool = False) -> None:
        events = (select.EPOLLOUT if writable else select.EPOLLIN) | select.EPOLLONESHOT
        try:
            self._epoll.modify(fd, events)
        except FileNotFoundError:  # served straight from accept: never registered
            self._epoll.register(fd, events)

    def remove(self, fd: int) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._epoll.unregister(fd)

    def poll(self, timeout: float) -> list[int]:
        wake = self._wake.reader.fileno()
        fds = []
        for fd, _ in self._epoll.poll(timeout):
            if fd == wake:
                self._wake.drain()
            else:
                fds.append(fd)
        return fds

    def wake(self) -> None:
        self._wake.wake()

    def close(self) -> None:
        self._epoll.close()
        self._wake.close()


class SelectorPoller:
    """Portable fallback: one-shot emulated; re-arming goes through the loop thread."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake = _Wake()
        self._selector.register(self._wake.reader, selectors.EVENT_READ, False)
        self._rearm: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()

    def add(self, fd: int, oneshot: bool) -> None:
        self._selector.register(fd, selectors.EVENT_READ, oneshot)

    def rearm(self, fd: int, writable: bool = False) -> None:
        self._rearm.put((fd, selectors.EVENT_WRITE if writable else selectors.EVENT_READ))
        self._wake.wake()

    def remove(self, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(fd)

    def poll(self, timeout: float) -> list[int]:
        while True:
            try:
                fd, events = self._rearm.get_nowait()
            except queue.Empty:
                break
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.register(fd, events, True)
        fds = []
        for key, _ in self._selector.select(timeout):
            if key.fileobj is self._wake.reader:
                self._wake.drain()
                continue
            fds.append(key.fd)
            if key.data:  # one-shot: disarm until re-armed
                self._selector.unregister(key.fd)
        return fds

    def wake(self) -> None:
        self._wake.wake()

    def close(self) -> None:
        self._selector.close()
        self._wake.close()


class AcceptWaiter:
    """One thread's wait for a connection on ``listener_fd``, or for ``stop_fd`` to be readable.

    On Linux each waiter has its own epoll with ``EPOLLEXCLUSIVE`` on the
    listener, so a new connection wakes one waiting thread (of any worker
    sharing the listener), not all of them; ``stop_fd`` wakes them all.
    """

    def __init__(self, listener_fd: int, stop_fd: int) -> None:
        self._stop_fd = stop_fd
        if hasattr(select, "epoll"):
            self._epoll: select.epoll | None = select.epoll()
            exclusive = getattr(select, "EPOLLEXCLUSIVE", 0)
            self._epoll.register(listener_fd, select.EPOLLIN | exclusive)
            self._epoll.register(stop_fd, select.EPOLLIN)
            self._selector = None
        else:
            self._epoll = None
            self._selector = selectors.DefaultSelector()
            self._selector.register(listener_fd, selectors.EVENT_READ)
            self._selector.register(stop_fd, selectors.EVENT_READ)

    def wait(self, timeout: float) -> None:
        """Return when a connection may be waiting, the worker stops, or after ``timeout``."""
        if self._epoll is not None:
            self._epoll.poll(timeout)
        else:
            self._selector.select(timeout)  # type: ignore[union-attr]

    def rest(self, timeout: float) -> None:
        """Sleep ``timeout`` seconds, or until the worker stops, whatever the listener does.

        After accept() ran out of descriptors the connection stays in the
        backlog and the listener stays readable: ``wait`` would return at once.
        """
        _wait_readable([self._stop_fd], timeout)

    def readable(self, fd: int, timeout: float, stop: bool = True) -> bool:
        """Wait up to ``timeout`` for ``fd`` (an accepted connection) to be readable.

        False after the timeout, or at once once the worker stops (``stop``:
        a thread reading a slow request head hears of a stop this way).
        """
        return fd in _wait_readable([fd, self._stop_fd] if stop else [fd], timeout)

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
        else:
            self._selector.close()  # type: ignore[union-attr]


def _wait_readable(fds: list[int], timeout: float) -> list[int]:
    """The ``fds`` readable (or closed, or failed) within ``timeout`` seconds."""
    if not hasattr(select, "poll"):
        return select.select(fds, [], [], timeout)[0]
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return [fd for fd, _ in poller.poll(max(timeout, 0.0) * 1000)]


def make_poller() -> EpollPoller | SelectorPoller:
    """The best poller for this platform."""
    return EpollPoller() if hasattr(select, "epoll") else SelectorPoller()
