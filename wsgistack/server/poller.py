"""Readiness polling with one-shot registrations that any thread may re-arm.

On Linux this is ``epoll`` with ``EPOLLONESHOT``: a pool thread that finishes
a keep-alive response re-arms the connection itself, without waking the
worker's loop (the cheapest hand-back there is).  Elsewhere a ``selectors``
fallback emulates it with a queue and a wake-up socket.

    poller = make_poller()
    poller.add(sock.fileno(), oneshot=True)
    for fd in poller.poll(0.5): ...
    poller.rearm(fd)            # from any thread
"""

from __future__ import annotations

import contextlib
import queue
import select
import selectors
import socket

__all__ = ["make_poller"]


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

    def rearm(self, fd: int) -> None:
        try:
            self._epoll.modify(fd, select.EPOLLIN | select.EPOLLONESHOT)
        except FileNotFoundError:  # served straight from accept: never registered
            self._epoll.register(fd, select.EPOLLIN | select.EPOLLONESHOT)

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
        self._rearm: queue.SimpleQueue[int] = queue.SimpleQueue()

    def add(self, fd: int, oneshot: bool) -> None:
        self._selector.register(fd, selectors.EVENT_READ, oneshot)

    def rearm(self, fd: int) -> None:
        self._rearm.put(fd)
        self._wake.wake()

    def remove(self, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(fd)

    def poll(self, timeout: float) -> list[int]:
        while True:
            try:
                fd = self._rearm.get_nowait()
            except queue.Empty:
                break
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.register(fd, selectors.EVENT_READ, True)
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


def make_poller() -> EpollPoller | SelectorPoller:
    """The best poller for this platform."""
    return EpollPoller() if hasattr(select, "epoll") else SelectorPoller()
