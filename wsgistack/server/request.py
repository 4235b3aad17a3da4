"""What a parser hands the connection: requests in order, within limits, or a refusal.

Both wire protocols fill the same shapes: the HTTP parser (``http.py``) and
the uwsgi one (``uwsgi.py``) take ``Limits``, make a ``Request`` per head and
queue it on a ``RequestQueue``, so the connection, the environ and the
response writer serve either without knowing which it was.

    parser = RequestParser(Limits(max_headers=50))   # a RequestQueue (http.py)
    request = parser.next_request()                  # a Request, or None
"""

from __future__ import annotations

import collections
import dataclasses
import time
from typing import TYPE_CHECKING

from ..errors import ProtocolError

if TYPE_CHECKING:
    from .config import ServerConfig

__all__ = ["LENGTH_DIGITS", "NO_BODY_LIMIT", "Limits", "Request", "RequestQueue", "body_too_large"]

#: ``--max-body-size 0``: larger than any body a client can send.
NO_BODY_LIMIT = 2**63 - 1
#: The digits of the largest length a limit holds (19): a Content-Length with
#: more is too large, and is refused without being parsed (int() of thousands
#: of digits is slow, and over 4300 raises).
LENGTH_DIGITS = len(str(NO_BODY_LIMIT))


@dataclasses.dataclass(frozen=True)
class Limits:
    """Parser limits: request line, header count and bytes, body bytes.

    ``max_request_line`` is the whole line, CRLF aside: method, target and
    version (see ``requestline.SPACES_AND_VERSION``), as gunicorn's
    ``limit_request_line``.
    """

    max_request_line: int = 8190
    max_headers: int = 100
    max_header_size: int = 16384
    max_body_size: int = 100 * 1024 * 1024

    @classmethod
    def of(cls, config: ServerConfig) -> Limits:
        """The limits a server's options set (``--max-request-line`` ...)."""
        return cls(
            config.max_request_line,
            config.max_headers,
            config.max_header_size,
            config.max_body_size or NO_BODY_LIMIT,  # 0: no limit, as nginx's client_max_body_size 0
        )


def body_too_large(limit: int, declared: str | None = None) -> str:
    """The reason given for a 413, the same over HTTP and uwsgi: the limit, and what came.

    ``declared``: the digits of the Content-Length the client sent (nginx's
    CONTENT_LENGTH), when it declared one; else the body (chunked) grew past
    the limit.  An operator sees what was turned away and which option did
    it, as nginx's "client intended to send too large body: N bytes" shows.
    """
    if limit >= NO_BODY_LIMIT:  # --max-body-size 0: only a length no integer holds
        bound = f"the largest body ({NO_BODY_LIMIT} bytes)"
    else:
        bound = f"--max-body-size ({limit} bytes)"
    if declared is None:
        return f"request body larger than {bound}"
    if len(declared) > LENGTH_DIGITS:  # thousands of digits: their count will do
        return f"a {len(declared)}-digit Content-Length larger than {bound}"
    return f"Content-Length {declared} larger than {bound}"


class Request:
    """One request head plus its body bytes as the parser delivers them."""

    __slots__ = (
        "body",
        "body_size",
        "chunked",
        "complete",
        "content_length",
        "error",
        "expect_continue",
        "expect_other",
        "head_at",
        "headers",
        "keep_alive",
        "method",
        "target",
        "url",
        "version",
    )

    def __init__(self) -> None:
        self.method = ""
        self.url = b""
        #: An absolute-form target taken apart: path, query and authority.
        self.target: tuple[bytes, bytes, str] | None = None
        self.version = "1.1"
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: collections.deque[bytes] = collections.deque()
        self.body_size = 0
        self.content_length: int | None = None
        self.chunked = False
        self.complete = False
        self.keep_alive = True
        self.expect_continue = False
        self.expect_other = False
        self.error: ProtocolError | None = None
        #: When the head was complete (``time.monotonic()``): the access log's durations.
        self.head_at = 0.0


class RequestQueue:
    """What a connection takes from a parser: complete requests in order, then any refusal.

    The HTTP and the uwsgi parsers fill ``_pending`` and set ``error``; the
    connection drains the first and answers the second.
    """

    def __init__(self) -> None:
        self._pending: collections.deque[Request] = collections.deque()
        #: A refusal found after the queued requests; answer it once they are done.
        self.error: ProtocolError | None = None

    def next_request(self) -> Request | None:
        """The oldest request whose head is complete, or None."""
        return self._pending.popleft() if self._pending else None

    @property
    def has_request(self) -> bool:
        return bool(self._pending)

    @property
    def refusing_head(self) -> bool:
        """Whether the request ``error`` refuses is known to be a HEAD (its answer has no body)."""
        return False

    def _queue(self, request: Request) -> None:
        """Queue a request whose head is complete, noting when (the log's durations start)."""
        request.head_at = time.monotonic()
        self._pending.append(request)
