"""TLS errors in plain words, for the log lines of the server and of the forwarder.

CPython's ``ssl`` errors read as OpenSSL's: ``[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC]
decryption failed or bad record mac (_ssl.c:2580)``, and a peer that closed
its TCP connection without TLS's close_notify (a cancelled download, a
killed client) as ``EOF occurred in violation of protocol (_ssl.c:2427)``.
A user reads neither: the first is a TLS error, said so, in OpenSSL's reason
alone; the second is a peer that left, said as a plain TCP close is.  Both
sides word a failed handshake alike: the server's lines (``tls_reason``) and
the forwarder's (``tls_failure``) read ``... failed: wrong version number``.

    if closed_without_notice(exc): ...          # the peer went away
    log.info("... %s", io_failure(exc))       # "TLS error: bad record mac" / strerror
"""

from __future__ import annotations

import re
import ssl

__all__ = ["closed_without_notice", "io_failure", "tls_failure", "tls_reason"]

#: Where in CPython's _ssl.c an error was raised, as its message ends: not the user's concern.
_SOURCE = re.compile(r"\s*\(_ssl\.c:\d+\)\Z")


def closed_without_notice(exc: BaseException) -> bool:
    """Whether ``exc`` means the peer closed (or reset) its connection mid-TLS.

    OpenSSL reports a TCP close or reset without close_notify as an EOF
    "in violation of protocol", the errno lost; a close_notify where data was
    due is a "zero return".  Either way the peer went away: nothing failed.
    """
    return isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError)


def tls_failure(exc: ssl.SSLError) -> str:
    """Why a TLS connection to an upstream failed, worded as the server's lines word it.

    OpenSSL's reason in words (``tls_reason``), as the server says why a
    client's handshake failed; an untrusted certificate or a wrong name says
    so (the verify message), an upstream that left says that, and one that
    answers in plain HTTP shows as a record that is no TLS, with a hint.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if closed_without_notice(exc):
        return "the upstream closed the connection"
    text = tls_reason(exc)
    if getattr(exc, "reason", None) in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE"):
        text += " (does it speak plain HTTP on that port?)"
    return text


def tls_reason(exc: ssl.SSLError) -> str:
    """OpenSSL's reason in words (``BAD_RECORD_MAC``: "bad record mac"), else its message."""
    reason = getattr(exc, "reason", None)
    if reason:
        return str(reason).lower().replace("_", " ")
    return _SOURCE.sub("", str(exc.strerror or exc))


def io_failure(exc: OSError) -> str:
    """A failed read or write in a few words: ``TLS error: <its reason>``, or the errno's."""
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {tls_reason(exc)}"
    return exc.strerror or str(exc)
