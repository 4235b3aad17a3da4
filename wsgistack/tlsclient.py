"""A client's ``ssl.SSLContext`` from named options, each bad file refused by its option's name.

The Redis store (``ssl_*``, redis-py's names) and the forwarder (``tls_*``)
both load a CA, a client certificate and its key.  A file that exists but
holds no PEM, or a key that does not match its certificate, would otherwise
be taken and fail every connection's handshake, at the first request after
the deploy; loading them needs no network, so it is done at start-up, here.

    context = client_context({"tls_ca_certs": "/etc/ssl/internal-ca.pem"}, "LoadBalancer", "tls_")
    sock = context.wrap_socket(raw, server_hostname="api.internal")

Options, each ``prefix`` + a role: ``ca_certs`` (a PEM file), ``ca_path`` (a
hashed directory), ``ca_data`` (PEM text), ``certfile`` and ``keyfile`` (the
client's certificate, and its key if not in the same file), ``password`` (the
key's), ``min_version``, ``ciphers``.  Without a CA option the system's store
is trusted; with one, only what it names.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError
from .tlsfiles import CertOptions, load_cert_chain, load_file

__all__ = ["client_context"]


def client_context(settings: Mapping[str, Any], where: str, prefix: str) -> ssl.SSLContext:
    """A context that verifies the server (and its name) with the files ``settings`` name.

    ``where`` opens each message ("LoadBalancer", "store: 'rediss://...'").
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname
    trusted = False
    for role, load in (
        ("ca_certs", lambda path: context.load_verify_locations(cafile=path)),
        ("ca_path", lambda path: context.load_verify_locations(capath=path)),
    ):
        name = prefix + role
        path = settings.get(name)
        if path is None:
            continue
        if role == "ca_path" and not os.path.isdir(path):
            raise ConfigError(f"{where}: {name}: no such directory: {path!r}")
        load_file(load, path, f"{where}: {name}", "no PEM certificate in it")
        trusted = True
    cadata = settings.get(prefix + "ca_data")
    if cadata is not None:
        try:
            context.load_verify_locations(cadata=cadata)
        except (ssl.SSLError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {prefix}ca_data: no certificate in it ({exc})") from None
        trusted = True
    if not trusted:
        context.load_default_certs()
    certfile, keyfile = settings.get(prefix + "certfile"), settings.get(prefix + "keyfile")
    if keyfile and not certfile:
        raise ConfigError(
            f"{where}: {prefix}keyfile: needs {prefix}certfile, the certificate it is for"
        )
    if certfile:
        names = CertOptions(where, prefix + "certfile", prefix + "keyfile", prefix + "password")
        load_cert_chain(context, certfile, keyfile, settings.get(prefix + "password"), names)
    if settings.get(prefix + "min_version") is not None:
        try:
            context.minimum_version = settings[prefix + "min_version"]
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {prefix}min_version: {exc}") from None
    if settings.get(prefix + "ciphers"):
        try:
            context.set_ciphers(settings[prefix + "ciphers"])
        except ssl.SSLError:
            raise ConfigError(
                f"{where}: {prefix}ciphers: no cipher matches {settings[prefix + 'ciphers']!r}"
            ) from None
    return context
