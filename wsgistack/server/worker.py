"""A worker: one selector for connections, a bounded pool of threads for requests.

Strategy: the selector thread accepts, reads request heads without blocking,
and hands a connection to a thread only when a whole head is parsed, so idle
keep-alive connections and clients dribbling their headers cost no thread.
A thread answers every request already buffered on its connection
(pipelining), then hands the connection back through a queue and a wake-up
socket; only the selector thread touches the selector.  Each second it closes
connections past their deadline: 408 for a half-sent head, silence for an
idle keep-alive.

    worker = Worker(app, config, listeners)
    worker.run()              # until worker.stop() from another thread or a signal
"""

from __future__ import annotations

import contextlib
import logging
import random
import selectors
import socket
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .._types import WSGIApplication
from ..errors import ProtocolError
from .config import ServerConfig
from .connection import Connection, FileWrapper
from .http import Limits

__all__ = ["Worker"]

log = logging.getLogger("wsgistack.server")

ACCEPT_BATCH = 64
LINGER = 2.0  # seconds a refused connection is drained before it is closed


def base_environ(sock: socket.socket, config: ServerConfig) -> dict[str, Any]:
    """The environ keys that are the same for every request on one listener."""
    address = sock.getsockname()
    if isinstance(address, tuple):
        name, port = str(address[0]), str(address[1])
    else:
        name, port = "localhost", ""
    return {
        "SERVER_NAME": name,
        "SERVER_PORT": port,
        "SCRIPT_NAME": config.root_path,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": config.threads > 1,
        "wsgi.multiprocess": config.workers > 1,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "wsgi.file_wrapper": FileWrapper,
    }


class Worker:
    """Serves ``app`` on ``listeners`` until stopped; safe to stop from any thread."""

    def __init__(
        self, app: WSGIApplication, config: ServerConfig, listeners: list[socket.socket]
    ) -> None:
        self.app = app
        self.config = config
        self.listeners = listeners
        self.limits = Limits(
            config.max_request_line,
            config.max_header_count,
            config.max_header_size,
            config.max_body_size,
        )
        self.stopping = False
        self._graceful = True
        self._returned: deque[Connection] = deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._idle: dict[Connection, None] = {}
        self._busy = 0
        self._requests = 0
        self._count_lock = threading.Lock()
        jitter = random.randint(0, config.max_requests_jitter) if config.max_requests else 0
        self._max_requests = config.max_requests + jitter if config.max_requests else 0
        self._bases = {sock.fileno(): base_environ(sock, config) for sock in listeners}

    # -- control, from any thread ------------------------------------------------
    def stop(self, graceful: bool = True) -> None:
        """Stop accepting; finish in-flight requests (graceful) or drop them."""
        self._graceful = self._graceful and graceful
        self.stopping = True
        self._wake()

    def _wake(self) -> None:
        # A full buffer already holds a wake-up; a closed socket means we are done.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def count_request(self) -> None:
        with self._count_lock:
            self._requests += 1
            recycle = self._max_requests and self._requests >= self._max_requests
        if recycle and not self.stopping:
            log.info("worker %s: recycling after %s requests", id(self), self._requests)
            self.stop(graceful=True)

    # -- the selector loop ---------------------------------------------------------
    def run(self) -> None:
        selector = self._selector
        for sock in self.listeners:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, None)
        selector.register(self._wake_r, selectors.EVENT_READ, None)
        pool = ThreadPoolExecutor(self.config.threads, thread_name_prefix="wsgistack")
        next_sweep = time.monotonic() + 1.0
        deadline: float | None = None
        try:
            while True:
                if self.stopping and deadline is None:
                    deadline = self._begin_stop()
                if deadline is not None and (
                    (self._busy == 0 and not self._awaiting_first_request())
                    or time.monotonic() > deadline
                ):
                    break
                for key, _ in selector.select(timeout=0.5):
                    source = key.fileobj
                    if key.data is not None:
                        self._readable(key.data, pool)
                    elif source is self._wake_r:
                        self._drain_wake(pool)
                    else:
                        self._accept(source)  # type: ignore[arg-type]
                now = time.monotonic()
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + 1.0
        finally:
            pool.shutdown(wait=self._graceful and self._busy > 0, cancel_futures=True)
            for connection in list(self._idle):
                connection.close()
            selector.close()
            self._wake_r.close()
            self._wake_w.close()

    def _begin_stop(self) -> float:
        for sock in self.listeners:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
        # Idle keep-alive connections close now; a connection accepted but not yet
        # served keeps its chance: its request is answered (with Connection: close).
        for connection in list(self._idle):
            if connection.served and not connection.partial:
                self._forget(connection)
                connection.close()
        grace = self.config.graceful_timeout if self._graceful else 0.0
        return time.monotonic() + grace

    def _awaiting_first_request(self) -> bool:
        return any(not c.served and not c.lingering for c in self._idle)

    def _accept(self, listener: socket.socket) -> None:
        base = self._bases[listener.fileno()]
        for _ in range(ACCEPT_BATCH):
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("accept failed: %s", exc)
                return
            sock.setblocking(False)
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = Connection(sock, peer, base, self)
            self._watch(connection, time.monotonic())

    def _watch(self, connection: Connection, now: float) -> None:
        if connection.lingering:
            limit = LINGER
        elif connection.partial:
            limit = self.config.timeout
        else:
            limit = self.config.keepalive
        connection.deadline = now + limit
        self._idle[connection] = None
        self._selector.register(connection.sock, selectors.EVENT_READ, connection)

    def _forget(self, connection: Connection) -> None:
        self._idle.pop(connection, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(connection.sock)

    def _readable(self, connection: Connection, pool: ThreadPoolExecutor) -> None:
        if connection.lingering:
            if not connection.discard():
                self._forget(connection)
                connection.close()
            return
        was_partial = connection.partial
        try:
            alive = connection.receive()
        except ProtocolError as error:
            self._forget(connection)
            connection.refuse(error)
            if connection.lingering:
                self._watch(connection, time.monotonic())
            return
        if not alive:
            self._forget(connection)
            connection.close()
        elif connection.ready:
            self._forget(connection)
            self._dispatch(connection, pool)
        elif connection.partial and not was_partial:
            connection.deadline = time.monotonic() + self.config.timeout

    def _dispatch(self, connection: Connection, pool: ThreadPoolExecutor) -> None:
        self._busy += 1
        pool.submit(self._serve, connection)

    def _serve(self, connection: Connection) -> None:
        try:
            connection.serve(self.app)
        except BaseException:  # even SystemExit from an app must not leak the socket
            log.exception("unexpected error serving a connection")
            connection.close()
        finally:
            self._returned.append(connection)
            self._wake()

    def _drain_wake(self, pool: ThreadPoolExecutor) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        now = time.monotonic()
        while self._returned:
            connection = self._returned.popleft()
            self._busy -= 1
            if connection.closed:
                continue
            if self.stopping and not connection.lingering and connection.served:
                connection.close()
            elif connection.ready:
                self._dispatch(connection, pool)
            else:
                self._watch(connection, now)

    def _sweep(self, now: float) -> None:
        for connection in [c for c in self._idle if c.deadline <= now]:
            self._forget(connection)
            if connection.partial and not connection.lingering:
                connection.refuse(ProtocolError("client too slow sending the request head", 408))
                if connection.lingering:
                    self._watch(connection, now)
            else:
                connection.close()
