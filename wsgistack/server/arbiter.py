"""The prefork master: N workers on shared listening sockets, kept alive and replaced safely.

Signals (handlers only record the signal, ``signalqueue.py``; the loop acts on it):
SIGTERM  graceful stop: workers stop accepting, finish in-flight requests
         within --graceful-timeout, then the master exits.
SIGHUP   graceful reload: a new set of workers loads the app afresh and
         reports ready before the old set is told to drain, so no request
         fails; if the new workers cannot load the app, the old ones stay.
         With ``reconfigure`` (--config, --paste) it first reads the file again
         (``reconfig.py``); one that cannot apply is logged and changes nothing.
         A reload whose new workers cannot load the app puts the master back
         to what the old set runs with (``reloadbook.py``): its configuration,
         env, listeners, pid file and worker count, so the workers it respawns
         and the next reload start from there.
         A second SIGHUP during a reload stops the set still starting and
         starts another (the latest code wins).  Ignored once a stop has begun.
SIGINT / SIGQUIT  quick stop, also during a graceful one; a stop once begun
         only gets quicker (a second SIGTERM changes nothing).
SIGUSR1  reopen log files (--access-log, --error-log, --log-config's) in the master and
         every worker, for logrotate as gunicorn's; with --user the master creates them first.
--reload   a worker that sees the app's files change asks for the SIGHUP reload
         (reloader.py); the master acts once per change, whichever workers saw it.
SIGTTIN / SIGTTOU  one worker more / less (never fewer than one), as gunicorn's:
         one still loading the app leaves first, else the oldest, drained; a reload
         starts as many as there are now.
SIGUSR2  logged and ignored: gunicorn's re-exec upgrade, which an operator may
         send out of habit, does not exist here, and the default action would
         end the master (and with it every worker) without a line.
A worker that dies (crash, ``kill -9``, or --max-requests recycling) is respawned.
Every worker started (at start, respawned, SIGTTIN, a reload's) is logged with its PID.
A worker whose loop stops beating for --worker-timeout seconds (a C extension
holding the GIL, a deadlock) is hung: the master logs it, sends SIGUSR2 (the
worker's faulthandler prints every thread's stack), then SIGKILL, and a new
worker replaces it (``watchdog.py``).  A draining worker gets its whole
--graceful-timeout first.
The master is in one of three states (``State``): serving, reloading (a new
set loads while the old one serves) or stopping; a stop abandons a reload
under way, and nothing a reload would do (finish, fail, respawn) happens once
stopping.
A worker ends as a Python program does (``child.py``): the exit handlers the
app registered (``atexit``) run and its output is flushed, at a stop, a reload
or a recycle, within --graceful-timeout and a second (then its stack is printed
and it exits with status 1).
Workers call ``load()`` after the fork, so a reload picks up new code (``preload.py``: not);
if the first workers cannot load it (an error, or dying before they are ready:
a crash in an import), the master exits with status 2; a later worker that
cannot load it is tried again ever more slowly (``backoff.py``), until a worker
loads the app again (a SIGHUP does not wait for the next try).  A worker is
ready once it says so on a pipe (``ready.py``).

    Arbiter(lambda: load_app("myapp:app"), config, listeners).run()
"""

from __future__ import annotations

import enum
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from .backoff import Backoff
from .child import BOOT_ERROR, fork_child, run_child
from .config import ServerConfig
from .heartbeat import Heartbeat
from .listener import close_listeners
from .logsetup import reopen_log_files
from .notify import Notify
from .ready import ReadyPipe
from .reloadbook import Reconfigure, ReloadBook, Restore, Serving
from .reloader import FirstFailure, ReloadRequests
from .roster import Roster
from .signalqueue import SignalQueue
from .watchdog import Watchdog

__all__ = ["Arbiter"]

log = logging.getLogger("wsgistack.server")

_HANDLED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR2,
    signal.SIGCHLD,
)


class State(enum.Enum):
    """What the master is doing; every action and log line is for the current one."""

    SERVING = "serving"  # keeping --workers workers, respawning those that die
    RELOADING = "reloading"  # a new set loads the app; the old set serves until it is ready
    STOPPING = "stopping"  # workers drain or quit; none is spawned, no reload finishes


