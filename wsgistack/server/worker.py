"""One worker: a selector for accepting and idle connections plus a bounded thread pool.

Strategy: the selector thread accepts, reads request heads (so a slow client
holds no thread: slowloris costs a file descriptor, not a thread) and hands a
connection with a complete head to one of ``threads`` pool threads.  The pool
thread answers every buffered request (pipelining) and gives the connection
back to the selector through a queue plus a wake-up socket.

A worker whose one bind speaks uwsgi works as uWSGI's threads do instead:
each pool thread accepts its next connection itself (``direct.py``).

    worker = Worker(app, config, listeners)
    worker.run()           # until worker.stop() (from any thread) or a signal
"""

from __future__ import annotations

import logging
import queue
import random
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from ..netset import TrustedPeers
from .answers import AbortConnection, client_of, ran_out, refuse_timeout
from .config import ServerConfig
from .connection import Connection
from .direct import DirectAccept
from .discard import discard_more, drain, linger
from .handshakes import Handshakes
from .listener import AcceptPause, accept
from .logsetup import reopen_log_files
from .poller import make_poller
from .profiles import bind_profiles
from .proxyconnection import await_header
from .request import Limits
from .statsd import request_log
from .stopping import shutdown
from .threads import RequestThread
from .tlsconnection import Handshake, shake

__all__ = ["Worker"]

log = logging.getLogger("wsgistack.server")


