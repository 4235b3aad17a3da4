"""The pool's TLS options for its ``https://`` upstreams, checked at start-up.

Per pool, not per upstream: a pool's upstreams are replicas of one service,
behind one CA and one certificate name, as nginx's ``proxy_ssl_*`` apply to
all the servers of a ``proxy_pass``.  Verification is on by default, against
the system's CAs (as ``requests`` and ``urllib3``; nginx's
``proxy_ssl_verify`` is off by default).  The context is made only for a
pool with an ``https://`` upstream (the system's store costs tens of ms).

Each upstream resumes its last TLS session on a new connection (nginx's
``proxy_ssl_session_reuse on``): a resumed handshake skips the certificates,
their signatures and the chain's verification on both sides (over TLS 1.2 the
key exchange too; TLS 1.3 still does one, as OpenSSL offers ``psk_dhe_ke``
only), which counts when the pool churns (idle timeouts, restarts, bursts
past ``max_idle``).

    tls = PoolTLS(verify=True, ca_certs="/etc/ssl/internal-ca.pem", server_name="api.internal")
    options = tls.upstream_options()  # a ConfigError naming the option if a file is bad
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
from ...options import choice, flag
from ...tlsclient import client_context

__all__ = ["PoolTLS"]

log = logging.getLogger("wsgistack.forward")

_WHERE = "LoadBalancer"
#: A DNS name (a root dot allowed), as SNI carries it (RFC 6066 3: no address, no port).
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.?")
#: The protocol floors ``tls_min_version`` takes, by ``ssl.TLSVersion``'s names.
_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


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
    :param session_reuse: a new connection resumes the upstream's last session
        (default), as nginx's ``proxy_ssl_session_reuse``; False: a full handshake each time.
    :param min_version: the lowest protocol spoken, ``"TLSv1.2"`` (Python's
        default) or ``"TLSv1.3"`` (nginx's ``proxy_ssl_protocols``).
    :param ciphers: an OpenSSL cipher list for TLS 1.2 (nginx's
        ``proxy_ssl_ciphers``); TLS 1.3's suites are OpenSSL's, not set here.
    """

    verify: bool = True
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    password: str | None = None
    server_name: str | None = None
    session_reuse: bool = True
    min_version: str | None = None
    ciphers: str | None = None

    def __post_init__(self) -> None:
        flag(self.verify, f"{_WHERE}: tls_verify")
        flag(self.session_reuse, f"{_WHERE}: tls_session_reuse")
        if self.min_version is not None:
            choice(self.min_version, f"{_WHERE}: tls_min_version", _VERSIONS)
        if self.ciphers is not None and (not isinstance(self.ciphers, str) or not self.ciphers):
            raise ConfigError(
                f"{_WHERE}: tls_ciphers: expected an OpenSSL cipher list"
                f" (ECDHE+AESGCM), got {self.ciphers!r}"
            )
        if self.ciphers is not None and self.min_version == "TLSv1.3":
            raise ConfigError(
                f"{_WHERE}: tls_ciphers: has no use with tls_min_version='TLSv1.3' (it sets"
                " TLS 1.2's ciphers only); remove one of them"
            )
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
        named = (
            "ca_certs",
            "certfile",
            "keyfile",
            "password",
            "server_name",
            "min_version",
            "ciphers",
        )
        return [f"tls_{name}" for name in named if getattr(self, name) is not None]

    def upstream_options(self) -> dict[str, Any]:
        """What each ``https://`` ``Upstream`` of the pool is made with: one context for all."""
        return {
            "tls": self.context(),
            "server_name": self.server_name,
            "session_reuse": self.session_reuse,
        }

    def context(self) -> ssl.SSLContext:
        """The client context: files loaded now, so a bad one fails at start-up, by name."""
        settings: dict[str, Any] = {
            "tls_certfile": self.certfile,
            "tls_keyfile": self.keyfile,
            "tls_password": self.password,
            "tls_ciphers": self.ciphers,
        }
        if self.min_version is not None:
            settings["tls_min_version"] = _VERSIONS[self.min_version]
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
