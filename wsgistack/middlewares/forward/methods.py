"""Which request methods the forwarder passes on, and which a failed try may send again.

Rules: every method goes to an upstream but those in ``REFUSED``, which
the balancer answers 405 itself, with ``ALLOW``.  A request that reached
an upstream and got no answer goes out again only if its method is in
``IDEMPOTENT`` (and it has no body: a streamed body cannot be sent twice).

    if method in REFUSED: ...          # 405, Allow: ALLOW
    if method in IDEMPOTENT: ...       # may be tried on the next upstream
"""

from __future__ import annotations

__all__ = ["ALLOW", "IDEMPOTENT", "REFUSED"]

#: Never forwarded, as nginx refuses both (405): an upstream echoing a TRACE
#: would show a page's script the cookies and credentials its browser sent
#: (cross-site tracing); CONNECT asks for a tunnel (RFC 9110 §9.3.6), which
#: no reverse proxy opens, and its authority-form target is no path to send
#: on.  Our server answers CONNECT 501 before any app; under gunicorn or
#: waitress it reaches this layer.
REFUSED = frozenset({"CONNECT", "TRACE"})

#: The methods the IANA HTTP Method Registry marks idempotent (its
#: "Idempotent" column: RFC 9110 §9.2.2's, and WebDAV's, DeltaV's, CalDAV's
#: and the others RFC 7237 registered, and the httpbis QUERY method), so a request
#: that may have reached an upstream can be sent to the next (RFC 9110
#: §9.2.2).  Not in it: those the registry marks not idempotent (POST, PATCH,
#: LOCK), CONNECT and TRACE (REFUSED), PRI (HTTP/2's connection preface, no
#: request) and any method it does not list, an extension whose effect
#: nobody here can know.  nginx's proxy_next_upstream resends every method
#: but POST, LOCK and PATCH, so an unknown one too.
IDEMPOTENT = frozenset(
    {
        # RFC 9110 §9.3
        "GET", "HEAD", "PUT", "DELETE", "OPTIONS",
        # WebDAV, RFC 4918 (LOCK is not idempotent), and its BIND extension, RFC 5842
        "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "UNLOCK",
        "BIND", "REBIND", "UNBIND",
        # DeltaV versioning, RFC 3253
        "VERSION-CONTROL", "REPORT", "CHECKIN", "CHECKOUT", "UNCHECKOUT", "MKWORKSPACE",
        "UPDATE", "LABEL", "MERGE", "BASELINE-CONTROL", "MKACTIVITY",
        # ACL (RFC 3744), ordered collections (3648), redirect references (4437),
        # CalDAV (4791), SEARCH (5323), LINK and UNLINK (2068), QUERY (httpbis)
        "ACL", "ORDERPATCH", "MKREDIRECTREF", "UPDATEREDIRECTREF", "MKCALENDAR",
        "SEARCH", "LINK", "UNLINK", "QUERY",
    }
)  # fmt: skip

#: The 405's Allow (RFC 9110 §15.5.6 asks one; §10.2.1: the methods the
#: target resource supports).  Which ones an upstream's resource supports
#: this hop cannot know, and every method but REFUSED goes on to it, so it
#: lists the general-purpose ones (RFC 9110 §9.3's and PATCH), less REFUSED:
#: the client learns what it asked for is refused here, and what to use instead.
ALLOW = ", ".join(
    method
    for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
    if method not in REFUSED
)
