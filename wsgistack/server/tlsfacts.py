"""What a TLS connection itself is: mod_ssl's protocol, cipher, SNI and session keys.

Access logs and apps record how a client connected (nginx's ``$ssl_protocol``
and ``$ssl_cipher``), and a multi-tenant app reads which name the client
asked for.  The names and values are Apache mod_ssl's (``SSLOptions
+StdEnvVars``), as mod_wsgi hands them to WSGI apps:

    SSL_PROTOCOL           TLSv1.2 or TLSv1.3
    SSL_CIPHER             OpenSSL's name: TLS_AES_256_GCM_SHA384, ECDHE-ECDSA-AES128-GCM-SHA256
    SSL_CIPHER_USEKEYSIZE  the bits of key the cipher uses
    SSL_CIPHER_ALGKEYSIZE  the bits of key the algorithm could take
    SSL_SESSION_RESUMED    Initial, or Resumed when the client resumed a session
    SSL_TLS_SNI            the server name the client sent (SNI); absent when it sent none

Rules.  Computed once per TLS connection, after its handshake, beside the
client certificate's keys (``clientcert.py``); ``HTTPS=on`` is the listener's
already (``environ_base``).  OpenSSL keeps the server name only for the
client's side, so ``keep_server_name`` gives the server's context a
callback that writes it on the connection's socket (``ServerSocket``) during
the handshake.  A session resumes with a ticket from the same context:
workers forked from one master share it, and a SIGHUP's new context starts
every client afresh.

    keep_server_name(context)     # once, when the context is made
    base = {**listener_base, **connection_keys(tls_sock)}
"""

from __future__ import annotations

import functools
import ssl

__all__ = ["ServerSocket", "connection_keys", "keep_server_name"]


class ServerSocket(ssl.SSLSocket):
    """An ``SSLSocket`` that remembers the server name its client sent (SNI)."""

    __slots__ = ("sni",)

    sni: str | None


def keep_server_name(context: ssl.SSLContext) -> None:
    """Make ``context``'s sockets ``ServerSocket`` and record each one's SNI on it."""
    context.sslsocket_class = ServerSocket
    context.sni_callback = _record_sni


def _record_sni(sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: ssl.SSLContext) -> None:
    """OpenSSL's servername callback: ``name`` is None when the client sent no SNI."""
    if isinstance(sock, ServerSocket):
        sock.sni = name


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
    sni = getattr(sock, "sni", None)  # unset on a socket another context made
    if sni:
        keys["SSL_TLS_SNI"] = sni
    return keys


@functools.cache
def _algorithm_bits() -> dict[str, int]:
    """Each cipher OpenSSL knows, by name: the key bits its algorithm takes.

    ``SSLSocket.cipher()`` tells the bits in use only; the algorithm's
    (mod_ssl's ALGKEYSIZE, 168 for 3DES's 112 in use) is the cipher's own.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.set_ciphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0")
    return {cipher["name"]: cipher["alg_bits"] for cipher in context.get_ciphers()}
