"""The PROXY protocol (v1 and v2): the client's address a TCP load balancer writes first.

HAProxy in TCP mode, an AWS NLB or a GCP TCP proxy with the protocol on, and
TLS-passthrough balancers open each connection with one header that names
the client (haproxy's doc/proxy-protocol.txt).  With ``--proxy-protocol``,
every http bind (uwsgi ones are nginx's, which says REMOTE_ADDR itself)
expects it, as nginx's ``listen ... proxy_protocol`` and gunicorn's
``--proxy-protocol`` do.

Rules.
- Only peers in ``--proxy-allow-from`` may send one: nothing tells a forged
  header from a real one.  How a worker reads it is ``proxyconnection.py``'s.
- The header's source becomes the connection's peer: ``REMOTE_ADDR`` and
  ``REMOTE_PORT`` of every request on it, the access log, the IP filter and
  the rate limiter all see the client.  v2 LOCAL (the balancer's own health
  check) and UNKNOWN, or a v2 address that is not TCP over IPv4/IPv6, keep
  the socket's peer.  The destination is checked but not used:
  ``SERVER_NAME``/``SERVER_PORT`` stay the listener's.

    header = parse_header(b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\\r\\n...")
    header.source, header.length   # ('203.0.113.7', 51000), 44
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..netset import peer_list
from ..options import ini_flag

if TYPE_CHECKING:
    from .config import ServerConfig

__all__ = [
    "DEFAULT_ALLOW_FROM",
    "V1_MAX",
    "V2_MAX",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyHeaderError",
    "check_proxy_protocol",
    "parse_header",
    "proxy_allow_from",
    "proxy_protocol",
]

#: gunicorn's default for --proxy-allow-from: the balancer runs on this host.
DEFAULT_ALLOW_FROM = ("127.0.0.1", "::1")

_V1_PREFIX = b"PROXY "
#: "PROXY UNKNOWN" plus 2 addresses of 39 characters, 2 ports and CRLF (spec 2.1).
V1_MAX = 107
#: v2's 12-byte signature: it cannot begin an HTTP request or a TLS record (spec 2.2).
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: v2's fixed part (signature, version and command, family, length), then up to 65535.
V2_MAX = 16 + 0xFFFF
#: v2 family byte: the address family (high nibble) and the transport (low nibble).
_INET, _INET6, _UNIX = 1, 2, 3
_STREAM = 1
#: The bytes of the addresses and ports of each family (spec 2.2, ``proxy_addr``).
_ADDRESS_SIZE = {_INET: 12, _INET6: 36, _UNIX: 216}


class ProxyHeaderError(Exception):
    """The bytes are not a valid PROXY protocol header; ``str()`` says why, for the log."""


@dataclasses.dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A whole header: its ``length`` in bytes, and the client it names.

    ``source`` is ``(address, port)``, or None when the socket's peer stands
    (v2 LOCAL, UNKNOWN, or an address that is not TCP over IP).
    """

    source: tuple[str, int] | None
    length: int


def parse_header(data: bytes) -> ProxyHeader | None:
    """The header ``data`` begins with; None while it is a valid beginning of one.

    Raises ``ProxyHeaderError`` as soon as ``data`` cannot begin a header.
    """
    if data[:1] == b"P":
        return _parse_v1(data)
    if data[:1] == b"\r":
        return _parse_v2(data)
    if not data:
        return None
    raise ProxyHeaderError("no PROXY protocol header")


