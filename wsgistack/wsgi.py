"""Shared WSGI plumbing: closing response iterables exactly once, and hop-by-hop fields.

Every layer that wraps an ``app_iter`` uses :class:`ClosingIterator`, so the
inner ``close()`` runs once, also when iteration raised, and every cleanup runs
even when an earlier one fails (PEP 3333, "the close() method").

    body = ClosingIterator(app(environ, start_response), release_connection)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from ._types import WSGIEnvironment

__all__ = [
    "FILE_WRAPPED_KEY",
    "HOP_BY_HOP",
    "ClosingIterator",
    "close_iterable",
    "is_file_wrapper",
    "note_file_wrapper",
    "run_cleanups",
]

#: Fields that describe one connection, not the message (RFC 9110 7.6.1, plus
#: ``Trailer`` and the non-standard ``Proxy-Connection``): a WSGI app must not
#: set them (PEP 3333), so the server drops an app's and writes its own, and a
#: proxy never passes them on.  Lower case.
HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    )
)


def run_cleanups(callbacks: Iterable[Callable[[], object]]) -> None:
    """Call every callback; if any raised, re-raise the first error after all ran."""
    first: BaseException | None = None
    for callback in callbacks:
        try:
            callback()
        except BaseException as exc:  # collected, re-raised below
            if first is None:
                first = exc
    if first is not None:
        raise first


def close_iterable(iterable: object) -> None:
    """Call ``iterable.close()`` if it has one (PEP 3333)."""
    close = getattr(iterable, "close", None)
    if close is not None:
        close()


#: Under a server whose ``wsgi.file_wrapper`` is not a class (uWSGI's is a
#: function), the list holding the last body that function returned.
FILE_WRAPPED_KEY = "wsgistack.file_wrapped"


def note_file_wrapper(environ: WSGIEnvironment) -> None:
    """Make a ``wsgi.file_wrapper`` that is not a class note the body it returns.

    uWSGI's is a function that hands back the file it was given, so the body's
    type says nothing; :func:`is_file_wrapper` knows it by identity instead.
    A layer calls this before the app; under a server whose wrapper is a class
    (ours, gunicorn, waitress, wsgiref, mod_wsgi) it changes nothing.  The note
    is a list shared by every copy of ``environ`` made below the layer.
    """
    wrapper = environ.get("wsgi.file_wrapper")
    if wrapper is None or isinstance(wrapper, type) or FILE_WRAPPED_KEY in environ:
        return
    returned: list[object] = []

    def file_wrapper(filelike: object, *block_size: int) -> object:
        # The server's own default block size when the app gives none.
        body = wrapper(filelike, *block_size)
        returned[:] = [body]  # uWSGI sends only the last one it was given
        return body

    environ[FILE_WRAPPED_KEY] = returned
    environ["wsgi.file_wrapper"] = file_wrapper


def is_file_wrapper(body: object, environ: WSGIEnvironment) -> bool:
    """Whether ``body`` is what the server's ``wsgi.file_wrapper`` returned.

    A layer must return such a body as itself: the server recognises it (by its
    type, or uWSGI by its identity) to send the file with ``sendfile()``;
    wrapped, it is copied through Python block by block (PEP 3333, "Optional
    Platform-Specific File Handling"), and uWSGI iterates a file by lines (a
    binary file: one huge line).  Any other body, even one with ``read()``, is
    an ordinary iterable the layer must guard.  Under uWSGI this knows only
    the bodies noted since :func:`note_file_wrapper` ran.
    """
    if type(body) is environ.get("wsgi.file_wrapper"):
        return True
    noted: list[object] = environ.get(FILE_WRAPPED_KEY) or []
    return bool(noted) and noted[-1] is body


class ClosingIterator:
    """Iterate over ``iterable``; on ``close()`` close it, then run ``callbacks``.

    ``close()`` is idempotent: the second call does nothing, so a server and a
    layer that both close cannot close the inner iterable twice.
    """

    __slots__ = ("_callbacks", "_closed", "_iterable", "_iterator")

    def __init__(self, iterable: Iterable[bytes], *callbacks: Callable[[], object]) -> None:
        self._iterable = iterable
        self._callbacks = callbacks
        self._closed = False
        try:
            self._iterator: Iterator[bytes] = iter(iterable)
        except BaseException:
            # Not iterable (an app that returned None): no one gets an object to
            # close, so the cleanups run here, then the error goes on.
            self.close()
            raise

    def __iter__(self) -> ClosingIterator:
        return self

    def __next__(self) -> bytes:
        return next(self._iterator)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        run_cleanups([lambda: close_iterable(self._iterable), *self._callbacks])
