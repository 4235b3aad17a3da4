"""The sans-IO HTTP/1.1 request side: bytes in, requests out (responses: ``response.py``).

Nothing here touches a socket.  ``RequestParser.feed(data)`` runs the bytes
through llhttp (``httptools``) and queues complete request heads; body bytes
are kept per request.  Refusals are ``ProtocolError(status_hint)``.

    parser = RequestParser(limits)
    parser.feed(b"GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n")
    request = parser.next_request()

Rules (RFC 9112).  llhttp in its strict default mode already refuses CL+TE
together (section 6.1), duplicate or non-numeric Content-Length (6.3), bad chunk
sizes (7.1), obs-fold (5.2), bare LF/CR (2.2) and control characters in
headers (5.5).  We add: a missing or repeated Host (3.2), a transfer coding
other than ``chunked`` (501, naming it, 6.1), Transfer-Encoding in HTTP/1.0
(6.1), versions other than 1.0/1.1 (505), a protocol name other than ``HTTP``
(400: llhttp also reads RTSP and ICE, see ``requestline.py``), CONNECT (501), a
method llhttp does not know or knows only for RTSP (501; a malformed one 400:
``method.py``), a ``*`` target
other than OPTIONS' (400, 3.2.4), an absolute-form target whose scheme is not
http or https (400, RFC 9110 4.2), an Expect other than
100-continue (417, RFC 9110 10.1.1; an empty list expects nothing), an Upgrade
with a body (400) and the size limits (414, 431, 413; a trailer section counts
against the header limit, and so does each chunk-size line with its
extensions, 413, RFC 9112 7.1.1).  What a Host value and an absolute-form
target may be is ``target.py``'s; what an llhttp error or a transfer coding
is answered with, ``malformed.py``'s; the ``Limits``, ``Request`` and queue
that the uwsgi parser shares, ``request.py``'s.
"""

from __future__ import annotations

from typing import Any

import httptools

from ..errors import ProtocolError
from .malformed import classify, transfer_coding_refusal, uwsgi_on_http_bind
from .method import failing_message, method_refusal
from .request import Limits, Request, RequestQueue, body_too_large
from .requestline import SPACES_AND_VERSION, ends_request_line, line_too_long, other_protocol
from .target import absolute_form, valid_host

__all__ = ["RequestParser"]


