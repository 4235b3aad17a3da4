"""Facts of a request line that llhttp checks but does not keep: its length, its end, its name.

llhttp (``httptools``) gives the parser the method, the target and the
version, but not the line's bytes: not where it ends in the data, and not the
protocol name, which it also reads as ``RTSP`` or ``ICE`` where ``HTTP``
belongs.  The parser (``http.py``) finds the line in the bytes it was fed;
these pure functions say what the bytes show.

    ends_request_line(b"GET /a HTTP/1.1\\r\\nHo", b"/a")            # True
    other_protocol(b"GET /a RTSP/1.0\\r\\nHost: a\\r\\n\\r\\n", b"/a")   # "RTSP"
"""

from __future__ import annotations

__all__ = ["SPACES_AND_VERSION", "ends_request_line", "line_too_long", "other_protocol"]

#: What a request line holds besides its method and target (RFC 9112 3:
#: ``method SP request-target SP HTTP-version``): the limit counts the whole
#: line, as gunicorn's ``limit_request_line`` does.  llhttp takes a version
#: only as NAME/D.D, so it is 8 bytes; spaces llhttp tolerates beyond the
#: one each are not counted (the head's size limit bounds them).
SPACES_AND_VERSION = len(b"  HTTP/1.1")


def line_too_long(limit: int) -> str:
    """The reason given for a 414, the same over HTTP and uwsgi (nginx knows the line's length)."""
    return f"request line longer than --max-request-line ({limit} bytes)"


def ends_request_line(data: bytes, url: bytes) -> bool:
    """Whether the last line that ends in ``data`` is the request line for ``url``."""
    line = data[: data.rfind(b"\n")].rstrip(b"\r")
    return line[-9:-3] == b" HTTP/" and line[:-9].endswith(b" " + url)


def other_protocol(head: bytes | bytearray, url: bytes) -> str | None:
    """The protocol a request line names instead of HTTP (``RTSP``, ``ICE``), or None.

    llhttp has checked the line (method, target, ``NAME/d.d``, with NAME one
    of the three) but keeps no name, and no offset: ``head`` holds the line,
    with whatever came before it in the same reads (earlier requests, their
    bodies) and its header fields.  Asked when the search from the last line
    found (``RequestParser.on_headers_complete``) failed, this one looks at
    all of ``head``, and names a protocol only when nothing there gives this
    target as HTTP: a request that may be HTTP is never refused.
    """
    if b" " + url + b" HTTP/" in head:
        return None
    for name in ("RTSP", "ICE"):
        if b" %b %b/" % (url, name.encode()) in head:
            return name
    return None
