"""Socket and TLS errors in plain words, for the log lines of the server and of the forwarder.

Python words an errno as its repr (``[Errno 104] Connection reset by peer``)
and CPython's ``ssl`` errors read as OpenSSL's: ``[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC]
decryption failed or bad record mac (_ssl.c:2580)``, and a peer that closed
its TCP connection without TLS's close_notify (a cancelled download, a
killed client) as ``EOF occurred in violation of protocol (_ssl.c:2427)``.
A user reads none of these: a TLS error is said so, in OpenSSL's reason
alone; a peer that left is said as a plain TCP close is; an errno is its
message.  Both sides word a failed handshake alike: the server's lines
(``tls_reason``) and the forwarder's (``tls_failure``) read ``... failed:
wrong version number``; and a connection that broke says who broke it and
what was being done, as nginx's upstream errors do (``broke_while``).
A request body the client broke off reads alike, whoever reads it: the
server, or a middleware under any server (``body_failure``).

    if closed_without_notice(exc): ...          # the peer went away
    log.info("... %s", io_failure(exc))       # "TLS error: bad record mac" / strerror
    broke_while(exc, "the upstream", "while sending the request")
"""

from __future__ import annotations

import re
import ssl

__all__ = [
    "body_failure",
    "broke_while",
    "closed_without_notice",
    "io_failure",
    "os_reason",
    "peer_failure",
    "tls_failure",
    "tls_reason",
]

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


def os_reason(exc: OSError) -> str:
    """An errno's message as a clause of a line: ``connection refused`` (never ``[Errno 111]``)."""
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


def peer_failure(exc: OSError, peer: str) -> str:
    """What ``peer`` (``"the upstream"``) did to the connection, or what failed on it.

    A reset says so ("the upstream reset the connection"); a close, also a
    write after it (EPIPE) or a TLS close without close_notify, says that;
    a TLS error is ``TLS error: <its reason>``; anything else is the errno's
    message ("no route to host").
    """
    if isinstance(exc, ConnectionResetError):
        return f"{peer} reset the connection"
    if isinstance(exc, BrokenPipeError) or closed_without_notice(exc):
        return f"{peer} closed the connection"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {tls_reason(exc)}"
    return os_reason(exc)


def broke_while(exc: OSError, peer: str, doing: str) -> str:
    """``peer_failure`` and what was being done: "... reset the connection while sending"."""
    return f"{peer_failure(exc, peer)} {doing}"


def body_failure(exc: OSError) -> str:
    """Why reading a request body raised ``exc``, worded as the client's other lines.

    A reset says so: "the client reset the connection before the body ended";
    over TLS a close or reset without close_notify reads as a close.  A real
    TLS failure (a record that does not decrypt), or another errno, is what
    failed: "reading the request body failed: TLS error: bad record mac".
    """
    if isinstance(exc, ConnectionResetError) or closed_without_notice(exc):
        return broke_while(exc, "the client", "before the body ended")
    return f"reading the request body failed: {io_failure(exc)}"
