"""A lean HTTP/1.1 client for forwarding: raw sockets, httptools' response parser.

Strategy: the request head goes out in one send; the body streams from
``wsgi.input`` in blocks (Content-Length as given, or chunked, terminated).
The response head is parsed, then the body is yielded as it arrives, never
buffered whole.  A connection returns to its upstream's pool only when the
exchange ended cleanly and both sides allow keep-alive; anything else
(an early close by the client, an error) closes it.
"""

from __future__ import annotations

import re
import select
import socket
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import httptools

from ...iotext import broke_while
from ...requestbody import BLOCK, ClientBodyError, read_body

__all__ = [
    "UPSTREAM",
    "BadRequestHead",
    "Exchange",
    "ReadTimeout",
    "UpstreamClosed",
    "readable",
    "request_head",
    "send_request",
]

#: The largest response head, interim 1xx heads included: past it the answer is a
#: 502, never memory without bound (nginx's proxy_buffer_size is 4 or 8 KiB).
MAX_HEAD = 65536
#: Who broke a connection, in the log lines (as the server says "the client").
UPSTREAM = "the upstream"
_PHRASES = {status.value: status.phrase for status in HTTPStatus}
#: RFC 9112 4: reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ); llhttp lets the rest in.
_REASON_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class UpstreamClosed(Exception):
    """The upstream's connection ended; ``started``: response bytes had arrived.

    ``closed``: the upstream closed or reset it; False when it sent what this
    hop could not take (a bad chunk, an unasked 101, a head too large) and the
    connection is dropped here.
    """

    def __init__(self, message: str, started: bool, *, closed: bool = True) -> None:
        super().__init__(message)
        self.started = started
        self.closed = closed


class ReadTimeout(Exception):
    """The upstream sent nothing within the read timeout; ``doing``: while reading what.

    The reader knows the part it waited for; the caller knows the timeout's
    name and value, so it words the line.
    """

    def __init__(self, doing: str) -> None:
        super().__init__(f"{UPSTREAM} timed out {doing}")
        self.doing = doing


class _Excess(Exception):
    """Raised inside the parser to stop it at bytes that follow the whole response."""


class _Refused(Exception):
    """Raised inside the parser at a response this hop must not pass on."""


