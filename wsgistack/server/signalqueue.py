"""The master's signals: a handler only records one and wakes the loop, which acts on it.

Rules: a handler that did the work itself would run between any two lines
of the master's loop, half through a reap or a spawn; so each handled
signal is only appended to a queue, and the wake-up pipe
(``signal.set_wakeup_fd``) makes the loop's ``select()`` return at once.
The loop takes the signals in the order they came, then does its other
work; a signal that arrives while it works wakes the next wait.  A worker
forked from the master lets go of the pipe and the wake-up fd
(``close_in_child``) before it installs handlers of its own.

    signals = SignalQueue((signal.SIGTERM, signal.SIGHUP))
    signals.install(early)              # signals noted before: taken first
    signals.wait([other_fd], 1.0)       # a signal, other_fd readable, or the timeout
    while (signum := signals.pop()) is not None: ...
    signals.uninstall()                 # the handlers before, the pipe closed
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import signal
from collections.abc import Iterable
from typing import Any

__all__ = ["SignalQueue"]


class SignalQueue:
    """The signals ``handled`` as a queue the master's loop reads, and the pipe that wakes it."""

    def __init__(self, handled: Iterable[int]) -> None:
        self.handled = tuple(handled)
        self._queue: collections.deque[int] = collections.deque()
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        self._previous: dict[int, Any] = {}
        self._old_wakeup = -1

    def install(self, early: Iterable[int] = ()) -> None:
        """Record the signals from now on; ``early`` (noted by the caller before) come first."""
        self._previous = {sig: signal.signal(sig, self._record) for sig in self.handled}
        self._old_wakeup = signal.set_wakeup_fd(self._wake_w)
        self._queue.extend(early)

    def _record(self, signum: int, frame: Any) -> None:
        self._queue.append(signum)

    def pop(self) -> int | None:
        """The oldest signal not taken yet, or None."""
        return self._queue.popleft() if self._queue else None

    def wait(self, fds: Iterable[int], timeout: float) -> None:
        """Wait until a signal comes, one of ``fds`` is readable, or ``timeout`` passes."""
        with contextlib.suppress(InterruptedError):
            select.select([self._wake_r, *fds], [], [], timeout)
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def uninstall(self) -> None:
        """Give back the wake-up fd and the handlers there were before, and close the pipe."""
        signal.set_wakeup_fd(self._old_wakeup)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._close_pipe()

    def close_in_child(self) -> None:
        """In a worker just forked: the wake-up fd and the pipe are the master's."""
        signal.set_wakeup_fd(-1)
        self._close_pipe()

    def _close_pipe(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