def _parse_v1(data: bytes) -> ProxyHeader | None:
    """``PROXY TCP4|TCP6 SRC DST SPORT DPORT\\r\\n`` or ``PROXY UNKNOWN ...\\r\\n`` (spec 2.1)."""
    if not data.startswith(_V1_PREFIX):
        if _V1_PREFIX.startswith(data):
            return None
        raise ProxyHeaderError("no PROXY protocol header")
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX or b"\n" in data:
            raise ProxyHeaderError(f"a v1 header longer than {V1_MAX} bytes, or no CRLF")
        return None
    fields = data[len(_V1_PREFIX) : end].split(b" ")
    length = end + 2
    if fields[0] == b"UNKNOWN":  # the balancer could not tell: the peer stands
        return ProxyHeader(None, length)
    if fields[0] not in (b"TCP4", b"TCP6") or len(fields) != 5:
        raise ProxyHeaderError("a v1 header that is not TCP4, TCP6 or UNKNOWN with 4 fields")
    kind = ipaddress.IPv4Address if fields[0] == b"TCP4" else ipaddress.IPv6Address
    try:
        source, _ = (kind(field.decode("ascii")) for field in fields[1:3])
    except (ValueError, UnicodeDecodeError):
        raise ProxyHeaderError(f"a v1 header with a bad {fields[0].decode()} address") from None
    port = _v1_port(fields[3])
    _v1_port(fields[4])
    return ProxyHeader((str(source), port), length)


def _v1_port(field: bytes) -> int:
    """A decimal port of 0-65535 without leading zeros, as spec 2.1 writes them."""
    if not (field.isdigit() and (field == b"0" or field[:1] != b"0") and int(field) <= 0xFFFF):
        raise ProxyHeaderError(f"a v1 header with a bad port {field[:8]!r}")
    return int(field)


def _parse_v2(data: bytes) -> ProxyHeader | None:
    """The binary header: signature, version 2, LOCAL or PROXY, the addresses, TLVs (spec 2.2)."""
    if not data.startswith(V2_SIGNATURE):
        if V2_SIGNATURE.startswith(data):
            return None
        raise ProxyHeaderError("no PROXY protocol header (a bad v2 signature)")
    if len(data) < 16:
        return None
    version, command = data[12] >> 4, data[12] & 0x0F
    family, transport = data[13] >> 4, data[13] & 0x0F
    if version != 2 or command > 1:
        raise ProxyHeaderError(f"a v2 header with version {version} and command {command}")
    if family > _UNIX or transport > 2:
        raise ProxyHeaderError(f"a v2 header with an unknown family byte {data[13]:#04x}")
    length = 16 + int.from_bytes(data[14:16], "big")
    if len(data) < length:
        return None
    if length - 16 < _ADDRESS_SIZE.get(family, 0):
        raise ProxyHeaderError("a v2 header too short for its addresses")
    # LOCAL: the balancer's own connection (a health check); the addresses, and
    # the TLVs after them, are skipped.
    if command == 0 or transport != _STREAM or family not in (_INET, _INET6):
        return ProxyHeader(None, length)
    if family == _INET:
        address: Any = ipaddress.IPv4Address(data[16:20])
        port = int.from_bytes(data[24:26], "big")
    else:
        address = ipaddress.IPv6Address(data[16:32])
        port = int.from_bytes(data[48:50], "big")
    return ProxyHeader((str(address), port), length)


# -- the options (their home: config.py's table names these) ---------------------------
def proxy_protocol(value: Any) -> bool:
    """``--proxy-protocol``: every http bind expects a PROXY protocol header first."""
    return ini_flag(value, "proxy_protocol")


def proxy_allow_from(value: Any) -> tuple[str, ...]:
    """``--proxy-allow-from``: the balancers that may send the header (``*``: any peer)."""
    return peer_list(value, "proxy_allow_from")


def check_proxy_protocol(config: ServerConfig) -> None:
    """Refuse PROXY protocol settings that would do nothing, at start-up."""
    if not config.proxy_protocol:
        if config.proxy_allow_from != DEFAULT_ALLOW_FROM:
            raise ConfigError(
                "proxy_allow_from: given, but proxy_protocol is off: add --proxy-protocol"
                " (proxy_protocol = true)"
            )
        return
    if all(bind.protocol == "uwsgi" for bind in config.bind):
        raise ConfigError(
            "proxy_protocol: applies to http binds, and every bind is uwsgi:// (nginx's"
            " uwsgi_pass sends REMOTE_ADDR in its packet; it writes no PROXY header)"
        )
