"""Where the server listens: a ``Bind``, read from ``HOST:PORT``, ``unix:/path`` or ``fd://N``.

parse_bind("uwsgi://127.0.0.1:9000")   # Bind('tcp', '127.0.0.1', 9000, protocol='uwsgi')
parse_bind("[::1]:8000")               # IPv6 in brackets
parse_bind("fd://3")                   # a listening socket inherited as descriptor 3
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Literal

from ..errors import ConfigError

__all__ = ["PROTOCOLS", "Bind", "parse_bind"]

PROTOCOLS = ("http", "uwsgi")


@dataclasses.dataclass(frozen=True)
class Bind:
    """One address to listen on: ``tcp`` (host, port), ``unix`` (path) or ``fd``.

    An ``fd`` bind is a listening socket this process inherited, open as
    descriptor ``fd`` (``fd://3``, from systemd or a supervisor): its family
    and address are the socket's own, read when it is adopted.
    ``protocol`` is what the socket speaks: ``http``, ``uwsgi`` (nginx's
    ``uwsgi_pass``), or ``""`` until ``ServerConfig`` applies ``--protocol``.
    """

    kind: Literal["tcp", "unix", "fd"]
    host: str = ""
    port: int = 0
    path: str = ""
    protocol: str = ""
    fd: int = -1

    def __str__(self) -> str:
        scheme = "uwsgi://" if self.protocol == "uwsgi" else ""
        if self.kind == "unix":
            return f"{scheme}unix:{self.path}"
        if self.kind == "fd":
            return f"{scheme}fd://{self.fd}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}{host}:{self.port}"


def parse_bind(value: str) -> Bind:
    """Parse ``HOST:PORT``, ``[IPv6]:PORT``, ``:PORT``, ``unix:/path`` or ``fd://N``.

    A ``uwsgi://`` or ``http://`` prefix sets the bind's protocol, so HTTP and
    uwsgi listeners can sit side by side (``uwsgi://127.0.0.1:9000``, also
    ``uwsgi://fd://3``).
    """
    if not isinstance(value, str) or not value:
        raise ConfigError(f"bind: {value!r} is not HOST:PORT or unix:/path")
    scheme, sep, rest = value.partition("://")
    if sep and scheme == "fd":
        if not (rest.isascii() and rest.isdigit()):
            raise ConfigError(f"bind: {value!r}: fd://N takes a descriptor number, e.g. fd://3")
        return Bind("fd", fd=int(rest))
    if sep:
        if scheme not in PROTOCOLS:
            raise ConfigError(f"bind: {value!r}: unknown scheme {scheme!r} (http, uwsgi or fd)")
        return dataclasses.replace(parse_bind(rest), protocol=scheme)
    if value.startswith("unix:"):
        path = value[5:]
        if not path:
            raise ConfigError(f"bind: {value!r} names no socket path")
        return Bind("unix", path=path)
    host, sep, port_text = value.rpartition(":")
    if not sep or not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise ConfigError(f"bind: {value!r} is not HOST:PORT (port 0-65535) or unix:/path")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"bind: {value!r}: {host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ConfigError(f"bind: {value!r}: write an IPv6 address in brackets, [::1]:8000")
    return Bind("tcp", host=host or "0.0.0.0", port=int(port_text))
