"""PEP 3333 environ for one parsed request, and ``wsgi.input`` over the parsed body.

Sans-IO: ``Input`` asks its ``fill`` callback for more bytes; the connection
module supplies that callback (the only place that reads the socket).

    base = environ_base(config, "127.0.0.1", 8000, multiprocess=False)
    environ = build_environ(base, request, ("127.0.0.1", 5555), Input(request, fill))

A peer in ``--forwarded-allow-ips`` (a TLS-terminating proxy) may say the
request came over HTTPS; its connections get ``build_proxied_environ``,
which sets ``wsgi.url_scheme`` from its headers (see ``forwarded_scheme``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from ..errors import ProtocolError, RequestBodyError
from .config import ServerConfig
from .request import Request

__all__ = [
    "FileWrapper",
    "Input",
    "build_environ",
    "build_proxied_environ",
    "environ_base",
    "forwarded_scheme",
]

#: Common header names mapped to their environ keys, so the hot path skips the string work.
_KNOWN = {
    name: "HTTP_" + name.decode().upper().replace("-", "_")
    for name in (
        b"host",
        b"user-agent",
        b"accept",
        b"accept-encoding",
        b"accept-language",
        b"connection",
        b"cookie",
        b"referer",
        b"cache-control",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-request-id",
        b"authorization",
        b"origin",
        b"expect",
        b"transfer-encoding",
        b"upgrade",
    )
}
_KNOWN.update({b"content-type": "CONTENT_TYPE", b"content-length": "CONTENT_LENGTH"})


class FileWrapper:
    """``wsgi.file_wrapper``: iterates a file in blocks; the server sendfile()s real files.

    It is its own iterator and passes ``seekable()``, ``seek()`` and ``tell()`` on
    to the file, as werkzeug's own wrapper does: a ``Range`` answer built around
    it (Flask's ``send_file(conditional=True)``) then seeks to the range instead
    of reading and dropping every byte before it, and closing that answer
    closes the file.
    """

    def __init__(self, filelike: Any, blksize: int = 65536) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> FileWrapper:
        return self

    def __next__(self) -> bytes:
        block: bytes = self.filelike.read(self.blksize)
        if block:
            return block
        raise StopIteration

    def seekable(self) -> bool:
        """Whether the file can seek and tell where it is (a pipe or socket cannot)."""
        filelike = self.filelike
        if not (hasattr(filelike, "seek") and hasattr(filelike, "tell")):
            return False
        seekable = getattr(filelike, "seekable", None)
        return True if seekable is None else bool(seekable())

    def seek(self, offset: int, whence: int = 0) -> None:
        self.filelike.seek(offset, whence)

    def tell(self) -> int:
        return int(self.filelike.tell())


def environ_base(
    config: ServerConfig, host: str, port: int, *, multiprocess: bool, tls: bool = False
) -> dict[str, Any]:
    """The keys every request of one listener shares, computed once.

    ``tls``: the listener serves HTTPS, so ``wsgi.url_scheme`` is ``https``
    and ``HTTPS`` is ``on`` (as Apache, nginx's fastcgi_params and werkzeug's
    dev server set it), whoever the peer.
    """
    base = {
        "SERVER_NAME": host,
        "SERVER_PORT": str(port),
        # As PATH_INFO, which it is matched against: UTF-8 bytes carried as latin-1.
        "SCRIPT_NAME": config.root_path.encode("utf-8", "surrogateescape").decode("latin-1"),
        "SERVER_SOFTWARE": "wsgistack",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "wsgi.file_wrapper": FileWrapper,
    }
    if tls:
        base["wsgi.url_scheme"] = "https"
        base["HTTPS"] = "on"
    return base


def _path(raw: bytes) -> str:
    # PEP 3333: PATH_INFO is the percent-decoded path, bytes carried as latin-1.
    return unquote_to_bytes(raw).decode("latin-1") if b"%" in raw else raw.decode("latin-1")


def build_environ(
    base: dict[str, Any], request: Request, peer: Any, wsgi_input: Input
) -> dict[str, Any]:
    """The environ for ``request`` (headers with ``_`` in their name are dropped)."""
    environ = base.copy()
    url = request.url
    authority = None
    if url[:1] == b"/":
        # The fragment goes first: a "?" inside it does not start a query.
        path, _, query = url.partition(b"#")[0].partition(b"?")
    elif url == b"*":
        path, query = b"", b""  # RFC 9112 3.2.4 asterisk-form: RAW_URI keeps the "*"
    else:
        assert request.target is not None  # the parser took an absolute-form target apart
        path, query, authority = request.target
    path_info = _path(path)
    script_name = base["SCRIPT_NAME"]
    if script_name and (path_info == script_name or path_info.startswith(script_name + "/")):
        path_info = path_info[len(script_name) :]
    environ["REQUEST_METHOD"] = request.method
    environ["PATH_INFO"] = path_info
    environ["QUERY_STRING"] = query.decode("latin-1")
    environ["RAW_URI"] = url.decode("latin-1")
    environ["SERVER_PROTOCOL"] = "HTTP/" + request.version
    if isinstance(peer, tuple):
        environ["REMOTE_ADDR"] = peer[0]
        environ["REMOTE_PORT"] = str(peer[1])
    else:
        environ["REMOTE_ADDR"] = "127.0.0.1" if peer is None else str(peer or "")
        environ["REMOTE_PORT"] = "0"
    known = _KNOWN
    for name, value in request.headers:
        key = known.get(name) or known.get(name.lower())
        if key is None:
            if b"_" in name:
                continue  # X_Forwarded_For must not impersonate X-Forwarded-For
            key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
        text = value.decode("latin-1")
        if key in environ:
            text = environ[key] + ("; " if key == "HTTP_COOKIE" else ", ") + text
        environ[key] = text
    if authority is not None:
        environ["HTTP_HOST"] = authority  # RFC 9112 3.2.2: the target wins over Host
    if request.chunked:
        environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input"] = wsgi_input
    return environ


#: gunicorn's ``secure_scheme_headers``: the environ key, and the value meaning HTTPS.
_SCHEME_HEADERS = (
    ("HTTP_X_FORWARDED_PROTO", "https"),
    ("HTTP_X_FORWARDED_PROTOCOL", "ssl"),
    ("HTTP_X_FORWARDED_SSL", "on"),
)


def forwarded_scheme(environ: dict[str, Any]) -> str | None:
    """``https`` or ``http`` as a trusted proxy's headers say; None when it sent none.

    Values are compared without regard to case.  A list (``https, http``, a
    chain of proxies each appending) counts by its last value: the one our
    peer, the proxy we trust, wrote; values to its left came from hops we
    know nothing of, the client perhaps.  Headers that disagree are a 400, as
    in gunicorn: a proxy that sets one and passes the others through from
    the client would otherwise let a client on plain HTTP claim HTTPS.
    """
    scheme = None
    for key, secure in _SCHEME_HEADERS:
        value = environ.get(key)
        if value is None:
            continue
        said = "https" if value.rpartition(",")[2].strip().lower() == secure else "http"
        if scheme is not None and said != scheme:
            raise ProtocolError("the proxy's X-Forwarded-Proto/-Protocol/-Ssl disagree", 400)
        scheme = said
    return scheme


def build_proxied_environ(
    base: dict[str, Any], request: Request, peer: Any, wsgi_input: Input
) -> dict[str, Any]:
    """``build_environ`` for a trusted proxy's connection: its scheme headers are believed.

    Only ``wsgi.url_scheme`` changes (PEP 3333 has no other key for it, and
    gunicorn and werkzeug set no ``HTTPS``); ``SERVER_NAME``/``SERVER_PORT``
    stay the listener's, as in gunicorn: URLs are built on ``Host``.
    """
    environ = build_environ(base, request, peer, wsgi_input)
    scheme = forwarded_scheme(environ)
    if scheme is not None:
        environ["wsgi.url_scheme"] = scheme
    return environ


class Input:
    """``wsgi.input``: reads exactly the request body, then returns b"" (never past it).

    ``fill()`` reads more bytes into the parser (raising ``ProtocolError`` on a
    timeout or a broken body); ``on_first_read()`` sends ``100 Continue``.
    Sizes mean what they mean for ``io.BytesIO``, and it iterates by line.
    Blocks are gathered in a list and joined once, and unread bytes stay in
    ``_buffer`` from ``_pos`` on, so reading a body costs time in proportion
    to its size, however it is read.
    """

    def __init__(
        self,
        request: Request,
        fill: Callable[[], None],
        on_first_read: Callable[[], None] | None = None,
    ) -> None:
        self._request = request
        self._fill = fill
        self._on_first_read: Callable[[], None] | None = on_first_read
        self._buffer = b""
        self._pos = 0
        #: The error a read raised (the body broke): the server answers with its status.
        self.error: RequestBodyError | None = None

    def _next_block(self) -> bytes:
        """The next parsed block of the body; b"" at its end."""
        request = self._request
        while not request.body:
            if request.error is not None:
                raise self._broken(request.error)
            if request.complete:
                return b""
            first = self._on_first_read
            if first is not None:
                self._on_first_read = None
                first()
            try:
                self._fill()
            except ProtocolError as exc:
                raise self._broken(exc) from None
        return request.body.popleft()

    def _broken(self, error: ProtocolError) -> RequestBodyError:
        """The error to raise for a broken body, remembered for the server's answer."""
        if not isinstance(error, RequestBodyError):
            error = RequestBodyError(str(error), error.status_hint)
        self.error = error
        return error

    def _keep(self, data: bytes, end: int) -> bytes:
        """Return ``data[:end]`` and keep the rest buffered."""
        if end >= len(data):
            self._buffer, self._pos = b"", 0
            return data
        self._buffer, self._pos = data, end
        return data[:end]

    def _rest(self) -> list[bytes]:
        """What is buffered and unread, as the first of a list of parts (or none)."""
        buffer, pos = self._buffer, self._pos
        return [buffer[pos:]] if pos < len(buffer) else []

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = self._rest()
            while block := self._next_block():
                parts.append(block)
            self._buffer, self._pos = b"", 0
            return b"".join(parts)  # one block is returned as is, not copied
        buffer, pos = self._buffer, self._pos
        if len(buffer) - pos >= size:
            self._pos = pos + size
            return buffer[pos : pos + size]
        parts = self._rest()
        have = len(buffer) - pos
        while have < size and (block := self._next_block()):
            parts.append(block)
            have += len(block)
        return self._keep(b"".join(parts), size)

    def readline(self, size: int | None = -1) -> bytes:
        limit = sys.maxsize if size is None or size < 0 else size
        buffer, pos = self._buffer, self._pos
        end = buffer.find(b"\n", pos, pos + limit)
        if end >= 0 or len(buffer) - pos >= limit:
            end = end + 1 if end >= 0 else pos + limit
            self._pos = end
            return buffer[pos:end]
        # No line end in what is buffered: gather blocks, searching each new one only.
        parts = self._rest()
        have = searched = len(buffer) - pos
        while have < limit and (block := self._next_block()):
            parts.append(block)
            searched = have
            have += len(block)
            if b"\n" in block:
                break
        data = b"".join(parts)
        end = data.find(b"\n", searched, limit)
        return self._keep(data, end + 1 if end >= 0 else limit)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        limit = -1 if hint is None else hint
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < limit <= total:
                break
        return lines

    def __iter__(self) -> Input:
        return self

    def __next__(self) -> bytes:
        """The next line: the input is its own iterator, as a file (and gunicorn's input) is,
        so ``next(environ["wsgi.input"])`` reads a line here as under other servers."""
        line = self.readline()
        if line:
            return line
        raise StopIteration

    @property
    def exhausted(self) -> bool:
        request = self._request
        return request.complete and not request.body and self._pos >= len(self._buffer)
