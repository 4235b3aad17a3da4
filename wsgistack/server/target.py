"""Where a request is addressed: its Host field and an absolute-form target (RFC 9112 3.2).

Pure checks of bytes, kept apart from the parser (``http.py``) that calls
them once per request: a Host value is ``host[:port]`` (or empty), and an
absolute-form target is taken apart into path, query and the authority that
becomes ``HTTP_HOST``, refused (400) unless it is http(s) with a valid host.

    valid_host(b"example.com:8080")                 # True
    absolute_form(b"http://example.com/a?b")        # (b"/a", b"b", "example.com")
"""

from __future__ import annotations

import re

import httptools

from ..errors import ProtocolError

__all__ = ["absolute_form", "valid_host"]

#: RFC 9112 3.2 / RFC 3986 3.2.2: Host is uri-host [":" port]; anything else is a
#: 400 (a MUST), so "example.com/x", "user@host", spaces or markup never reach an
#: app that builds URLs from it.  An empty Host is valid (no authority).
_HOST = re.compile(
    rb"(?:\[[0-9A-Za-z:.%_~!$&'()*+,;=-]+\]|[0-9A-Za-z.%_~!$&'()*+,;=-]*)(?::[0-9]*)?\Z"
)
#: Host values that passed ``_HOST``: a server sees the same few again and again.
_GOOD_HOSTS: set[bytes] = set()
_GOOD_HOSTS_MAX = 1024


def valid_host(value: bytes) -> bool:
    """Whether ``value`` is a Host field value (``host[:port]``, or empty)."""
    if value in _GOOD_HOSTS:
        return True
    if not _HOST.match(value):
        return False
    if len(_GOOD_HOSTS) < _GOOD_HOSTS_MAX:
        _GOOD_HOSTS.add(value)
    return True


def absolute_form(url: bytes) -> tuple[bytes, bytes, str]:
    """Path, query and authority ("host[:port]") of an RFC 9112 3.2.2 absolute-form target."""
    try:
        parsed = httptools.parse_url(url)
    except httptools.HttpParserInvalidURLError:
        raise ProtocolError("invalid request target", 400) from None
    if (parsed.schema or b"").lower() not in (b"http", b"https"):
        # RFC 9110 4.2 and 7.4: this server answers for http(s) URIs only; an
        # ftp: or ws: target is not ours, and was served as if it said http.
        raise ProtocolError("request target with a scheme other than http or https", 400)
    host = parsed.host
    if not host:
        raise ProtocolError("request target without a host", 400)  # RFC 9110 4.2.1
    if parsed.userinfo is not None:
        # RFC 9110 4.2.4: userinfo in an http(s) target is to be treated as an
        # error (it dresses up the authority for phishing), not dropped.
        raise ProtocolError("request target with userinfo", 400)
    authority = host.decode("latin-1")
    if ":" in authority:
        authority = f"[{authority}]"  # an IPv6 literal keeps its brackets (RFC 3986 3.2.2)
    if parsed.port is not None:
        authority += f":{parsed.port}"
    if not valid_host(authority.encode("latin-1")):  # it becomes HTTP_HOST: Host's rules
        raise ProtocolError("invalid host in the request target", 400)
    return parsed.path or b"/", parsed.query or b"", authority
