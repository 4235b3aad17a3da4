"""A request body read whole, bounded: for the apps and upstreams that need its length.

Django reads no body without a ``CONTENT_LENGTH`` (under any WSGI server but
waitress), so a chunked upload reaches it empty.  Both the
:class:`~wsgistack.middlewares.RequestBuffering` layer and the forwarder's
``request_buffering`` read such a body here: in memory up to
:data:`SPOOL_MEMORY`, then in a temporary file, at most a given size, and
answer a body that fails the same way.

    length, chunked = body_framing(environ)
    if chunked:
        try:
            spool, size = spool_body(chunked_input(environ, limit))
        except ClientBodyError as error:
            return body_failed(error, environ, start_response, log)
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from typing import IO, Any

import webob.exc

from ._types import StartResponse, WSGIEnvironment
from .errors import ProtocolError
from .iotext import body_failure
from .refusals import refusal

__all__ = [
    "BLOCK",
    "SPOOL_MEMORY",
    "BodyTooLarge",
    "ClientBodyError",
    "InvalidLength",
    "LengthRequired",
    "LimitedBody",
    "UnsupportedCoding",
    "body_failed",
    "body_framing",
    "chunked_input",
    "read_body",
    "spool_body",
]

#: Bytes read (and sent) at a time.
BLOCK = 65536
#: A buffered request body stays in memory up to this size, then moves to a file.
SPOOL_MEMORY = 1024 * 1024


class ClientBodyError(Exception):
    """The client's request body failed to arrive: it ended early, or reading it raised
    (then the server's own exception is the ``__cause__``)."""


class BodyTooLarge(ClientBodyError):
    """The client's body is larger than ``limit`` bytes (a 413, as nginx's client_max_body_size)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body is larger than {limit} bytes.")
        self.limit = limit


class UnsupportedCoding(ClientBodyError):
    """A Transfer-Encoding other than ``chunked`` alone (``gzip, chunked``): a 501, as nginx.

    A server that takes it removes only the chunks, so what is left is no plain
    body of its length, and nothing here decodes the rest.
    """


class InvalidLength(ClientBodyError):
    """A ``Content-Length`` that is not one decimal length (``+5``, ``5, 6``): a 400, as nginx.

    RFC 9112 6.3: the body's end is then unknown, so the request is refused.
    """


class LengthRequired(ClientBodyError):
    """A chunked body the server does not end (no ``wsgi.input_terminated``): a 411.

    wsgiref (and Django's runserver on it) hands on the raw socket, so reading
    to the end would wait until the client leaves; RFC 9112 6.3 lets a server
    ask for a Content-Length instead.
    """


class LimitedBody:
    """``wsgi.input`` for a body of unknown length (chunked): BodyTooLarge past ``limit`` bytes.

    Raised before the block that passes the limit is handed on, so no more than
    ``limit`` bytes of it are spooled or sent.
    """

    def __init__(self, body: Any, limit: int) -> None:
        self.body = body
        self.limit = limit
        self.size = 0

    def read(self, size: int) -> bytes:
        block: bytes = self.body.read(size)
        self.size += len(block)
        if self.size > self.limit:
            raise BodyTooLarge(self.limit)
        return block


def body_framing(environ: WSGIEnvironment) -> tuple[int | None, bool]:
    """The request body's ``Content-Length`` (None if not given) and whether it is chunked.

    A body is chunked only when it has no length: the reference server
    refuses both together, and a server that let them through must not make
    the length count for less.  A length is digits, as the server in front
    may pass it on: with whitespace around (wsgiref keeps ``"5 "``) or as a
    list of one value repeated (``5, 5``, which RFC 9110 8.6 lets a recipient
    read as ``5``).  Anything else (``+5``, ``0x5``, ``5, 6``) raises
    InvalidLength: taken for no length, the body was dropped unsaid.  A
    Transfer-Encoding with no length counts as chunked whatever it names
    (wsgiref passes ``gzip`` on, unread), so ``chunked_input`` refuses any
    coding but chunked alone (501, RFC 9112 6.1): taken for no body, it too
    was dropped unsaid.
    """
    text = environ.get("CONTENT_LENGTH", "")
    if text.isascii() and text.isdigit():
        length: int | None = int(text)
    elif text.strip(" \t"):
        length = _listed_length(text)
    else:
        length = None
    chunked = length is None and bool(environ.get("HTTP_TRANSFER_ENCODING", "").strip(" \t"))
    return length, chunked


def _listed_length(text: str) -> int:
    """The one length in a CONTENT_LENGTH with whitespace or a repeated list; InvalidLength else."""
    values = {value.strip(" \t") for value in text.split(",")}
    if len(values) == 1 and (value := values.pop()).isascii() and value.isdigit():
        return int(value)
    raise InvalidLength(f"Content-Length {text!r} is not a length.")


def chunked_input(environ: WSGIEnvironment, limit: int = 0) -> Any:
    """``wsgi.input`` of a chunked request, if it can be read to its end as the plain body.

    With a ``limit`` (bytes; 0 for none), reading past it raises BodyTooLarge
    (a :class:`LimitedBody`).  Raises UnsupportedCoding unless the codings are
    ``chunked`` alone (any case, spaces and empty list elements aside), and
    LengthRequired unless the server ends the stream (``wsgi.input_terminated``,
    as gunicorn and the reference server set; werkzeug reads no such body
    without it either).
    """
    codings = [
        coding.strip(" \t").lower() for coding in environ["HTTP_TRANSFER_ENCODING"].split(",")
    ]
    if [coding for coding in codings if coding] != ["chunked"]:
        raise UnsupportedCoding(
            f"Transfer-Encoding {environ['HTTP_TRANSFER_ENCODING']!r}: only chunked is supported."
        )
    if not environ.get("wsgi.input_terminated"):
        raise LengthRequired(
            "A Content-Length is required: this server does not end a chunked body."
        )
    body = environ["wsgi.input"]
    return LimitedBody(body, limit) if limit else body


def read_body(body: Any, size: int) -> bytes:
    """Up to ``size`` bytes of ``body``; whatever reading it raises becomes ClientBodyError.

    A socket's error (a server that lets it through, as gunicorn does) is
    worded as the reference server words its own: "the client reset the
    connection before the body ended", "... failed: TLS error: bad record mac".
    """
    try:
        return body.read(size)  # type: ignore[no-any-return]
    except ClientBodyError:
        raise  # the client's already (a body over the limit)
    except OSError as exc:
        raise ClientBodyError(body_failure(exc)) from exc
    except Exception as exc:  # the client's side, whatever the server in front raises
        raise ClientBodyError(f"reading the request body failed: {exc}") from exc


def spool_body(body: Any) -> tuple[IO[bytes], int]:
    """Read a body of unknown length (chunked) whole: a file positioned at its start, and its size.

    For apps and upstreams that read no body without a Content-Length (Django,
    under any WSGI server but waitress), as nginx's ``proxy_request_buffering``.
    Up to SPOOL_MEMORY bytes stay in memory, the rest goes to a temporary file,
    so memory stays bounded whatever the size.  A failure to read raises
    ClientBodyError (the file is closed then); otherwise the caller closes the file.
    """
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)  # noqa: SIM115 (returned)
    try:
        while block := read_body(body, BLOCK):
            spool.write(block)
        size = spool.tell()
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool, size


def body_failed(
    error: ClientBodyError,
    environ: WSGIEnvironment,
    start_response: StartResponse,
    log: logging.Logger | logging.LoggerAdapter[Any],
) -> Iterable[bytes]:
    """Answer a client body that failed or is too large: 413, 411, 501 or 400, logged.

    The reference server's own ProtocolError goes back to it, so it answers
    as it does to any app (408 for a slow client, 400 for one that left);
    anything else is 400, as nginx answers a body cut short.
    """
    if isinstance(error.__cause__, ProtocolError):
        raise error.__cause__
    log.info("request body failed: %s", error)
    if isinstance(error, BodyTooLarge):
        answer = refusal(webob.exc.HTTPRequestEntityTooLarge, str(error))
    elif isinstance(error, LengthRequired):
        answer = refusal(webob.exc.HTTPLengthRequired, str(error))
    elif isinstance(error, UnsupportedCoding):
        answer = refusal(webob.exc.HTTPNotImplemented, str(error))
    elif isinstance(error, InvalidLength):
        answer = refusal(webob.exc.HTTPBadRequest, str(error))
    else:
        answer = refusal(webob.exc.HTTPBadRequest, "The request body did not arrive whole.")
    return answer(environ, start_response)
