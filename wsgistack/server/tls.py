"""The server's TLS context (``--certfile``, ``--keyfile``, ...), loaded from the files.

Rules: the files are read in the master, as ``ServerConfig`` checks the
options (at start-up, and again for each SIGHUP's configuration: a renewed
certificate), so a file that cannot be loaded fails there, naming the option,
never in a worker; the context is the configuration's (``tls_context``), and
a worker forked with it serves with what the master loaded, so a key only
root can read serves under ``--user`` too, as nginx's master reads it.
TLS 1.2 at least, no renegotiation (a client could make the server compute
handshakes at will), ALPN ``http/1.1`` (we speak no HTTP/2).

    context = server_context(config)    # the files read now; None without --certfile
    tls_sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..tlsfiles import CertOptions, load_cert_chain, load_file
from .tlsfacts import keep_server_name

if TYPE_CHECKING:
    from .config import ServerConfig

__all__ = ["CERT_REQS", "check_tls", "server_context"]

#: ``--cert-reqs`` by name (gunicorn takes ssl's numbers 0, 1, 2 for these).
CERT_REQS = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}

_NAMES = CertOptions("", "certfile", "keyfile", None)


def server_context(config: ServerConfig) -> ssl.SSLContext | None:
    """A new context, the files read now; None when ``certfile`` is not set.

    Read once per configuration: ``ServerConfig.tls_context`` keeps it.
    """
    if config.certfile is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION
    load_cert_chain(context, config.certfile, config.keyfile, None, _NAMES)
    if config.ca_certs is not None:
        load_file(
            lambda path: context.load_verify_locations(cafile=path),
            config.ca_certs,
            "ca_certs",
            "no PEM certificate in it",
        )
    context.verify_mode = CERT_REQS[config.cert_reqs]
    if config.ciphers is not None:
        try:
            context.set_ciphers(config.ciphers)
        except ssl.SSLError:
            raise ConfigError(f"ciphers: no cipher matches {config.ciphers!r}") from None
    context.set_alpn_protocols(["http/1.1"])
    keep_server_name(context)  # SSL_TLS_SNI
    return context


def check_tls(config: ServerConfig) -> None:
    """Refuse TLS options that cannot go together, then load the files (``tls_context``)."""
    if config.certfile is None:
        for name in ("keyfile", "ca_certs", "ciphers"):
            if getattr(config, name) is not None:
                raise ConfigError(f"{name}: given without certfile, the server's certificate")
        if config.cert_reqs != "none":
            raise ConfigError("cert_reqs: given without certfile, the server's certificate")
        return
    if not any(config.tls_for(bind) for bind in config.bind):
        raise ConfigError(
            "certfile: TLS applies to http binds, and every bind is uwsgi:// (nginx"
            " speaks to uwsgi binds in plain; it terminates TLS itself)"
        )
    if config.cert_reqs != "none" and config.ca_certs is None:
        raise ConfigError(
            f"cert_reqs: {config.cert_reqs!r} needs ca_certs, the CA file client"
            " certificates are verified against"
        )
    if config.ca_certs is not None and config.cert_reqs == "none":
        raise ConfigError(
            "ca_certs: verifies client certificates, which cert_reqs 'none' (the"
            " default) never asks for: add cert_reqs 'required' (or 'optional')"
        )
    config.tls_context  # noqa: B018 - read now, in the master, and kept
