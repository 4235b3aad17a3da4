"""``--preload``: the app loaded once in the master, after the bind and before the first fork.

Rules: as gunicorn's ``--preload``, the workers fork from the app the master
loaded, so they share its memory (copy-on-write) and start without an import,
and an app that cannot load is said once, by the master, before any worker
starts (exit status 2).  A worker a SIGHUP, a ``--max-requests`` recycle or a
crash brings forks from the same app: new code takes a restart.  What the app
started or opened while it loaded is the master's; our own middlewares start
their threads on first use and renew their locks and pools in each worker
(``wsgistack.forking``).  Exit handlers the app registered at import are the
master's too (``child.run_child`` clears them in each worker).

    app = load_in_master(loader)   # None once the failure is logged: exit with status 2
    load = forked_from(app)        # each worker's loader
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from ..loader import log_load_failure

__all__ = ["forked_from", "load_at_terminal", "load_in_master", "note_reload"]

log = logging.getLogger("wsgistack.server")


def load_in_master(load: Callable[[], Any]) -> Any | None:
    """The app ``load()`` returns, or None once why it failed is logged (status 2 then).

    A Ctrl-C during the import is a ``KeyboardInterrupt``, as for any program
    (see ``load_at_terminal``), not a failure of the app's.
    """
    try:
        return load_at_terminal(load)
    except Exception as exc:
        log_load_failure(log, f"master {os.getpid()}", exc)
        # The same last line as when the first workers cannot load the app.
        log.error(
            "master %d: stopped, exit status 2: the app cannot be loaded"
            " (--preload: no worker was started)",
            os.getpid(),
        )
        return None


def forked_from(app: Any) -> Callable[[], Any]:
    """What each worker loads: ``app``, in the directory the master loaded it in.

    A SIGHUP with a file to read moves the master into the release a
    ``current`` symlink names now (the file's relative paths are from there);
    the code is still the one loaded at start, so its workers read the files
    beside it.  A release removed since leaves them where the master is.
    """
    directory = os.getcwd()

    def load() -> Any:
        with contextlib.suppress(OSError):
            os.chdir(directory)
        return app

    return load


def note_reload(env_changed: bool = False) -> None:
    """Say, on each SIGHUP, that the new workers run the code loaded at start.

    A changed ``env`` reaches their ``os.environ`` (as gunicorn's reload sets
    it before the fork), but not what the app read from it as it loaded.
    """
    log.info("master: reload: --preload, the app loaded at start is kept; restart for new code")
    if env_changed:
        log.info(
            "master: reload: --preload: the new env is in the new workers' os.environ; what"
            " the app read from it as it loaded at start (a settings module) stays as it was"
        )


def load_at_terminal(load: Callable[[], Any]) -> Any:
    """``load()`` in process; a KeyboardInterrupt out of it if, and only if, a SIGINT came.

    A Ctrl-C during a slow import stops the import, as Python's own handler
    does; what the app's code raised meanwhile (it may wrap the interrupt)
    is then no failure of the app's.  Under ``nohup`` or ``&`` (SIGINT
    ignored) and under a handler of an embedding program's, nothing changes.
    """
    came: list[int] = []

    def interrupt(signum: int, _frame: Any) -> None:
        came.append(signum)
        raise KeyboardInterrupt

    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.default_int_handler:
        signal.signal(signal.SIGINT, interrupt)
    try:
        return load()
    except BaseException:
        if came:
            raise KeyboardInterrupt from None
        raise
    finally:
        if previous is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous)
