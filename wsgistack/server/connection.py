"""One client connection: read into the parser, run the app for each request, write.

Only this module (with ``answers.py``, its own error answers, and
``discard.py``, which reads away what a client sends after its answer) and
``listener.py`` read and write sockets.  They block without a Python timeout
(which would poll before every call): a send is tried without waiting first,
and only a connection that must wait gets ``--timeout`` set in the kernel
(``wsgistack.sockets``).
``Connection.serve()`` runs in a pool thread: it answers every request
already parsed (pipelining, in order), then tells the worker whether to keep
the connection (hand it back to the selector) or close it.

How a response goes out (the app's call, its head and body) is ``writing.py``'s.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from ..errors import ProtocolError
from ..sockets import reset_on_close, set_io_timeout
from .answers import (
    AbortConnection,
    ClientGone,
    body_cut,
    peer_name,
    refuse_timeout,
    report_broken,
    report_head_cut,
    send_error,
    send_refusal,
)
from .discard import Discard, read_away
from .environ import Input, build_environ, build_proxied_environ
from .http import RequestParser
from .request import Request
from .response import Response
from .uwsgi import UwsgiParser, build_uwsgi_environ
from .writing import SEND_BLOCK, run_app

__all__ = ["Connection"]

log = logging.getLogger("wsgistack.server")

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Connection:
    """A client socket plus its parser; ``serve()`` answers buffered requests.

    ``uwsgi``: the peer (nginx's ``uwsgi_pass``) sends uwsgi packets instead of
    HTTP; everything after the parser and the environ is the same.
    """

    __slots__ = (
        "_bounded",
        "_build_environ",
        "busy",
        "deadline",
        "discarding",
        "environ_base",
        "fd",
        "linger",
        "linger_until",
        "lingering",
        "parser",
        "peer",
        "polled",
        "served",
        "sock",
        "timeout",
        "uwsgi",
        "worker",
    )

    def __init__(
        self,
        sock: socket.socket,
        peer: Any,
        worker: Any,
        environ_base: dict[str, Any],
        uwsgi: bool = False,
    ) -> None:
        self.sock = sock
        self.environ_base = environ_base  # the listener's: its SERVER_NAME and SERVER_PORT
        self.fd = sock.fileno()
        self.timeout = worker.config.timeout  # --timeout: the bound of each blocking call
        self.busy = False  # owned by a pool thread: the loop must not touch it
        self.polled = False  # registered with the worker's poller
        self._bounded = False  # --timeout set on the socket for blocking calls
        self.peer = peer
        self.worker = worker
        self.uwsgi = uwsgi
        self.parser: RequestParser | UwsgiParser
        if uwsgi:
            self.parser = UwsgiParser(worker.limits)
            self._build_environ = build_uwsgi_environ
        else:
            self.parser = RequestParser(worker.limits)
            # Trust is the peer's: decided once here, never per request.
            trusted = worker.scheme_trust.trusts(peer)
            self._build_environ = build_proxied_environ if trusted else build_environ
        self.deadline = 0.0
        self.served = False  # answered a request: an idle one may be closed on shutdown
        #: Closing while the client may still be sending: the worker reads it away
        #: first, or the kernel's reset would discard our answer at the client.
        self.linger = False
        self.lingering = False  # half-closed, draining (the worker's loop owns it)
        self.linger_until = 0.0
        #: A request whose unread body is read away after its response (discard.py).
        self.discarding: Discard | None = None

    # -- reading ---------------------------------------------------------------------
    def receive(self) -> bool:
        """Read what is available into the parser; False when the peer closed."""
        try:
            data = self.sock.recv(65536, socket.MSG_DONTWAIT)  # the loop thread never waits
        except (BlockingIOError, InterruptedError):
            return True
        except OSError as exc:  # a reset: mid-head, said as a close is
            self._peer_closed(exc)
            return False
        if not data:
            self._peer_closed()
            return False
        self.feed(data)
        return True

    def read_request(
        self, data: bytes, readable: Callable[[int, float, bool], bool], grace: float
    ) -> bool:
        """Feed ``data``, then wait for the rest of a request head, up to --timeout in all.

        For a pool thread that accepted the connection itself (a uwsgi-only
        worker): nginx sends its packet as it connects, so this seldom waits.
        ``readable(fd, seconds, stop)`` waits for the socket and, with ``stop``,
        returns early when the worker stops: a graceful stop leaves the peer
        ``grace`` seconds more, as the loop does for the heads it reads.
        True once a request or a refusal is ready to serve; False when the
        peer closed, or sent too little in time (a 408, as the loop's sweep).
        """
        parser = self.parser
        deadline = 0.0
        stopping = False
        while True:
            if data:
                self.feed(data)
            if parser.has_request or parser.error is not None:
                return True
            now = time.monotonic()
            if not deadline:
                deadline = now + self.timeout
            if not stopping and self.worker.stopping:
                stopping = True
                deadline = min(deadline, now + grace)
            if now >= deadline:
                refuse_timeout(self)
                return False
            data = b""
            if not readable(self.fd, deadline - now, not stopping):
                continue  # the time is up, or the worker stops: looked at above
            try:
                data = self.sock.recv(65536, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                self._peer_closed(exc)
                return False
            if not data:
                self._peer_closed()
                return False

    def _peer_closed(self, exc: OSError | None = None) -> None:
        """The peer closed, or ``exc`` broke the read: logged if it cut a head short."""
        if self.parser.mid_request:  # not an ordinary close (or reset) between requests
            report_head_cut(self, exc)

    def feed(self, data: bytes) -> None:
        """Hand bytes read in the worker's loop to the parser.

        A parser refuses bad bytes by setting its ``error``; should one raise
        instead (a bug: a ValueError once slipped out of the uwsgi parser), the
        loop would end, and the worker with it.  This connection is refused.
        """
        try:
            self.parser.feed(data)
        except Exception:
            log.exception("the request parser failed on bytes from %s", peer_name(self.peer))
            self.parser.error = ProtocolError("the request could not be parsed", 400)

    def _fill(self) -> None:
        """Block (up to --timeout) for more body bytes; used by ``wsgi.input``."""
        self.bound_waits()
        try:
            data = self._recv_waiting()
        except (BlockingIOError, TimeoutError):  # --timeout passed (SO_RCVTIMEO; TLS's)
            raise ProtocolError("timed out reading the request body", 408) from None
        except OSError as exc:  # a reset, or a TLS error: "TLS error: bad record mac"
            raise body_cut(exc) from None
        if not data:
            raise body_cut()
        self.parser.feed(data)

    # -- the socket calls a TLS connection makes its own way (tlsconnection.py) --------
    #: Whether a file may go out with os.sendfile (not through TLS).
    can_sendfile = True

    def _recv_waiting(self) -> bytes:
        """One receive that may wait (a pool thread's, bounded by ``bound_waits``)."""
        return self.sock.recv(65536)

    def recv_now(self) -> bytes | None:
        """What has arrived, without waiting; None if nothing yet, b"" once the peer closed."""
        try:
            return self.sock.recv(65536, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return None

    def send_now(self, data: bytes) -> int:
        """Send what the socket takes at once (a refusal from the loop); the count sent."""
        return self.sock.send(data, socket.MSG_DONTWAIT)

    def half_close(self) -> None:
        """End our side (a lingering close): the client reads an orderly end."""
        self.sock.shutdown(socket.SHUT_WR)

    def cut_off(self) -> None:
        """Make the close a reset: the response was cut off (see ``reset_on_close``)."""
        reset_on_close(self.sock)

    def close(self) -> None:
        self.sock.close()

    # -- serving ---------------------------------------------------------------------
    def serve(self) -> bool:
        """Answer every parsed request; True when the last response kept the connection open.

        That response may have gone out keep-alive before the worker began to
        stop: the worker then closes the connection itself (see ``Worker._run``).
        """
        parser = self.parser
        while (request := parser.next_request()) is not None:
            if request.error is not None:  # broken before the app saw it
                send_refusal(self, request.error, request.method == "HEAD", request)
                return False
            self.worker.count_request()
            self.served = True
            if not self._handle(request):
                return False
            if self.discarding is not None:
                ended = read_away(self)
                if not ended:  # None: the loop reads the rest; False: closing
                    return ended is None
            # Stopping: a request already read is answered, with Connection: close.
        if parser.error is not None:
            send_refusal(self, parser.error, head_only=parser.refusing_head)
            return False
        return True

    def sendall(self, data: bytes) -> None:
        """Send all of ``data``; a client that takes nothing for --timeout is dropped.

        The ``ClientGone`` raised then says how much of ``data`` the kernel took.
        """
        sock = self.sock
        sent = 0
        try:
            try:
                sent = sock.send(data, socket.MSG_DONTWAIT)  # usually all of it, at once
            except BlockingIOError:
                sent = 0
            if sent < len(data):
                self.bound_waits()
                view = memoryview(data)
                while sent < len(data):
                    sent += sock.send(view[sent : sent + SEND_BLOCK])
        except OSError as exc:  # including BlockingIOError: --timeout passed (SO_SNDTIMEO)
            raise ClientGone.from_error(exc, self.timeout, sent) from None

    def bound_waits(self) -> None:
        """Before a call that may wait: bound each wait by --timeout, in the kernel."""
        if not self._bounded:
            set_io_timeout(self.sock, self.timeout)
            self._bounded = True

    def _handle(self, request: Request) -> bool:
        worker = self.worker
        response = Response(request.method == "HEAD")

        def send_continue() -> None:
            if not response.sent:
                self.sendall(_CONTINUE)
                response.continued = True

        wsgi_input = response.input = Input(
            request, self._fill, send_continue if request.expect_continue else None
        )
        try:
            environ = self._build_environ(self.environ_base, request, self.peer, wsgi_input)
        except ProtocolError as exc:
            send_refusal(self, exc, response.head_only, request)
            return False
        keep_alive = request.keep_alive
        try:
            run_app(self, environ, request, response)
        except AbortConnection as exc:
            # Cut off: a reset, so a peer reading to the close cannot take the
            # fragment for the whole response (uwsgi's and HTTP/1.0's end so).
            self.cut_off()
            report_broken(worker, environ, response, exc)
            return False
        except ProtocolError as exc:  # the body broke (408, 400) while the app read it
            report_broken(worker, environ, response, exc)
            if not response.sent:
                response.status = str(exc.status_hint)  # for the access log
                self.linger = True
                response.written = send_error(self, exc.status_hint, response.head_only)
            return False
        finally:  # every request the app saw is logged, also those that broke off
            if worker.access_log is not None:
                worker.access_log(environ, response, request.head_at)
        if response.close or not keep_alive or request.error is not None:
            self.linger = not request.complete  # the body is still arriving: read it away
            return False
        if not request.complete:
            self.discarding = Discard(request)  # writing._head told the client it may stay
        return True  # an unread body that fully arrived is skipped
