"""``--access-log-format``: gunicorn's atoms, compiled once into a function per line.

A gunicorn user's ``access_log_format`` works unchanged: ``%(h)s``, ``%(D)s``,
``%({x-request-id}i)s`` and the rest (see ``ATOMS``).  Some atoms mean what
ours should (``h`` is the client as the layers decided, ``u`` only a user an
auth layer vouched for); every text field is escaped as the combined line's
fields are, so no atom can forge a field or a line.

    line = compile_format('%(h)s "%(r)s" %(s)s %(D)s')
    line(Entry(environ, "200", 512, started, headers))  # '192.0.2.1 "GET / HTTP/1.1" 200 1834'
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import Any

from .._logtext import LOG_ESCAPES
from ..clientip import client_ip
from ..errors import ConfigError

__all__ = ["ATOMS", "DEFAULT_FORMAT", "Entry", "compile_format"]

#: Apache's and nginx's "combined" line, as written before the format was an
#: option: the identity and user fields are plain dashes, so a user an app
#: sets (``%(u)s``) does not change the default line.
DEFAULT_FORMAT = '%(h)s - - %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'


class Entry:
    """What one line is made of: the request's environ and how it was answered.

    ``environ`` is empty for a request refused before it had one (a malformed
    head): its ``host`` and ``request`` line are given instead.  ``started`` is
    the ``time.monotonic()`` at which the request head was complete, ``None``
    when it never was; ``headers`` are the response's header fields.
    """

    __slots__ = ("ended", "environ", "headers", "host", "request", "size", "started", "status")

    def __init__(
        self,
        environ: dict[str, Any],
        status: str,
        size: int,
        started: float | None = None,
        headers: list[tuple[str, str]] | None = None,
        *,
        host: str | None = None,
        request: str | None = None,
    ) -> None:
        self.environ = environ
        self.status = status
        self.size = size
        self.started = started
        self.ended = time.monotonic() if started is not None else 0.0
        self.headers = headers or []
        self.host = host
        self.request = request


Atom = Callable[[Entry], str]


def _text(value: str) -> str:
    # Escaped as nginx escapes its log (see _logtext): no forged fields or lines.
    return value.translate(LOG_ESCAPES) if value else "-"


def _host(entry: Entry) -> str:
    if entry.host is not None:
        return _text(entry.host)
    address = client_ip(entry.environ)  # None: no address (a unix socket), REMOTE_ADDR as it is
    return _text(entry.environ.get("REMOTE_ADDR", "")) if address is None else str(address)


def _request(entry: Entry) -> str:
    if entry.request is not None:
        return _text(entry.request)
    environ = entry.environ
    return _text(f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} {environ['SERVER_PROTOCOL']}")


#: English, as Apache and nginx write them: %b follows the locale an app may set.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _time(entry: Entry) -> str:
    now = time.localtime()
    return time.strftime(f"[%d/{_MONTHS[now.tm_mon - 1]}/%Y:%H:%M:%S %z]", now)


def _user(entry: Entry) -> str:
    # REMOTE_USER, as an auth layer set it (Apache's %u); not gunicorn's name
    # from a Basic header, which any client can write and no one checked.
    return _text(entry.environ.get("REMOTE_USER", ""))


def _environ(key: str) -> Atom:
    def atom(entry: Entry) -> str:
        value = entry.environ.get(key)
        return value.translate(LOG_ESCAPES) if value else "-"  # _text, inlined: every line

    return atom


#: An absolute-form target's scheme and authority (RFC 9112 3.2.2), ahead of its path.
_SCHEME_AUTHORITY = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")


def _target(entry: Entry) -> str | None:
    """The target as received, before any layer mounted it; None for a request refused unread.

    An absolute-form target (``GET http://example.com/a?x``) is ``/a?x``, so
    its path is ``/a``, as Apache's ``%U`` and gunicorn's ``U`` write it, not the URL.
    """
    target = entry.environ.get("RAW_URI")
    if target is None:
        return None
    if target[:1] != "/" and (authority := _SCHEME_AUTHORITY.match(target)):
        rest = target[authority.end() :]
        target = rest if rest[:1] == "/" else "/" + rest
    return target


def _path(entry: Entry) -> str:
    target = _target(entry)
    return "-" if target is None else _text(target.partition("?")[0])


def _query(entry: Entry) -> str:
    # Empty when there is none, as gunicorn's q: "%(U)s?%(q)s" writes "/p?", not "/p?-".
    target = _target(entry)
    return "-" if target is None else target.partition("?")[2].translate(LOG_ESCAPES)


def _duration(unit: int) -> Atom:
    """Whole seconds (1), milliseconds (1000) or microseconds (1000000), as gunicorn's T, M, D."""

    def atom(entry: Entry) -> str:
        if entry.started is None:
            return "-"
        return str(int((entry.ended - entry.started) * unit))

    return atom


def _seconds(entry: Entry) -> str:
    if entry.started is None:
        return "-"
    return f"{entry.ended - entry.started:.6f}"


#: gunicorn's atoms (its glogging.Logger.atoms), each with its meaning here.
ATOMS: dict[str, tuple[str, Atom]] = {
    "h": ("the client, as the layers decided it (a trusted proxy's X-Forwarded-For)", _host),
    "l": ("'-' (identd, as in the combined format)", lambda entry: "-"),
    "u": ("REMOTE_USER, as an auth layer set it, or '-'", _user),
    "t": ("the time of the line, [10/Oct/2000:13:55:36 -0700]", _time),
    "r": ("the request line, GET /path?q=1 HTTP/1.1", _request),
    "m": ("the method", _environ("REQUEST_METHOD")),
    "U": ("the path as received, without the query", _path),
    "q": ("the query string, without '?'; empty when there is none", _query),
    "H": ("the protocol, HTTP/1.1", _environ("SERVER_PROTOCOL")),
    "s": ("the status code", lambda entry: entry.status),
    "B": ("the body bytes sent", lambda entry: str(entry.size)),
    "b": ("the body bytes sent, '-' for none", lambda entry: str(entry.size or "-")),
    "f": ("the Referer header", _environ("HTTP_REFERER")),
    "a": ("the User-Agent header", _environ("HTTP_USER_AGENT")),
    "T": ("the duration in whole seconds", _duration(1)),
    "M": ("the duration in milliseconds", _duration(1000)),
    "D": ("the duration in microseconds", _duration(1_000_000)),
    "L": ("the duration in seconds, 0.001234", _seconds),
    "p": ("the worker's process id, <1234>", lambda entry: f"<{os.getpid()}>"),
}

#: ``{name}i`` (request header), ``{name}o`` (response header), ``{name}e`` (environ).
_NAMED = re.compile(r"\{([^{}]+)\}([ioe])")


def _request_header(name: str) -> Atom:
    lowered = name.lower()
    special = {"content-type": "CONTENT_TYPE", "content-length": "CONTENT_LENGTH"}
    return _environ(special.get(lowered) or "HTTP_" + lowered.upper().replace("-", "_"))


def _response_header(name: str) -> Atom:
    lowered = name.lower()

    def atom(entry: Entry) -> str:
        for field, value in entry.headers:  # the first, as nginx's $sent_http_NAME
            if field.lower() == lowered:
                return _text(value)
        return "-"

    return atom


def _environ_key(name: str) -> Atom:
    """The environ's value under ``name``, as gunicorn finds it: in any case."""

    def atom(entry: Entry) -> str:
        environ = entry.environ
        value = environ.get(name)
        if value is None:
            lowered = name.lower()
            value = next((v for k, v in environ.items() if k.lower() == lowered), "")
        return _text(value if isinstance(value, str) else str(value))

    return atom


_KINDS = {"i": _request_header, "o": _response_header, "e": _environ_key}


def _atom(name: str) -> Atom:
    if name in ATOMS:
        return ATOMS[name][1]
    named = _NAMED.fullmatch(name)
    if named is None:
        raise ConfigError(
            f"access_log_format: unknown atom %({name})s; known: {' '.join(ATOMS)},"
            " {header}i, {header}o and {key}e"
        )
    return _KINDS[named[2]](named[1])


def _combined(entry: Entry) -> str:
    """``DEFAULT_FORMAT``, written without the atoms' table: the default line costs what it did.

    A test holds it to the table's line for the same format, byte for byte.
    """
    environ = entry.environ
    return (
        f'{_host(entry)} - - {_time(entry)} "{_request(entry)}" {entry.status}'
        f' {entry.size or "-"} "{_text(environ.get("HTTP_REFERER", ""))}"'
        f' "{_text(environ.get("HTTP_USER_AGENT", ""))}"'
    )


class _Names(dict[str, str]):
    """A mapping that records the names a format asks for and answers each with text."""

    def __missing__(self, key: str) -> str:
        self[key] = "-"
        return "-"


def compile_format(text: str) -> Callable[[Entry], str]:
    """The function that writes a line (without its newline) in the format ``text``.

    Checked here, once: an unknown atom or a format Python's ``%`` cannot apply
    to text (``%(D)d``, a lone ``%``) is a ``ConfigError`` naming the option, so
    a format that starts writes every line.
    """
    if not isinstance(text, str) or not text:
        raise ConfigError(
            f"access_log_format: {text!r} must be a format such as {DEFAULT_FORMAT!r}"
        )
    if any(ord(char) < 0x20 and char != "\t" for char in text) or "\x7f" in text:
        raise ConfigError(
            f"access_log_format: {text!r} has a control character: one line a request"
        )
    if re.search(r"%(?![(])", text.replace("%%", "")):
        raise ConfigError(
            f"access_log_format: {text!r}: write each atom as %(name)s, and a literal % as %%"
        )
    names = _Names()
    try:
        text % names  # applied once to learn its names and to check that it applies
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(
            f"access_log_format: {text!r}: {exc}; write each atom as %(name)s"
            " (its value is text), and a literal % as %%"
        ) from None
    atoms = tuple((name, _atom(name)) for name in names)
    if text == DEFAULT_FORMAT:
        return _combined

    def line(entry: Entry) -> str:
        return text % {name: atom(entry) for name, atom in atoms}

    return line
