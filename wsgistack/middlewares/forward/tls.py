"""The pool's TLS options for its ``https://`` upstreams, checked at start-up.

Per pool, not per upstream: a pool's upstreams are replicas of one service,
behind one CA and one certificate name, as nginx's ``proxy_ssl_*`` apply to
all the servers of a ``proxy_pass``.  Verification is on by default, against
the system's CAs (as ``requests`` and ``urllib3``; nginx's
``proxy_ssl_verify`` is off by default).  The context is made only for a
pool with an ``https://`` upstream (the system's store costs tens of ms).

    tls = PoolTLS(verify=True, ca_certs="/etc/ssl/internal-ca.pem", server_name="api.internal")
    context = tls.context()  # a ConfigError naming the option if a file is bad
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import ssl
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigError
from ...options import flag
from ...tlsclient import client_context

__all__ = ["PoolTLS"]

log = logging.getLogger("wsgistack.forward")

_WHERE = "LoadBalancer"
#: A DNS name (a root dot allowed), as SNI carries it (RFC 6066 3: no address, no port).
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.?")


def _path(value: Any, option: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{_WHERE}: {option}: expected a file's path, got {value!r}")
    return value


def _server_name(value: Any) -> str | None:
    """A host name or an IP address to send in SNI and check the certificate for."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            if len(value) <= 253 and _NAME.fullmatch(value):
                return value
    raise ConfigError(
        f"{_WHERE}: tls_server_name: expected a host name or an IP address with no "
        f"port (api.internal), got {value!r}"
    )


@dataclass(frozen=True)
class PoolTLS:
    """How the pool speaks TLS to its ``https://`` upstreams; the types checked when made.

    :param verify: check each upstream's certificate and name (default); False
        trusts any (logged as a warning when the context is made).
    :param ca_certs: a PEM file or a hashed directory of the CAs to trust
        instead of the system's.
    :param certfile: a client certificate (PEM) for upstreams that ask for one
        (mTLS); ``keyfile``: its key, if not in the same file; ``password``: the key's.
    :param server_name: the name sent in SNI and checked (default: each URL's
        host), for URLs that name an address (nginx's ``proxy_ssl_name``).
    """

    verify: bool = True
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    password: str | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        flag(self.verify, f"{_WHERE}: tls_verify")
        for name in ("ca_certs", "certfile", "keyfile"):
            object.__setattr__(self, name, _path(getattr(self, name), f"{_WHERE}: tls_{name}"))
        if self.password is not None and not isinstance(self.password, str):
            raise ConfigError(
                f"{_WHERE}: tls_password: expected text, got {type(self.password).__name__}"
            )
        object.__setattr__(self, "server_name", _server_name(self.server_name))
        if not self.verify and self.ca_certs is not None:
            raise ConfigError(
                f"{_WHERE}: tls_ca_certs: has no use with tls_verify=False (no certificate "
                "is checked); remove one of them"
            )

    def given(self) -> list[str]:
        """The options set that only an ``https://`` upstream uses."""
        named = ("ca_certs", "certfile", "keyfile", "password", "server_name")
        return [f"tls_{name}" for name in named if getattr(self, name) is not None]

    def context(self) -> ssl.SSLContext:
        """The client context: files loaded now, so a bad one fails at start-up, by name."""
        settings: dict[str, Any] = {
            "tls_certfile": self.certfile,
            "tls_keyfile": self.keyfile,
            "tls_password": self.password,
        }
        if self.ca_certs is not None:
            role = "tls_ca_path" if os.path.isdir(self.ca_certs) else "tls_ca_certs"
            settings[role] = self.ca_certs
        # (A directory cannot fail to load: OpenSSL reads it at each handshake.)
        context = client_context(settings, _WHERE, "tls_")
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            log.warning(
                "LoadBalancer: tls_verify=False: the https:// upstreams' certificates are "
                "not checked, so anyone on the way to them can read and change the traffic"
            )
        return context
