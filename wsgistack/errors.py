"""The one error hierarchy of wsgistack.

``ConfigError`` is raised at start-up for a bad option, so a mistake in a
pipeline fails before the first request.  ``ProtocolError`` carries the HTTP
status a server answers with.  ``UpstreamError`` is what the forwarder raises
when a backend fails; ``ResponseCut`` is what a response body raises when it
breaks after it began, once the layer has logged why.
"""

from __future__ import annotations

import errno

__all__ = [
    "ConfigError",
    "ProtocolError",
    "RequestBodyError",
    "ResponseCut",
    "UpstreamError",
    "WsgiStackError",
    "body_error_behind",
    "unreadable",
]


class WsgiStackError(Exception):
    """Base class of every error wsgistack raises on purpose."""


class ConfigError(WsgiStackError, ValueError):
    """A bad option or configuration, detected before serving.

    The message names the option and the bad value, e.g.
    ``IPFilter: allow: '10.0.0.300' is not an IP address or network``.
    """


#: The statuses of a request over a size limit the operator set (RFC 9110
#: 15.5.14, 15.5.15, RFC 6585 5): its body, its request line, its header fields.
_OVER_LIMIT = frozenset({413, 414, 431})


class ProtocolError(WsgiStackError):
    """A peer broke the protocol; ``status_hint`` is the status to answer with."""

    def __init__(self, message: str, status_hint: int = 400) -> None:
        super().__init__(message)
        self.status_hint = status_hint

    @property
    def over_limit(self) -> bool:
        """Whether the request was well formed but larger than a limit allows (413, 414, 431).

        The client's doing, whichever bind it came through: the server logs it
        at INFO, as nginx its "client sent too long URI".
        """
        return self.status_hint in _OVER_LIMIT


class RequestBodyError(ProtocolError, OSError):
    """Reading the request body failed: what ``wsgi.input`` raises (413, 408, 400).

    An ``OSError`` too, as frameworks expect of a broken input stream (Django
    raises ``UnreadablePostError`` from it, as it does under mod_wsgi or uWSGI).
    """


def body_error_behind(error: BaseException) -> RequestBodyError | None:
    """The broken request body ``error`` is, or was explicitly raised from.

    Frameworks wrap what ``wsgi.input`` raised in an error of their own (Django
    raises ``UnreadablePostError`` from it): that is still the client's fault,
    for the server to answer with the body's status (400, 408, 413), not an
    application error to log with a traceback and report.  Only a wrap counts
    (``raise ... from exc``, or ``from None`` that replaces it): an error that
    merely occurred while the app handled the body's (a bug in its ``except``
    or ``finally``) is the app's own, and is logged as such.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, RequestBodyError):
            return current
        seen.add(id(current))
        # __suppress_context__ is set by `raise ... from`: the error replaced
        # the one it was raised from (its __cause__, or with `from None` its
        # __context__).  Without it, __context__ is only what was being handled.
        if not current.__suppress_context__:
            return None
        current = current.__cause__ or current.__context__
    return None


class UpstreamError(WsgiStackError):
    """An upstream server failed; ``status_hint`` is 502, 503 or 504."""

    def __init__(self, message: str, status_hint: int = 502) -> None:
        super().__init__(message)
        self.status_hint = status_hint


class ResponseCut(WsgiStackError, ConnectionResetError):
    """A response body broke after it began, and the layer that raised this logged why.

    Raised from a body's iteration (the forwarder's, when its upstream closes or
    stalls mid-response): the server must cut the client's connection, since a
    body ended by a close would look whole, and must not log the failure again
    as an application bug.  wsgistack's server and ``ErrorCatcher`` let it
    through without a second line; it is a ``ConnectionResetError`` (errno
    ``ECONNRESET``) so that gunicorn too closes the connection and logs it only
    at debug.  Before the headers went out, a server answers ``status_hint``
    (502, 504) instead.
    """

    def __init__(self, message: str, status_hint: int = 502) -> None:
        super().__init__(errno.ECONNRESET, message)
        self.status_hint = status_hint

    def __str__(self) -> str:
        return str(self.strerror)


def unreadable(shown: object, error: OSError) -> ConfigError:
    """The one-line start-up error for a configured file that cannot be read.

    ``shown`` is the file as the user named it; the reason is the OS's, in
    words (``no such file``, ``cannot read: Is a directory``), not a traceback.
    """
    if isinstance(error, FileNotFoundError):
        return ConfigError(f"{shown}: no such file")
    return ConfigError(f"{shown}: cannot read: {error.strerror or error}")
