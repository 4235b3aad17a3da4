"""What crosses the forwarder and how: request headers, the target path, redirects.

Rules: hop-by-hop headers never cross (RFC 9110 §7.6.1), nor those named in
``Connection``, nor ``Proxy`` (httpoxy).  ``Host``, ``X-Forwarded-*``, ``Forwarded`` and the body's
framing are written by this hop, never copied from the client: a trusted
proxy's forwarding chains are kept and extended, anyone else's replaced.
The path goes as the client spelled it; answers pointing into the pool
(redirects, cookie paths) are mapped back to where the client sees it.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, quote, unquote_to_bytes, urlsplit

from ..._types import WSGIEnvironment
from ...clientip import CACHE_KEY, ProxyTrust, client_ip, trusts_peer
from ...netset import parse_address
from ...paths import SAFE_PATH, normal_spelling, resolved, url_path
from ...wsgi import HOP_BY_HOP as CONNECTION_FIELDS
from .upstream import DEFAULT_PORTS, Upstream

__all__ = [
    "HOP_BY_HOP",
    "map_cookie_path",
    "map_location",
    "map_refresh",
    "request_headers",
    "request_target",
    "response_headers",
]

#: Besides the connection's own fields, the proxy credentials and challenge
#: of this hop: they concern the proxy they were sent to (RFC 9110 11.7).
HOP_BY_HOP = CONNECTION_FIELDS | {"proxy-authenticate", "proxy-authorization"}
#: Request headers this layer writes itself, besides the hop-by-hop ones; the
#: body's length and type come from CONTENT_LENGTH and CONTENT_TYPE, never from
#: an HTTP_CONTENT_* copy (nginx's uwsgi_params sends both), so never twice.
_REPLACED = frozenset(
    {
        "host",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-prefix",
        "forwarded",
        "x-real-ip",
        "content-length",
        "content-type",
    }
)
#: Never sent on: ``Proxy`` is no HTTP header, but a CGI-style upstream reads it
#: as HTTP_PROXY, which many HTTP clients take for their outgoing proxy (httpoxy,
#: CVE-2016-5385; nginx's advice is ``proxy_set_header Proxy ""``).
_DROPPED = frozenset({"proxy"})
#: environ key -> the header name sent upstream ("" for keys that are not sent);
#: filled as keys are seen, up to a bound, so most requests only look names up.
_FORWARDED_NAMES: dict[str, str] = {}
_FORWARDED_NAMES_MAX = 512
#: The environ's keys, in order -> the (key, header name) of those sent upstream.
#: A client sends the same headers on every request, so the 20-odd keys of an
#: environ are sorted out once per shape, not per request; emptied when full.
_HEADER_KEYS: dict[tuple[str, ...], list[tuple[str, str]]] = {}
_HEADER_KEYS_MAX = 128
#: A shape is remembered only if its keys are this short in all (a browser's are
#: under 1,000 characters): the client writes the names, and the server in front
#: may let 100 of 8 KiB through (gunicorn), which 128 shapes would hold for good.
_HEADER_KEYS_CHARS_MAX = 4096
#: RFC 9110 5.6.2: token = 1*tchar.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
#: ``Refresh: 5; url=/next`` (HTML's refresh pragma): the delay, the separator
#: and ``url=`` kept as sent, the URL (quoted or not) mapped as a Location.
_REFRESH = re.compile(
    r"""(\s*\d[\d.]*\s*[;,]\s*(?:url\s*=\s*)?)(["']?)(.+?)\2\s*\Z""", re.IGNORECASE
)


def _forwarded_name(key: str) -> str:
    """The upstream header for an environ key, or "" (not a header, or hop-by-hop)."""
    if key == "CONTENT_TYPE":
        name = "Content-Type"
    elif key.startswith("HTTP_"):
        name = key[5:].replace("_", "-").title()
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in _REPLACED or lower in _DROPPED:
            name = ""
        elif not _TOKEN.match(name):
            # RFC 9110 5.1: a field name is a token.  A server in front that let
            # "X(y)" or "Transfer-Encoding " through (wsgiref does the first) would
            # have the upstream split the line its own way; dropped, as nginx's
            # ignore_invalid_headers does.
            name = ""
    else:
        name = ""
    if len(_FORWARDED_NAMES) < _FORWARDED_NAMES_MAX:
        _FORWARDED_NAMES[key] = name
    return name


def _header_keys(environ: WSGIEnvironment) -> list[tuple[str, str]]:
    """The (environ key, header name) of each header sent upstream, in the environ's order."""
    keys = tuple(environ)
    sent = _HEADER_KEYS.get(keys)
    if sent is None:
        names = _FORWARDED_NAMES
        sent = [
            (key, name)
            for key in keys
            if (name := names.get(key) if key in names else _forwarded_name(key))
        ]
        if sum(map(len, keys)) <= _HEADER_KEYS_CHARS_MAX:
            if len(_HEADER_KEYS) >= _HEADER_KEYS_MAX:
                _HEADER_KEYS.clear()  # shapes come and go (a new browser): keep the recent ones
            _HEADER_KEYS[keys] = sent
    return sent


def _raw_path(raw_uri: str, script: str, path_info: str) -> str | None:
    """PATH_INFO as the client spelled it, so ``%2F`` stays ``%2F``; None if unsure.

    PATH_INFO is decoded, so ``/a%2Fb`` and ``/a/b`` both arrive as ``/a/b``;
    an upstream routing on its raw path must see what the client sent.  The raw
    path is used only when it decodes to SCRIPT_NAME + PATH_INFO and a ``/`` in
    it ends SCRIPT_NAME; otherwise (a normalised path, an absolute-form target)
    PATH_INFO is quoted as usual.
    """
    try:
        raw = raw_uri.partition("?")[0].encode("latin-1")
    except UnicodeEncodeError:  # not a request's bytes
        return None
    if not raw.startswith(b"/") or unquote_to_bytes(raw) != (script + path_info).encode("latin-1"):
        return None
    end = 0
    if script:
        prefix = script.encode("latin-1")
        while True:
            end = raw.find(b"/", end + 1)
            if end == -1:
                end = len(raw)
            if unquote_to_bytes(raw[:end]) == prefix:
                break
            if end == len(raw):
                return None
    return quote(raw[end:], safe=SAFE_PATH + "%")


def _confined(path_info: str) -> str | None:
    """PATH_INFO made to stay under a base path, if as sent it might not; else None.

    ``/public`` + ``/a/../../admin`` is ``/admin`` to an upstream that resolves
    dot segments (nginx, most routers and file servers; RFC 3986 §5.2.4), and
    ``/public`` + ``_admin`` (a path without its leading slash, as werkzeug's
    server passes ``GET _admin`` on) is ``/public_admin``: both reach past the
    base path.  Such a path is sent resolved from the root, as nginx's
    ``proxy_pass`` with a URI does; PATH_INFO is decoded, so ``%2e%2e`` and
    ``..%2f`` count too.
    """
    if path_info[:1] == "/" and "/." not in path_info:
        return None  # the usual path: no dot segment can be in it
    segments = path_info.split("/")
    if path_info[:1] == "/" and "." not in segments and ".." not in segments:
        return None  # "/.well-known", "/a/.b": dots in names, not dot segments
    path = resolved(path_info)
    if segments[-1] in ("", ".", "..") and path != "/":
        path += "/"  # "/a/b/.." names a directory, as "/a/" does
    return path


def request_target(upstream: Upstream, environ: WSGIEnvironment) -> str:
    """The request target for the upstream: its base path, the path, the query.

    Kept as the client sent it where the server says (RAW_URI, REQUEST_URI):
    ``OPTIONS *`` asks about the server as a whole (RFC 9112 3.2.4), so it goes
    on as ``*``, never as a path under the base; and ``/x?`` keeps its empty
    query, which names another URL than ``/x`` (RFC 3986 6.2.3) to a cache or a
    signature.  wsgiref gives no raw target: its ``*`` is PATH_INFO, and an
    empty query cannot be told from none.
    """
    path_info = environ.get("PATH_INFO", "")
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if (raw == "*" or (not raw and path_info == "*")) and environ["REQUEST_METHOD"] == "OPTIONS":
        return "*"
    query = environ.get("QUERY_STRING", "")
    if query:
        query = "?" + query
    elif raw and "?" in raw and raw.partition("#")[0].endswith("?"):
        query = "?"  # sent empty; a query some layer cleared leaves no "?"
    if upstream.base and path_info and (confined := _confined(path_info)) is not None:
        return upstream.base + url_path(confined) + query
    path = None
    if raw and "%" in raw:  # else quoting PATH_INFO gives the same
        path = _raw_path(raw, environ.get("SCRIPT_NAME", ""), path_info)
    if path is None:
        path = url_path(path_info)
    return upstream.base + (path or "/") + query


def _quoted(value: str) -> str:
    """``value`` as a quoted-string (RFC 9110 §5.6.4), for a ``Forwarded`` parameter.

    The client writes its Host: unescaped, ``a", for=6.6.6.6;by="b`` would end
    the quotes and add a ``for`` of its choosing to this hop's element.
    """
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def request_headers(environ: WSGIEnvironment, trust: ProxyTrust | None) -> list[tuple[str, str]]:
    """The headers sent upstream: the client's end-to-end ones, then this hop's own."""
    connection = environ.get("HTTP_CONNECTION")
    named = (
        {token.strip().lower() for token in connection.split(",") if token.strip()}
        if connection
        else ()
    )
    sent = _header_keys(environ)
    if named:
        sent = [(key, name) for key, name in sent if name.lower() not in named]
    # An empty CONTENT_TYPE is the server saying there was none.
    headers = [
        (name, value) for key, name in sent if (value := environ[key]) or key != "CONTENT_TYPE"
    ]
    peer = environ.get("REMOTE_ADDR", "") or "unknown"
    proto = environ.get("wsgi.url_scheme", "http")
    host = str(environ.get("HTTP_HOST", environ.get("SERVER_NAME", "")))
    node = f'"[{peer}]"' if ":" in peer else peer
    forwarded_for = peer
    forwarded_proto = proto
    forwarded_host = host
    forwarded = f"for={node};proto={proto};host={_quoted(host)}"
    prefix = environ.get("SCRIPT_NAME", "")
    if trusts_peer(environ, trust):
        # A trusted proxy's headers tell of the hops before it: each chain is
        # kept and extended by this hop (the host kept as it came, below); its
        # prefix is where SCRIPT_NAME starts.
        # Anyone else's are replaced, not extended: a client writes what it likes.
        if chain := environ.get("HTTP_X_FORWARDED_FOR"):
            forwarded_for = f"{chain}, {peer}"
        if chain := environ.get("HTTP_X_FORWARDED_PROTO"):
            forwarded_proto = f"{chain}, {proto}"
        if chain := environ.get("HTTP_X_FORWARDED_HOST"):
            # Passed on as it came, not extended: it already names the host the
            # client asked for, and Django (USE_X_FORWARDED_HOST) reads this field
            # as one host, refusing a list with 400, as Caddy and Traefik pass it.
            forwarded_host = chain
        if chain := environ.get("HTTP_FORWARDED"):
            forwarded = f"{chain}, {forwarded}"
        prefix = environ.get("HTTP_X_FORWARDED_PREFIX", "").rstrip("/") + prefix
    headers += [
        ("X-Forwarded-For", forwarded_for),
        ("X-Forwarded-Proto", forwarded_proto),
        ("X-Forwarded-Host", forwarded_host),
        ("Forwarded", forwarded),
    ]
    if prefix:
        headers.append(("X-Forwarded-Prefix", prefix))
    # nginx's convention (proxy_set_header X-Real-IP $remote_addr): the client as
    # this hop decided it.  A client's own would otherwise pass on, and upstreams
    # set up to read it (many are, behind nginx) would take its word.
    if trust is None and CACHE_KEY not in environ:
        real_ip = environ.get("REMOTE_ADDR", "")  # the peer, as in X-Forwarded-For
    else:  # an outer layer's answer, or this layer's trusted chain
        client = client_ip(environ, trust)
        real_ip = "" if client is None else str(client)
    if real_ip:
        headers.append(("X-Real-IP", real_ip))
    return headers


def _names_authority(parts: SplitResult, scheme: str, authority: str) -> bool:
    """Whether the URL ``parts`` names the host and port of ``authority`` (a Host value).

    Compared as URLs, not as text: the host in any case, a port left out being
    the default of the URL's scheme (``scheme`` for a ``//host/`` reference).
    A Host value names no scheme, so its port when left out is that same
    default: the upstream built the URL from it and the scheme it was told.
    """
    try:
        other = urlsplit("//" + authority)
        port, other_port = parts.port, other.port
    except ValueError:  # a bad port, a bad IPv6 literal: no address of ours
        return False
    default = DEFAULT_PORTS.get(parts.scheme or scheme, 80)
    return (
        parts.username is None
        and _same_host(parts.hostname, other.hostname)
        and (port or default) == (other_port or default)
    )


def _same_host(one: str | None, other: str | None) -> bool:
    """Two URL hosts (lower-cased by urlsplit) name one host: a root dot and an
    address's spelling aside (``up.`` is ``up``, ``[0:0::1]`` is ``[::1]``)."""
    if one is None or other is None:
        return False
    one, other = one.rstrip("."), other.rstrip(".")
    if one == other:
        return True
    address = parse_address(one)
    return address is not None and address == parse_address(other)


def _rest(path: str, base: str) -> str | None:
    """What follows ``base`` in ``path`` ("" for ``base`` itself), if ``path`` is under it.

    Whole segments, compared in normal spelling (``/%7Eapp`` is ``/~app``);
    the rest is kept as ``path`` spells it.
    """
    count = base.count("/")
    segments = path.split("/")
    if normal_spelling("/".join(segments[: count + 1])) != normal_spelling(base):
        return None
    return "/" + "/".join(segments[count + 1 :]) if len(segments) > count + 1 else ""


def _client_path(
    upstream: Upstream, path: str, environ: WSGIEnvironment, base_itself: str
) -> str | None:
    """``path`` (in the upstream's view) as the client sees it; None if outside the pool.

    The base path is swapped for SCRIPT_NAME (percent-encoded), the base path
    itself becoming ``SCRIPT_NAME + base_itself``.  A path already under
    SCRIPT_NAME is the client's as it stands: an upstream that honours the
    ``X-Forwarded-Prefix`` we send built it so.
    """
    prefix = url_path(environ.get("SCRIPT_NAME", "").rstrip("/"))
    if prefix and _rest(path, prefix) is not None:
        return path
    rest = _rest(path, upstream.base)
    if rest is None:
        return None
    return prefix + (rest or base_itself)


def map_location(
    upstream: Upstream, location: str, environ: WSGIEnvironment, preserve_host: bool
) -> str:
    """Map an upstream URL (Location, Content-Location) back into the client's view.

    Mapped: a path from the root, and an absolute URL naming the upstream
    (made a path) or, with ``preserve_host``, the client's own Host (which
    the upstream saw), compared as URLs (``http://UP:80/`` names ``http://up``,
    ``/%7Eapp`` is ``/~app``); its base path is swapped for SCRIPT_NAME, unless the
    path is already under SCRIPT_NAME (an upstream that honours the
    ``X-Forwarded-Prefix`` we send builds its URLs so).  A relative
    reference (``next``, ``?page=2``) resolves against the client's URL as
    it stands, and another site's URL is not ours: both are left alone.
    """
    try:
        parts = urlsplit(location)
    except ValueError:  # "http://[oops/x": no URL, so nothing of ours to map; as sent
        return location
    origin = ""
    if parts.netloc:
        scheme = environ.get("wsgi.url_scheme", "http")
        if parts.scheme not in ("", "http", "https"):
            return location  # not a web address (ftp:, ws:)
        if _names_authority(parts, scheme, upstream.host_header):
            pass  # the upstream's own address: the client gets a path
        elif preserve_host and _names_authority(parts, scheme, environ.get("HTTP_HOST", "")):
            origin = location[: location.index(parts.netloc) + len(parts.netloc)]
        else:
            return location  # somewhere else entirely
    elif parts.scheme or not parts.path.startswith("/"):
        return location  # relative, or no place on the web (mailto:, urn:)
    path = _client_path(upstream, parts.path, environ, "/")
    if path is None:
        return location  # outside what this pool serves
    rewritten = origin + (path or "/")
    if parts.query:
        rewritten += "?" + parts.query
    if parts.fragment:
        rewritten += "#" + parts.fragment
    return rewritten


def map_refresh(
    upstream: Upstream, refresh: str, environ: WSGIEnvironment, preserve_host: bool
) -> str:
    """Map the URL in a ``Refresh`` header as ``map_location`` maps a Location.

    nginx's ``proxy_redirect`` rewrites both fields: an upstream that sends a
    client on after a delay names its own address or base path as a redirect
    does.  A value with no URL (``Refresh: 5``) is left alone.
    """
    match = _REFRESH.match(refresh)
    if match is None:
        return refresh
    lead, quote_mark, url = match.groups()
    mapped = map_location(upstream, url, environ, preserve_host)
    return f"{lead}{quote_mark}{mapped}{quote_mark}"


def map_cookie_path(upstream: Upstream, cookie: str, environ: WSGIEnvironment) -> str:
    """A ``Set-Cookie`` value with its ``Path`` mapped into the client's view; the rest as sent.

    A browser sends a cookie back only under its Path (RFC 6265 5.1.4): from
    an upstream whose base path is ``/app``, mounted at ``/legacy``,
    ``Path=/app`` names a place the client never asks for, and becomes
    ``Path=/legacy`` (what nginx users write ``proxy_cookie_path`` for).
    ``Path=/`` stays: it is sent back everywhere, and the site may share it.
    Read as browsers read the field (RFC 6265 5.2): the ``name=value`` pair is
    never touched, attribute names match in any case, and a Path that does not
    start with ``/`` (a quoted one) is none to a browser, so it is left alone.
    """
    if ";" not in cookie or not (upstream.base or environ.get("SCRIPT_NAME")):
        return cookie  # no attributes, or no path of the pool's to map: as sent
    parts = cookie.split(";")
    changed = False
    for index in range(1, len(parts)):
        name, equals, value = parts[index].partition("=")
        path = value.strip()
        if not equals or path[:1] != "/" or path == "/" or name.strip().lower() != "path":
            continue
        mapped = _client_path(upstream, path, environ, "")
        if mapped is not None and mapped != path:
            lead, trail = value[: len(value) - len(value.lstrip())], value[len(value.rstrip()) :]
            parts[index] = f"{name}={lead}{mapped or '/'}{trail}"
            changed = True
    return ";".join(parts) if changed else cookie


def response_headers(
    upstream: Upstream,
    headers: list[tuple[str, str]],
    environ: WSGIEnvironment,
    preserve_host: bool,
    cookie_paths: bool,
) -> list[tuple[str, str]]:
    """The upstream's response headers for the client: hop-by-hop ones out (also
    those its ``Connection`` names), URLs into the pool mapped back, and with
    ``cookie_paths`` the Path of each cookie."""
    kept = []
    named: list[str] = []
    for name, value in headers:
        lower = name.lower()
        if lower in HOP_BY_HOP:
            if lower == "connection":
                named += (token.strip().lower() for token in value.split(","))
            continue
        if lower == "location" or lower == "content-location":
            value = map_location(upstream, value, environ, preserve_host)
        elif lower == "refresh":
            value = map_refresh(upstream, value, environ, preserve_host)
        elif lower == "set-cookie" and cookie_paths:
            value = map_cookie_path(upstream, value, environ)
        kept.append((name, value))
    if named:
        kept = [(name, value) for name, value in kept if name.lower() not in named]
    return kept
