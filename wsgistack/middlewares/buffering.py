"""RequestBuffering: read a chunked request body whole, so the app gets a Content-Length.

Django reads no body without ``CONTENT_LENGTH``, so a chunked upload (``curl
-T -``, ``requests`` with a generator, any client streaming an upload) reaches
a view as ``b""`` under gunicorn, uWSGI or wsgistack's server, which stream it
with ``wsgi.input_terminated``.  waitress reads such a body whole first, and so
does nginx in front (``proxy_request_buffering on``); this layer does the same
under any server.

    # wsgi.py of a Django project
    from django.core.wsgi import get_wsgi_application
    from wsgistack.middlewares import RequestBuffering

    application = RequestBuffering(get_wsgi_application(), max_size=50 * 1024 * 1024)

A body with a ``Content-Length``, or no body, passes through untouched and
still streams.  A chunked one is read before the app is called (in memory up
to 1 MiB, then in a temporary file, so memory stays bounded), then
``wsgi.input`` is that copy, ``CONTENT_LENGTH`` its size, and
``HTTP_TRANSFER_ENCODING`` is gone.  The copy is closed when the response is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from .._types import StartResponse, WSGIApplication, WSGIEnvironment
from ..options import count, log_target
from ..requestbody import (
    ClientBodyError,
    body_failed,
    body_framing,
    chunked_input,
    spool_body,
)
from ..wsgi import ClosingIterator, is_file_wrapper, note_file_wrapper, run_cleanups

__all__ = ["RequestBuffering"]


class RequestBuffering:
    """Give the app a chunked request body whole, with its length, or refuse it.

    :param app: the WSGI app (Django's, or any that needs a Content-Length).
    :param max_size: the largest chunked body in bytes (1 GiB by default; 0: no
        limit).  One over it is answered 413 when it passes the limit, and the
        app never sees it; a body cut short, or one that fails to read, is
        400 (the reference server answers its own 408 for a client too slow).
        Bodies with a Content-Length are not its to bound: the server's
        ``max_body_size`` is.
    :param logger: where refused bodies are logged (at INFO);
        ``logging.getLogger("wsgistack.buffering")``.
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        max_size: int = 1024**3,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> None:
        self.app = app
        self.max_size = count(max_size, "RequestBuffering: max_size", least=0)
        self.logger = log_target(logger, "RequestBuffering: logger", "wsgistack.buffering")

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            _, chunked = body_framing(environ)
        except ClientBodyError as error:
            return body_failed(error, environ, start_response, self.logger)
        if not chunked:
            return self.app(environ, start_response)
        try:
            spool, size = spool_body(chunked_input(environ, self.max_size))
        except ClientBodyError as error:
            return body_failed(error, environ, start_response, self.logger)
        environ["wsgi.input"] = spool
        environ["CONTENT_LENGTH"] = str(size)
        del environ["HTTP_TRANSFER_ENCODING"]
        note_file_wrapper(environ)
        try:
            body = self.app(environ, start_response)
        except BaseException:
            spool.close()
            raise
        if is_file_wrapper(body, environ) and _close_with(body, spool.close):
            # Returned as itself, so the server can still sendfile() it.  The copy
            # closes with it, not before: the file sent may be that very copy (an
            # echo: flask.send_file(request.stream), FileResponse(request)).
            return body
        return ClosingIterator(body, spool.close)

    def __repr__(self) -> str:
        return f"RequestBuffering(max_size={self.max_size!r})"


def _close_with(wrapper: Any, callback: Callable[[], object]) -> bool:
    """Have ``wrapper.close()`` run ``callback`` after closing the file; False if it cannot.

    The server recognises a file wrapper by its type, so it cannot be wrapped;
    its ``close`` is replaced on the instance instead (a wrapper with slots
    refuses, and is then wrapped after all, losing only ``sendfile()``).
    """
    own = getattr(wrapper, "close", None)
    callbacks = [callback] if own is None else [own, callback]
    try:
        wrapper.close = lambda: run_cleanups(callbacks)
    except AttributeError:
        return False
    return True
