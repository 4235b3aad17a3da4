"""One response: its state, the checks of what an app gives ``start_response``, its bytes.

``check_head`` refuses a status or header that would inject into the
response or make a client refuse it (CR, LF, NUL or another control byte but
HTAB, non-latin-1, a name that is not a token), framing a
proxy in front could misread (two Content-Lengths), and a 1xx (WSGI cannot
send a final response after it); it takes a bare ``"200"`` as gunicorn does.
A refusal is a ``BadHead``, which the connection answers with a logged 500.

    status, headers, length, close, own = check_head("200 OK", [("Content-Type", "text/plain")])
    head = response_head(status, headers, b"")   # with Date and Server unless the app set them

``error_response(400)`` is the server's own refusal (the request side,
``http.py``, only says which).
"""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

from ..options import TOKEN
from ..wsgi import HOP_BY_HOP
from .environ import Input

__all__ = [
    "BODYLESS",
    "DATE",
    "SERVER",
    "BadBody",
    "BadHead",
    "Response",
    "check_head",
    "error_body_size",
    "error_response",
    "http_date",
    "response_head",
]

#: PEP 3333 asks for "200 OK"; a bare "200" is taken too, as gunicorn, waitress
#: and uWSGI take it, and sent with its standard reason (``_REASONS``).
#: RFC 9112 4: a reason phrase is HTAB, SP, VCHAR and obs-text: no other control byte.
_STATUS = re.compile(r"[1-5][0-9][0-9](?: [^\x00-\x08\x0a-\x1f\x7f]*)?\Z")
#: RFC 9110 5.5: the control bytes a field value cannot hold (all but HTAB).  CR,
#: LF and NUL would inject; the others make llhttp (Node.js) and gunicorn's
#: parser refuse the whole response, so a client would see no answer at all.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_REASONS = {str(status.value): status.phrase for status in HTTPStatus}
#: Fields the server adds unless the app set its own (RFC 9110 6.6.1: one Date).
DATE, SERVER = 1, 2
_STAMPS = {"date": DATE, "server": SERVER}
#: RFC 9110 6.4.1: responses that have no content (1xx never get here: check_head).
BODYLESS = frozenset(("204", "304"))


class Response:
    """The state of one response: what the app said and what was sent."""

    __slots__ = (
        "chunked",
        "close",
        "continued",
        "head_only",
        "headers",
        "input",
        "length",
        "own_fields",
        "reported",
        "sent",
        "status",
        "written",
    )

    def __init__(self, head_only: bool) -> None:
        self.input: Input | None = None  # its error, if reading the body broke, is the answer
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.sent = False
        self.continued = False
        self.chunked = False
        self.close = False
        self.head_only = head_only
        self.length: int | None = None
        #: Body bytes (a chunked body's data, not its framing) handed to the kernel:
        #: the access log's size, as nginx's $body_bytes_sent (writing._uncount).
        self.written = 0
        self.own_fields = 0  # DATE | SERVER: the app gave its own
        #: The error the app passed to start_response after the head went out:
        #: it knows and has reported it (PEP 3333 exc_info); not logged twice.
        self.reported: BaseException | None = None


def check_head(
    status: Any, headers: Any
) -> tuple[str, list[tuple[str, str]], int | None, bool, int]:
    """Check what an app gave ``start_response``.

    Returns the status line to send (a bare code gets its standard reason), the
    headers to send, the Content-Length, whether to close, and
    which of Date and Server the app set (``DATE | SERVER``: the server adds
    only the others).  A status or header that would inject into the response
    is refused (a 500, logged); hop-by-hop fields belong to the server and are
    dropped, a ``Connection: close`` among them asks for the connection to close.
    """
    line = _STATUS_LINES.get(status) if type(status) is str else None
    if line is None:
        line = _status_line(status)
    if type(headers) is not list:
        raise BadHead(f"headers must be a list, not {type(headers).__name__}")
    kept = []
    length = None
    close = False
    own = 0
    for item in headers:
        if type(item) is not tuple or len(item) != 2:
            raise BadHead(f"invalid header {item!r}")
        name, value = item
        kind = _KINDS.get(name) if type(name) is str else None
        if kind is None:
            kind = _kind(name)
        # RFC 9110 5.5: a field value holds no control byte but HTAB; latin-1 is all we send.
        if type(value) is not str or not (value.isascii() and value.isprintable()):
            _check_value(name, value)
        if kind:
            if kind & _HOP:  # the server's own: the connection writes them
                if kind == _CONNECTION and "close" in value.lower():
                    close = True
                continue
            if kind == _LENGTH:
                if not (value.isascii() and value.isdigit()):
                    raise BadHead(f"invalid Content-Length {value!r}")
                if length is not None:
                    # RFC 9112 6.3: two lengths are invalid framing (llhttp refuses even
                    # equal ones); two different ones would desync a proxy in front.
                    if int(value) != length:
                        raise BadHead(f"conflicting Content-Length values {length} and {value!r}")
                    continue
                length = int(value)
            else:
                own |= kind  # DATE or SERVER
        kept.append(item)
    return line, kept, length, close, own


