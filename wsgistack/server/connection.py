"""One client connection: reading requests, calling the app, framing the response.

Rules (PEP 3333 and RFC 9112), in the order a request meets them:
- The selector thread reads the head without blocking; a worker thread gets
  the connection only once a whole head is parsed, so a slow client holds no
  thread while it dawdles over its headers.
- ``wsgi.input`` never reads past this request's body; ``100 Continue`` is
  sent only when the app first reads a body it was asked to wait for.
- Headers go out with the first non-empty body chunk (or ``write()``), in one
  send with it.  Length: the app's Content-Length, else computed for a list
  body, else chunked on HTTP/1.1, else the connection closes to end the body.
- ``start_response`` with ``exc_info`` replaces unsent headers and re-raises
  once they are sent; an app failing after that aborts the connection, so the
  client never mistakes half a body for a whole one.
- ``close()`` is always called on the app's result.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import time
from collections.abc import Callable, Iterable
from typing import Any

from .._types import WSGIApplication
from ..errors import ProtocolError
from .http import (
    BODY,
    END,
    HEAD,
    RequestHead,
    RequestParser,
    build_environ,
    check_response,
    error_response,
    http_date,
    response_head,
)

__all__ = ["Connection", "FileWrapper"]

log = logging.getLogger("wsgistack.server")
access_log = logging.getLogger("wsgistack.access")

RECV_SIZE = 65536
DRAIN_LIMIT = 1024 * 1024  # unread body bytes we skip to keep a connection alive
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
NO_BODY_STATUSES = ("1", "204", "304")


class FileWrapper:
    """``wsgi.file_wrapper``: a file the server may send with ``sendfile``."""

    def __init__(self, filelike: Any, blksize: int = 65536) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> Any:
        read = self.filelike.read
        while chunk := read(self.blksize):
            yield chunk


class ClientGone(Exception):
    """The client closed the connection or stopped reading."""


class InputStream:
    """``wsgi.input``: this request's body, decoded, never past its end."""

    def __init__(self, connection: Connection, head: RequestHead) -> None:
        self._connection = connection
        self._head = head
        self._buffer = b""
        self.done = False  # set when this message's END event is consumed, body or not
        has_body = head.chunked or bool(head.content_length)
        self._continue_pending = head.expect_continue and has_body

    def _more(self) -> bool:
        """Move the next body piece into the buffer; False at the end of the body."""
        if self.done:
            return False
        if self._continue_pending:
            self._continue_pending = False
            self._connection.send(CONTINUE)
        events = self._connection.parser.events
        while not events:
            self._connection.fill()
        kind, value = events[0]
        if kind == BODY:
            events.popleft()
            self._buffer += value
            return True
        if kind == END:
            events.popleft()
        self.done = True
        return False

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._more():
                pass
            data, self._buffer = self._buffer, b""
            return data
        while len(self._buffer) < size and self._more():
            pass
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        while b"\n" not in self._buffer and (size is None or size < 0 or len(self._buffer) < size):
            if not self._more():
                break
        end = self._buffer.find(b"\n") + 1 or len(self._buffer)
        if size is not None and size >= 0:
            end = min(end, size)
        data, self._buffer = self._buffer[:end], self._buffer[end:]
        return data

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> InputStream:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    @property
    def waiting_for_continue(self) -> bool:
        return self._continue_pending

    def drain(self, limit: int) -> bool:
        """Skip the unread rest of the body; False if more than ``limit`` bytes remain."""
        skipped = len(self._buffer)
        self._buffer = b""
        while skipped <= limit and self._more():
            skipped += len(self._buffer)
            self._buffer = b""
        return self.done


