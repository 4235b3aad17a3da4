"""A set of IP networks with O(log n) membership, for allow/deny lists and proxies.

Networks are parsed once, merged into disjoint integer ranges per address
family, and looked up with a binary search, so 100,000 networks cost about
what 10 do.  IPv4-mapped IPv6 addresses (``::ffff:10.0.0.1``) are treated as
the IPv4 address they carry, in entries and in lookups alike.

    offices = NetworkSet(["10.0.0.0/8", "2001:db8::/32"], option="allow")
    "10.1.2.3" in offices          # True
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_right
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from .errors import ConfigError
from .options import listed

__all__ = [
    "IPAddress",
    "IPNetwork",
    "NetworkSet",
    "TrustedPeers",
    "as_network",
    "parse_address",
    "parse_network",
    "peer_list",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=65536)
def parse_address(text: str) -> IPAddress | None:
    """Parse an address, unmapping IPv4-mapped IPv6; ``None`` if it is not one.

    Memoised (bounded): the same clients come back, and parsing is the costliest
    step of deciding who asked.
    """
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_network(text: str, *, option: str = "network") -> IPNetwork:
    """Parse ``10.0.0.0/8``, ``10.0.0.1`` or ``::ffff:10.0.0.0/104``; ConfigError if bad.

    Host bits must be zero (``10.0.0.1/8`` is refused: it is almost always a typo).
    A scoped address (``fe80::1%eth0``) is refused too: matching is by address
    alone, so it would hold ``fe80::1`` on every interface, not just ``eth0``.
    """
    cleaned = text.strip()
    try:
        network = ipaddress.ip_network(cleaned)
    except ValueError as exc:
        raise ConfigError(f"{option}: {text!r} is not an IP address or network ({exc})") from None
    return _entry(network, option, text)


def as_network(entry: object, *, option: str = "network") -> IPNetwork:
    """An entry as it is matched: its text, an ``ipaddress`` network, or an address."""
    if isinstance(entry, str):
        return parse_network(entry, option=option)
    if isinstance(entry, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return _entry(entry, option, str(entry))
    if isinstance(entry, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return parse_network(str(entry), option=option)  # one address, as its text spells it
    raise ConfigError(f"{option}: {entry!r} is not an IP address or network")


def _entry(network: IPNetwork, option: str, written: str) -> IPNetwork:
    """A parsed entry as it is matched: unscoped, and IPv4-mapped ones unmapped."""
    if getattr(network.network_address, "scope_id", None):
        raise ConfigError(  # as written: the parsed one reads "fe80::1%eth0/128"
            f"{option}: {written!r} has a scope (%...): entries match by address on "
            "every interface; give the address without it"
        )
    return _unmapped(network)


def _unmapped(network: IPNetwork) -> IPNetwork:
    """An IPv4-mapped IPv6 network (``::ffff:10.0.0.0/104``) as the IPv4 one it covers."""
    if isinstance(network, ipaddress.IPv6Network):
        mapped = network.network_address.ipv4_mapped
        if mapped is not None and network.prefixlen >= 96:
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def _merge(ranges: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    ranges.sort()
    starts: list[int] = []
    ends: list[int] = []
    for start, end in ranges:
        if ends and start <= ends[-1] + 1:
            if end > ends[-1]:
                ends[-1] = end
        else:
            starts.append(start)
            ends.append(end)
    return starts, ends


class NetworkSet:
    """An immutable set of networks answering ``address in netset`` in O(log n)."""

    __slots__ = ("_ends4", "_ends6", "_starts4", "_starts6", "networks")

    def __init__(
        self, entries: Iterable[str | IPNetwork | IPAddress] = (), *, option: str = "networks"
    ):
        networks = [
            as_network(entry, option=option) for entry in listed(entries, option, "networks")
        ]
        self.networks: tuple[IPNetwork, ...] = tuple(networks)
        spans = [(n.version, int(n.network_address), int(n.broadcast_address)) for n in networks]
        self._starts4, self._ends4 = _merge([(s, e) for v, s, e in spans if v == 4])
        self._starts6, self._ends6 = _merge([(s, e) for v, s, e in spans if v == 6])

    def _span(self, address: object) -> tuple[int, int, int] | None:
        """(version, start, end) of the merged range holding ``address``, if any."""
        if isinstance(address, str):
            try:
                address = ipaddress.ip_address(address.strip())
            except ValueError:
                return None
        if isinstance(address, ipaddress.IPv4Address):
            version, starts, ends = 4, self._starts4, self._ends4
        elif isinstance(address, ipaddress.IPv6Address):
            # A mapped address is its IPv4 self first, and still inside any IPv6
            # network (such as ::/80) that covers ::ffff:0:0/96.
            if address.ipv4_mapped is not None:
                span = self._span(address.ipv4_mapped)
                if span is not None:
                    return span
            version, starts, ends = 6, self._starts6, self._ends6
        else:
            return None
        value = int(address)
        index = bisect_right(starts, value) - 1
        if index >= 0 and value <= ends[index]:
            return version, starts[index], ends[index]
        return None

    def __contains__(self, address: object) -> bool:
        return self._span(address) is not None

    def match(self, address: object) -> str | None:
        """The network (as text) that holds ``address``, for logs; ``None`` if none does.

        Overlapping and adjacent entries were merged, so this names the
        largest CIDR block of the merged range that holds the address.
        """
        span = self._span(address)
        if span is None:
            return None
        version, start, end = span
        make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
        if isinstance(address, str):
            address = ipaddress.ip_address(address.strip())
        if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return None  # pragma: no cover - _span found it, so it is an address
        candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.insert(0, address.ipv4_mapped)
        for network in ipaddress.summarize_address_range(make(start), make(end)):
            if any(c.version == network.version and c in network for c in candidates):
                return str(network)
        return None  # pragma: no cover - the span holds the address by construction

    def __len__(self) -> int:
        return len(self.networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NetworkSet):
            return NotImplemented
        return (self._starts4, self._ends4, self._starts6, self._ends6) == (
            other._starts4,
            other._ends4,
            other._starts6,
            other._ends6,
        )

    def __hash__(self) -> int:
        # Exactly what __eq__ compares: two spellings of one set hash alike.
        return hash(
            (tuple(self._starts4), tuple(self._ends4), tuple(self._starts6), tuple(self._ends6))
        )

    def __repr__(self) -> str:
        shown = ", ".join(str(n) for n in self.networks[:4])
        more = f", ... {len(self.networks) - 4} more" if len(self.networks) > 4 else ""
        return f"NetworkSet([{shown}{more}])"


def peer_list(value: object, option: str) -> tuple[str, ...]:
    """Peers an option trusts, as gunicorn writes them: ``"127.0.0.1,::1"`` or a list.

    A comma-separated string (as gunicorn, ini files and the environment
    write it) or a list of addresses and networks; ``*`` is every peer.  Kept
    as written, each entry checked here (``TrustedPeers`` matches them).
    """
    if isinstance(value, str):
        entries: list[Any] = [entry.strip() for entry in value.split(",")]
    else:
        entries = listed(value, option, "addresses or networks")
    kept: list[str] = []
    for entry in entries:
        if isinstance(entry, str):
            entry = entry.strip()
            if not entry:
                continue  # "a,,b"; "" alone trusts no peer with an address
            if entry == "*":
                kept.append(entry)
                continue
        network = as_network(entry, option=option)
        kept.append(entry if isinstance(entry, str) else str(network))
    return tuple(kept)


class TrustedPeers:
    """Which connected peers a ``peer_list`` option trusts; asked once per connection.

    A peer on a unix socket has no address to list and is trusted, as
    gunicorn trusts it: the socket file's permissions decide who connects.
    """

    __slots__ = ("everyone", "networks")

    def __init__(self, entries: tuple[str, ...], option: str) -> None:
        self.everyone = "*" in entries
        self.networks = NetworkSet([entry for entry in entries if entry != "*"], option=option)

    def trusts(self, peer: Any) -> bool:
        """Whether ``peer`` (a socket's peer address: a tuple, or a unix one) is trusted."""
        if self.everyone or not isinstance(peer, tuple):
            return True
        address = parse_address(peer[0])
        return address is not None and address in self.networks
