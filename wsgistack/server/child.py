"""A worker process's own side of the fork: its signals, loading the app, reporting ready, exiting.

The master (``arbiter.py``) forks with its stop signals blocked
(``fork_child``); the child closes what is the master's, installs its own
handlers, loads the app (a stop during the import is noted, not lost), tells
the master it is ready and serves.  It ends as a Python program does, through
``exit_child``.

    pid = fork_child(signals, lambda mask: run_child(load, ..., mask=mask), limit)
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from ..errors import ConfigError
from ..loader import log_load_failure
from .config import ServerConfig
from .heartbeat import Heartbeat
from .ready import ReadyPipe
from .reloader import Change, FirstFailure, Watcher, broken_app, failure_files, watched_files
from .worker import Worker

__all__ = ["BOOT_ERROR", "exit_child", "finish_as_python_does", "fork_child", "run_child"]

log = logging.getLogger("wsgistack.server")

#: A worker's exit status when it could not load the app.
BOOT_ERROR = 3


def fork_child(blocked: Iterable[int], child: Callable[[Iterable[int]], int], limit: float) -> int:
    """Fork a worker that runs ``child(mask)``; in the master, its pid (the worker never returns).

    The signals ``blocked`` wait, blocked, across the fork until the child has
    its own handlers: one that came in between ran the master's inherited
    handler in the child, which recorded it nowhere, and the worker served
    on.  ``child`` gets the master's mask, to restore once its handlers are
    in, and returns the exit status; the worker then ends through
    ``exit_child`` within ``limit`` seconds.
    """
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        pid = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        raise
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        return pid
    status = 1
    try:
        status = child(mask)
    except BaseException:
        log.exception("worker %d failed", os.getpid())
    finally:
        exit_child(status, limit)


def run_child(
    load: Callable[[], Any],
    config: ServerConfig,
    listeners: list[socket.socket],
    *,
    mask: Iterable[int],
    beat: Heartbeat | None,
    ready: ReadyPipe,
    changed: Callable[[list[Change]], None] | None = None,
    first_failure: FirstFailure | None = None,
) -> int:
    """Be a worker: load the app, say ready on ``ready``, serve; the exit status.

    The master's own descriptors and wakeup fd are already let go of (``Arbiter._child``).
    ``changed`` (--reload) is told of each change to the app's files; an app
    that fails to load is then answered with a 500 until one changes, and
    ``first_failure`` says whether this worker logs the traceback.
    """
    atexit._clear()  # the master's exit handlers are its own (see exit_child)
    # SIGUSR2 prints every thread's stack, written by C code that needs no GIL:
    # a hung worker can still show where it hangs before the master kills it,
    # and ``kill -USR2 PID`` shows an operator where a slow one is, watchdog or not.
    faulthandler.register(signal.SIGUSR2, file=2, all_threads=True)
    parent = os.getppid()
    # A stop may come while the app loads (imports can take seconds): note it
    # here, since the master's handler inherited by fork records into nothing.
    stops: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, lambda signum, _: stops.append(signum))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # logrotate's SIGUSR1 too: the files this worker inherited may be the ones
    # the master has just reopened by name; they are reopened once it serves.
    reopens: list[int] = []
    signal.signal(signal.SIGUSR1, lambda signum, _: reopens.append(signum))
    for sig in (signal.SIGTTIN, signal.SIGTTOU):  # the master's (their default stops it)
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a stop held since the fork lands now
    if (account := config.account()) is not None:
        try:
            account.switch()  # before the app's import: none of its code runs as root
        except OSError as exc:
            log.error("worker %d: cannot switch to user %s: %s", os.getpid(), config.user, exc)
            return BOOT_ERROR
    broken: set[str] = set()
    began = time.time_ns()  # file times are the wall clock's
    try:
        app = load()
    except Exception as exc:
        who = f"worker {os.getpid()}"
        if changed is None or (isinstance(exc, ConfigError) and exc.__cause__ is None):
            # No --reload, or no code of the app's failed (a bad spec or option).
            log_load_failure(log, who, exc)
            return BOOT_ERROR
        # --reload: the app's own code failed.  Serve on, so the save that fixes it
        # brings the app back (gunicorn --reload does so for a SyntaxError only).
        if first_failure is None or first_failure.take():
            log_load_failure(log, who, exc)
            log.info("%s: answering 500 until a file changes (--reload)", who)
        else:
            # Not "above": the first worker to fail may still be writing its traceback.
            elsewhere = (
                "its traceback is logged once, by the first worker that failed;"
                " answering 500 until a file changes (--reload)"
            )
            log_load_failure(log, who, exc, traceback_elsewhere=elsewhere)
        app, broken = broken_app(type(exc.__cause__ or exc).__name__), failure_files(exc)
    finally:
        if first_failure is not None:
            first_failure.close()
    if stops:
        log.info("worker %d: stopped while loading the app", os.getpid())
        return 0
    watcher = None
    if changed is not None:  # the files as the app was loaded from them: later looks compare
        extra = (*config.reload_extra_file, *broken)
        watcher = Watcher(lambda: watched_files(extra), changed, since=began)
    worker = Worker(
        app,
        config,
        listeners,
        multiprocess=config.workers > 1,
        watchdog=lambda: os.getppid() == parent,
        heartbeat=beat.beat if beat is not None else None,
    )
    for signum, handler in worker.signal_handlers().items():
        signal.signal(signum, handler)
    if stops:  # one came after the check above, before these handlers
        worker.stop(graceful=stops[0] == signal.SIGTERM)
    if reopens:  # before the first request, whose lines then go to the new files
        worker.reopen_logs_now()
    ready.say()
    if watcher is not None:
        watcher.start()
    try:
        worker.run()
    finally:
        if watcher is not None:
            watcher.stop()
    return 0


def exit_child(status: int, limit: float) -> NoReturn:
    """End a worker as a Python program ends: the app's threads, exit handlers, output and logs.

    In the order of CPython's ``Py_FinalizeEx``: first the app's threads
    (``threading._shutdown``: its non-daemon threads are joined, and the
    work already submitted to a ``ThreadPoolExecutor`` is done, as its
    exit hook waits for it), then the exit handlers, logging's last.  The
    worker's own threads (request threads, a LoadBalancer's health
    checkers) are daemon threads: one still in a request a stop cut is not
    waited for.  A thread a view starts is not one, whatever its creator
    (see ``threads.RequestThread``), as under gunicorn.  A quick stop waits
    for the app's threads too, as Python does after Ctrl-C: the app had
    accepted that work (a mail for a response already sent), and the
    master's deadline still bounds it.

    Within ``limit`` seconds: a thread or handler still running then (a
    flush to a host that does not answer) has its stack printed to
    standard error, and the worker exits with status 1.  Nothing else
    would end it after a reload, a recycle or a SIGTTOU, only a stop has
    a deadline of the master's.

    Not by unwinding (``sys.exit``): the master's frames above the fork
    would run in the worker, and ``Server.close()`` there remove the
    master's pid file.  The handlers are those registered in the worker,
    while the app loaded or served (a metrics or error reporter's last
    flush); the master's, inherited by the fork, are the master's to run
    (a temporary directory it made is not the worker's to delete).
    ``atexit._clear`` and ``_run_exitfuncs`` are CPython's (3.0 and later).
    """
    try:
        # In C, without the GIL: it fires even if a handler holds it.
        faulthandler.dump_traceback_later(limit, exit=True, file=2)
        finish_as_python_does()
    finally:
        os._exit(status)


def finish_as_python_does() -> None:
    """What Python does as a program ends, for one that ends by ``os._exit`` or a signal.

    The app's threads (``_finish_threads``), then the exit handlers (each
    one's error is printed, the others still run), then logging's, then
    standard output and error flushed.  ``logging.shutdown`` is called
    itself: in a worker, logging's own exit handler was registered in the
    master, where it was first imported, and cleared with the master's, and
    the app's buffered records (a MemoryHandler, a queue to a service) would
    be lost.  Running it twice does no harm.
    """
    _finish_threads()
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            with contextlib.suppress(Exception):  # closed, or a terminal gone away
                stream.flush()


def _finish_threads() -> None:
    """Wait for the app's non-daemon threads and run threading's exit hooks, as Python's exit does.

    ``threading._shutdown`` is CPython's own step (3.x), run from the main
    thread (the one that forked).  Its hooks are module state, not the
    master's work: one the master's imports registered (concurrent.futures)
    finds none of the master's threads here, only the app's.  An error in a
    hook is logged, and the exit goes on, as CPython's does.
    """
    try:
        threading._shutdown()  # type: ignore[attr-defined]
    except Exception:
        log.exception("worker %d: ending the app's threads failed", os.getpid())
