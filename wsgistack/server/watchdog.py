"""The master's hung-worker watchdog (``--worker-timeout``): which worker to dump and kill.

A worker whose loop has not beaten (``heartbeat.py``) for --worker-timeout
seconds is hung (a C extension holding the GIL, a deadlock): the watchdog
logs it and asks for SIGUSR2 (the worker's faulthandler prints every
thread's stack), then, DUMP_GRACE later, SIGKILL; the master replaces it as
any worker that died.  A draining worker gets its whole --graceful-timeout
first.  A worker still loading the app has no loop to beat yet: it is only
reported, once each --worker-timeout.  The watchdog decides and the master
sends the signals, as it sends all the others.

    watchdog = Watchdog()
    watchdog.add(pid, beat)                   # after the fork (beat made before it)
    for pid, signum in watchdog.check(now, config, loading):
        os.kill(pid, signum)
    watchdog.forget(pid)                      # reaped
"""

from __future__ import annotations

import logging
import signal

from .config import ServerConfig
from .heartbeat import Heartbeat

__all__ = ["DUMP_GRACE", "Watchdog"]

log = logging.getLogger("wsgistack.server")

#: A hung worker asked (SIGUSR2) to print its stacks is killed this long after.
DUMP_GRACE = 1.0


class Watchdog:
    """The workers' heartbeats as the master sees them, and the loading it has reported."""

    def __init__(self) -> None:
        self._beats: dict[int, Heartbeat] = {}  # pid -> its heartbeat
        self._load_reported: dict[int, int] = {}  # pid -> --worker-timeouts of loading logged

    def add(self, pid: int, beat: Heartbeat) -> None:
        """Watch a worker just forked with ``beat``."""
        self._beats[pid] = beat

    def forget(self, pid: int) -> None:
        """A worker reaped: its heartbeat is let go of."""
        if (beat := self._beats.pop(pid, None)) is not None:
            beat.close()
        self._load_reported.pop(pid, None)

    def close(self) -> None:
        """Let go of every heartbeat: the master ends, or a new worker drops the others'."""
        for beat in self._beats.values():
            beat.close()
        self._beats.clear()

    def check(
        self, now: float, config: ServerConfig, loading: dict[int, float]
    ) -> list[tuple[int, signal.Signals]]:
        """The signals to send: SIGUSR2 to a worker newly found hung, SIGKILL after DUMP_GRACE.

        ``loading``: pid -> start time of the workers still loading the app.
        """
        limit = config.worker_timeout
        if limit:
            self._report_loading(now, limit, loading)
        signals: list[tuple[int, signal.Signals]] = []
        for pid, beat in self._beats.items():
            if beat.killed_at is not None:
                if now >= beat.killed_at + DUMP_GRACE:
                    signals.append((pid, signal.SIGKILL))
                continue
            if not limit:
                continue  # turned off by a reload: the workers that beat are let be
            silent = beat.silence(now)
            if silent < limit:
                continue
            if beat.draining_since is not None and now < beat.draining_since + (
                config.graceful_timeout
            ):
                continue  # a drain gets its --graceful-timeout, as on a stop
            log.error(
                "worker %d timed out (WORKER TIMEOUT): its loop has been silent for %.1f s"
                " (--worker-timeout %g), killing it; its threads' stacks follow",
                pid,
                silent,
                limit,
            )
            signals.append((pid, signal.SIGUSR2))
            beat.killed_at = now
        return signals

    def _report_loading(self, now: float, limit: float, loading: dict[int, float]) -> None:
        """Log workers still loading the app, each --worker-timeout.

        Such a worker is not killed: a large app may well take that long to
        load, and one whose import waits on an unreachable database would
        only hang again; the log says which it is.
        """
        for pid, started in loading.items():
            periods = int((now - started) // limit)
            if periods > self._load_reported.get(pid, 0):
                self._load_reported[pid] = periods
                log.warning(
                    "worker %d has been loading the app for %.0f s (an import or factory"
                    " waiting on something?); it serves once the app is loaded",
                    pid,
                    now - started,
                )
