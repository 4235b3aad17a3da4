"""Why a malformed request head is refused: a status and a message, where that takes reading.

The parser (``http.py``) raises most refusals in place; the ones here need
reading: what an llhttp error means (400, or 501 for a method or a transfer
coding we do not implement, 505 for a version), which transfer codings are
refused and how to name them, and a uwsgi packet sent to an HTTP bind, which
is a misconfiguration worth a warning.  Sending the answer is ``answers.py``'s.

    classify(exc, parser)                       # ProtocolError(str(exc), 400), or 501, 505
    transfer_coding_refusal(b"gzip, chunked")   # "transfer coding 'gzip' is not supported..."
"""

from __future__ import annotations

import logging

import httptools

from ..errors import ProtocolError
from .method import unimplemented

__all__ = ["classify", "transfer_coding_refusal", "uwsgi_on_http_bind"]

log = logging.getLogger("wsgistack.server")


def uwsgi_on_http_bind() -> ProtocolError:
    """The refusal of a uwsgi packet at an HTTP bind, logged as a warning.

    It is nginx's ``uwsgi_pass`` pointed at a bind written without its
    ``uwsgi://`` prefix: every request fails, so the log says how to fix it.
    """
    error = ProtocolError(
        "this looks like a uwsgi packet (nginx's uwsgi_pass) sent to an HTTP bind;"
        " bind it as uwsgi://HOST:PORT or serve with --protocol uwsgi",
        400,
    )
    log.warning("refused a request: %s", error)
    return error


def transfer_coding_refusal(value: bytes) -> str | None:
    """Why a Transfer-Encoding that llhttp let through is refused (501), or None: chunked.

    llhttp has already refused what is ambiguous (with a Content-Length, chunked
    twice, or not last: 400).  RFC 9112 6.1: a coding we do not decode (gzip,
    deflate, the obsolete identity, as nginx and h11 say) is 501, named so the
    log shows which.  RFC 9110 5.6.1: empty list elements are ignored.  A tab
    after the final ``chunked`` is OWS (RFC 9110 5.5) that gunicorn and h11
    strip, but llhttp then reads no chunked body: refused, never misframed.
    """
    codings = [coding.strip(b" \t").lower() for coding in value.split(b",")]
    unknown = [coding.decode("latin-1") for coding in codings if coding not in (b"", b"chunked")]
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        return f"transfer coding {names} is not supported: only chunked is"
    if not value.rstrip(b" ").lower().endswith(b"chunked"):
        return "a tab after 'chunked' in Transfer-Encoding is not supported (llhttp reads no body)"
    return None


def classify(exc: Exception, parser: httptools.HttpRequestParser) -> ProtocolError:
    """The refusal of a head llhttp failed, read from its message: httptools raises
    one exception class for most of llhttp's errors."""
    text = str(exc)
    if text == "Invalid method for HTTP/x.x request":
        # A method llhttp knows only for RTSP (ANNOUNCE, SETUP, PLAY...) over HTTP:
        # a token method we do not implement, as any other unknown one (501).
        return unimplemented(parser.get_method())
    if "HTTP version" in text:
        return ProtocolError(text, 505)
    if "Transfer-Encoding" in text and "invalid" in text.lower():
        return ProtocolError(text, 501 if "Request has invalid" in text else 400)
    return ProtocolError(text or "malformed request", 400)