class Worker:
    """Serve ``app`` on ``listeners`` until ``stop()``; ``graceful`` lets in-flight finish.

    The worker closes ``listeners`` as it stops (a unix socket's file goes
    too), unless ``owns_listeners=False``.
    """

    def __init__(
        self,
        app: Callable[..., Any],
        config: ServerConfig,
        listeners: list[socket.socket],
        *,
        multiprocess: bool = False,
        clock: Callable[[], float] = time.monotonic,
        watchdog: Callable[[], bool] | None = None,
        heartbeat: Callable[[bool], None] | None = None,
        owns_listeners: bool = True,
    ) -> None:
        self.app = app
        self.config = config
        self.listeners = listeners
        self.clock = clock
        self.watchdog = watchdog  # False when the master is gone: stop
        #: Called each loop turn (draining: True once stopping), for the master's
        #: hung-worker watchdog (--worker-timeout, see heartbeat.py).
        self.heartbeat = heartbeat
        #: Its listeners (a master's child: its copies) are its own to close as it
        #: stops, once nothing in it accepts (see ``stopping.unlisten``), as a
        #: gunicorn worker closes its sockets; False leaves them to the caller
        #: (to serve them again with another worker).
        self.owns_listeners = owns_listeners
        self.limits = Limits.of(config)
        self.access_log = request_log(config)  # and --statsd-host's metrics (statsd.py)
        #: Which peers' X-Forwarded-Proto counts (--forwarded-allow-ips).
        self.scheme_trust = TrustedPeers(config.forwarded_allow_ips, "forwarded_allow_ips")
        self.stopping = False
        self._reopen = False  # reopen_logs() was asked for
        self.keeps_alive = config.keepalive > 0  # --keepalive 0: every response closes
        #: Whether a stop lets requests in flight finish (False once one was quick).
        self.graceful = True
        self._poller = make_poller()
        self._listeners = {sock.fileno(): sock for sock in listeners}
        self._binds = bind_profiles(config, listeners, multiprocess=multiprocess)
        #: Connections not yet speaking HTTP: a TLS handshake, or a PROXY protocol
        #: header, under way (the loop steps them, the sweep ends them in --timeout).
        self.handshakes = Handshakes(self._poller)
        #: One uwsgi bind and no other: pool threads accept (direct.py), else None.
        self.direct: DirectAccept | None = None
        if len(listeners) == 1 and (profile := self._binds[listeners[0].fileno()]).uwsgi:
            self.direct = DirectAccept(self, listeners[0], profile, config.threads)
        self._connections: dict[int, Connection] = {}
        self.accept_pause = AcceptPause(clock)  # after EMFILE: the loop's and direct.py's
        self._accept_resume = 0.0  # when accepting resumes after EMFILE (0: not paused)
        self._jobs: queue.SimpleQueue[Connection | None] = queue.SimpleQueue()
        self._busy = 0
        #: Guards the connection table, the busy count and ``_finished``; direct.py's
        #: threads clear their slots under it (a stop cuts only what a slot holds).
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []  # the pool, in slot order
        #: The loop has let go of its connections (end of a stop): a pool thread
        #: done with one closes it instead of handing it back (under ``lock``).
        self._finished = False
        self.requests = 0
        limit = config.max_requests
        self.max_requests = limit + random.randint(0, limit // 10) if limit else 0
        self.ready = threading.Event()

    # -- control (thread-safe) --------------------------------------------------------
    def signal_handlers(self) -> dict[int, Any]:
        """What each signal does to a serving worker, in a master's child or in process.

        SIGTERM drains, SIGINT and SIGQUIT stop now, SIGUSR1 reopens the log
        files (logrotate), and SIGHUP is ignored: reloading is a master's work, and
        its default action would end the process (in process, ``mainthread.py``
        makes it a graceful stop instead, unless it was ignored at start).
        """
        return {
            signal.SIGTERM: lambda *_: self.stop(graceful=True),
            signal.SIGINT: lambda *_: self.stop(graceful=False),
            signal.SIGQUIT: lambda *_: self.stop(graceful=False),
            signal.SIGUSR1: lambda *_: self.reopen_logs(),
            signal.SIGHUP: signal.SIG_IGN,
        }

    def count_request(self) -> None:
        """Count a request the app is about to see; the last before --max-requests stops.

        The stop begins before that request is answered, so its response says
        ``Connection: close``: a keep-alive client opens a new connection for
        its next request instead of sending it into one the recycle closes.
        """
        if not self.max_requests:
            # A count for the log only: no lock on every request for it (a rare
            # lost increment between threads costs nothing).
            self.requests += 1
            return
        with self.lock:
            self.requests += 1
            last = self.requests == self.max_requests
        if last:
            log.info("worker recycled after %d requests", self.requests)
            self.stop(graceful=True)

    def reopen_logs(self) -> None:
        """Open the log files again, from the loop (logrotate's SIGUSR1)."""
        self._reopen = True
        self.wake()

    def reopen_logs_now(self) -> None:
        """Open the log files again in this thread: the loop's, or before it serves."""
        if self.access_log is not None:
            self.access_log.reopen()
        reopen_log_files()  # --error-log's, --log-config's: this process's copies

    def wake(self) -> None:
        """Wake the loop: it looks at once at what changed (a stop, a thread that left)."""
        self._poller.wake()

    def stop(self, graceful: bool = True) -> None:
        """Stop accepting; with ``graceful`` finish in-flight requests (--graceful-timeout).

        An immediate stop stays immediate: a graceful one asked after it (a
        SIGTERM after Ctrl-C, ``Server.close()`` after ``stop(graceful=False)``)
        changes nothing.
        """
        self.graceful = self.graceful and graceful
        self.stopping = True
        self.wake()
        if self.direct is not None:
            self.direct.wake()

    # -- the loop ---------------------------------------------------------------------
    def run(self) -> None:
        """Serve until stopped; closes every connection and the pool before returning."""
        direct = self.direct
        if direct is not None:
            direct.alive = self.config.threads
        else:
            for fd in self._listeners:
                self._poller.add(fd, oneshot=False)
        for index in range(self.config.threads):
            if direct is not None:
                thread = RequestThread(direct.serve, index)
            else:
                thread = RequestThread(self.serve_jobs)
            thread.start()
            self.threads.append(thread)
        self.ready.set()
        try:
            self._loop()
        finally:
            shutdown(self)  # stopping.py: the drain, the cut, the listeners let go
            self._poller.close()

    def _loop(self) -> None:
        next_sweep = self.clock() + 0.5
        while not self.stopping:
            if self.heartbeat is not None:
                self.heartbeat(False)
            self._dispatch(self._poller.poll(0.5))
            if self._reopen:
                self._reopen = False
                self.reopen_logs_now()
            now = self.clock()
            if self._accept_resume and now >= self._accept_resume:
                self._accept_resume = 0.0
                for fd in self._listeners:
                    self._poller.add(fd, oneshot=False)
            if now >= next_sweep:
                self.sweep(now)
                next_sweep = now + 0.5
                if self.watchdog is not None and not self.watchdog():
                    log.warning("the master is gone, worker stopping")
                    self.stop(graceful=True)  # wakes the threads waiting to accept

    def _dispatch(self, fds: list[int]) -> None:
        for fd in fds:
            listener = self._listeners.get(fd)
            if listener is not None:
                self._accept(listener)
            elif (connection := self._connections.get(fd)) is not None:
                self._readable(connection)
            elif (handshake := self.handshakes.get(fd)) is not None:
                handshake.advance(self)

    def _accept(self, listener: socket.socket) -> None:
        family, uwsgi, base, tls, gate = self._binds[listener.fileno()]  # the same for the batch
        # TLS: no early read, the handshake's bytes are OpenSSL's; PROXY: the header's
        # bytes are read exactly (proxyconnection.py).
        early_read = tls is None and gate is None
        for _ in range(64):
            try:
                accepted = (
                    accept(listener, family) if early_read else accept(listener, family, False)
                )
            except OSError as exc:
                if pause := self.accept_pause.after(exc):
                    self.unwatch_listeners()
                    self._accept_resume = self.clock() + pause
                return
            if accepted is None:
                return
            sock, peer, early = accepted
            if gate is not None:
                await_header(self, sock, peer, base, tls, gate)
                continue
            if tls is not None:
                handshake = Handshake(sock, peer, tls, base)
                handshake.deadline = self.clock() + self.config.timeout
                self.handshakes.begin(handshake)
                shake(self, handshake)  # the ClientHello has often come already
                continue
            connection = Connection(sock, peer, self, base, uwsgi=uwsgi)
            connection.deadline = self.clock() + self.config.timeout
            self._connections[connection.fd] = connection
            if early:
                parser = connection.parser
                connection.feed(early)
                if parser.has_request or parser.error is not None:
                    self.submit(connection)  # the pool thread arms the poller if it keeps it
                    continue
            self._poller.add(connection.fd, oneshot=True)
            connection.polled = True

    def adopt(self, connection: Connection, read: bool = True) -> None:
        """Serve a connection whose set-up ended in the loop (``handshakes.py``).

        Its socket is in the poller already; ``read``: take what came with
        the set-up's end (a request often does) as the loop would.
        """
        connection.deadline = self.clock() + self.config.timeout
        connection.polled = True
        self._connections[connection.fd] = connection
        if read:
            self._readable(connection)

    def track(self, connection: Connection) -> None:
        """Enter a connection a ``direct`` thread accepted in the table, so ``linger`` can use it.

        Takes ``lock`` itself, as ``close_connection`` and ``hand_back`` (which
        look it up) do.  Only a connection that lingers (a refused upload) is
        tracked: a request served whole never comes here.
        """
        with self.lock:
            self._connections[connection.fd] = connection

    def watch(self, connection: Connection, idle: bool = False) -> None:
        """Wait in the loop for a connection's next bytes; ``idle``: its request has ended."""
        if idle:
            self._set_idle_deadline(connection)
        self._poller.rearm(connection.fd)

    def unwatch_listeners(self) -> None:
        """Stop accepting in the loop: a pause after EMFILE, or a stop."""
        for fd in self._listeners:
            self._poller.remove(fd)

    def _readable(self, connection: Connection) -> None:
        if connection.lingering:
            drain(self, connection)
            return
        if connection.discarding is not None:
            discard_more(self, connection)
            return
        parser = connection.parser
        was_idle = not parser.mid_request
        if not connection.receive():
            self.close_connection(connection)
        elif parser.has_request or parser.error is not None:
            self.submit(connection)
        else:
            if was_idle and parser.mid_request:
                # The whole head must arrive within --timeout of its first byte (slowloris).
                connection.deadline = self.clock() + self.config.timeout
            self._poller.rearm(connection.fd)

    def submit(self, connection: Connection) -> None:
        """Hand a connection with a complete request to the pool."""
        connection.busy = True
        with self.lock:
            self._busy += 1
        self._jobs.put(connection)

    def sweep(self, now: float) -> None:
        """End what outlived its deadline: set-ups, heads (408), idle and lingering connections."""
        for handshake in self.handshakes.overdue(now):
            if handshake.started:  # one that sent nothing closes without a word, as idle ones
                client = client_of(handshake.peer)
                log.info("%s %s: not done %s, closed", handshake.what, client, ran_out(self))
            self.handshakes.end(handshake)
        # list() copies in one step: pool threads may close connections meanwhile.
        for connection in list(self._connections.values()):
            if connection.busy or connection.deadline > now:
                continue
            if connection.discarding is not None and not connection.lingering:
                linger(self, connection)  # the body took too long: close, reading it away
                continue
            if not connection.lingering:
                refuse_timeout(connection)  # a head begun and not finished: 408
            self.close_connection(connection)

    def close_connection(self, connection: Connection) -> None:
        """Forget and close a connection (from the loop or a pool thread)."""
        with self.lock:  # against hand_back: see there
            if self._connections.get(connection.fd) is not connection:
                return  # already closed; its fd may belong to a newer connection
            del self._connections[connection.fd]
            if connection.polled:  # one served straight from accept never was
                self._poller.remove(connection.fd)
        # Outside the lock: close() may wait on the kernel (FIN, a reset), and the
        # loop must not wait with it.  The fd stays ours until here, so no newer
        # connection can have taken its number meanwhile.
        connection.close()

    # -- the pool ---------------------------------------------------------------------
    def serve_jobs(self) -> None:
        """A pool thread's work: serve the connections the loop submits until told to leave."""
        jobs = self._jobs
        while (connection := jobs.get()) is not None:
            self._run(connection)

    def _run(self, connection: Connection) -> None:
        """Serve a connection's parsed requests, then hand it back, linger or close."""
        keep = self.serve_next(connection)
        while keep and connection.parser.has_request:
            # Pipelined: the next request is buffered (while stopping, it is
            # answered too, with Connection: close).
            keep = self.serve_next(connection)
        with self.lock:
            self._busy -= 1
        if keep:
            # Idle: --keepalive.  A pipelined head already begun, or a body being
            # read away: --timeout for it, as for any head (a begun head used to
            # get 408 once --keepalive passed).  While stopping, the stop's grace
            # instead (stopping.py): the response went out keep-alive, and the
            # client may be sending its next request already.
            self._set_idle_deadline(connection)
            self.hand_back(connection)
        elif connection.linger:
            # Lingering also while stopping: a reset would eat the answer.
            linger(self, connection)
        else:
            self.close_connection(connection)
        if self.stopping:
            self._poller.wake()

    def _set_idle_deadline(self, connection: Connection) -> None:
        busy = connection.parser.mid_request or connection.discarding is not None
        wait = self.config.timeout if busy else self.config.keepalive
        connection.deadline = self.clock() + wait

    def hand_back(self, connection: Connection) -> None:
        """Give a connection the pool is done with back to the loop to watch.

        Under the lock, as one step with ``close_connection``: once ``busy``
        is False the sweep may close the connection and a new one take its
        fd, and a late rearm would then hand the newcomer's bytes to the loop
        while a pool thread serves it.
        """
        with self.lock:
            if self._connections.get(connection.fd) is not connection:
                return
            if not self._finished:  # else the loop is gone: nobody would watch it
                connection.busy = False
                connection.polled = True  # rearm registers one served straight from accept
                try:
                    self._poller.rearm(connection.fd)
                    return
                except OSError:
                    pass
        self.close_connection(connection)

    def serve_next(self, connection: Connection) -> bool:
        """Answer the connection's next request; False: close it.  Nothing it raises escapes."""
        try:
            return connection.serve()
        except AbortConnection:
            connection.linger = False  # the connection is broken: nothing to wait for
            return False
        except BaseException:  # the pool thread must outlive anything a request raises
            log.exception("unexpected error serving %s", connection.peer)
            return False

    # -- what a stop needs (stopping.py) ----------------------------------------------
    def connections(self) -> list[Connection]:
        """The connections in the table, copied: pool threads may close them meanwhile."""
        return list(self._connections.values())

    def serve_ready(self, timeout: float) -> None:
        """A stop's turn of the loop: step what is ready within ``timeout`` seconds."""
        self._dispatch(self._poller.poll(timeout))

    def holds_nothing(self) -> bool:
        """Nothing in flight, in the table or being set up, and no thread that may accept."""
        held = self._busy or self._connections or self.handshakes
        return not (held or (self.direct is not None and self.direct.alive))

    def finish(self, cut: Callable[[Connection], None]) -> int:
        """No connection goes back to the loop from now; ``cut`` each one served, say how many."""
        with self.lock:  # a pool thread closes a connection's socket only after this lock
            self._finished = True
            if self.direct is not None:
                held = self.direct.held()
            else:
                held = [each for each in self._connections.values() if each.busy]
            for connection in held:
                cut(connection)
        return len(held)

    def release_threads(self) -> list[threading.Thread]:
        """Tell every pool thread to leave; returns those serving nothing (a stop joins them)."""
        for _ in self.threads:
            self._jobs.put(None)
        if self.direct is not None:
            return self.direct.idle(self.threads)
        return [] if self._busy else self.threads