class Exchange:
    """The upstream's response: status, headers, and a body to iterate once."""

    def __init__(self, sock: socket.socket, head_only: bool) -> None:
        self.sock = sock
        self.head_only = head_only
        self.status = ""
        self.headers: list[tuple[str, str]] = []
        self.keep_alive = False
        self.complete = False
        self._reason = b""
        self._chunks: list[bytes] = []
        self._headers_done = False
        self._interim = False
        self._parser = httptools.HttpResponseParser(self)
        self.received = False  # any byte of an answer yet
        self._head_size = 0

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self.complete:
            raise _Excess  # a message after the whole response: the upstream said too much
        # The final response, or the one after an interim 1xx: start it afresh.
        self.headers = []
        self._reason = b""

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._headers_done:
            # A trailer field (after a chunked body): WSGI cannot send one, and
            # made a header it would claim what the head did not (RFC 9110 §6.5.1).
            return
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        code = self._parser.get_status_code()
        if code < 200 or code > 599:  # (one comparison more for the usual answer)
            if code < 100 or code > 599:
                # No status (RFC 9110 §15): taken for a 1xx it would leave the client
                # waiting for an answer to come; passed on, no server could send it.
                raise _Refused(f"a status outside 100-599: {code:03d}")
            # 100 Continue, 103 Early Hints: WSGI has no way to pass an interim
            # response on (RFC 9110 §15.2), so it is skipped; the final one follows.
            self._interim = True
            return
        codings = [value for name, value in self.headers if name.lower() == "transfer-encoding"]
        if codings and ",".join(codings).strip().lower() != "chunked":
            # Transfer-Encoding is hop-by-hop, so a coding other than chunked would
            # reach the client undone and unnamed (gzip bytes, no Content-Encoding);
            # without chunked last the close ends the body (RFC 9112 §6.3). nginx: 502.
            raise _Refused(f"a Transfer-Encoding other than chunked: {', '.join(codings)}")
        if not self._reason.isalpha() and _REASON_CONTROL.search(self._reason):
            # No server may send it on (the reference server's answer was a 500);
            # isalpha first: "OK", the usual reason, costs no regex.
            raise _Refused(f"a control byte in the reason phrase: {self._reason!r}")
        self._headers_done = True
        # The reason phrase may be empty (RFC 9112 §4); WSGI wants one, so the usual.
        reason = self._reason.decode("latin-1") or _PHRASES.get(code, "Unknown")
        self.status = f"{code} {reason}"
        # Chunked in an HTTP/1.0 answer is faulty framing: pass it on, then close
        # the connection (RFC 9112 6.1), whatever its keep-alive said.
        self.keep_alive = self._parser.should_keep_alive() and not (
            codings and self._parser.get_http_version() == "1.0"
        )
        if self.head_only:
            self.complete = True  # a HEAD's answer has no body, whatever it announces

    def on_body(self, body: bytes) -> None:
        if self.complete:  # a body for a HEAD: not the client's, and the connection is spoilt
            self.keep_alive = False
            return
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self.complete = True

    def _feed(self) -> None:
        try:
            # While in the head, no more than it may still take: its bound is exact.
            data = self.sock.recv(BLOCK if self._headers_done else MAX_HEAD - self._head_size)
        except (TimeoutError, BlockingIOError):  # BlockingIOError: SO_RCVTIMEO expired
            raise ReadTimeout(self._doing()) from None
        except OSError as exc:  # (a TLS alert: a TLS 1.3 server refusing our certificate)
            raise UpstreamClosed(broke_while(exc, UPSTREAM, self._doing()), self.received) from None
        if not data:
            if self._headers_done and not self.complete and not self._framed():
                self.complete = True  # a body delimited by the close (RFC 9112 §6.3 item 8)
                self.keep_alive = False
                return
            if not self.complete:
                doing = self._doing() if self.received else "before the response head"
                raise UpstreamClosed(f"{UPSTREAM} closed the connection {doing}", self.received)
            return
        self.received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.complete:  # bytes after the whole response: answer it, never pool
                self.keep_alive = False
                return
            reason = exc.__context__ if isinstance(exc.__context__, _Refused) else exc
            raise UpstreamClosed(
                f"bad response from the upstream: {reason}", True, closed=False
            ) from None
        except httptools.HttpParserUpgrade:
            # 101 Switching Protocols, though no Upgrade went out (it is hop-by-hop):
            # what follows is not HTTP, so there is no answer to pass on.
            raise UpstreamClosed(
                "the upstream switched protocols unasked (101)", True, closed=False
            ) from None
        if not self._headers_done:  # every byte so far was head, and it goes on
            self._head_size += len(data)
            if self._head_size >= MAX_HEAD:
                raise UpstreamClosed(f"a response head over {MAX_HEAD} bytes", True, closed=False)

    def _doing(self) -> str:
        """What a read that failed now was for, as nginx's lines say it."""
        return "while reading the body" if self._headers_done else "while reading the response head"

    def _framed(self) -> bool:
        """True if the response said where its body ends (else the close ends it)."""
        return any(
            name.lower() in ("content-length", "transfer-encoding") for name, _ in self.headers
        )

    def read_head(self) -> None:
        """Read up to the final response's head (interim 1xx ones are skipped)."""
        while not self._headers_done:
            self._feed()

    def read_early_head(self) -> bool:
        """After the request failed to go out whole: True if the upstream had answered.

        An upstream may answer before it reads the whole body (413, 401) and
        close (RFC 9112 §9.6), or stop reading; the send then fails, yet the
        answer is waiting and is the client's, as with nginx.  The request was
        cut short, so the connection is never pooled.
        """
        if not readable(self.sock):
            return False
        try:
            self.read_head()
        except (UpstreamClosed, ReadTimeout):
            return False
        self.keep_alive = False
        return True

    def take_body(self) -> list[bytes]:
        """The body of a complete exchange, all of it already received."""
        chunks, self._chunks = self._chunks, []
        return chunks

    def body(self) -> Iterator[bytes]:
        while True:
            if self._chunks:
                chunks, self._chunks = self._chunks, []
                yield from chunks
            if self.complete:
                return
            self._feed()


