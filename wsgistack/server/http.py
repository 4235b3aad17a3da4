"""HTTP/1.x without sockets: bytes in, request events out; response heads out as bytes.

Strategy: ``httptools`` (llhttp, the parser of Node.js) does the RFC 9112
grammar and already refuses the classic smuggling shapes: Content-Length
with Transfer-Encoding (§6.1), duplicate or non-numeric Content-Length
(§6.3), obs-fold (§5.2), bare CR or LF (§2.2), control characters in fields
and bad chunk sizes (§7.1).  This module adds what llhttp leaves to the
server: limits with their own statuses (414, 431, 413), transfer codings we
do not implement (501), versions other than 1.0 and 1.1 (505), chunked over
HTTP/1.0 and Host rules (§3.2: exactly one Host on HTTP/1.1).  Every refusal
is a :class:`~wsgistack.errors.ProtocolError` carrying its status.

    parser = RequestParser(limits)
    parser.feed(data)               # may raise ProtocolError
    while parser.events: kind, value = parser.events.popleft()
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote_to_bytes

import httptools

from ..errors import ProtocolError

__all__ = [
    "BODY",
    "END",
    "HEAD",
    "Limits",
    "RequestHead",
    "RequestParser",
    "build_environ",
    "check_response",
    "error_response",
    "http_date",
    "response_head",
]

HEAD, BODY, END = "head", "body", "end"

# RFC 9110 §7.6.1: connection-specific fields an application must not set.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    417: "Expectation Failed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    505: "HTTP Version Not Supported",
}


@dataclass(frozen=True)
class Limits:
    max_request_line: int = 8190
    max_header_count: int = 100
    max_header_size: int = 65536
    max_body_size: int = 1024**3


@dataclass
class RequestHead:
    """A parsed request head; ``headers`` are raw (name, value) byte pairs."""

    method: str
    target: bytes
    version: str
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool
    content_length: int | None
    chunked: bool
    expect_continue: bool
    upgrade: bool


class RequestParser:
    """Feeds bytes to llhttp and queues (kind, value) events: head, body, end."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.events: deque[tuple[str, Any]] = deque()
        self._parser = httptools.HttpRequestParser(self)
        self._error: ProtocolError | None = None
        self._in_head = False
        self._head_bytes = 0
        self._reset()

    def _reset(self) -> None:
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._body_bytes = 0

    # -- llhttp callbacks: record, never raise (llhttp would wrap the exception) --
    def on_message_begin(self) -> None:
        self._reset()
        self._in_head = True
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.limits.max_request_line:
            self._fail(414, "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        self._header_bytes += len(name) + len(value) + 4
        if len(self._headers) > self.limits.max_header_count:
            self._fail(431, "too many header fields")
        elif self._header_bytes > self.limits.max_header_size:
            self._fail(431, "header fields too large")

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._error is None:
            try:
                self.events.append((HEAD, self._head()))
            except ProtocolError as error:
                self._error = error

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.limits.max_body_size:
            self._fail(413, "request body too large")
        elif self._error is None:
            self.events.append((BODY, body))

    def on_message_complete(self) -> None:
        if self._error is None:
            self.events.append((END, None))

    def _fail(self, status: int, message: str) -> None:
        if self._error is None:
            self._error = ProtocolError(message, status)

    # -------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Parse ``data``; raises ProtocolError (with its status) on a bad request."""
        if self._error is not None:
            raise self._error
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Upgrade/CONNECT: we speak only HTTP/1.x; the head was queued (or refused).
            if self._error is None and not self.events:
                self._error = ProtocolError("upgrade not supported", 501)
        except httptools.HttpParserError as exc:
            if self._error is None:
                self._error = self._classify(exc)
        if self._error is not None:
            raise self._error
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_size + self.limits.max_request_line:
                self._fail(431, "request head too large")
                raise self._error  # type: ignore[misc]

    def _classify(self, exc: Exception) -> ProtocolError:
        text = str(exc)
        codings = [
            coding.strip().lower()
            for name, value in self._headers
            if name.lower() == b"transfer-encoding"
            for coding in value.split(b",")
        ]
        if any(coding != b"chunked" for coding in codings):
            # RFC 9112 §6.1: a coding we do not implement is 501, not a syntax error
            # (chunked applied twice is simply malformed: 400 below).
            return ProtocolError(f"unsupported transfer coding ({text})", 501)
        if "HTTP version" in text:
            return ProtocolError(text, 505)
        return ProtocolError(text or type(exc).__name__, 400)

    def _head(self) -> RequestHead:
        parser = self._parser
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise ProtocolError(f"HTTP/{version} is not supported", 505)
        method = parser.get_method().decode("ascii")
        if method == "CONNECT":
            raise ProtocolError("CONNECT is not supported", 501)
        hosts = 0
        length: int | None = None
        chunked = expect = upgrade = False
        for name, value in self._headers:
            lower = name.lower()
            if lower == b"host":
                hosts += 1
            elif lower == b"content-length":
                length = int(value)
            elif lower == b"transfer-encoding":
                if value.strip().lower() != b"chunked":
                    raise ProtocolError(f"unsupported transfer coding {value!r}", 501)
                if version == "1.0":  # RFC 9112 §6.1: chunked is not defined for 1.0
                    raise ProtocolError("chunked transfer coding over HTTP/1.0", 400)
                chunked = True
            elif lower == b"expect":
                if value.strip().lower() != b"100-continue":
                    raise ProtocolError(f"unsupported expectation {value!r}", 417)
                expect = version == "1.1"
            elif lower == b"upgrade":
                upgrade = True
        if hosts > 1 or (hosts == 0 and version == "1.1"):
            raise ProtocolError("HTTP/1.1 needs exactly one Host header (RFC 9112 §3.2)", 400)
        if length is not None and length > self.limits.max_body_size:
            raise ProtocolError("request body too large", 413)
        return RequestHead(
            method=method,
            target=self._url,
            version=version,
            headers=self._headers,
            keep_alive=parser.should_keep_alive() and not upgrade,
            content_length=length,
            chunked=chunked,
            expect_continue=expect,
            upgrade=upgrade,
        )


def build_environ(head: RequestHead, base: dict[str, Any], root_path: str) -> dict[str, Any]:
    """The PEP 3333 environ for ``head``, on top of the per-listener ``base``."""
    environ = base.copy()
    target = head.target
    if target.startswith((b"http://", b"https://")):  # absolute-form (RFC 9112 §3.2.2)
        slash = target.find(b"/", target.find(b"//") + 2)
        target = target[slash:] if slash != -1 else b"/"
    path, _, query = target.partition(b"?")
    path_info = unquote_to_bytes(path).decode("latin-1")
    if root_path and (path_info == root_path or path_info.startswith(root_path + "/")):
        path_info = path_info[len(root_path) :]
    environ["REQUEST_METHOD"] = head.method
    environ["SCRIPT_NAME"] = root_path
    environ["PATH_INFO"] = path_info
    environ["QUERY_STRING"] = query.decode("latin-1")
    environ["RAW_URI"] = head.target.decode("latin-1")
    environ["SERVER_PROTOCOL"] = "HTTP/" + head.version
    for raw_name, raw_value in head.headers:
        name = raw_name.decode("latin-1")
        if "_" in name:
            continue  # X_Forwarded_For must not pass for X-Forwarded-For
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        value = raw_value.decode("latin-1").strip()
        if key in environ and key.startswith("HTTP_"):
            separator = "; " if key == "HTTP_COOKIE" else ", "
            environ[key] += separator + value
        else:
            environ[key] = value
    return environ


def _bad(text: str) -> bool:
    return "\r" in text or "\n" in text or "\0" in text


def check_response(status: str, headers: list[tuple[str, str]]) -> None:
    """Refuse what must never reach the wire: CR/LF, non-latin-1, hop-by-hop fields."""
    if not isinstance(status, str) or _bad(status) or len(status) < 4 or not status[:3].isdigit():
        raise ValueError(f"bad status line from the app: {status!r}")
    status.encode("latin-1")
    if not isinstance(headers, list):
        raise TypeError(f"headers must be a list of (name, value) tuples, got {type(headers)}")
    for item in headers:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise TypeError(f"bad header from the app: {item!r}")
        name, value = item
        if not isinstance(name, str) or not isinstance(value, str) or _bad(name) or _bad(value):
            raise ValueError(f"bad header from the app: {item!r}")
        if ":" in name or " " in name or not name:
            raise ValueError(f"bad header name from the app: {name!r}")
        name.encode("latin-1")
        value.encode("latin-1")
        if name.lower() in HOP_BY_HOP and not (
            name.lower() == "connection" and value.strip().lower() == "close"
        ):
            raise ValueError(f"hop-by-hop header {name!r} from the app (PEP 3333)")


_date_cache: list[Any] = [0, ""]


def http_date() -> str:
    """The current time as an HTTP date, recomputed at most once a second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, formatdate(now, usegmt=True)]
    return _date_cache[1]


def response_head(version: str, status: str, headers: list[tuple[str, str]], extra: str) -> bytes:
    """Status line, the app's headers, then the server's own ``extra`` lines (CRLF-ended)."""
    lines = [f"HTTP/{version} {status}\r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in headers]
    lines.append(extra)
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def error_response(status: int, version: str = "1.1") -> bytes:
    """A small, complete refusal that closes the connection."""
    reason = REASONS.get(status, "Error")
    body = f"{status} {reason}\n".encode()
    return (
        f"HTTP/{version} {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\nDate: {http_date()}\r\n"
        "Server: wsgistack\r\n\r\n"
    ).encode("latin-1") + body
