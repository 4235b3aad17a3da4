"""How a worker stops: drain what is in flight, cut what outlasts it, let go of the listeners.

A stop (SIGTERM, a reload, a --max-requests recycle, ``Server.close()``)
ends the worker's loop, and ``shutdown`` runs its last turns: requests in
flight finish within --graceful-timeout (none on a quick stop), idle
connections answer a request sent within ``STOP_GRACE`` with Connection:
close and then close lingering (see ``discard.linger``), and those still
running at the deadline are cut with a reset and one log line.
Kept apart from ``worker.py``, which serves: nothing here runs per request.

    try:
        self._loop()        # Worker.run(), until stop()
    finally:
        shutdown(self)

It reaches the worker only through the methods it keeps for a stop
(``connections``, ``serve_ready``, ``sweep``, ``holds_nothing``, ``finish``,
``release_threads``) and its public fields.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from typing import TYPE_CHECKING

from ..sockets import reset_on_close
from . import discard
from .discard import STOP_GRACE
from .listener import close_listeners

if TYPE_CHECKING:
    from .connection import Connection
    from .worker import Worker

__all__ = ["shutdown"]

log = logging.getLogger("wsgistack.server")

#: How long a stop waits in all for the idle pool threads to leave: each leaves
#: at once when woken, but on a loaded host the wake-up itself can take a while.
JOIN_IDLE = 5.0


def shutdown(worker: Worker) -> None:
    """Drain and close what ``worker`` holds but its poller (``run``'s); its loop has ended."""
    worker.unwatch_listeners()
    # Graceful: every idle connection, new or kept alive (also one whose
    # response went out keep-alive just before the stop), still gets its
    # request answered, with Connection: close, if it sends one within
    # STOP_GRACE, and then closes lingering (see discard.linger).  A keep-alive
    # client sends its next request without waiting for anything: closed at
    # once, as they were, about one request in a hundred crossing a
    # --max-requests recycle failed (gunicorn 27 keeps them too).  A
    # lingering close (a client still uploading after its answer) goes on
    # until it ends or times out.
    now = worker.clock()
    for handshake in worker.handshakes.all():  # TLS: as a connection with no request yet
        handshake.deadline = min(handshake.deadline, now + STOP_GRACE)
    deadline = now + (worker.config.graceful_timeout if worker.graceful else 0.0)
    unlisten(worker)
    if worker.graceful:
        worker.serve_ready(0)
    while worker.clock() < deadline:
        if worker.heartbeat is not None:
            worker.heartbeat(True)  # draining: the master grants --graceful-timeout
        unlisten(worker)
        now = worker.clock()
        for connection in worker.connections():
            if connection.busy:
                continue
            connection.deadline = min(connection.deadline, now + STOP_GRACE)
            if (
                connection.deadline <= now
                and not connection.lingering
                and not connection.parser.mid_request
            ):
                discard.linger(worker, connection)
        worker.sweep(now)  # a head begun and not finished in its grace: 408
        if worker.holds_nothing():
            break
        worker.serve_ready(0.05)
    if cut := worker.finish(_cut):
        report_cut(worker, cut)
    for connection in worker.connections():
        if not connection.busy:
            worker.close_connection(connection)
    for handshake in worker.handshakes.all():
        worker.handshakes.end(handshake)
    # Join the threads that serve nothing (an immediate stop does not wait
    # for a request in flight); an accepting thread leaves at once on a stop.
    idle = worker.release_threads()
    deadline = time.monotonic() + JOIN_IDLE  # real time: threads wake in it
    for thread in idle:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    if worker.direct is not None:
        worker.direct.close()
    if worker.access_log is not None:
        worker.access_log.close()
    log.debug("worker stopped (%d requests)", worker.requests)


def unlisten(worker: Worker) -> None:
    """Close this process's copies of the listeners once nothing here accepts.

    The kernel keeps a listener open while any process holds it: a
    draining worker that kept its copy let the kernel queue connections
    nobody would accept, reset when it exited (after up to
    --graceful-timeout).  Once the master and every draining worker have
    let go, a client is refused at once and can try elsewhere; on a
    reload or a recycle the master and the new workers still hold them.
    In process (``--workers 0``, ``Server.close()``) the worker's are the
    server's, closed the same way: nothing else would accept on them.
    """
    if not worker.owns_listeners:
        return
    if worker.direct is not None and worker.direct.may_accept(worker.threads):
        return  # a uwsgi-only worker's thread may still accept (direct.py)
    worker.owns_listeners = False
    close_listeners(worker.listeners)  # in process, a unix socket's file goes too


def report_cut(worker: Worker, count: int) -> None:
    """Say why the clients of the ``count`` requests a stop cut saw a broken answer (or none).

    The worker does not wait for them, so they get no access log line.
    """
    them = "it" if count == 1 else "them"
    plural = "" if count == 1 else "s"
    if worker.graceful:
        log.warning(
            "worker stopping: --graceful-timeout (%g s) passed with %d request%s"
            " in flight, cutting %s",
            worker.config.graceful_timeout,
            count,
            plural,
            them,
        )
    else:
        log.info("worker stopping now (quick stop): cutting %d request%s in flight", count, plural)


def _cut(connection: Connection) -> None:
    """Reset a connection a pool thread still serves, now, and leave that thread a dead socket.

    The reset, as for any response cut off (see ``reset_on_close``): one
    delimited by the close would otherwise look whole.  A thread cannot be
    stopped, and in process (``Server.close()``, ``--workers 0``) it runs on
    until the app returns: the connection's descriptor is swapped for an
    unconnected socket, so the client is cut at the deadline (not after
    whatever the app still sends), and the thread's next send or read fails
    and ends the request.  The descriptor stays the thread's to close, so no
    other connection can take its number meanwhile.  A thread blocked in a
    send or read holds the connection until that call returns: a send carries
    at most ``writing.SEND_BLOCK`` (1 MiB), so a client reading on gets at
    most that much more; one that reads nothing waits out --timeout.
    """
    sock = connection.sock
    reset_on_close(sock)
    # OSError: closed meanwhile, or no descriptor left for the dead socket (then
    # the reset comes when the thread closes it, as at a forked worker's exit).
    with contextlib.suppress(OSError), socket.socket(sock.family, socket.SOCK_STREAM) as dead:
        os.dup2(dead.fileno(), sock.fileno(), inheritable=False)