def readable(sock: socket.socket) -> bool:
    """True if a receive on ``sock`` would not wait: bytes, an end of stream or a reset.

    One poll(2) with no wait, on a poll object of its own (a shared one is not
    thread-safe).
    """
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class BadRequestHead(ValueError):
    """The request head would not go out as one HTTP message: a 400, never sent."""


#: RFC 9112 5.2: obs-fold, a line break followed by SP or HTAB inside a field value.
_OBS_FOLD = re.compile(r"\r?\n[ \t]+")
#: RFC 9112 3: request-line = method SP request-target SP HTTP-version.
_REQUEST_LINE = re.compile(r"[^\x00-\x20\x7f]+ [^\x00-\x20\x7f]+ HTTP/1\.1\Z")
#: What no line of a head may hold besides its own CRLF end (RFC 9112 2.2, 5.5).
_BREAK = re.compile(r"[\r\n\x00]")


def request_head(
    method: str, target: str, headers: list[tuple[str, str]], length: int | None, chunked: bool
) -> bytes:
    """The request head for the upstream, framed by ``length`` (or chunked) alone.

    The server in front decides what its environ holds: one that keeps an
    obs-fold in a value (wsgiref, so Django's runserver, keeps ``"a\\r\\n b"``)
    would have ``X: a`` then `` Transfer-Encoding: chunked`` read by a lenient
    upstream as a line of its own, framing the body its way (request
    smuggling).  So, as RFC 9112 5.2 asks of a proxy, each obs-fold becomes
    one SP, and a head with any other CR, LF or NUL in a line, or a request
    line with whitespace or a control byte in a word, raises BadRequestHead
    (nginx answers 400 to both).
    """
    try:
        lines = [f"{method} {target} HTTP/1.1", *map(": ".join, headers)]
    except TypeError:
        # A value that is no str (an outer layer's int in an HTTP_ key, against
        # PEP 3333) goes as str() spells it, as it always did: not a 500.
        lines = [f"{method} {target} HTTP/1.1", *(f"{name}: {value}" for name, value in headers)]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    elif chunked:
        lines.append("Transfer-Encoding: chunked")
    lines.append("\r\n")  # joined on, it ends the last line and the head
    head = "\r\n".join(lines)
    # Every CR and LF is a line end of ours (one of each per line) and no NUL is
    # in: three scans in C, so the usual head costs no look at each value.
    if head.count("\n") != len(lines) or head.count("\r") != len(lines) or "\x00" in head:
        lines[1:-1] = [_OBS_FOLD.sub(" ", line) for line in lines[1:-1]]
        if any(_BREAK.search(line) for line in lines[:-1]):
            raise BadRequestHead("a line break or NUL inside the request line or a header")
        head = "\r\n".join(lines)
    if not _REQUEST_LINE.match(lines[0]):
        # RFC 9112 3: one SP between method, target and version, no other
        # whitespace or control byte (a query's space would move the version).
        raise BadRequestHead(f"a malformed request line: {lines[0]!r}")
    return head.encode("latin-1")


def send_request(
    sock: socket.socket, head: bytes, body: Any, length: int | None, chunked: bool
) -> None:
    """Send ``head`` (``request_head``'s), then stream the body (``length`` bytes, or chunked).

    A failure to read ``body`` raises ClientBodyError, so the caller never
    blames the upstream for it; a failure to send raises OSError.
    """
    sock.sendall(head)
    if length:
        remaining = length
        while remaining > 0:
            block = read_body(body, min(BLOCK, remaining))
            if not block:
                raise ClientBodyError("the client sent less than its Content-Length")
            sock.sendall(block)
            remaining -= len(block)
    elif chunked:
        while block := read_body(body, BLOCK):
            sock.sendall(b"%x\r\n%s\r\n" % (len(block), block))
        sock.sendall(b"0\r\n\r\n")
