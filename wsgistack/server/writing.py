"""Writing one response: call the app, send its head and body on the connection.

Rules for the response (PEP 3333): headers go out with the first non-empty
body chunk; ``start_response`` with ``exc_info`` replaces headers before that
and re-raises after; a status or header with CR/LF or non-latin-1 is refused
with a 500 and logged; the result's ``close()`` is always called.  The body
is framed by its Content-Length, chunked (HTTP/1.1 without one) or ended by
the close (a body that ends before its first byte is ``Content-Length: 0``);
a real file goes out with ``os.sendfile`` (read and sent over TLS).  What a response *is*
(its state, the checks of a head, its bytes) is ``response.py``'s; this
module sends it, through ``Connection.sendall``.

    run_app(connection, environ, request, response)   # once per request
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .._logtext import request_from
from ..errors import ProtocolError
from ..wsgi import close_iterable
from .answers import AbortConnection, ClientGone, NoStartResponse, fail
from .discard import discardable
from .environ import FileWrapper
from .request import Request
from .response import BODYLESS, DATE, SERVER, BadBody, Response, check_head, response_head

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["SEND_BLOCK", "run_app"]

log = logging.getLogger("wsgistack.server")

#: The most one blocking send or sendfile() call takes on.  A call in progress
#: holds its connection: a stop's cut at --graceful-timeout (stopping._cut)
#: takes effect at the next call, so a client reading on after it gets at most
#: this much more, not the rest of a large file or chunk.
SEND_BLOCK = 1024 * 1024
#: A file read for a connection that cannot sendfile() (TLS): 16 TLS records.
READ_BLOCK = 256 * 1024


def run_app(
    connection: Connection, environ: dict[str, Any], request: Request, response: Response
) -> None:
    """Call the app for ``request`` and send what it answers; a broken client raises.

    ``AbortConnection`` (cut: nothing more can be sent) and ``ProtocolError``
    (the body broke while the app read it) are the caller's to answer; any
    other error is answered here (``answers.fail``).
    """
    start_response = _start_response(connection, request, response)
    # BaseException: in a pool thread, sys.exit() or a leaked CancelledError would
    # otherwise end the thread quietly, with the client left waiting.
    try:
        result = connection.worker.app(environ, start_response)
    except (AbortConnection, ProtocolError):
        raise
    except BaseException:
        fail(connection, response, environ)
        return
    # The result is closed after the except blocks, not in a finally: an error
    # its close() raises is then the app's own, not chained (``During handling
    # of the above exception``) to the server's AbortConnection, or a layer's
    # ResponseCut, in the log and in what an error catcher's hooks receive.
    pending: BaseException | None = None
    try:
        if not (
            isinstance(result, FileWrapper)
            and not response.sent
            and response.status is not None
            and _sendfile(connection, result, request, response)
        ):
            _write_all(connection, result, request, response)
    except (AbortConnection, ProtocolError) as exc:
        pending = exc
    except BaseException:
        try:
            fail(connection, response, environ, " while iterating")
        except BaseException as exc:  # AbortConnection, ProtocolError: the caller's
            pending = exc
    try:
        close_iterable(result)
    except BaseException:
        log.exception("%s: the application's close() raised", request_from(environ))
        response.close = True
    if pending is not None:
        try:
            raise pending
        finally:
            pending = None  # no cycle through this frame's traceback


def _write_all(
    connection: Connection, result: Iterable[bytes], request: Request, response: Response
) -> None:
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
    write = _writer(connection, request, response)
    for chunk in result:
        if chunk:
            write(chunk)
            if response.head_only:
                # A HEAD (or a 204, 304) is answered once its head is out: the
                # rest would go nowhere, and no send would fail to tell that the
                # client left, so an endless body (server-sent events) would hold
                # this thread for good.  run_app closes the result: a generator
                # gets its GeneratorExit, Django its request_finished.
                break
    if not response.sent:
        if (
            response.status is not None
            and response.length is None
            and not response.head_only
            and response.status[:3] not in BODYLESS
        ):
            # The body ended before its first byte: its length is known now, 0.
            # Said so, rather than a chunked or close-delimited nothing, it lets
            # an HTTP/1.0 client keep the connection.  Not for a HEAD: the app's
            # GET may have a body (RFC 9110 8.6); 204 and 304 carry none anyway.
            response.length = 0
            response.headers.append(("Content-Length", "0"))
        if response.status is None:  # legal until now: a generator may call it last
            raise NoStartResponse("the application returned without calling start_response")
        write(b"")  # the head alone
    _finish(connection, response)


def _finish(connection: Connection, response: Response) -> None:
    if response.chunked:
        connection.sendall(b"0\r\n\r\n")
    elif (
        response.length is not None
        and response.written < response.length
        and not response.head_only
    ):
        log.error("the application sent fewer bytes than its Content-Length")
        raise AbortConnection


def _start_response(
    connection: Connection, request: Request, response: Response
) -> Callable[..., Any]:
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
        return _writer(connection, request, response)

    return start_response


def _writer(
    connection: Connection, request: Request, response: Response
) -> Callable[[bytes], None]:
    def write(data: bytes) -> None:
        if response.status is None:  # only _write_all has a write() before it
            raise NoStartResponse("the application sent a body before calling start_response")
        if not response.sent:
            head = _head(connection, request, response)
            if not response.head_only:
                head += _frame(response, data)  # a bad first chunk raises here,
            response.sent = True  # while a 500 can still go out instead
            try:
                connection.sendall(head)
            except ClientGone as exc:
                _uncount(response, len(head) - exc.sent, len(data))
                raise
            return
        if data and not response.head_only:
            frame = _frame(response, data)
            try:
                connection.sendall(frame)
            except ClientGone as exc:
                _uncount(response, len(frame) - exc.sent, len(data))
                raise

    return write


def _uncount(response: Response, unsent: int, size: int) -> None:
    """Take back from ``written`` the bytes of a body chunk a failed send left unsent.

    ``_frame`` counts a chunk before it goes out (the hot path has no other
    step); ``unsent`` is what the kernel did not take of the bytes sent with
    it, and the chunk was last among them but for its chunked framing's CRLF.
    So ``written`` stays what was handed to the kernel, as nginx's
    ``$body_bytes_sent`` counts it, not what the client never got.
    """
    if response.head_only:
        return
    trailer = 2 if response.chunked else 0
    response.written -= min(max(unsent - trailer, 0), size)


def _frame(response: Response, data: bytes) -> bytes:
    response.written += len(data)
    if response.chunked:
        return b"%x\r\n%b\r\n" % (len(data), data) if data else b""
    if response.length is not None and response.written > response.length:
        if not response.sent:
            raise BadBody("the application sent more bytes than its Content-Length")
        log.error("the application sent more bytes than its Content-Length")
        raise AbortConnection
    return data


def _head(connection: Connection, request: Request, response: Response) -> bytes:
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
    if connection.uwsgi:
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
    worker = connection.worker
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


def _sendfile(
    connection: Connection, wrapper: FileWrapper, request: Request, response: Response
) -> bool:
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
    head = _head(connection, request, response)
    response.sent = True
    connection.sendall(head)
    if response.head_only or response.length is None:
        return True
    remaining = min(size, response.length)
    if connection.can_sendfile:
        _copy_sendfile(connection, fileno, offset, remaining, response)
    else:
        _copy_read(connection, fileno, offset, remaining, response)
    _finish(connection, response)
    return True


def _copy_sendfile(
    connection: Connection, fileno: int, offset: int, remaining: int, response: Response
) -> None:
    """The file's bytes from ``offset`` on, by the kernel (``os.sendfile``)."""
    connection.bound_waits()
    while remaining:  # not socket.sendfile(): on EAGAIN it would wait without a bound
        try:
            sent = os.sendfile(connection.fd, fileno, offset, min(remaining, SEND_BLOCK))
        except OSError as exc:  # including BlockingIOError: --timeout passed (SO_SNDTIMEO)
            raise ClientGone.from_error(exc, connection.timeout) from None
        if not sent:
            break  # the file shrank: _finish reports the short body
        offset += sent
        remaining -= sent
        response.written += sent


def _copy_read(
    connection: Connection, fileno: int, offset: int, remaining: int, response: Response
) -> None:
    """The same bytes read and sent (TLS: the kernel cannot encrypt them), block by block."""
    while remaining:
        block = os.pread(fileno, min(remaining, READ_BLOCK), offset)
        if not block:
            break  # the file shrank: _finish reports the short body
        try:
            connection.sendall(block)
        except ClientGone as exc:
            response.written += exc.sent
            raise
        offset += len(block)
        remaining -= len(block)
        response.written += len(block)
