"""What a forked child renews: locks another thread may have held, and the parent's resources.

A server that builds the app before it forks its workers (gunicorn
``--preload``, uWSGI without ``lazy-apps``), or an app that forks
(``multiprocessing`` with the fork start method), copies every lock as it
is at that instant: one that another thread of the parent held stays held in
the child, where no thread will ever release it, so the child's first request
that takes it waits forever.  The child has none of the parent's threads
either, and shares its sockets.

Each object that holds such state registers itself once and renews it in
``_forked()``, which runs in every child first thing after the fork (weakly
held: registering keeps nothing alive)::

    def __init__(self) -> None:
        self._lock = threading.Lock()
        forget_on_fork(self)

    def _forked(self) -> None:
        self._lock = threading.Lock()
"""

from __future__ import annotations

import os
import weakref
from typing import Any

__all__ = ["forget_on_fork"]

#: Objects whose ``_forked()`` a child process runs first thing after a fork.
_FORKED: weakref.WeakSet[Any] = weakref.WeakSet()


def forget_on_fork(obj: Any) -> None:
    """Have ``obj._forked()`` run in each child this process forks (weakly held)."""
    _FORKED.add(obj)


def _after_fork() -> None:
    for obj in list(_FORKED):
        obj._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
