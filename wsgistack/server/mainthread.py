"""Serving from the main thread: its signals while the server starts, and without a master.

Rules: the signals that would end (or freeze) the process are only noted
while the server starts (``note_signals``), and acted on once its own
handlers are in.  In process (``workers=0``) the worker's handlers
(``Worker.signal_handlers``) serve the main thread, with two changes: SIGHUP
stops gracefully, as there is no master to reload (unless it was ignored at
start, as under ``nohup``), and a stop is told to systemd first
(``notify.py``).  SIGUSR2 prints every thread's stack, as in a worker
(``child.py``).  The previous handlers are back once it has served, and if
the app's own threads then keep the exit waiting, the log says so.

    outer = note_signals(early)                      # before the bind
    run_in_main_thread(worker, notify, early, hang_up_stops=signal.SIGHUP in outer)
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import threading
from typing import Any

from .notify import Notify
from .threads import RequestThread
from .worker import Worker

__all__ = ["EXIT_WAIT_SAID_AFTER", "note_signals", "run_in_main_thread"]

#: Seconds the in-process exit may wait for the app's threads before the log says so.
EXIT_WAIT_SAID_AFTER = 1.0

log = logging.getLogger("wsgistack.server")

#: Noted from the bind on, until the server's own handlers are in (then acted
#: on), and again once they are gone, until ``close()``: their default action
#: would end (or freeze) the process and leave the pid file and a unix socket's
#: file behind, and with ``workers=0`` the app loads in between.  Not SIGINT:
#: Python's KeyboardInterrupt unwinds, removing them, and Ctrl-C still
#: interrupts an import that hangs.
_NOTED = (
    signal.SIGTERM,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR2,
)


def note_signals(noted: list[int]) -> dict[int, Any]:
    """Have each of ``_NOTED`` not ignored append to ``noted``; their handlers until now."""
    previous: dict[int, Any] = {}
    for sig in _NOTED:
        if signal.getsignal(sig) is not signal.SIG_IGN:  # nohup's SIGHUP stays ignored
            previous[sig] = signal.signal(sig, lambda signum, _: noted.append(signum))
    return previous


def run_in_main_thread(
    worker: Worker, notify: Notify, early: list[int], *, hang_up_stops: bool
) -> None:
    """Run ``worker`` with its signal handlers in, acting first on the ``early`` ones noted.

    ``hang_up_stops``: SIGHUP was not ignored at start, so a hangup (its
    terminal closed) stops gracefully, as SIGTERM does, rather than leave it
    serving unseen.  The handlers before are back when it returns.
    """
    handlers = worker.signal_handlers()
    hung_up: list[int] = []
    if hang_up_stops:

        def hang_up(signum: int, _frame: Any) -> None:
            hung_up.append(signum)
            worker.stop(graceful=True)

        handlers[signal.SIGHUP] = hang_up
    if notify.enabled:
        handlers = {sig: _telling(notify, sig, each) for sig, each in handlers.items()}
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    for signum in early:  # noted while the app loaded: acted on now
        if callable(handler := handlers.get(signum)):
            handler(signum, None)
    notify.in_process()  # loaded and listening: a request now is queued, then answered
    faulthandler.register(signal.SIGUSR2, file=2, all_threads=True)  # stacks, as a worker's
    try:
        worker.run()
    finally:  # Ctrl-C works again once serving has ended
        faulthandler.unregister(signal.SIGUSR2)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if hung_up:
        log.warning(
            "stopped on SIGHUP: with --workers 0 there is no master to reload"
            " (--workers 1 reloads on SIGHUP; nohup keeps serving)"
        )
    _say_app_threads_left()


def _telling(notify: Notify, signum: int, handler: Any) -> Any:
    """``handler``, which also tells systemd of a stop (``--workers 0``: SIGTERM, SIGINT ...)."""
    if not callable(handler) or signum == signal.SIGUSR1:
        return handler

    def stop(signum: int, frame: Any) -> None:
        notify.stopping(signal.Signals(signum).name)
        handler(signum, frame)

    return stop


def _say_app_threads_left() -> None:
    """In process, if Python's exit still waits for the app's threads a second on: say so.

    Without a master nothing bounds that wait (a worker's is bounded by
    --graceful-timeout); a second Ctrl-C ends it, as for any Python program.
    A second first: an idle ``ThreadPoolExecutor`` the app never shut down
    ends at once (Python's exit hook stops it), and is no wait worth a line.
    """
    here = threading.current_thread()

    def say() -> None:
        left = [
            thread.name
            for thread in threading.enumerate()
            if thread is not here
            and not isinstance(thread, RequestThread)  # never waited for (see RequestThread)
            and not thread.daemon
            and thread.is_alive()
        ]
        if left:
            log.info(
                "waiting for %d thread%s the app started to end (%s); Ctrl-C again to quit now",
                len(left),
                "" if len(left) == 1 else "s",
                ", ".join(left),
            )

    timer = threading.Timer(EXIT_WAIT_SAID_AFTER, say)
    timer.daemon = True  # never itself a thread the exit waits for
    timer.start()
