"""The threads a worker answers requests on: daemon threads whose own threads are not.

Kept apart from ``worker.py``, which decides what they run: this is only how
a pool thread tells Python which exits wait for it and for the threads it starts.

    thread = RequestThread(worker.serve_jobs)
    thread.start()
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["RequestThread"]


class RequestThread(threading.Thread):
    """A pool thread: a daemon thread, but the threads the app starts in it are not.

    A daemon thread, so that no exit waits for a request a stop cut (see
    ``stopping.py``): a hung one cannot hold a worker past its deadline, and
    after Ctrl-C with ``--workers 0`` the process ends.  But Python gives a
    new thread its creator's daemon flag, so the thread a view starts (a mail
    sent after the response) was a daemon thread too, killed at every reload,
    recycle and stop, where under gunicorn, whose request threads are not
    daemon threads, the exit waits for it.  So once running, this thread says
    it is not a daemon thread: CPython read the flag as it started it (to
    decide whether an exit waits for it), and what it says afterwards is only
    what the threads started in it inherit.
    """

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        self._running = False  # before Thread.__init__, which may read ``daemon``
        super().__init__(target=target, args=args, daemon=True)

    @property
    def daemon(self) -> bool:
        """True as the thread starts (no exit waits for it), False once it runs the pool."""
        return not self._running and super().daemon

    @daemon.setter
    def daemon(self, daemonic: bool) -> None:
        vars(threading.Thread)["daemon"].__set__(self, daemonic)  # Thread's own setter

    def run(self) -> None:
        self._running = True
        super().run()