class Arbiter:
    """Run and supervise ``config.workers`` worker processes until stopped."""

    def __init__(
        self,
        load: Callable[[], Callable[..., Any]],
        config: ServerConfig,
        listeners: list[socket.socket],
        reconfigure: Reconfigure | None = None,
        notify: Notify | None = None,
        restore: Restore | None = None,
    ) -> None:
        self.load = load
        self.config = config
        self.listeners = listeners
        self._notify = notify or Notify(None)  # systemd's Type=notify (notify.py)
        #: SIGHUP's configuration, what the old set runs with, the listeners dropped.
        self._book = ReloadBook(reconfigure, restore, self._notify)
        self.workers = Roster()  # pid -> start time, and each one's standing (roster.py)
        self._target = config.workers  # how many to keep: --workers, then SIGTTIN / SIGTTOU
        self._state = State.SERVING
        self._watchdog = Watchdog()  # --worker-timeout
        self._signals = SignalQueue(_HANDLED)  # the handlers only record (signalqueue.py)
        self._deadline = 0.0
        self._deadline_passed = False  # the kill at the deadline was logged
        self._backoff = Backoff()  # a worker failing at start delays the next spawn
        self._boot_failure = 0  # the first worker that could not load it: the master stops
        self._status = 0
        self._ready_pipe = ReadyPipe()
        self._reloads = ReloadRequests() if config.reload else None
        #: --reload: which worker of a set logs a load failure's traceback.
        self._first_failure = FirstFailure() if config.reload else None
        self._waited = [self._ready_pipe.reader]  # by select(), with --reload's, and signals
        if self._reloads is not None:
            self._waited.append(self._reloads.reader)

    def run(self, early: Iterable[int] = ()) -> int:
        """Supervise until stopped; returns the exit status.

        ``early``: signals the caller noted before this (``Server`` notes them
        from its pid file on), acted on before any worker starts.
        """
        self._signals.install(early)
        workers = self.config.workers
        log.info(
            "master %d: starting %d worker%s", os.getpid(), workers, "" if workers == 1 else "s"
        )
        if self._reloads is not None:
            log.info(
                "master: --reload: the workers are replaced when the app's files change"
                " (for development: each worker looks at every file once a second)"
            )
        try:
            while (signum := self._signals.pop()) is not None:
                self._handle(signum)
            if self._state is not State.STOPPING:
                self._spawn_missing()
            while self.workers or self._state is not State.STOPPING:
                self._wait()
                while (signum := self._signals.pop()) is not None:
                    self._handle(signum)
                self._reap()
                self._book.dropped.release(holding=self.workers.holding)
                self._read_ready()
                self._read_reload_requests()
                self._watch()
                self._finish_reload()
                self._tell()
                if self._state is State.STOPPING:
                    self._enforce_deadline()
                else:
                    self._spawn_missing()
        finally:
            self._signals.uninstall()
            self._ready_pipe.close()
            self._watchdog.close()
            self._book.dropped.close()
            if self._reloads is not None:
                self._reloads.close()
            if self._first_failure is not None:
                self._first_failure.close()
        if self._boot_failure:
            # The last line, the whole story: gunicorn's ends "Reason: Worker failed to boot."
            log.error(
                "master %d: stopped, exit status 2: the app cannot be loaded"
                " (worker %d says why above)",
                os.getpid(),
                self._boot_failure,
            )
        else:
            log.info("master %d: stopped", os.getpid())
        return self._status

    def _wait(self) -> None:
        self._notify.beat()  # systemd's WatchdogSec=: the master's loop still turns
        self._signals.wait(self._waited, min(1.0, self._notify.watchdog_every or 1.0))

    def _read_reload_requests(self) -> None:
        """--reload: a worker saw the app's files change; reload as SIGHUP does, once per change."""
        if self._reloads is None or not (changed := self._reloads.read()):
            return
        if self._state is State.STOPPING:
            return
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        log.info("master: %s changed%s (--reload)", changed[0], more)
        self._handle(signal.SIGHUP)

    def _handle(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return  # _reap runs on every turn
        if signum == signal.SIGUSR1:
            reopen_log_files(self.config.account(), self.config.access_log)
            log.info("master: log files reopened; the workers reopen theirs")
            self.workers.signal_all(signal.SIGUSR1)
            return
        if signum == signal.SIGHUP:
            self._reload()
            return
        if signum in (signal.SIGTTIN, signal.SIGTTOU):
            self._resize(1 if signum == signal.SIGTTIN else -1)
            return
        if signum == signal.SIGUSR2:
            log.warning(
                "master: SIGUSR2 ignored: there is no re-exec upgrade (gunicorn's USR2);"
                " SIGHUP reloads the app and the configuration"
            )
            return
        graceful = signum == signal.SIGTERM
        if self._state is State.STOPPING and graceful:
            return  # a stop once begun only gets quicker: no later deadline, no grace back
        abandoned = " (the reload under way is abandoned)" if self._state is State.RELOADING else ""
        log.info("master: %s%s", "graceful stop" if graceful else "quick stop", abandoned)
        self._stop(graceful)

    def _reload(self) -> None:
        if self._state is State.STOPPING:
            log.info("master: reload ignored, the master is stopping")
            return  # not a quick stop either: in-flight requests keep their grace
        self._notify.reloading()
        serving = Serving(self.config, tuple(self.listeners), self._target)
        if (taken := self._book.read_again(self.config, self.listeners)) is None:
            return
        config, listeners = taken
        if config.workers != self.config.workers:
            self._target = config.workers  # else SIGTTIN / SIGTTOU's count stands
        self.config, self.listeners = config, listeners
        if self._state is State.RELOADING:
            # Two deploys in a row: the set still starting may hold the older
            # code, so it is stopped (gracefully: a ready one may serve) and a
            # new set loads the latest; the old set serves until that is ready.
            starting = self.workers.active()
            log.info(
                "master: reload again, starting new workers (stopping the %d still starting)",
                len(starting),
            )
            self.workers.send_away(starting, signal.SIGTERM)
        else:
            log.info("master: reload, starting new workers")
            self._state = State.RELOADING
            self._book.keep(serving)
            self.workers.retiring = set(self.workers) - self.workers.leaving
        if self._first_failure is not None:
            self._first_failure.renew()  # a new set, new code: its failure is new
        for _ in range(self._target):
            self._spawn()

    def _resize(self, step: int) -> None:
        """One worker more or less (SIGTTIN / SIGTTOU); ``_spawn_missing`` does it."""
        if self._state is State.STOPPING:
            log.info(
                "master: %s ignored, the master is stopping", "SIGTTIN" if step > 0 else "SIGTTOU"
            )
            return
        if self._target + step < 1:
            log.info("master: one worker less, but at least one stays")
            return
        self._target += step
        self._book.resize(step)
        log.info("master: one worker %s, now %d", "more" if step > 0 else "less", self._target)

    def _stop(self, graceful: bool) -> None:
        deadline = time.monotonic() + (self.config.graceful_timeout if graceful else 0.0) + 1.0
        stopping = self._state is State.STOPPING
        self._deadline = min(self._deadline, deadline) if stopping else deadline
        self._state = State.STOPPING
        self._notify.stopping("graceful" if graceful else "quick")
        self.workers.retiring = set()  # every worker now leaves: none is "old" or replaced
        self.workers.leaving |= set(self.workers)
        # No worker is spawned from here on: the master lets go of the listeners
        # (a unix socket's file goes too), so once the draining workers have
        # closed theirs, new clients are refused instead of queued for nobody.
        close_listeners(self.listeners)
        self._book.dropped.close()
        self.workers.signal_all(signal.SIGTERM if graceful else signal.SIGQUIT)

    def _finish_reload(self) -> None:
        if self._state is not State.RELOADING:
            return
        if len(self.workers.active() & self.workers.ready) >= self._target:
            log.info("master: reload done, the old workers drain")
            # Neither replaced nor counted as serving: a new worker lost while
            # they drain is replaced at once.
            self.workers.send_away(self.workers.retiring, signal.SIGTERM)
            self.workers.retiring = set()
            self._state = State.SERVING
            self._book.done()  # the sockets it took back are its own

    def _tell(self) -> None:
        """systemd's view of a serving master: READY=1 once a set is up, STATUS= as it changes."""
        if self._state is State.SERVING:
            active, ready = self.workers.active(), self.workers.ready
            self._notify.serving(len(active & ready), len(active - ready), self._target)

    def _watch(self) -> None:
        """Dump and kill the workers the watchdog finds hung (--worker-timeout)."""
        loading = self.workers.loading()
        for pid, signum in self._watchdog.check(time.monotonic(), self.config, loading):
            self.workers.signal([pid], signum)

    def _enforce_deadline(self) -> None:
        if time.monotonic() > self._deadline:
            if not self._deadline_passed:  # said once; the kill is repeated until reaped
                self._deadline_passed = True
                count = len(self.workers)
                log.warning(
                    "master: %d worker%s still running at the stop's deadline: killed (SIGKILL)",
                    count,
                    "" if count == 1 else "s",
                )
            self.workers.signal_all(signal.SIGKILL)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            started = self.workers.reaped(pid)
            self._watchdog.forget(pid)
            code = os.waitstatus_to_exitcode(status)
            self._read_ready()  # its "ready", if it came before it died
            if started is None or pid in self.workers.leaving:
                pass  # asked to leave (also every worker, once stopping): not replaced
            elif code == BOOT_ERROR and pid not in self.workers.ready:
                self._boot_failed(pid)  # once ready, a 3 is the app's own (its os._exit(3))
            elif pid in self.workers.retiring:
                # An old worker of a reload: the new workers, coming up, replace it.
                level = logging.INFO if code == 0 else logging.WARNING
                log.log(level, "worker %d exited (status %d) during the reload", pid, code)
            elif code != 0 and pid not in self.workers.ready:
                # Killed or crashed before it was ready (a segfault in an import,
                # os._exit, the OOM killer): the app could not be loaded, as if it
                # had raised, where it used to be respawned every second for ever.
                log.error("worker %d died while loading the app (status %d)", pid, code)
                self._boot_failed(pid)
            else:
                level = logging.INFO if code == 0 else logging.WARNING
                log.log(level, "worker %d exited (status %d), respawning", pid, code)
                if code != 0:
                    self._backoff.died(started, time.monotonic())  # no fork storm
            self.workers.forget(pid)

    def _boot_failed(self, pid: int) -> None:
        """A worker could not load the app (never called once stopping)."""
        if not self._backoff.booted:
            self._give_up(pid)
        elif self._state is State.RELOADING and pid not in self.workers.retiring:
            self.workers.send_away(self.workers.active(), signal.SIGQUIT)
            old = self.workers.retiring & set(self.workers)
            self.workers.retiring = set()
            self._state = State.SERVING
            left = "keeping the old workers" if old else "no old worker left"
            log.error("master: reload failed (the new app cannot be loaded), %s", left)
            self.config, self.listeners, self._target = self._book.go_back()
            if old:
                self._notify.reload_ended("reload failed, the old app serves")
            else:
                # The old workers were lost while the new ones loaded: nothing can
                # serve, so the master stops as when the app cannot load at start.
                self._give_up(pid)
        else:
            # The code on disk no longer loads: the others serve on (backoff.py).
            wait = self._backoff.failed_to_load(time.monotonic())
            log.error("master: a new worker could not load the app; trying again in %g s", wait)

    def _give_up(self, pid: int) -> None:
        """Stop with status 2: the app cannot be loaded and nothing else serves."""
        self._status = 2
        self._boot_failure = pid  # said when stopped: a stop line would bury it
        self._stop(graceful=False)

    def _read_ready(self) -> None:
        for pid in self._ready_pipe.read():
            self.workers.ready.add(pid)
            self._backoff.loaded()  # the app loads again: a back-off's wait ends

    def _spawn_missing(self) -> None:
        """Start workers up to the count, or (SIGTTOU, once no reload runs) drain some.

        Those still loading the app go first (none of them serves yet), then the oldest.
        """
        active = self.workers.surplus_order()
        if self._state is State.SERVING and len(active) > self._target:
            self.workers.send_away(active[: len(active) - self._target], signal.SIGTERM)
            return
        if not self._backoff.may_spawn(time.monotonic()):
            return
        for _ in range(self._target - len(active)):
            self._spawn()

    def _spawn(self) -> None:
        beat = Heartbeat() if self.config.worker_timeout else None
        # The worker's exit gets as long as a stop's deadline: --graceful-timeout, and a second.
        limit = self.config.graceful_timeout + 1.0
        try:
            pid = fork_child(_HANDLED, lambda mask: self._child(mask, beat), limit)
        except BaseException:
            if beat is not None:
                beat.close()
            raise
        self.workers.add(pid, time.monotonic(), self.listeners)  # its copies (roster.py)
        # Named at the fork, not once ready: a worker that hangs loading the app
        # is the one an operator wants to `kill -USR2`, and its own lines follow this.
        log.info("worker %d started", pid)
        if beat is not None:
            self._watchdog.add(pid, beat)

    # -- in the child -----------------------------------------------------------------
    def _child(self, mask: Iterable[int], beat: Heartbeat | None) -> int:
        self._signals.close_in_child()
        os.close(self._ready_pipe.reader)
        self._watchdog.close()  # the other workers' pulses are the master's
        # Listeners a reload dropped: a copy here would keep one accepting into
        # a queue nobody serves once the old workers have left.
        self._book.dropped.close()
        if self._reloads is not None:
            os.close(self._reloads.reader)
        return run_child(
            self.load,
            self.config,
            self.listeners,
            mask=mask,
            beat=beat,
            ready=self._ready_pipe,
            changed=self._reloads.send if self._reloads is not None else None,
            first_failure=self._first_failure,
        )
