"""What a TLS connection itself is: mod_ssl's protocol, cipher, SNI and session keys.

Access logs and apps record how a client connected (nginx's ``$ssl_protocol``
and ``$ssl_cipher``), and a multi-tenant app reads which name the client
asked for.  The names and values are Apache mod_ssl's (``SSLOptions
+StdEnvVars``), as mod_wsgi hands them to WSGI apps:

    SSL_PROTOCOL           TLSv1.2 or TLSv1.3
    SSL_CIPHER             OpenSSL's name: TLS_AES_256_GCM_SHA384, ECDHE-ECDSA-AES128-GCM-SHA256
    SSL_CIPHER_USEKEYSIZE  the bits of key the cipher uses
    SSL_CIPHER_ALGKEYSIZE  the bits of key the algorithm could take
    SSL_SESSION_ID         the session's id in lowercase hex (mod_ssl's ap_bin2hex); absent
                           when it has none (TLS 1.2 with a ticket: see ``_session_id``)
    SSL_SESSION_RESUMED    Initial, or Resumed when the client resumed a session
    SSL_TLS_SNI            the server name the client sent (SNI); absent when it sent none

Rules.  Computed once per TLS connection, after its handshake, beside the
client certificate's keys (``clientcert.py``); ``HTTPS=on`` is the listener's
already (``environ_base``).  OpenSSL keeps the server name only for the
client's side, so ``keep_server_name`` gives the server's context a
callback that writes it on the connection's socket (``ServerSocket``) during
the handshake.  A session resumes with a ticket from the same context:
workers forked from one master share it, and a SIGHUP's new context starts
every client afresh.  CPython hands the callback only a name it can decode
as ASCII (RFC 6066 3 allows no other): for any other the handshake fails
(logged as ``NOT_ASCII_NAME``), and CPython's own report of it, a traceback
on standard error for every such connection, is dropped (``_QuietBadNames``).

    keep_server_name(context)     # once, when the context is made
    base = {**listener_base, **connection_keys(tls_sock)}
"""

from __future__ import annotations

import functools
import ssl
import sys
from typing import Any

__all__ = ["NOT_ASCII_NAME", "ServerSocket", "connection_keys", "keep_server_name"]

#: Why a handshake failed whose client sent a server name that is not ASCII.
NOT_ASCII_NAME = "the server name it sent (SNI) is not ASCII (RFC 6066)"


class ServerSocket(ssl.SSLSocket):
    """An ``SSLSocket`` that remembers the server name its client sent (SNI)."""

    __slots__ = ("sni",)

    sni: str | None


def keep_server_name(context: ssl.SSLContext) -> None:
    """Make ``context``'s sockets ``ServerSocket`` and record each one's SNI on it."""
    context.sslsocket_class = ServerSocket
    context.sni_callback = _record_sni
    if not isinstance(sys.unraisablehook, _QuietBadNames):
        sys.unraisablehook = _QuietBadNames(sys.unraisablehook)


def _record_sni(sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: ssl.SSLContext) -> None:
    """OpenSSL's servername callback: ``name`` is None when the client sent no SNI."""
    if isinstance(sock, ServerSocket):
        sock.sni = name


class _QuietBadNames:
    """``sys.unraisablehook``: drops CPython's report of a server name that is not ASCII.

    CPython decodes the name before it calls ``sni_callback``, and reports a
    failure as an unraisable exception: five lines on standard error, outside
    the logging, for each such connection, however many a client opens.  The
    handshake's failure is the server's line already; every other report is
    passed on to the hook that was there before.
    """

    def __init__(self, previous: Any) -> None:
        self.previous = previous

    def __call__(self, unraisable: Any) -> None:
        if not _bad_name(unraisable):
            self.previous(unraisable)


def _bad_name(unraisable: Any) -> bool:
    """Whether ``unraisable`` is a server name our socket's handshake could not decode."""
    if unraisable.exc_type is not UnicodeDecodeError or not isinstance(unraisable.object, bytes):
        return False
    tb = unraisable.exc_traceback
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    # Raised in do_handshake(), which CPython reports as the innermost frame.
    return tb is not None and isinstance(tb.tb_frame.f_locals.get("self"), ServerSocket)


def connection_keys(sock: ssl.SSLSocket) -> dict[str, str]:
    """The protocol, cipher, session and SNI keys of a connection whose handshake is done."""
    cipher = sock.cipher()
    version = sock.version()
    if cipher is None or version is None:  # no handshake done: not reached after one
        return {}
    name, _, used_bits = cipher
    keys = {
        "SSL_PROTOCOL": version,
        "SSL_CIPHER": name,
        "SSL_CIPHER_USEKEYSIZE": str(used_bits),
        "SSL_CIPHER_ALGKEYSIZE": str(_algorithm_bits().get(name, used_bits)),
        "SSL_SESSION_RESUMED": "Resumed" if sock.session_reused else "Initial",
    }
    if session_id := _session_id(sock):
        keys["SSL_SESSION_ID"] = session_id
    sni = getattr(sock, "sni", None)  # unset on a socket another context made
    if sni:
        keys["SSL_TLS_SNI"] = sni
    return keys


def _session_id(sock: ssl.SSLSocket) -> str:
    """The session's id as mod_ssl shows it: hex, or "" when OpenSSL gave it none.

    OpenSSL names every TLS 1.3 session (each resumption gets a new id), and
    a TLS 1.2 session the client resumes by id or by ticket; a TLS 1.2 full
    handshake that hands the client a ticket keeps no id on the server.
    mod_ssl sets no variable whose value is empty, so neither do we.
    """
    session = sock.session
    return session.id.hex() if session is not None else ""


@functools.cache
def _algorithm_bits() -> dict[str, int]:
    """Each cipher OpenSSL knows, by name: the key bits its algorithm takes.

    ``SSLSocket.cipher()`` tells the bits in use only; the algorithm's
    (mod_ssl's ALGKEYSIZE, 168 for 3DES's 112 in use) is the cipher's own.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.set_ciphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0")
    return {cipher["name"]: cipher["alg_bits"] for cipher in context.get_ciphers()}
