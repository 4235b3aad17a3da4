"""ErrorCatcher: every failure answered, logged once, and never leaked.

An exception can strike while the app runs, while its result is iterated,
while it is closed, or after the response headers went out.  The app's
status and headers are held until its body's first byte (PEP 3333: a server
sends them only then), so before that byte the client gets a clean 500 (HTML,
plain text or JSON by ``Accept``) as the only head the server ever saw,
carrying an error id and nothing about the exception; after it the
failure is logged and ``ResponseCut`` raised, so the server cuts the
connection instead of passing off half a body as a whole one, and does not
log the app's traceback again.  Each failure is one ERROR log record with
the traceback and the same error id.
A list body and a ``wsgi.file_wrapper`` body are returned untouched: the
first cannot fail, the second must reach the server whole to be sendfile()d
(the server reads and closes it, and reports its failures).

    application = ErrorCatcher(flask_app.wsgi_app, on_error=[report_to_sentry])

``debug=True`` answers with the traceback and each frame's local variables
(a client asking for JSON or plain text gets the traceback in that form):
never turn it on where strangers can reach the server.
"""

from __future__ import annotations

import builtins
import json
import logging
import secrets
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any

import webob.acceptparse
import webob.exc

from .._logtext import request_from
from .._types import StartResponse, WSGIApplication, WSGIEnvironment
from ..clientip import ProxyTrust
from ..errors import ConfigError, ProtocolError, ResponseCut, body_error_behind
from ..loader import import_object, raised
from ..options import flag, header_name, log_target, owned
from ..refusals import refusal
from ..wsgi import close_iterable, is_file_wrapper, note_file_wrapper
from ._debugpage import debug_page, debug_text, summary

__all__ = ["ErrorCatcher"]

ExcInfo = tuple[type[BaseException], BaseException, TracebackType]
ErrorHook = Callable[[ExcInfo, WSGIEnvironment, str], object]

ERROR_ID_KEY = "wsgistack.error_id"