class Response:
    """The response side of one request: start_response, write, framing."""

    def __init__(self, connection: Connection, head: RequestHead, body: InputStream) -> None:
        self.connection = connection
        self.head = head
        self.body = body
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.headers_sent = False
        self.chunked = False
        self.close_after = not head.keep_alive
        self.length: int | None = None
        self.sent_bytes = 0
        self.is_head = head.method == "HEAD"
        self.known_length: int | None = None  # the body's length when the app gave a list

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response called a second time without exc_info")
        check_response(status, headers)
        self.status = status
        self.headers = headers
        self.length = None
        for name, value in headers:
            lower = name.lower()
            if lower == "content-length":
                if not value.strip().isdigit():
                    raise ValueError(f"bad Content-Length from the app: {value!r}")
                self.length = int(value)
            elif lower == "connection":
                self.close_after = True
        return self.write

    def _frame(self, known_length: int | None) -> bytes:
        """Choose the framing and return the head bytes (``known_length``: the body's size)."""
        if self.status is None:
            raise AssertionError("the app returned without calling start_response")
        extra = [f"Date: {http_date()}\r\nServer: wsgistack\r\n"]
        if self.status.startswith(NO_BODY_STATUSES):
            pass
        elif self.length is None and known_length is not None:
            self.length = known_length
            extra.append(f"Content-Length: {known_length}\r\n")
        elif self.length is None:
            if self.head.version == "1.1":
                self.chunked = not self.is_head
                if self.chunked:
                    extra.append("Transfer-Encoding: chunked\r\n")
            else:
                self.close_after = True  # HTTP/1.0 with no length: the close ends the body
        if self.body.waiting_for_continue:
            self.close_after = True  # the body may or may not follow: we cannot tell
        if self.close_after or self.connection.stopping:
            self.close_after = True
            if not any(name.lower() == "connection" for name, _ in self.headers):
                extra.append("Connection: close\r\n")
        elif self.head.version == "1.0":
            extra.append("Connection: keep-alive\r\n")
        self.headers_sent = True
        return response_head(self.head.version, self.status, self.headers, "".join(extra))

    def write(self, data: bytes) -> None:
        """Send a body chunk (the head first, with it); the ``write()`` callable too."""
        if not data:
            return
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"the app yielded {type(data).__name__}, not bytes")
        head = b"" if self.headers_sent else self._frame(self.known_length)
        if self.is_head:
            if head:
                self.connection.send(head)
            return
        if self.length is not None:
            room = self.length - self.sent_bytes
            if len(data) > room:
                log.error("the app sent more than its Content-Length; response truncated")
                data = data[:room]
                self.close_after = True
        self.sent_bytes += len(data)
        if self.chunked:
            self.connection.send(b"".join((head, b"%x\r\n" % len(data), data, b"\r\n")))
        else:
            self.connection.send(head + data if head else data)

    def finish(self) -> None:
        """End the response: the head if nothing was sent, the last chunk if chunked."""
        if not self.headers_sent:
            self.connection.send(self._frame(self.known_length or 0))
        elif self.chunked:
            self.connection.send(b"0\r\n\r\n")
        if self.length is not None and self.sent_bytes < self.length and not self.is_head:
            log.error("the app sent less than its Content-Length; closing the connection")
            self.close_after = True

    def send_file(self, wrapper: FileWrapper) -> bool:
        """Send a real file with sendfile; False if it is not one (iterate it instead)."""
        filelike = wrapper.filelike
        try:
            fileno = filelike.fileno()
            info = os.fstat(fileno)
            offset = filelike.tell()
        except (AttributeError, OSError, ValueError):
            return False
        if not stat.S_ISREG(info.st_mode):
            return False
        remaining = info.st_size - offset
        count = remaining if self.length is None else min(self.length, remaining)
        self.connection.send(self._frame(count))
        if not self.is_head and count > 0:
            if self.chunked:
                return False  # not reachable: a known length never chunks
            self.connection.sendfile(filelike, offset, count)
            self.sent_bytes += count
        return True


