"""The master process: prefork workers, keep their number, obey signals.

Rules: signal handlers only enqueue (a byte on a pipe); the loop does the
work.  Workers import the app after the fork, so SIGHUP loads fresh code.

- SIGTERM: graceful stop; workers finish in-flight requests within
  ``graceful_timeout``, then are killed.
- SIGINT, SIGQUIT: quick stop.
- SIGHUP: graceful reload; a new generation of workers is started and only
  once all of them are ready is the old generation told to drain.
- A worker that dies (crash, ``kill -9``, recycling after ``max_requests``)
  is replaced.  A worker that cannot load the app stops the master: a broken
  deploy should fail loudly, not respawn forever.

    Arbiter(lambda: load_app("myproject.wsgi"), config).run()
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import signal
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from .._types import WSGIApplication
from .config import ServerConfig
from .listener import open_listeners
from .worker import Worker

__all__ = ["Arbiter", "run_single"]

log = logging.getLogger("wsgistack.server")

BOOT_FAILED = 3
HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD)


def _announce(listeners: list[socket.socket], workers: int) -> None:
    for sock in listeners:
        address = sock.getsockname()
        where = (
            f"unix:{address}"
            if isinstance(address, str)
            else (
                f"http://[{address[0]}]:{address[1]}"
                if ":" in address[0]
                else f"http://{address[0]}:{address[1]}"
            )
        )
        log.info("listening on %s (%s)", where, f"{workers} workers" if workers else "1 process")


def _unlink_unix(listeners: list[socket.socket]) -> None:
    for sock in listeners:
        address = sock.getsockname()
        sock.close()
        if isinstance(address, str) and address:
            with contextlib.suppress(OSError):
                os.unlink(address)


def run_single(load: Callable[[], WSGIApplication], config: ServerConfig) -> int:
    """Serve in this process until SIGTERM (graceful) or SIGINT (quick)."""
    listeners = open_listeners(config.binds, config.backlog)
    try:
        worker = Worker(load(), config, listeners)
        signal.signal(signal.SIGTERM, lambda *_: worker.stop(graceful=True))
        signal.signal(signal.SIGINT, lambda *_: worker.stop(graceful=False))
        _announce(listeners, 0)
        worker.run()
    finally:
        _unlink_unix(listeners)
    return 0


class Arbiter:
    """Preforks ``config.workers`` workers, each calling ``load()`` for its app."""

    def __init__(self, load: Callable[[], WSGIApplication], config: ServerConfig) -> None:
        self.load = load
        self.config = config
        self.workers: dict[int, int] = {}  # pid -> generation
        self.ready: set[int] = set()
        self.generation = 0
        self.stopping: float | None = None  # the kill deadline once stopping
        self.reloading = False
        self.exit_status = 0
        self._signals: list[int] = []

    # -- signal handlers: enqueue only ----------------------------------------
    def _enqueue(self, signum: int, frame: Any) -> None:
        self._signals.append(signum)
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"s")

    def run(self) -> int:
        self.listeners = open_listeners(self.config.binds, self.config.backlog)
        self._wake_r, self._wake_w = os.pipe()
        self._ready_r, self._ready_w = os.pipe()
        for fd in (self._wake_r, self._wake_w, self._ready_r):
            os.set_blocking(fd, False)
        for signum in HANDLED:
            signal.signal(signum, self._enqueue)
        _announce(self.listeners, self.config.workers)
        try:
            self._spawn_missing()
            while self.workers or self.stopping is None:
                self._loop_once()
        finally:
            _unlink_unix(self.listeners)
            for fd in (self._wake_r, self._wake_w, self._ready_r, self._ready_w):
                os.close(fd)
        return self.exit_status

    def _loop_once(self) -> None:
        try:
            readable, _, _ = select.select([self._wake_r, self._ready_r], [], [], 1.0)
        except InterruptedError:
            readable = []
        if self._wake_r in readable:
            self._drain(self._wake_r)
        if self._ready_r in readable:
            for chunk in self._read_all(self._ready_r):
                self.ready.add(chunk)
        while self._signals:
            self._handle(self._signals.pop(0))
        self._reap()
        if self.stopping is not None:
            if time.monotonic() > self.stopping:
                self._kill_all(signal.SIGKILL)
            return
        self._spawn_missing()
        if self.reloading and self._generation_ready(self.generation):
            self.reloading = False
            old = [pid for pid, gen in self.workers.items() if gen < self.generation]
            log.info("reload: new workers ready, draining %d old ones", len(old))
            for pid in old:
                self._signal(pid, signal.SIGTERM)

    @staticmethod
    def _drain(fd: int) -> None:
        try:
            while os.read(fd, 4096):
                pass
        except BlockingIOError:
            pass

    @staticmethod
    def _read_all(fd: int) -> list[int]:
        data = b""
        try:
            while chunk := os.read(fd, 4096):
                data += chunk
        except BlockingIOError:
            pass
        return [value for (value,) in struct.iter_unpack("=i", data[: len(data) // 4 * 4])]

    def _handle(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return  # reaped every loop
        if signum == signal.SIGHUP and self.stopping is None:
            log.info("SIGHUP: graceful reload")
            self.generation += 1
            self.reloading = True
            return
        graceful = signum == signal.SIGTERM
        if self.stopping is None:
            log.info(
                "%s: %s stop", signal.Signals(signum).name, "graceful" if graceful else "quick"
            )
            grace = self.config.graceful_timeout if graceful else 1.0
            self.stopping = time.monotonic() + grace
        self._kill_all(signal.SIGTERM if graceful else signal.SIGINT)

    def _generation_ready(self, generation: int) -> bool:
        current = [pid for pid, gen in self.workers.items() if gen == generation]
        return len(current) >= self.config.workers and all(pid in self.ready for pid in current)

    def _spawn_missing(self) -> None:
        current = sum(1 for gen in self.workers.values() if gen == self.generation)
        for _ in range(self.config.workers - current):
            self._spawn()

    def _spawn(self) -> None:
        pid = os.fork()
        if pid:
            self.workers[pid] = self.generation
            return
        status = 1
        try:
            status = self._child()
        finally:
            os._exit(status)

    def _child(self) -> int:
        for signum in HANDLED:
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        os.close(self._wake_r)
        os.close(self._ready_r)
        try:
            app = self.load()
        except BaseException:
            log.exception("worker %d: cannot load the app", os.getpid())
            return BOOT_FAILED
        worker = Worker(app, self.config, self.listeners)
        signal.signal(signal.SIGTERM, lambda *_: worker.stop(graceful=True))
        signal.signal(signal.SIGINT, lambda *_: worker.stop(graceful=False))
        signal.signal(signal.SIGQUIT, lambda *_: worker.stop(graceful=False))
        os.write(self._ready_w, struct.pack("=i", os.getpid()))
        worker.run()
        return 0

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.workers.pop(pid, None)
            was_ready = pid in self.ready
            self.ready.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            if code == BOOT_FAILED and not was_ready:
                log.error("a worker failed to load the app; stopping")
                self.exit_status = 1
                if self.stopping is None:
                    self.stopping = time.monotonic() + self.config.graceful_timeout
                    self._kill_all(signal.SIGTERM)
            elif self.stopping is None and code != 0:
                log.warning("worker %d exited with %s; replacing it", pid, code)

    def _signal(self, pid: int, signum: int) -> None:
        try:
            os.kill(pid, signum)
        except OSError as exc:
            if exc.errno != errno.ESRCH:
                raise

    def _kill_all(self, signum: int) -> None:
        for pid in list(self.workers):
            self._signal(pid, signum)
