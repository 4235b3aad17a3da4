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
    "HOP_BY_HOP",
    "ClosingIterator",
    "close_iterable",
    "is_file_wrapper",
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


def is_file_wrapper(body: object, environ: WSGIEnvironment) -> bool:
    """Whether ``body`` is the server's ``wsgi.file_wrapper`` object.

    A layer must return such a body as itself: the server recognises it by its
    type to send the file with ``sendfile()``; wrapped, it is copied through
    Python block by block (PEP 3333, "Optional Platform-Specific File Handling").
    uWSGI's ``wsgi.file_wrapper`` is a function, not a class: it hands back the
    file it was given and recognises the body as that very file, so under such
    a server any file-like body (one with ``read()``) is returned as itself.
    Wrapped, uWSGI would iterate the file by lines: a binary file, one huge line.
    """
    wrapper = environ.get("wsgi.file_wrapper")
    if type(body) is wrapper:
        return True
    return (
        wrapper is not None
        and not isinstance(wrapper, type)
        and callable(getattr(body, "read", None))
    )


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