#: Statuses that passed ``_status_line``, and the line each is sent as.
_STATUS_LINES: dict[str, str] = {}
#: Header names that passed ``_kind``, and what each is to the server: apps
#: send the same few names again and again.
_KINDS: dict[str, int] = {}
_CACHED_MAX = 1024
#: Kinds of header (besides DATE and SERVER, and 0 for any other field).
_HOP, _CONNECTION, _LENGTH = 4, 4 | 16, 8


def _status_line(status: Any) -> str:
    if type(status) is not str or not _STATUS.match(status):
        raise BadHead(f"invalid status {status!r}")
    if status[0] == "1":
        # A 1xx is interim (RFC 9110 15.2): sent as the answer, the client would
        # wait for the final response that WSGI has no way to send after it.
        raise BadHead(f"the interim status {status!r} cannot be a WSGI response")
    line = status
    if len(status) == 3:
        line = f"{status} {_REASONS.get(status, '')}"  # RFC 9112 4: the space stays
    elif not status.isascii():
        _latin1(status, "status")
    if len(_STATUS_LINES) < _CACHED_MAX:
        _STATUS_LINES[status] = line
    return line


def _kind(name: Any) -> int:
    if type(name) is not str or not TOKEN.match(name):
        raise BadHead(f"invalid header name {name!r}")
    lower = name.lower()
    if lower == "connection":
        kind = _CONNECTION
    elif lower in HOP_BY_HOP:
        kind = _HOP
    elif lower == "content-length":
        kind = _LENGTH
    else:
        kind = _STAMPS.get(lower, 0)
    if len(_KINDS) < _CACHED_MAX:
        _KINDS[name] = kind
    return kind


def _check_value(name: str, value: Any) -> None:
    """Refuse a value that is not a string, holds a control byte but HTAB, or is not latin-1."""
    if type(value) is not str or _CONTROL.search(value):
        raise BadHead(f"invalid header value for {name}: {value!r}")
    _latin1(value, f"header {name}")


def _latin1(text: str, what: str) -> None:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        raise BadHead(f"{what} is not latin-1: {text!r}") from None


class BadHead(Exception):
    """An app gave a status or header we refuse to send."""


class BadBody(Exception):
    """An app's first body chunk cannot be sent as it said (nothing went out yet: 500)."""


#: The reasons of the server's own refusals (RFC 9110's names).
_REFUSAL_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    417: "Expectation Failed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",  # a layer's upstream broke before a header went out (ResponseCut)
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}


def http_date(now: float | None = None) -> bytes:
    """An IMF-fixdate (RFC 9110 5.6.7), cached per second because it is on every response."""
    second = int(time.time() if now is None else now)
    if _DATE_CACHE[0] != second:
        _DATE_CACHE[:] = [second, formatdate(second, usegmt=True).encode("ascii")]
    return _DATE_CACHE[1]  # type: ignore[return-value]


_DATE_CACHE: list[object] = [0, b""]

SERVER_HEADER = b"Server: wsgistack\r\n"


def response_head(
    status: str,
    headers: list[tuple[str, str]],
    extra: bytes,
    *,
    date: bool = True,
    server: bool = True,
) -> bytes:
    """Encode a response head; ``status``/``headers`` were validated by the caller.

    ``date`` and ``server`` add ours, for when the app gave none (a forwarded
    response carries its upstream's; one of each is allowed).  Behind
    ``uwsgi_pass`` nginx adds its own instead (it passes a uwsgi server's
    through, unlike proxy_pass).
    """
    lines = [f"HTTP/1.1 {status}\r\n".encode("latin-1")]
    for name, value in headers:
        lines.append(f"{name}: {value}\r\n".encode("latin-1"))
    if date:
        lines.append(b"Date: " + http_date() + b"\r\n")
    if server:
        lines.append(SERVER_HEADER)
    lines.append(extra + b"\r\n")
    return b"".join(lines)


def error_response(
    status: int, keep_alive: bool = False, *, stamped: bool = True, head_only: bool = False
) -> bytes:
    """A small plain-text refusal, always with ``Connection: close`` unless told.

    ``stamped=False`` leaves out our Date and Server, as for every response
    behind ``uwsgi_pass``: nginx would pass ours on instead of adding its own.
    ``head_only``: the answer to a HEAD, its head alone (RFC 9110 9.3.2), the
    Content-Length the same as a GET's would be.
    """
    body = _error_body(status)
    connection = b"" if keep_alive else b"Connection: close\r\n"
    stamps = b"Date: " + http_date() + b"\r\n" + SERVER_HEADER if stamped else b""
    return (
        f"HTTP/1.1 {status} {_REFUSAL_REASONS.get(status, 'Error')}\r\n".encode("ascii")
        + b"Content-Type: text/plain; charset=utf-8\r\n"
        + f"Content-Length: {len(body)}\r\n".encode("ascii")
        + stamps
        + connection
        + b"\r\n"
        + (b"" if head_only else body)
    )


def _error_body(status: int) -> bytes:
    return f"{status} {_REFUSAL_REASONS.get(status, 'Error')}\n".encode("ascii")


def error_body_size(status: int) -> int:
    """The size of ``error_response(status)``'s body: what the access log counts for it."""
    return len(_error_body(status))
