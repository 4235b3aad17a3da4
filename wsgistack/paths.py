"""Path-prefix scopes, for the middlewares that apply only under some paths.

A prefix covers whole segments: ``/admin`` covers ``/admin`` and
``/admin/users``, not ``/administrator``.  A request is under a prefix when
its path is, as sent or with empty and dot segments resolved: ``//admin``
reaches a PrefixDispatcher's ``/admin`` mount, and ``/x/../admin`` reaches
``/admin`` in an app or a proxy behind us that resolves dot segments, so
neither may slip past a filter or a limiter scoped to ``/admin``.  The path
is the app's own (``PATH_INFO``, what its routes read) or the URL's
(``SCRIPT_NAME + PATH_INFO``): under ``--root-path /app``, both ``/admin``
and ``/app/admin`` cover the route ``/admin``.

    scope = prefixes(["/admin"], "IPFilter: paths")
    if under(environ, scope):
        ...
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote, unquote

from ._types import WSGIEnvironment
from .errors import ConfigError
from .options import listed

__all__ = [
    "SAFE_PATH",
    "check_spelling",
    "decoded_spelling",
    "escaped_spelling",
    "folded",
    "normal_spelling",
    "overlap",
    "prefixes",
    "resolved",
    "under",
    "url_path",
    "wsgi_str",
]

_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
#: What a URL path holds unescaped besides letters and digits: "/" and the
#: rest of RFC 3986's pchar (unreserved, sub-delims, ":" and "@"; §3.3).
SAFE_PATH = "/:@!$&'()*+,;=-._~"
#: path-abempty = *( "/" segment ), segment = *pchar (RFC 3986 §3.3).
_URL_PATH = re.compile(r"(?:[A-Za-z0-9/:@!$&'()*+,;=\-._~]|%[0-9A-Fa-f]{2})*\Z")
#: A path of pchars alone, which a URL spells as it is.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/:@!$&'()*+,;=\-._~]*\Z")
_BARE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
#: unreserved (RFC 3986 §2.3): an escape of one of these names the same character.
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def decoded_spelling(path: str) -> str | None:
    """``path`` decoded, if it is written with %-escapes; else None.

    PATH_INFO arrives percent-decoded (PEP 3333), so a prefix, mount or root
    path written escaped could never match: the caller refuses it with this.
    """
    return unquote(path) if _PERCENT_ESCAPE.search(path) else None


def url_path(path: str) -> str:
    """A decoded path (PATH_INFO, a WSGI str) spelled for a URL: %-escapes where pchars end.

    Most paths need none, and are returned without going through ``quote``.
    """
    if _PLAIN_PATH.match(path):
        return path
    return quote(path.encode("latin-1"), safe=SAFE_PATH)


def escaped_spelling(path: str) -> str | None:
    """``path`` as a URL must spell it (``/my%20app``), if it is not so spelled; else None.

    For a path sent on as written (an upstream's base path): a space, a
    non-ASCII letter or a bare ``%`` would break the request line or name
    another path.
    """
    if _URL_PATH.match(path):
        return None
    return quote(_BARE_PERCENT.sub("%25", path), safe=SAFE_PATH + "%")


def _normal_escape(match: re.Match[str]) -> str:
    char = chr(int(match[0][1:], 16))
    return char if char in _UNRESERVED else match[0].upper()


def normal_spelling(path: str) -> str:
    """``path`` with its escapes normalised (RFC 3986 §6.2.2.1-2), for comparing paths.

    ``/%7Eapp``, ``/%7eapp`` and ``/~app`` name one path: an escaped unreserved
    character is decoded and every other escape upper-cased.  ``%2F`` stays
    escaped: it is no segment boundary.
    """
    return _PERCENT_ESCAPE.sub(_normal_escape, path) if "%" in path else path


def wsgi_str(text: str) -> str:
    """A unicode path as PEP 3333 shows it in PATH_INFO: UTF-8 bytes read as latin-1."""
    return text.encode("utf-8").decode("latin-1")


def folded(path: str) -> str:
    """A WSGI path with letter case folded, for an app that routes case-blind.

    Non-ASCII letters too (``/CAFÉ`` is ``/café``): the UTF-8 bytes that PEP
    3333 carries as latin-1 are decoded first, and bytes that are not UTF-8
    stay as sent.  Every name a case-blind disk equates folds alike: NTFS (and
    so IIS) compares letters by their upper case, where a dotless i (U+0131) is
    ``I`` and a final ``ς`` is ``Σ``; a macOS disk ignores case and how an
    accent is encoded (``e`` + U+0301 is ``é``).  So the fold is upper case,
    then full case folding, in one normal form: it may join a few names a disk
    keeps apart (``STRASSE`` and ``straße``), never part two it joins.
    """
    if path.isascii():
        return path.lower()
    try:
        text = path.encode("latin-1").decode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # not a WSGI str (a layer set text): fold it as it is
        return _folded_text(path)
    return _folded_text(text).encode("utf-8", "surrogateescape").decode("latin-1")


def _folded_text(text: str) -> str:
    """``text`` upper-cased, case-folded and composed (Unicode's caseless match, NFD aside)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", text).upper().casefold())


def check_spelling(path: str, option: str) -> None:
    """Refuse a configured path that could never match: PATH_INFO is decoded and has no query."""
    if "?" in path or "#" in path:
        raise ConfigError(f"{option}: {path!r}: it is a path, without a query or fragment")
    if (decoded := decoded_spelling(path)) is not None:
        raise ConfigError(
            f"{option}: {path!r}: it is matched on the decoded path; write {decoded!r}"
        )


def prefixes(value: object, option: str, *, ignore_case: bool = False) -> tuple[str, ...]:
    """The prefixes of a ``paths`` option (None: none), checked and resolved.

    With ``ignore_case`` they are :func:`folded`, for :func:`under` with it too.
    """
    if value is None:
        return ()
    scope = []
    for prefix in listed(value, option, "prefixes"):
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            raise ConfigError(f"{option}: {prefix!r} must be a path starting with '/'")
        check_spelling(prefix, option)
        try:  # PEP 3333: PATH_INFO carries the path's UTF-8 bytes as latin-1 ("/café": "/cafÃ©")
            wsgi_prefix = wsgi_str(prefix)
        except UnicodeEncodeError:
            raise ConfigError(f"{option}: {prefix!r} is not valid text") from None
        prefix = resolved(wsgi_prefix).rstrip("/")
        scope.append(folded(prefix) if ignore_case else prefix)
    return tuple(scope)


def resolved(path: str) -> str:
    """``path`` without empty and dot segments (RFC 3986 5.2.4), as a router may read it."""
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    return "/" + "/".join(segments)


def under(environ: WSGIEnvironment, scope: tuple[str, ...], *, ignore_case: bool = False) -> bool:
    """Whether the request is under one of ``scope``, read as the app's path or the URL's.

    The app's path is ``PATH_INFO``, what its routes read: under a root path
    (``--root-path /app``, nginx's ``SCRIPT_NAME``) ``/admin`` is the route that
    ``/app/admin`` reaches, and the README's ``paths=["/admin"]`` must cover it.
    The URL's path is ``SCRIPT_NAME + PATH_INFO``, for a prefix written as the
    browser shows it (``/app/admin``).  Either one being under a prefix is enough.
    With ``ignore_case`` (and a scope from ``prefixes`` with it) letter case is
    ignored, so ``/ADMIN`` is under ``/admin`` for an app that routes it there.
    """
    path_info = environ.get("PATH_INFO", "")
    script_name = environ.get("SCRIPT_NAME", "")
    if ignore_case:
        path_info, script_name = folded(path_info), folded(script_name)
    return _path_under(path_info, scope) or (
        bool(script_name) and _path_under(script_name + path_info, scope)
    )


def overlap(first: tuple[str, ...], second: tuple[str, ...], *, ignore_case: bool = False) -> bool:
    """Whether one request can be under both scopes (an empty scope covers every path).

    With ``ignore_case`` (either scope is matched so), both are compared
    :func:`folded`: ``/Login`` matched exactly meets ``/login`` matched case-blind.
    """
    if not first or not second:
        return True
    if ignore_case:
        first, second = tuple(map(folded, first)), tuple(map(folded, second))
    return any(_starts(prefix, second) for prefix in first) or any(
        _starts(prefix, first) for prefix in second
    )


def _path_under(path: str, scope: tuple[str, ...]) -> bool:
    if _starts(path, scope):
        return True
    # Only odd paths pay for resolving: as sent or as resolved, no spelling slips by.
    # "admin/x" too (werkzeug's server passes "GET admin/x" on): routers read "/admin/x".
    odd = "//" in path or "/." in path or (path[:1] != "/" and path != "")
    return odd and _starts(resolved(path), scope)


def _starts(path: str, scope: tuple[str, ...]) -> bool:
    for prefix in scope:
        if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
            return True
    return False
