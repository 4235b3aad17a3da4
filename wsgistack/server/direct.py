"""A uwsgi-only worker's pool threads: each accepts its next connection itself.

A worker whose one bind speaks uwsgi works as uWSGI's threads do: nginx
opens a connection per request and sends the packet as it connects, so each
pool thread accepts its next connection itself, and the kernel wakes one
thread per connection.  The hand-over from the selector (a wake-up and a
trip of the GIL between threads per request) cost a fifth of the CPU a
uwsgi request takes.  Kept apart from ``worker.py``, whose loop and pool
serve every other worker: here is only what this way of serving adds, and
what a stop needs to know of it (``stopping.py``).

    direct = DirectAccept(worker, listener, profile, threads)
    RequestThread(direct.serve, index).start()   # each pool thread
    direct.wake()                                # a stop: waiting threads look at once
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .connection import Connection
from .discard import STOP_GRACE, linger
from .listener import accept
from .poller import AcceptWaiter

if TYPE_CHECKING:
    from .profiles import BindProfile
    from .worker import Worker

__all__ = ["ACCEPT_WAKE", "DirectAccept"]

#: A pool thread waiting to accept looks at least this often whether the worker
#: is stopping (a stop wakes it at once; this is the bound should that be missed).
ACCEPT_WAKE = 1.0


class DirectAccept:
    """The pool threads of a worker that accept on ``listener`` themselves, and their state.

    ``profile`` is the listener's (``profiles.py``).  Each thread writes
    only its own slot of ``serving``, under the worker's lock, so a stop cuts
    only what a slot holds.
    """

    def __init__(
        self,
        worker: Worker,
        listener: socket.socket,
        profile: BindProfile,
        threads: int,
    ) -> None:
        self._worker = worker
        self._listener = listener
        self._family = profile.family
        self._base = profile.base
        #: Readable once the worker stops: wakes threads waiting to accept.
        self._stop_reader, self._stop_writer = socket.socketpair()
        self.alive = 0  # threads in ``serve`` (a graceful stop waits for them)
        #: Per thread, the connection it holds: a stop joins the others.
        self.serving: list[Connection | None] = [None] * threads

    def serve(self, index: int) -> None:
        """Pool thread ``index``: accept a connection, serve it, repeat until the worker stops.

        A peer that connects and sends too little holds this thread for up to
        --timeout (a 408 then), where the selector would hold only its socket:
        a uwsgi bind faces nginx, which sends its packet whole, not clients.
        """
        worker = self._worker
        listener = self._listener
        waiter = AcceptWaiter(listener.fileno(), self._stop_reader.fileno())
        serving = self.serving
        try:
            while not worker.stopping:
                try:
                    accepted = accept(listener, self._family)
                except OSError as exc:
                    if pause := worker.accept_pause.after(exc):
                        waiter.rest(pause)  # a stop still ends the pause
                    continue
                if accepted is None:
                    waiter.wait(ACCEPT_WAKE)
                    continue
                sock, peer, early = accepted
                # This thread's alone (a stop waits for the thread, not for it):
                # the loop learns of it only to read away what a refused peer sends.
                connection = Connection(sock, peer, worker, self._base, uwsgi=True)
                serving[index] = connection
                connection.busy = True
                if connection.read_request(early, waiter.readable, STOP_GRACE):
                    worker.serve_next(connection)  # one request: uwsgi never keeps a connection
                with worker.lock:  # a stop cuts only what a slot holds (stopping._cut)
                    serving[index] = None
                if connection.linger:
                    # Still busy and this thread's: until linger hands it back, no
                    # stop or sweep touches it, in the table or not yet.
                    worker.track(connection)
                    linger(worker, connection)
                else:
                    sock.close()
        finally:
            waiter.close()
            with worker.lock:
                self.alive -= 1
            worker.wake()  # a stop waiting for this thread looks again

    def wake(self) -> None:
        """Wake the threads waiting to accept: the worker is stopping."""
        with contextlib.suppress(OSError):  # closed: the worker has stopped already
            self._stop_writer.send(b"x")

    def held(self) -> list[Connection]:
        """The connections the threads serve now (a stop's deadline cuts them)."""
        return [each for each in self.serving if each is not None]

    def idle(self, threads: Sequence[threading.Thread]) -> list[threading.Thread]:
        """Those of ``threads`` (the pool, in slot order) that hold no connection."""
        return [thread for thread, held in zip(threads, self.serving, strict=True) if held is None]

    def may_accept(self, threads: Sequence[threading.Thread]) -> bool:
        """Whether a thread of ``threads`` may still call accept().

        One that holds a connection will not: it sees the stop when done with it
        and leaves.  Waiting for those too (for every thread to end) kept the
        listener open for as long as a request ran, and nginx's new connections
        queued for nobody.
        """
        return any(thread.is_alive() for thread in self.idle(threads))

    def close(self) -> None:
        """Let go of the wake-up pair: the worker has stopped."""
        self._stop_reader.close()
        self._stop_writer.close()
