"""PrefixDispatcher: many apps in one process, each under its own prefix or host name.

Each mounted app believes it is the whole site: the matched prefix moves from
``PATH_INFO`` to ``SCRIPT_NAME`` (PEP 3333), so Flask's ``url_for`` and
Django's ``reverse`` build prefixed URLs by themselves.

    application = PrefixDispatcher({
        "/api": flask_app.wsgi_app,
        "/admin": django_application,
        "docs.example.com": docs_app,         # a host
        "*.example.com/v1": tenant_app,       # any subdomain, under /v1
    }, default=legacy_app)

Rules: the longest prefix wins, matched on whole path segments (``/api``
does not match ``/apiv2``); host mounts are tried before path-only ones, an
exact host before a wildcard, and a host with a port only on that port (a
Host header without one is on SERVER_PORT: browsers omit :80 and :443).
Matching walks the request path's segments through dicts: its cost does not
grow with the number of mounts.  ``/admin`` (no slash) is redirected to
``/admin/`` with the query string kept, unless ``redirect_slash=False``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import webob.exc

from .._types import StartResponse, WSGIApplication, WSGIEnvironment
from ..errors import ConfigError
from ..options import flag
from ..paths import SAFE_PATH, decoded_spelling, url_path, wsgi_str
from ..refusals import refusal

__all__ = ["PrefixDispatcher"]

#: The slash redirect's body (webob's words), linking the path it redirects to.
_MOVED = '${explanation} <a href="${detail}">${detail}</a>; you should be redirected automatically.'


@dataclass(slots=True)
class _Table:
    """The mounts of one host (or of any host): canonical prefix -> (label, app).

    ``depths`` lists the segment counts that have a mount, deepest first, so a
    lookup tries at most that many prefixes of the path, however many mounts.
    """

    mounts: dict[str, tuple[str, WSGIApplication]] = field(default_factory=dict)
    depths: tuple[int, ...] = ()


def _segments(path: str) -> list[str]:
    return [segment for segment in path.strip("/").split("/") if segment]


def _rooted(path: str) -> str:
    """PATH_INFO as matched and cut: "" stays "", "a/x" is read as "/a/x".

    Matching and cutting use this one string, so the cut falls where the
    match ended (SCRIPT_NAME "/mnt" + "/a", PATH_INFO "/x"), never a character off.
    """
    return path if path[:1] == "/" or not path else "/" + path


def _ipv6(literal: str) -> str | None:
    """``"[0:0::1]"`` as ``"[::1]"`` (RFC 5952), so every spelling is one host; None if invalid."""
    try:
        return f"[{ipaddress.IPv6Address(literal[1:-1]).compressed}]"
    except ValueError:
        return None


def _split_key(key: str) -> tuple[str | None, str]:
    """``"api.example.com:8080/v1"`` -> (host, path); a path-only key has host None."""
    if key.startswith("/") or key == "":
        return None, key
    host, slash, path = key.partition("/")
    if host.startswith("["):  # an IPv6 literal, in its one spelling: "[0::1]" is "[::1]"
        end = host.find("]")
        canonical = _ipv6(host[: end + 1]) if end != -1 else None
        return (canonical + host[end + 1 :] if canonical else host.lower()), slash + path
    name, colon, port = host.lower().partition(":")
    if name[-1:] == "." and not name.startswith("["):  # as a request's Host is read
        name = name[:-1]
    return name + colon + port, slash + path


def _key_problem(key: str, host: str | None, path: str) -> str | None:
    """Why the mount ``key`` (split into ``host`` and ``path``) could match no request.

    Read as a host, a URL or a bad port would be a mount no Host header reaches:
    refused at start-up, not found missing in production.
    """
    if "://" in key:
        return " is a URL; mount a path ('/api') or a host ('api.example.com/v1')"
    if "?" in path or "#" in path:
        return ": a mount is matched on the path, without a query or fragment"
    if (decoded := decoded_spelling(path)) is not None:
        return f": a mount is matched on the decoded path; write {decoded!r}"
    if host is None:
        return None
    if host.startswith("["):  # an IPv6 literal: [::1]:8080
        end = host.find("]")
        name, port = host[: end + 1], host[end + 2 :] if end != -1 else ""
        if end == -1 or host[end + 1 : end + 2] not in ("", ":"):
            return " is not a host mount"
        if _ipv6(name) is None:
            return f": {name} is not an IPv6 address"
        has_port = host[end + 1 : end + 2] == ":"
    else:
        name, colon, port = host.partition(":")
        if ":" in port:
            return ": write an IPv6 host in brackets ('[::1]:8080')"
        has_port = bool(colon)
    if not name.isascii():
        return _idn_problem(name, host, path)
    label = name[2:] if name.startswith("*.") else name
    if not label or " " in name or label.startswith("*"):
        return " is not a host mount"
    if not name.startswith("[") and "" in label.split("."):
        # nginx's ".example.com" means the domain and its subdomains; as an exact
        # name it is one no Host header carries (RFC 1034 3.1: labels are not empty).
        domain = ".".join(part for part in label.split(".") if part)
        return (
            f": a host name has no empty labels; mount {domain!r} for the domain "
            f"and {'*.' + domain!r} for its subdomains"
        )
    if has_port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        return ": the port must be 1-65535"
    return None


def _idn_problem(name: str, host: str, path: str) -> str:
    """Why an international host name in a key never matches, and its ASCII spelling.

    Browsers send ``Host: xn--caf-dma.example.com`` for café.example.com (as
    nginx's server_name, the key must be written so).  Python's codec is IDNA
    2003, which spells ß and a few others unlike browsers: a spelling that
    does not decode back to the name, or is no mount either, is not offered.
    """
    hint = "write its xn-- form"
    try:
        ascii_name = name.encode("idna").decode("ascii")
        if ascii_name.encode("ascii").decode("idna") == name:
            ascii_host = ascii_name + host[len(name) :]
            if _key_problem(ascii_host + path, ascii_host, path) is None:
                hint = f"write {ascii_host + path!r}"
    except UnicodeError:
        pass
    return f": a Host header carries an international name in ASCII (IDNA); {hint}"


def _request_host(environ: WSGIEnvironment) -> tuple[str, str]:
    """(host, port) of the request, lower-cased, from Host or SERVER_NAME.

    A Host without a port (browsers leave out :80 and :443) is on the port the
    request came in on, SERVER_PORT, so a mount "example.com:443" still matches.
    """
    host = environ.get("HTTP_HOST")
    if not host:
        # HTTP/1.0 may send no Host: the request is on the bound address, which
        # servers write without brackets when it is IPv6 ("::1").
        name = environ.get("SERVER_NAME", "").lower()
        if ":" in name:
            name = _ipv6(f"[{name}]") or name
        return name, environ.get("SERVER_PORT", "")
    host = host.lower()
    if host.startswith("["):  # an IPv6 literal: [::1]:8080
        end = host.find("]")
        name, port = host[: end + 1], host[end + 2 :] if end != -1 else ""
        name = _ipv6(name) or name
    else:
        name, _, port = host.partition(":")
        if name[-1:] == ".":  # the DNS root's dot: the same name (nginx drops it too)
            name = name[:-1]
    return name, port or environ.get("SERVER_PORT", "")


def _lookup_uneven(table: _Table, path: str) -> tuple[tuple[str, WSGIApplication], int] | None:
    """The slow lookup for paths with repeated slashes: match on their non-empty segments."""
    segments: list[str] = []
    ends: list[int] = []
    end = -1
    for piece in path.split("/"):
        end += len(piece) + 1
        if piece:
            segments.append(piece)
            ends.append(end)
    for depth in table.depths:
        if depth == 0:
            found = table.mounts.get("")
            return None if found is None else (found, 0)
        if depth <= len(segments):
            found = table.mounts.get("/" + "/".join(segments[:depth]))
            if found is not None:
                return found, ends[depth - 1]
    return None


class PrefixDispatcher:
    """An app that sends each request to the app mounted at its prefix or host.

    :param mounts: prefix or host (``"/api"``, ``"api.example.com"``,
        ``"api.example.com:8080/v1"``, ``"*.example.com"``) -> WSGI app.
    :param default: the app for requests no mount matches; a 404 otherwise.
    :param redirect_slash: redirect ``/prefix`` to ``/prefix/`` (308, query kept);
        when false, pass it to the mount with an empty ``PATH_INFO``.
    """

    def __init__(
        self,
        mounts: Mapping[str, WSGIApplication],
        *,
        default: WSGIApplication | None = None,
        redirect_slash: bool = True,
    ) -> None:
        if not isinstance(mounts, Mapping):
            raise ConfigError(f"PrefixDispatcher: mounts: expected a mapping, got {mounts!r}")
        if default is not None and not callable(default):
            raise ConfigError(f"PrefixDispatcher: default: {default!r} is not a WSGI app")
        if not mounts and default is None:
            # An empty mounts table (a template not filled in): 404 to everything.
            raise ConfigError("PrefixDispatcher: mounts: none given and no default app")
        self.mounts = dict(mounts)
        self.default = default
        self.redirect_slash = flag(redirect_slash, "PrefixDispatcher: redirect_slash")
        self._paths = _Table()
        self._hosts: dict[str, _Table] = {}  # "host" or "host:port" -> its mounts
        self._wildcards: dict[str, _Table] = {}  # ".example.com" or ".example.com:port"
        for key, app in self.mounts.items():
            self._add(key, app)
        self._by_host = bool(self._hosts or self._wildcards)
        # Path-only mounts take the inlined fast path in __call__.
        self._simple = self._paths.mounts if self._paths.depths and not self._by_host else None
        self._deepest = self._paths.depths[0] if self._paths.depths else 0
        self._not_found = refusal(webob.exc.HTTPNotFound)

    def _add(self, key: str, app: WSGIApplication) -> None:
        if not isinstance(key, str):
            raise ConfigError(f"PrefixDispatcher: mounts: key {key!r} is not a string")
        if not callable(app):
            raise ConfigError(f"PrefixDispatcher: mounts: {key!r}: {app!r} is not a WSGI app")
        host, path = _split_key(key)
        problem = _key_problem(key, host, path)
        if problem is not None:
            raise ConfigError(f"PrefixDispatcher: mounts: {key!r}{problem}")
        if host is not None:
            tables = self._wildcards if host.startswith("*.") else self._hosts
            table = tables.setdefault(host[1:] if host.startswith("*.") else host, _Table())
        else:
            table = self._paths
        segments = _segments(wsgi_str(path))
        prefix = "/" + "/".join(segments) if segments else ""
        if prefix in table.mounts:
            raise ConfigError(
                f"PrefixDispatcher: mounts: {key!r} and {table.mounts[prefix][0]!r} "
                "are the same mount"
            )
        table.mounts[prefix] = (key, app)
        table.depths = tuple(sorted({*table.depths, len(segments)}, reverse=True))

    def _host_tables(self, environ: WSGIEnvironment) -> Iterable[_Table]:
        if not (self._hosts or self._wildcards):
            return
        name, port = _request_host(environ)
        with_port = f"{name}:{port}" if port else None
        for key in (with_port, name):
            if key is not None and key in self._hosts:
                yield self._hosts[key]
        if self._wildcards:
            labels = name.split(".")
            for start in range(1, len(labels)):
                suffix = "." + ".".join(labels[start:])
                for key in (f"{suffix}:{port}" if port else None, suffix):
                    if key is not None and key in self._wildcards:
                        yield self._wildcards[key]

    @staticmethod
    def _lookup(table: _Table, path: str) -> tuple[tuple[str, WSGIApplication], int] | None:
        """The longest mount of ``table`` on ``path``, and where in ``path`` it ends."""
        if "//" in path:
            return _lookup_uneven(table, path)
        mounts = table.mounts
        # parts[0] is "" (the path starts with "/"); split no deeper than the deepest mount.
        parts = path.split("/", table.depths[0] + 1)
        for depth in table.depths:
            if depth < len(parts):
                prefix = "/".join(parts[: depth + 1]) if depth else ""
                found = mounts.get(prefix)
                if found is not None:
                    return found, len(prefix)
        return None

    def _match(
        self, environ: WSGIEnvironment, path: str
    ) -> tuple[tuple[str, WSGIApplication], int] | None:
        """The mount for ``path`` ("" or starting with "/", see _rooted) and its length."""
        if self._by_host:
            for table in self._host_tables(environ):
                found = self._lookup(table, path)
                if found is not None:
                    return found
        return self._lookup(self._paths, path) if self._paths.depths else None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if self._simple and path[:1] == "/" and "//" not in path:
            # The common case, inlined from _lookup: a call costs more than the lookup.
            mounts = self._simple
            parts = path.split("/", self._deepest + 1)
            for depth in self._paths.depths:
                if depth < len(parts):
                    prefix = "/".join(parts[: depth + 1]) if depth else ""
                    mount = mounts.get(prefix)
                    if mount is not None:
                        app = mount[1]
                        cut = len(prefix)
                        break
            else:
                return (self.default or self._not_found)(environ, start_response)
        else:
            path = _rooted(path)
            found = self._match(environ, path)
            if found is None:
                return (self.default or self._not_found)(environ, start_response)
            (_, app), cut = found
            prefix = path[:cut]
            if "//" in prefix:
                # "//api" matched "/api": SCRIPT_NAME gets "/api", as url_for and
                # reverse() write it before every link; "//api/x" is the host "api".
                prefix = "/" + "/".join(_segments(prefix))
        if cut:
            # The matched text moves: SCRIPT_NAME + PATH_INFO is still the path,
            # with the slashes of the prefix made single.
            if cut >= len(path) and self.redirect_slash:
                return self._redirect(environ, start_response, prefix)
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
            environ["PATH_INFO"] = path[cut:]
        return app(environ, start_response)

    @staticmethod
    def _redirect(environ: WSGIEnvironment, start_response: StartResponse, prefix: str) -> Any:
        """308 to the prefix with its slash, as a path from the root (RFC 9110 10.2.2).

        A path, as Django's redirects are: an absolute URL built from ``Host``
        and ``wsgi.url_scheme`` points elsewhere behind a proxy that terminates
        TLS or listens on another port (``proxy_set_header Host $host`` drops
        the port), and nginx's ``proxy_redirect`` cannot map it back.
        """
        target = environ.get("SCRIPT_NAME", "") + prefix + "/"
        # One leading slash: "//x" would be a link to the host "x".
        location = "/" + url_path(target).lstrip("/")
        query = environ.get("QUERY_STRING", "")
        if query:  # as sent, with any byte outside ASCII %-escaped
            location += "?" + quote(query.encode("latin-1"), safe=SAFE_PATH + "?%")
        # webob makes a Location absolute; the body names the path as sent.
        moved = refusal(
            webob.exc.HTTPPermanentRedirect,
            location,
            location=location,
            body_template=_MOVED,
        )

        def as_path(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            kept = [(k, location if k.lower() == "location" else v) for k, v in headers]
            return start_response(status, kept, exc_info)

        return moved(environ, as_path)

    def route(self, path: str, host: str | None = None) -> tuple[str, WSGIApplication, str] | None:
        """Where a request for ``path`` (and ``host``) goes, without calling anything.

        Returns (mount label, app, remaining path) for :func:`wsgistack.describe`.
        """
        wsgi_path = _rooted(wsgi_str(path))
        found = self._match({"HTTP_HOST": host or ""}, wsgi_path)
        if found is None:
            if self.default is None:
                return None
            return "", self.default, path
        (label, app), cut = found
        rest = wsgi_path[cut:].encode("latin-1").decode("utf-8", "replace")
        return label, app, rest or "/"

    def __repr__(self) -> str:
        default = ", default" if self.default is not None else ""
        return f"PrefixDispatcher({len(self.mounts)} mounts{default})"