class _Exchange:
    """One request's head, held until the body's first byte, and whether any byte went out.

    The app's ``start_response`` is kept here and handed to the server's only
    with the first non-empty chunk or ``write()``, or when the body ends (PEP
    3333: the server sends the head then anyway).  A failure before that is
    answered with the error page as the only head the server ever saw: no
    ``exc_info`` replacement, which gunicorn appends to the first head's fields
    and uWSGI cannot take at all (unbit/uwsgi#2278).
    """

    __slots__ = ("broken", "called", "headers", "sent", "server_write", "start_response", "status")
    headers: list[tuple[str, str]]  # set with status
    server_write: Callable[[bytes], object]  # the server's write(), once it has the head

    def __init__(self, start_response: StartResponse) -> None:
        self.start_response = start_response
        self.status: str | None = None  # the held head's; None once the server has it
        self.called = False  # the server's start_response was called (maybe it raised)
        self.sent = False  # a body byte went out: too late for an error page
        self.broken: BaseException | None = None  # the server's write() failed (client gone)

    def begin(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        """The app's ``start_response``: hold the head, or let the server replace its own."""
        if self.status is None and not self.called:
            self.status, self.headers = status, headers
        elif self.called:
            # The server has a head: it replaces it, re-raises exc_info, or refuses.
            self.start_response(status, headers, exc_info)
        elif exc_info is None:
            raise AssertionError("start_response called a second time without exc_info")
        else:
            self.status, self.headers = status, headers  # the held head is simply replaced
        return self.write

    def flush(self) -> None:
        """Give the server the held head (when there is one)."""
        status = self.status
        if status is not None:
            self.status = None
            self.called = True
            self.server_write = self.start_response(status, self.headers)

    def write(self, data: bytes) -> object:
        """The legacy ``write()``: the head goes to the server with the first byte."""
        if data:
            self.flush()
            self.sent = True
        elif not self.called:
            return None  # nothing to send yet: the head stays replaceable
        try:
            return self.server_write(data)
        except BaseException as exc:
            self.broken = exc  # the server's own failure, not the app's: see handle()
            raise

    def answer(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        """The error page's ``start_response``: its head replaces the app's."""
        self.status = None
        if not self.called:
            self.called = True
            return self.start_response(status, headers)
        # The server took the app's head and refused a field of it: only
        # exc_info lets it be replaced.  uWSGI raises SystemError on
        # it once it took the headers (unbit/uwsgi#2278), but replaces headers
        # not yet sent on a call without it.
        return self.start_response(status, headers, exc_info)


class ErrorCatcher:
    """Answer any exception from the wrapped app with a 500 (or a mapped status).

    :param app: the WSGI app to guard.
    :param debug: answer with the traceback and frame locals (development only).
    :param logger: where failures are logged; ``logging.getLogger("wsgistack.errors")``.
    :param on_error: a callable or a list of callables ``(exc_info, environ, error_id)``,
        for reporting services; a failing hook is logged and cannot break the response.
    :param statuses: exception type -> HTTP status, e.g. ``{TimeoutError: 504}``; the
        most specific class in the exception's MRO wins; anything else is 500.  A
        key may name the class as ``"module:attr"`` (a config file can only name
        it), imported at start-up.
    :param pass_http_exceptions: let ``webob.exc.HTTPException`` raised by the app
        answer as the response it is (a 404 raised deep inside stays a 404).
    :param error_id_header: the response header carrying the error id.
    :param trusted_proxies: networks of your proxies, or a hop count, or a
        :class:`~wsgistack.clientip.ProxyTrust`, as for ``IPFilter``: the log
        line then names the client they forwarded, not the proxy.  Unset, it
        names the client a layer below resolved (an ``IPFilter`` or ``RateLimiter``
        given them), else the peer.  Read only when a failure is logged.
    """

    def __init__(
        self,
        app: WSGIApplication,
        /,
        *,
        debug: bool = False,
        logger: logging.Logger | None = None,
        on_error: ErrorHook | Iterable[ErrorHook] | None = None,
        statuses: Mapping[type[BaseException] | str, int] | None = None,
        pass_http_exceptions: bool = True,
        error_id_header: str = "X-Error-Id",
        trusted_proxies: ProxyTrust | Iterable[str] | int | None = None,
    ) -> None:
        if not callable(app):
            raise ConfigError(f"ErrorCatcher: app: {app!r} is not a WSGI app (not callable)")
        self.app = app
        self.debug = flag(debug, "ErrorCatcher: debug")
        self.logger = log_target(logger, "ErrorCatcher: logger", "wsgistack.errors")
        self.on_error = self._check_hooks(on_error)
        self.pass_http_exceptions = flag(pass_http_exceptions, "ErrorCatcher: pass_http_exceptions")
        self.statuses = self._check_statuses(statuses, self.pass_http_exceptions)
        self.error_id_header = header_name(error_id_header, "ErrorCatcher: error_id_header")
        with owned("ErrorCatcher"):
            self.trust = ProxyTrust.coerce(trusted_proxies)
        if debug:
            self.logger.warning(
                "ErrorCatcher debug=True: tracebacks and local variables are shown to clients"
            )

    @staticmethod
    def _check_hooks(on_error: Any) -> tuple[ErrorHook, ...]:
        if on_error is None:
            return ()
        if callable(on_error):
            return (on_error,)
        # A string is iterable too: "report" would become the hooks 'r', 'e', 'p', ...
        if isinstance(on_error, str | bytes) or not isinstance(on_error, Iterable):
            raise ConfigError(
                f"ErrorCatcher: on_error: expected a callable or a list of callables, "
                f"got {on_error!r}"
            )
        hooks = tuple(on_error)
        for hook in hooks:
            if not callable(hook):
                raise ConfigError(f"ErrorCatcher: on_error: {hook!r} is not callable")
        return hooks

    @staticmethod
    def _check_statuses(statuses: Any, passing: bool) -> dict[type[BaseException], int]:
        if statuses is None:
            return {}
        if not isinstance(statuses, Mapping):
            raise ConfigError(
                "ErrorCatcher: statuses: expected a mapping of exception class to status, "
                f"like {{TimeoutError: 504}}, got {statuses!r}"
            )
        checked: dict[type[BaseException], int] = {}
        for key, status in statuses.items():
            kind = _exception_class(key)
            never = _never_caught(kind, passing)
            if never is not None:
                raise ConfigError(f"ErrorCatcher: statuses: {kind.__name__} {never}")
            if not isinstance(status, int) or status not in webob.exc.status_map or status < 400:
                raise ConfigError(
                    f"ErrorCatcher: statuses: {kind.__name__}: {status!r} is not an error status"
                )
            checked[kind] = status
        return checked

    def __repr__(self) -> str:
        options = [f"debug={self.debug!r}"] if self.debug else []
        if self.on_error:
            options.append(f"on_error={[getattr(h, '__name__', h) for h in self.on_error]!r}")
        if self.statuses:
            mapped = {k.__name__: v for k, v in self.statuses.items()}
            options.append(f"statuses={mapped!r}")
        if self.trust is not None:
            options.append(f"trusted_proxies={self.trust!r}")
        return f"ErrorCatcher({', '.join(options)})"

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        exchange = _Exchange(start_response)
        note_file_wrapper(environ)
        try:
            body = self.app(environ, exchange.begin)
        except (ProtocolError, ResponseCut):
            # ProtocolError: the client's fault (its body timed out, broke off), the server
            # answers; ResponseCut: a layer below (an inner ErrorCatcher) logged it already.
            raise
        except Exception as exc:
            if body_error_behind(exc) is not None:
                raise  # the same, wrapped by the app (Django's UnreadablePostError)
            return self.handle(environ, exchange, sys.exc_info())  # type: ignore[arg-type]
        kind = type(body)
        if kind is list or kind is tuple or is_file_wrapper(body, environ):
            # A list cannot fail and has no close() to guard; a file wrapper must reach
            # the server as itself to be sendfile()d, and the server reads and closes
            # it, so a failing read is the server's to report (PEP 3333, file wrapper).
            try:
                exchange.flush()
            except Exception:
                close_iterable(body)  # the server refused the head: the body never goes out
                return self.handle(environ, exchange, sys.exc_info())  # type: ignore[arg-type]
            return body
        return _GuardedBody(self, environ, exchange, body)

    def handle(self, environ: WSGIEnvironment, exchange: _Exchange, exc_info: ExcInfo) -> Any:
        """Answer a failure with an error response, or abort if the headers went out."""
        if exc_info[1] is exchange.broken:
            # The server's write() failed under the app (the client left): the
            # server says so itself (one INFO line, as for an iterated body); an
            # ERROR with a traceback and the on_error hooks would blame the app.
            raise exc_info[1]
        if exchange.sent:
            # Too late for an error page: nothing can replace a head that went out.
            # Logged here, once, with the traceback; then ResponseCut makes every
            # server cut the connection (so the client sees a broken body, not a
            # whole one) without logging the app's traceback a second time: ours
            # and gunicorn say nothing more, waitress and uWSGI one short traceback
            # naming the error id.  (Handing exc_info back through start_response
            # made gunicorn and waitress log it again, and uWSGI add "OSError:
            # headers already sent".)
            error_id = self.report(environ, exc_info, "; the response was cut off after it began")
            raise ResponseCut(
                f"error {error_id}: the response was cut off after it began (logged above)"
            ) from None
        return self.answer(environ, exchange, exc_info)

    def answer(self, environ: WSGIEnvironment, exchange: _Exchange, exc_info: ExcInfo) -> Any:
        """Answer a failure before the headers were sent: a negotiated error response."""
        error = exc_info[1]
        if self.pass_http_exceptions and isinstance(error, webob.exc.WSGIHTTPException):
            return self._respond(error, environ, exchange, exc_info)
        error_id = self.report(environ, exc_info)
        status = self._status_for(type(error))
        headers = [(self.error_id_header, error_id)]
        if self.debug:
            kind = webob.exc.status_map[status]
            response = _debug_response(kind, environ, exc_info, error_id, headers)
        else:
            response = refusal(
                webob.exc.status_map[status], detail=f"Error id: {error_id}", headers=headers
            )
        return self._respond(response, environ, exchange, exc_info)

    def _respond(
        self, response: Any, environ: WSGIEnvironment, exchange: _Exchange, exc_info: ExcInfo
    ) -> Any:
        passed = None if "uwsgi.version" in environ else exc_info

        def replace(status: str, headers: list[tuple[str, str]], _: Any = None) -> Any:
            return exchange.answer(status, headers, passed)

        return response(environ, replace)

    def _status_for(self, kind: type[BaseException]) -> int:
        for base in kind.__mro__:
            status = self.statuses.get(base)
            if status is not None:
                return status
        return 500

    def report(self, environ: WSGIEnvironment, exc_info: ExcInfo, outcome: str = "") -> str:
        """Log the failure once and run the hooks; returns the new error id.

        ``outcome`` ends the line when the client got something other than the
        error page (``"; the response was cut off after it began"``).
        """
        error_id = secrets.token_hex(8)
        environ[ERROR_ID_KEY] = error_id
        self.logger.error(
            "error %s: %s%s",
            error_id,
            # Decoded text from the client: %0A in a path must not start a forged line.
            request_from(environ, self.trust),
            outcome,
            exc_info=exc_info,
        )
        for hook in self.on_error:
            try:
                hook(exc_info, environ, error_id)
            except Exception:
                self.logger.exception("error %s: on_error hook %r failed", error_id, hook)
        return error_id


def _exception_class(key: object) -> type[BaseException]:
    """A ``statuses`` key as the exception class it is, or names as ``"module:attr"``.

    A TOML table or an ini value cannot hold a class, only its name, so a
    config file maps ``"django.core.exceptions:PermissionDenied" = 403``; the
    name is imported here, at start-up, so a typo fails now, not never.
    """
    kind = key
    if isinstance(key, str):
        if ":" not in key:
            builtin = getattr(builtins, key, None)
            hint = (
                f" (did you mean 'builtins:{key}'?)"
                if isinstance(builtin, type) and issubclass(builtin, BaseException)
                else ""
            )
            raise ConfigError(
                f"ErrorCatcher: statuses: {key!r} is not an exception class;"
                f" name one as 'module:attr'{hint}"
            )
        try:
            kind = import_object(key)
        except ConfigError as exc:
            raise ConfigError(f"ErrorCatcher: statuses: {exc}") from exc.__cause__
        except Exception as exc:  # the module's own code, while importing
            raise ConfigError(f"ErrorCatcher: statuses: {key!r}: {raised(exc)}") from exc
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise ConfigError(
                f"ErrorCatcher: statuses: {key!r} names a {type(kind).__name__},"
                " not an exception class"
            )
    if not (isinstance(kind, type) and issubclass(kind, BaseException)):
        raise ConfigError(f"ErrorCatcher: statuses: {key!r} is not an exception class")
    return kind


def _never_caught(kind: type[BaseException], passing: bool) -> str | None:
    """Why a status mapped to ``kind`` would never be used, if it would not."""
    if not issubclass(kind, Exception):
        # As Django, Flask and every WSGI server do: Ctrl-C and sys.exit() must stop the process.
        return "is not an Exception: ErrorCatcher lets it through, as servers expect"
    if issubclass(kind, ProtocolError):
        return "passes through to the server, which answers it with its own status"
    if passing and issubclass(kind, webob.exc.WSGIHTTPException):
        return "answers as itself (pass_http_exceptions=True)"
    return None


def _debug_response(
    kind: type[webob.exc.WSGIHTTPException],
    environ: WSGIEnvironment,
    exc_info: ExcInfo,
    error_id: str,
    headers: list[tuple[str, str]],
) -> webob.exc.WSGIHTTPException:
    """The traceback as the client asked for it: HTML, JSON or plain text, as webob picks."""
    # No Accept at all (as before, and as Django's debug page reads it): the HTML page.
    accept = webob.acceptparse.create_accept_header(environ.get("HTTP_ACCEPT"))
    offers = accept.acceptable_offers(["text/html", "application/json"])
    content_type = offers[0][0] if offers else "text/plain"
    if content_type == "text/html":
        text = debug_page(exc_info, error_id)
    elif content_type == "application/json":
        text = json.dumps(
            {
                "message": f"{summary(exc_info[1])} (error id: {error_id})",
                "code": f"{kind.code} {kind.title}",
                "title": kind.title,
                "traceback": debug_text(exc_info),
            }
        )
    else:
        text = f"{debug_text(exc_info)}\nError id: {error_id}\n"
    # Lone surrogates (bytes decoded with surrogateescape) cannot be UTF-8: shown as \udcXX.
    body = text.encode("utf-8", "backslashreplace")
    return kind(body=body, content_type=content_type, charset="utf-8", headers=headers)


#: What ``next()`` gives for an ended body (a body's own ``None`` must not end it).
_END: Any = object()


class _GuardedBody:
    """The app's body, with failures in iteration and close() caught."""

    __slots__ = ("_body", "_catcher", "_closed", "_environ", "_exchange", "_iterator")

    def __init__(
        self, catcher: ErrorCatcher, environ: WSGIEnvironment, exchange: _Exchange, body: Any
    ) -> None:
        self._catcher = catcher
        self._environ = environ
        self._exchange = exchange
        self._body = body
        self._iterator: Iterator[bytes] | None = None
        self._closed = False

    def __iter__(self) -> _GuardedBody:
        return self

    def __next__(self) -> bytes:
        try:
            if self._iterator is None:
                self._iterator = iter(self._body)
            chunk = next(self._iterator, _END)
            if not self._exchange.sent:
                # The held head goes to the server with the first non-empty chunk, or
                # as the body ends: a failure before it is answered as the only head.
                # An empty chunk is not passed on meanwhile, since it carries no byte
                # and gunicorn, uWSGI and werkzeug send the head on it.
                while chunk == b"":
                    chunk = next(self._iterator, _END)
                self._exchange.flush()
                self._exchange.sent = chunk is not _END
        except (ProtocolError, ResponseCut):
            raise  # (ResponseCut: a layer below logged it; the server cuts the connection)
        except Exception as exc:
            if body_error_behind(exc) is not None:
                raise  # the client's body broke: the server answers (see ErrorCatcher.__call__)
            return self._fail(sys.exc_info())  # type: ignore[arg-type]
        if chunk is _END:
            raise StopIteration
        return chunk

    def _fail(self, exc_info: ExcInfo) -> bytes:
        replacement = self._catcher.handle(self._environ, self._exchange, exc_info)
        self._iterator = _Replacement(replacement)
        return next(self._iterator, b"")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close_iterable(self._body)
        except Exception:
            # The response is complete by now: log it with an id; nothing is left to answer.
            self._catcher.report(self._environ, sys.exc_info())  # type: ignore[arg-type]
        finally:
            if isinstance(self._iterator, _Replacement):
                close_iterable(self._iterator.body)


class _Replacement:
    """Iterates an error response's body and keeps it for close()."""

    __slots__ = ("body", "iterator")

    def __init__(self, body: Iterable[bytes]) -> None:
        self.body = body
        self.iterator = iter(body)

    def __iter__(self) -> _Replacement:
        return self

    def __next__(self) -> bytes:
        return next(self.iterator)