class Connection:
    """A client connection, owned by the selector thread or by one worker thread at a time."""

    def __init__(
        self,
        sock: socket.socket,
        peer: Any,
        base_environ: dict[str, Any],
        worker: Any,
    ) -> None:
        self.sock = sock
        self.worker = worker
        config = worker.config
        self.parser = RequestParser(worker.limits)
        self.base = base_environ.copy()
        if isinstance(peer, tuple) and peer:
            self.base["REMOTE_ADDR"] = str(peer[0])
            self.base["REMOTE_PORT"] = str(peer[1])
        else:
            self.base["REMOTE_ADDR"] = ""
            self.base["REMOTE_PORT"] = ""
        self.root_path = config.root_path
        self.timeout = config.timeout
        self.closed = False
        self.lingering = False  # refused: reading and dropping until the client closes
        self.deadline = 0.0
        self.partial = False  # bytes of a request head have arrived
        self.served = 0  # requests answered on this connection

    @property
    def stopping(self) -> bool:
        return self.worker.stopping

    # -- the selector side -----------------------------------------------------
    def receive(self) -> bool:
        """Read what is there without blocking; False when the peer closed."""
        try:
            data = self.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        if not data:
            return False
        self.partial = True
        self.parser.feed(data)  # ProtocolError goes to the caller, who refuses
        return True

    @property
    def ready(self) -> bool:
        """A whole request head is waiting."""
        return bool(self.parser.events) and self.parser.events[0][0] == HEAD

    def refuse(self, error: ProtocolError) -> None:
        """Answer a bad request with its status, then linger before closing.

        Closing with unread request bytes makes the kernel send a reset that
        can destroy the answer before the client reads it; so the write side
        is shut and what the client still sends is read and dropped (by the
        selector, without blocking) until it stops or the linger time ends.
        """
        log.info("refused %s: %s %s", self.base["REMOTE_ADDR"], error.status_hint, error)
        try:
            self.sock.settimeout(1.0)
            self.sock.sendall(error_response(error.status_hint))
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.setblocking(False)
        except OSError:
            self.close()
            return
        self.lingering = True

    def discard(self) -> bool:
        """While lingering: drop what arrives; False once the client has closed."""
        try:
            while self.sock.recv(RECV_SIZE):
                pass
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        return False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            self.sock.close()

    # -- the worker thread side ------------------------------------------------
    def fill(self) -> None:
        """Block (up to the timeout) for more request bytes."""
        try:
            data = self.sock.recv(RECV_SIZE)
        except TimeoutError:
            raise ProtocolError("client too slow sending the body", 408) from None
        except OSError as exc:
            raise ClientGone(str(exc)) from None
        if not data:
            raise ClientGone("client closed the connection mid-request")
        self.parser.feed(data)

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise ClientGone(str(exc)) from None

    def sendfile(self, filelike: Any, offset: int, count: int) -> None:
        try:
            self.sock.sendfile(filelike, offset, count)
        except OSError as exc:
            raise ClientGone(str(exc)) from None

    def serve(self, app: WSGIApplication) -> bool:
        """Answer every request already buffered; True to hand the connection back idle."""
        self.sock.settimeout(self.timeout)
        try:
            while self.ready and not self.closed:
                if not self._one(app):
                    if not self.lingering:
                        self.close()
                    return self.lingering
                if self.stopping:
                    self.close()
                    return False
        finally:
            if not self.closed:
                self.sock.setblocking(False)
        self.partial = bool(self.parser.events)
        return not self.closed

    def _one(self, app: WSGIApplication) -> bool:
        """One request/response exchange; False if the connection must close."""
        _, head = self.parser.events.popleft()
        started = time.time()
        environ = build_environ(head, self.base, self.root_path)
        body = InputStream(self, head)
        environ["wsgi.input"] = body
        response = Response(self, head, body)
        try:
            self._call(app, environ, response)
        except ClientGone:
            return False
        except ProtocolError as error:  # 408/413 while the app read the body
            if not response.headers_sent:
                self.refuse(error)
            return False
        finally:
            self.served += 1
            self.worker.count_request()
            if access_log.isEnabledFor(logging.INFO):
                _log_access(environ, response, started)
        if response.close_after:
            return False
        try:
            return body.done or body.drain(DRAIN_LIMIT)
        except (ClientGone, ProtocolError):
            return False

    def _call(self, app: WSGIApplication, environ: dict[str, Any], response: Response) -> None:
        try:
            result: Iterable[bytes] = app(environ, response.start_response)
        except (ClientGone, ProtocolError):
            raise
        except Exception:
            self._app_failed(environ, response)
            return
        try:
            if type(result) is FileWrapper and response.send_file(result):
                pass
            else:
                if isinstance(result, list | tuple):
                    # The whole body is known: send a Content-Length, not chunks.
                    response.known_length = sum(len(chunk) for chunk in result)
                for chunk in result:
                    response.write(chunk)
                response.finish()
        except (ClientGone, ProtocolError):
            raise
        except Exception:
            self._app_failed(environ, response)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("error closing the response of %s", environ["PATH_INFO"])

    def _app_failed(self, environ: dict[str, Any], response: Response) -> None:
        log.exception(
            "error in the app answering %s %s", environ["REQUEST_METHOD"], environ["PATH_INFO"]
        )
        if response.headers_sent:
            raise ClientGone("response aborted after its headers were sent")
        self.send(error_response(500, response.head.version))
        response.close_after = True
        response.status = response.status or "500 Internal Server Error"


def _log_access(environ: dict[str, Any], response: Response, started: float) -> None:
    """One line in the combined log format (Apache/nginx), to the wsgistack.access logger."""
    when = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(started))
    request = f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} {environ['SERVER_PROTOCOL']}"
    status = (response.status or "000")[:3]
    size = response.sent_bytes or "-"
    access_log.info(
        '%s - - [%s] "%s" %s %s "%s" "%s"',
        environ.get("REMOTE_ADDR") or "-",
        when,
        request,
        status,
        size,
        environ.get("HTTP_REFERER", "-"),
        environ.get("HTTP_USER_AGENT", "-"),
    )