class RequestParser(RequestQueue):
    """Feed bytes; take complete request heads in order (pipelining keeps order)."""

    def __init__(self, limits: Limits) -> None:
        super().__init__()
        self.limits = limits
        self._parser = httptools.HttpRequestParser(self)
        self._current: Request | None = None
        self._in_head = False
        #: A head or a trailer section is arriving: httptools buffers its bytes.
        self._open = False
        #: ... and it began inside the data being fed (see _bound_open).
        self._open_fresh = False
        #: ... and it is a chunk-size line (llhttp skips its extensions unbuffered).
        self._size_line = False
        self._open_bytes = 0
        #: The piece of data being parsed (see feed).
        self._piece: bytes | memoryview = b""
        #: The earlier pieces of a head still arriving: its request line may be there.
        self._held: bytearray | None = None
        #: Where in the piece the search for the next request line starts.
        self._seen = 0
        self._header_bytes = 0
        self._hosts = 0
        self._te: bytes | None = None
        self._callback_error: ProtocolError | None = None
        #: httptools takes no more bytes: a request that upgraded ended them, or
        #: the request line of a method it refused is still arriving (``_line``).
        self._halted = False
        #: The bytes since the parser was last between messages, when a feed ended
        #: inside a method that llhttp may yet refuse (see method.py).
        self._replay: bytes | None = None
        self._line: bytes | None = None

    # -- the public side ---------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Parse ``data``; a protocol error is recorded in ``self.error`` (never raised)."""
        step = self.limits.max_header_size
        if len(data) <= step:
            self._feed(data)
            return
        # llhttp skips chunk extensions unreported, so a chunk-size line that began
        # and ended inside one piece is never measured: in pieces no longer than the
        # limit, any line longer than it spans pieces, and is (see on_chunk_header).
        view = memoryview(data)
        for start in range(0, len(data), step):
            self._feed(view[start : start + step])

    def _feed(self, data: bytes | memoryview) -> None:
        if self.error is not None or self._halted:
            if self._line is not None and self.error is None:
                self._read_line(self._line + data)
            return
        idle = self._current is None  # between messages: a fresh parser would read data alike
        replay = self._replay
        if replay is not None:
            self._replay = None
        self._piece = data
        self._seen = 0
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse_upgrade()
        except httptools.HttpParserError as exc:
            error = self._callback_error or classify(exc, self._parser)
            if data[:1] == b"\x00" and self._current is not None and not self._current.url:
                error = uwsgi_on_http_bind()  # no HTTP message begins with a NUL byte
            elif isinstance(exc, httptools.HttpParserInvalidMethodError) and (idle or replay):
                # Unless it began after a request that began in an earlier feed (not
                # kept): where is not known, so neither is its method (400).
                self._halted = True
                self._read_line(failing_message((replay or b"") + bytes(data)))
                return
            self._fail(error)
            return
        if self._open:
            data = bytes(data)
            current = self._current
            if self._in_head and current is not None and not current.url:
                # It ended inside a method llhttp may yet refuse: keep the bytes since
                # the parser was between messages (none if unknown; a head at most).
                kept = data if idle else replay and replay + data
                if kept and len(kept) <= self.limits.max_request_line + self.limits.max_header_size:
                    self._replay = kept
            self._bound_open(data)

    @property
    def mid_request(self) -> bool:
        """True when some bytes of a request head have arrived (for the 408 decision)."""
        return self._in_head

    # -- httptools callbacks -----------------------------------------------------------
    def on_message_begin(self) -> None:
        self._current = Request()
        self._in_head = self._open = self._open_fresh = True
        self._header_bytes = 0
        self._hosts = 0
        self._te = None

    def on_url(self, url: bytes) -> None:
        request = self._current
        assert request is not None
        request.url += url
        line = len(self._parser.get_method()) + len(request.url) + SPACES_AND_VERSION
        if line > self.limits.max_request_line:
            raise self._refusal(line_too_long(self.limits.max_request_line), 414)

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self._current
        if request is None or not self._in_head:
            # A trailer field of a chunked body: dropped (RFC 9112 7.1.2 allows it).
            size = len(name) + len(value) + 4
            if self._open_fresh:
                self._open_bytes += size  # see _bound_open
            # The fields as reported, too: a section that ends inside the data it
            # began in is past _bound_open's reach.
            self._header_bytes += size
            if self._header_bytes > self.limits.max_header_size:
                raise self._refusal(self._over_header_size("trailer section"), 431)
            return
        self._header_bytes += len(name) + len(value) + 4
        # RFC 9112 5: llhttp strips only the leading OWS.  It refuses the other
        # control bytes, so a last byte <= 32 is SP or HTAB (an int compare is cheapest).
        raw = value  # as llhttp read it, for its Transfer-Encoding framing
        if value and value[-1] <= 32:
            value = value.rstrip(b" \t")
        headers = request.headers
        headers.append((name, value))
        if len(headers) > self.limits.max_headers:
            raise self._refusal(
                f"more than --max-headers ({self.limits.max_headers}) header fields", 431
            )
        if self._header_bytes > self.limits.max_header_size:
            raise self._refusal(self._over_header_size("header fields"), 431)
        lower = name.lower()
        if lower == b"host":
            self._hosts += 1
            if not valid_host(value):
                raise self._refusal("invalid Host header", 400)
        elif lower == b"transfer-encoding":
            self._te = raw if self._te is None else self._te + b"," + raw
        elif lower == b"content-length":
            request.content_length = int(value)  # llhttp already refused bad or repeated ones
        elif lower == b"connection" and b"close" in value.lower():
            # RFC 9112 9.6: a "close" option ends the connection after this response,
            # whatever else is listed; llhttp lets an HTTP/1.0 "keep-alive" outrank it.
            if b"close" in (item.strip(b" \t") for item in value.lower().split(b",")):
                request.keep_alive = False
        elif lower == b"expect":
            expectations = value.lower()
            if expectations != b"100-continue":
                # RFC 9110 10.1.1: Expect is a list, and an empty element (or an empty
                # field) expects nothing (5.6.1); any other expectation is unmet.
                listed = {item.strip(b" \t") for item in expectations.split(b",")} - {b""}
                if listed - {b"100-continue"}:
                    request.expect_other = True
                    return
                if not listed:
                    return
            # RFC 9110 10.1.1: a server ignores 100-continue from an HTTP/1.0 client.
            request.expect_continue = self._parser.get_http_version() == "1.1"

    def on_headers_complete(self) -> None:
        request = self._current
        assert request is not None
        parser = self._parser
        method = parser.get_method().decode("ascii")
        request.version = version = parser.get_http_version()
        request.keep_alive = request.keep_alive and parser.should_keep_alive()
        self._in_head = self._open = False
        # llhttp also reads "RTSP/" and "ICE/" where "HTTP/" belongs, and keeps no
        # name: the request line is found in the bytes, from after the last one
        # found in this piece (pipelined requests), so the search is short.
        head: bytes | bytearray | memoryview = self._piece
        if type(head) is not bytes:  # a slice of a large read (see feed): once per piece
            head = self._piece = bytes(head)
        seen, held = self._seen, self._held
        if held is not None:  # the head began in an earlier read
            head, self._held, seen = held + head, None, 0
        at = head.find(b" " + request.url + b" HTTP/", seen)
        if at >= 0:
            self._seen = at + 1 if held is None else max(at + 1 - len(held), 0)
        elif (name := other_protocol(head, request.url)) is not None:
            # RFC 9112 2.3: the name is "HTTP", case-sensitive; nginx answers 400.
            raise self._refusal(f"{name}/{version} is not HTTP", 400)
        # Set once the head is known to be HTTP: a refusal from here on is logged
        # with its request line (refused_line), as nginx logs its 413s and 501s.
        request.method = method
        if version not in ("1.1", "1.0"):
            raise self._refusal(f"HTTP/{version} is not supported", 505)
        if self._hosts > 1 or (self._hosts == 0 and version == "1.1"):
            # RFC 9112 3.2: a 1.1 request without Host, or with several, gets 400.
            raise self._refusal("exactly one Host header is required", 400)
        if request.method == "CONNECT":
            # A WSGI app cannot tunnel: CONNECT is a method we do not implement.
            raise self._refusal("CONNECT is not supported", 501)
        if request.url == b"*":
            if request.method != "OPTIONS":
                # RFC 9112 3.2.4: the asterisk-form is only for a server-wide OPTIONS;
                # an app would take "GET *" (PATH_INFO "") for "GET /".
                raise self._refusal("the request target * is only for OPTIONS", 400)
        elif request.url[:1] != b"/":
            try:
                request.target = absolute_form(request.url)  # RFC 9112 3.2.2
            except ProtocolError as exc:
                raise self._refusal(str(exc), exc.status_hint) from None
        if request.expect_other:
            # RFC 9110 10.1.1: an expectation other than 100-continue may get 417.
            raise self._refusal("only the 100-continue expectation is supported", 417)
        if self._te is not None:
            if version == "1.0":
                # RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
                raise self._refusal("Transfer-Encoding in an HTTP/1.0 request", 400)
            refused = transfer_coding_refusal(self._te)
            if refused is not None:
                raise self._refusal(refused, 501)
            request.chunked = True
            self._open_size_line()
        length = request.content_length
        if length is not None and length > self.limits.max_body_size:
            raise self._refusal(body_too_large(self.limits.max_body_size, str(length)), 413)
        self._queue(request)

    def on_body(self, body: bytes) -> None:
        request = self._current
        assert request is not None
        request.body_size += len(body)
        if request.body_size > self.limits.max_body_size:  # chunked: no length declared
            raise self._refusal(body_too_large(self.limits.max_body_size), 413)
        request.body.append(body)
        self._open = False  # chunk data: the chunk header before it was not the last

    def on_chunk_header(self) -> None:
        if self._size_line and not self._open_fresh:
            # The size line began in an earlier piece, where _bound_open counted
            # its bytes; it ends at the first LF of this one.
            line = self._open_bytes + bytes(self._piece).find(b"\n") + 1
            if line > self.limits.max_header_size:
                raise self._refusal("chunk-size line too long", 413)  # see _bound_open
        self._header_bytes = 0  # a trailer section may follow: counted in on_header
        # Data follows, or (after the last chunk) a trailer section that httptools
        # buffers whole: watch it like a head until on_body says otherwise.
        self._open = self._open_fresh = True
        self._size_line = False
        self._open_bytes = 0

    def on_chunk_complete(self) -> None:
        self._open_size_line()

    def on_message_complete(self) -> None:
        request = self._current
        assert request is not None
        request.complete = True
        self._current = None
        self._open = False

    # -- helpers -----------------------------------------------------------------------
    def _refusal(self, message: str, status: int) -> ProtocolError:
        """Record a refusal raised in a callback (httptools reports its own error)."""
        self._callback_error = ProtocolError(message, status)
        return self._callback_error

    def _read_line(self, message: bytes) -> None:
        """Refuse a message whose method llhttp refused, once its request line tells how."""
        error = method_refusal(message, self.limits.max_request_line)
        if error is None:
            self._line = message  # bounded: method_refusal answers 414 past the limit
        else:
            self._line = None
            self._fail(error)

    def _open_size_line(self) -> None:
        # The next chunk-size line starts.  llhttp parses its extensions without
        # reporting them, so a line that never ends (extensions, or leading zeros)
        # would hold the connection for ever: watch it like a trailer section.
        self._open = self._open_fresh = self._size_line = True
        self._open_bytes = 0

    def _bound_open(self, data: bytes) -> None:
        """Refuse a head, trailer section or chunk-size line that grows past its limit.

        httptools buffers an unfinished field whole, so the bytes of an open
        section are counted as they arrive: all of any later data, but of the
        data it began in only what is surely its own, as that data may also hold
        the requests before it: the lines the callbacks saw, plus the line still
        open after them once its request line has ended.  What goes uncounted
        is at most the request line still arriving, which ``on_url`` bounds.
        """
        if self._in_head:  # on_headers_complete looks for its request line here too
            if self._held is None:
                self._held = bytearray()
            self._held += data
        if self._open_fresh:
            self._open_fresh = False
            open_line = len(data) - 1 - data.rfind(b"\n")
            if not self._in_head:
                self._open_bytes += open_line  # the line before it ended inside data
            else:
                url = self._current.url if self._current else b""
                self._open_bytes = len(url) + self._header_bytes
                # With no field line yet, the last line end may be an earlier
                # request's: the open line is ours once our request line has ended.
                if self._header_bytes or ends_request_line(data, url):
                    self._open_bytes += open_line
        else:
            self._open_bytes += len(data)
        limits = self.limits
        if self._in_head:
            if self._open_bytes > limits.max_request_line + limits.max_header_size:
                # RFC 9110 15.5.15/RFC 6585 5: a head that never ends is refused by size.
                if self._current and self._current.url:
                    limit = limits.max_request_line + limits.max_header_size
                    what = "--max-request-line + --max-header-size"
                    self._fail(
                        ProtocolError(f"request head larger than {what} ({limit} bytes)", 431)
                    )
                else:  # its request line has not ended
                    self._fail(ProtocolError(line_too_long(limits.max_request_line), 414))
        elif self._open_bytes > limits.max_header_size:
            if self._size_line:
                # RFC 9112 7.1.1: a server ought to limit chunk extensions and answer
                # with a 4xx; 413 as Node.js does (its limit is 16 KiB, as ours).
                self._fail(ProtocolError("chunk-size line too long", 413))
            else:
                # RFC 9112 7.1.2: trailer fields are header fields; the same limit holds.
                self._fail(ProtocolError(self._over_header_size("trailer section"), 431))

    def _over_header_size(self, what: str) -> str:
        """A 431's reason, naming the limit, as the 414's and 413's do (``line_too_long``)."""
        return f"{what} larger than --max-header-size ({self.limits.max_header_size} bytes)"

    def refused_line(self, peer: Any, request: Request | None = None) -> tuple[Any, str]:
        """The client and request line to log for a refusal (413, say).

        ``request`` is the refused one when it was already queued; otherwise
        it is the one being parsed.  Its line is known once the head was read
        as HTTP (a body over ``--max-body-size``, an unsupported coding);
        before that (a bad or too long head) it is ``""``, logged as ``-``.
        """
        if request is None:
            request = self._current
        if request is None or not request.method:
            return peer, ""
        return peer, f"{request.method} {request.url.decode('latin-1')} HTTP/{request.version}"

    @property
    def refusing_head(self) -> bool:
        # Its URL parsed, its method did (it comes first), even if the head then failed.
        current = self._current
        return current is not None and bool(current.url) and self._parser.get_method() == b"HEAD"

    def _fail(self, error: ProtocolError) -> None:
        self.error = error
        if self._current is not None:
            self._current.error = error  # its body is broken: its reader raises this

    def _refuse_upgrade(self) -> None:
        # We do not switch protocols: a request that asked to upgrade is answered
        # as plain HTTP (RFC 9110 7.8 lets a server ignore Upgrade), then closed.
        # llhttp ends the message at its head, so a body would be left unparsed:
        # such a request is refused before the app sees it (it is still queued,
        # as httptools completed it in this same feed).
        request = self._pending[-1] if self._pending else None
        if request is None or request.content_length or request.chunked:
            self.error = ProtocolError("upgrade with a request body", 400)
            if request is not None:
                request.error = self.error
            return
        request.keep_alive = False  # answered, then closed: no bytes after it are parsed
        request.complete = True
        self._current = None
        self._halted = True
