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

Rules for the response (PEP 3333): headers go out with the first non-empty
body chunk; ``start_response`` with ``exc_info`` replaces headers before that
and re-raises after; a status or header with CR/LF or non-latin-1 is refused
with a 500 and logged; the result's ``close()`` is always called.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import time
from collections.abc import Callable, Iterable
from typing import Any

from .._logtext import request_from
from ..errors import ProtocolError
from ..sockets import reset_on_close, set_io_timeout
from ..wsgi import close_iterable
from .answers import (
    AbortConnection,
    ClientGone,
    fail,
    refuse_timeout,
    report_broken,
    report_head_cut,
    send_error,
    send_refusal,
)
from .discard import Discard, discardable, read_away
from .environ import FileWrapper, Input, build_environ, build_proxied_environ
from .http import Request, RequestParser
from .response import (
    BODYLESS,
    DATE,
    SERVER,
    BadBody,
    Response,
    check_head,
    response_head,
)
from .uwsgi import UwsgiParser, build_uwsgi_environ

__all__ = ["Connection"]

log = logging.getLogger("wsgistack.server")

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: The most one blocking send or sendfile() call takes on.  A call in progress
#: holds its connection: a stop's cut at --graceful-timeout (stopping._cut)
#: takes effect at the next call, so a client reading on after it gets at most
#: this much more, not the rest of a large file or chunk.
SEND_BLOCK = 1024 * 1024


class Connection:
    """A client socket plus its parser; ``serve()`` answers buffered requests.

    ``uwsgi``: the peer (nginx's ``uwsgi_pass``) sends uwsgi packets instead of
    HTTP; everything after the parser and the environ is the same.
    """

    __slots__ = (
        "_bounded",
        "_build_environ",
        "_timeout",
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
        self._timeout = worker.config.timeout
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
        except OSError:
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
                deadline = now + self._timeout
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
            except OSError:
                return False
            if not data:
                self._peer_closed()
                return False

    def _peer_closed(self) -> None:
        if self.parser.mid_request:  # not an ordinary close between requests
            report_head_cut(self)

    def feed(self, data: bytes) -> None:
        """Hand bytes read in the worker's loop to the parser.

        A parser refuses bad bytes by setting its ``error``; should one raise
        instead (a bug: a ValueError once slipped out of the uwsgi parser), the
        loop would end, and the worker with it.  This connection is refused.
        """
        try:
            self.parser.feed(data)
        except Exception:
            log.exception("the request parser failed on bytes from %s", self.peer or "a peer")
            self.parser.error = ProtocolError("the request could not be parsed", 400)

    def _fill(self) -> None:
        """Block (up to --timeout) for more body bytes; used by ``wsgi.input``."""
        self._bound_waits()
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:  # --timeout passed (SO_RCVTIMEO)
            raise ProtocolError("timed out reading the request body", 408) from None
        except OSError as exc:
            raise ProtocolError(f"reading the request body failed: {exc}", 400) from None
        if not data:
            raise ProtocolError("the client closed before the body ended", 400)
        self.parser.feed(data)

    # -- serving ---------------------------------------------------------------------
    def serve(self) -> bool:
        """Answer every parsed request; True when the last response kept the connection open.

        That response may have gone out keep-alive before the worker began to
        stop: the worker then closes the connection itself (see ``Worker._run``).
        """
        parser = self.parser
        while (request := parser.next_request()) is not None:
            if request.error is not None:  # broken before the app saw it
                send_refusal(self, request.error, head_only=request.method == "HEAD")
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
        """Send all of ``data``; a client that takes nothing for --timeout is dropped."""
        sock = self.sock
        try:
            try:
                sent = sock.send(data, socket.MSG_DONTWAIT)  # usually all of it, at once
            except BlockingIOError:
                sent = 0
            if sent < len(data):
                self._bound_waits()
                view = memoryview(data)
                while sent < len(data):
                    sent += sock.send(view[sent : sent + SEND_BLOCK])
        except OSError as exc:  # including BlockingIOError: --timeout passed (SO_SNDTIMEO)
            raise ClientGone.from_error(exc, self._timeout) from None

    def _bound_waits(self) -> None:
        """Before a call that may wait: bound each wait by --timeout, in the kernel."""
        if not self._bounded:
            set_io_timeout(self.sock, self._timeout)
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
            send_refusal(self, exc, response.head_only)
            return False
        keep_alive = request.keep_alive
        try:
            self._run_app(environ, request, response)
        except AbortConnection as exc:
            # Cut off: a reset, so a peer reading to the close cannot take the
            # fragment for the whole response (uwsgi's and HTTP/1.0's end so).
            reset_on_close(self.sock)
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
            self.discarding = Discard(request)  # _head told the client it may stay
        return True  # an unread body that fully arrived is skipped

    def _run_app(self, environ: dict[str, Any], request: Request, response: Response) -> None:
        start_response = self._start_response(request, response)
        # BaseException: in a pool thread, sys.exit() or a leaked CancelledError would
        # otherwise end the thread quietly, with the client left waiting.
        try:
            result = self.worker.app(environ, start_response)
        except (AbortConnection, ProtocolError):
            raise
        except BaseException:
            fail(self, response, f"{request_from(environ)}: the application raised")
            return
        try:
            if (
                isinstance(result, FileWrapper)
                and not response.sent
                and response.status is not None
                and self._sendfile(result, request, response)
            ):
                return
            self._write_all(result, request, response)
        except (AbortConnection, ProtocolError):
            raise
        except BaseException:
            fail(self, response, f"{request_from(environ)}: the application raised while iterating")
        finally:
            try:
                close_iterable(result)
            except BaseException:
                log.exception("%s: the application's close() raised", request_from(environ))
                response.close = True

    def _write_all(self, result: Iterable[bytes], request: Request, response: Response) -> None:
        if (
            type(result) is list
            and len(result) == 1
            and not response.sent
            and response.status is not None
            and response.length is None
            and response.status[:3] not in BODYLESS
        ):
            # One block, no length given: send a Content-Length instead of chunking.
            response.length = len(result[0])
            response.headers.append(("Content-Length", str(response.length)))
        write = self._writer(request, response)
        for chunk in result:
            if chunk:
                write(chunk)
        if not response.sent:
            write(b"")
            if response.status is None:
                raise ProtocolError("the application never called start_response", 500)
        self._finish(response)

    def _finish(self, response: Response) -> None:
        if response.chunked:
            self.sendall(b"0\r\n\r\n")
        elif (
            response.length is not None
            and response.written < response.length
            and not response.head_only
        ):
            log.error("the application sent fewer bytes than its Content-Length")
            raise AbortConnection

    def _start_response(self, request: Request, response: Response) -> Callable[..., Any]:
        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            if exc_info is not None:
                try:
                    if response.sent:
                        response.reported = exc_info[1]
                        raise exc_info[1].with_traceback(exc_info[2])
                finally:
                    exc_info = None
            elif response.status is not None:
                raise AssertionError("start_response called twice without exc_info")
            status, kept, length, close, own_fields = check_head(status, headers)
            response.status = status
            response.headers = kept
            response.length = length
            response.own_fields = own_fields
            if close:
                response.close = True
            return self._writer(request, response)

        return start_response

    def _writer(self, request: Request, response: Response) -> Callable[[bytes], None]:
        def write(data: bytes) -> None:
            if response.status is None:
                raise AssertionError("write() before start_response()")
            if not response.sent:
                head = self._head(request, response)
                if not response.head_only:
                    head += self._frame(response, data)  # a bad first chunk raises here,
                response.sent = True  # while a 500 can still go out instead
                self.sendall(head)
                return
            if data and not response.head_only:
                self.sendall(self._frame(response, data))

        return write

    def _frame(self, response: Response, data: bytes) -> bytes:
        response.written += len(data)
        if response.chunked:
            return b"%x\r\n%b\r\n" % (len(data), data) if data else b""
        if response.length is not None and response.written > response.length:
            if not response.sent:
                raise BadBody("the application sent more bytes than its Content-Length")
            log.error("the application sent more bytes than its Content-Length")
            raise AbortConnection
        return data

    def _head(self, request: Request, response: Response) -> bytes:
        if response.input is not None and response.input.error is not None:
            # The body broke while the app read it, and the app answered anyway (a
            # framework turns the error into its own 500): the client hears why.
            raise response.input.error
        extra = b""
        status_code = response.status[:3]  # type: ignore[index]
        bodyless = status_code in BODYLESS
        if bodyless:
            response.head_only = True  # RFC 9110 6.4.1: these responses have no content
            if status_code != "304" and response.length is not None:
                # RFC 9110 8.6: never a Content-Length on a 204 (a 304's
                # tells the length of what the client already has, and stays).
                response.headers = [
                    (name, value)
                    for name, value in response.headers
                    if name.lower() != "content-length"
                ]
        if response.length is None and not bodyless and not response.head_only:
            if request.version == "1.1":
                response.chunked = True
                extra = b"Transfer-Encoding: chunked\r\n"
            else:
                response.close = True  # HTTP/1.0 without a length: the close ends the body
        if not request.complete and not discardable(request, response):
            response.close = True  # the body is still arriving: this connection ends here
        if self.uwsgi:
            # The close ends every uwsgi response, and nginx adds its own Date and
            # Server, as it does for uWSGI's responses and for proxy_pass.
            response.close = True
            return response_head(
                response.status,  # type: ignore[arg-type]
                response.headers,
                extra,
                date=False,
                server=False,
            )
        worker = self.worker
        if response.close or not request.keep_alive or worker.stopping or not worker.keeps_alive:
            response.close = True
            extra += b"Connection: close\r\n"
        elif request.version == "1.0":
            extra += b"Connection: keep-alive\r\n"
        own = response.own_fields
        return response_head(
            response.status,  # type: ignore[arg-type]
            response.headers,
            extra,
            date=not own & DATE,
            server=not own & SERVER,
        )

    def _sendfile(self, wrapper: FileWrapper, request: Request, response: Response) -> bool:
        """Send a real file with os.sendfile; False to fall back to iteration."""
        filelike = wrapper.filelike
        try:
            fileno = filelike.fileno()
            offset = filelike.tell()
            info = os.fstat(fileno)
        except (AttributeError, OSError, ValueError):
            return False
        if not stat.S_ISREG(info.st_mode) or not info.st_size:
            # Pipes and devices, and /proc files (regular, but "0 bytes"): fstat's
            # size is not their length, so they are read and sent as they come.
            return False
        size = max(info.st_size - offset, 0)  # a file that shrank below the position
        if response.length is None:
            response.length = size
            response.headers.append(("Content-Length", str(size)))
        head = self._head(request, response)
        response.sent = True
        self.sendall(head)
        if response.head_only or response.length is None:
            return True
        remaining = min(size, response.length)
        self._bound_waits()
        while remaining:  # not socket.sendfile(): on EAGAIN it would wait without a bound
            try:
                sent = os.sendfile(self.fd, fileno, offset, min(remaining, SEND_BLOCK))
            except OSError as exc:  # including BlockingIOError: --timeout passed (SO_SNDTIMEO)
                raise ClientGone.from_error(exc, self._timeout) from None
            if not sent:
                break  # the file shrank: _finish reports the short body
            offset += sent
            remaining -= sent
            response.written += sent
        self._finish(response)
        return True
