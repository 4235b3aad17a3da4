"""Who is the client: the one place that decides, for every layer.

``REMOTE_ADDR`` is the peer.  A forwarded header (``X-Forwarded-For`` or RFC
7239 ``Forwarded``, one of them, chosen in configuration) is believed only
when the peer is a trusted proxy.  The chain is walked from the right and the
walk stops at the first hop that is not a trusted proxy: that hop is the
client.  Security: configure exactly the header your proxy *sets*; a header
your proxy merely passes through is written by the client.

    trust = ProxyTrust(["10.0.0.0/8"])            # our load balancers
    client_ip(environ, trust)                      # IPv4Address('203.0.113.9')

Hop-count mode (like werkzeug's ``ProxyFix(x_for=N)``) trusts that exactly N
proxies stand in front and takes the N-th address from the right.

The answer is cached in ``environ["wsgistack.client_ip"]`` (text) so layers
below reuse it and never disagree about who asked, for as long as
``REMOTE_ADDR`` is the peer it was computed from: a foreign layer between
ours (werkzeug's ``ProxyFix``) that sets ``REMOTE_ADDR`` to the client it
found makes a new peer, and the layers below it see that one.
"""

from __future__ import annotations

import logging
import re
import weakref
from collections.abc import Iterable
from functools import lru_cache
from typing import Any, Literal

from ._types import WSGIEnvironment
from .errors import ConfigError
from .netset import IPAddress, IPNetwork, NetworkSet, parse_address

__all__ = [
    "CACHE_KEY",
    "NO_ADDRESS_HINT",
    "ProxyTrust",
    "client_addr",
    "client_ip",
    "forwarded_for_values",
    "trusts_peer",
    "warn_no_address",
]

CACHE_KEY = "wsgistack.client_ip"
_TRUST_KEY = "wsgistack.client_ip.trust"
_ADDRESS_KEY = "wsgistack.client_ip.address"
_PEER_KEY = "wsgistack.client_ip.peer"

#: What a layer that met a client without an address tells the operator (once).
NO_ADDRESS_HINT = (
    "behind a proxy on a unix socket, give trusted_proxies=['unix'] and have it send "
    "X-Forwarded-For"
)


def warn_no_address(
    logger: logging.Logger | logging.LoggerAdapter[Any],
    layer: str,
    outcome: str,
    environ: WSGIEnvironment,
) -> None:
    """Tell the operator that ``layer`` met a client with no address, and what it did.

    Said once per layer by the caller: such a request is likely a setup gap
    (a proxy on a unix socket not trusted), not a client's doing.
    """
    logger.warning(
        "%s: a request with no client address (REMOTE_ADDR %r) %s; %s",
        layer,
        environ.get("REMOTE_ADDR", ""),
        outcome,
        NO_ADDRESS_HINT,
    )


Header = Literal["x-forwarded-for", "forwarded"]
_ENVIRON_KEYS: dict[str, str] = {
    "x-forwarded-for": "HTTP_X_FORWARDED_FOR",
    "forwarded": "HTTP_FORWARDED",
}


class ProxyTrust:
    """Which peers may tell us who the client is, and through which header.

    :param proxies: addresses or networks of trusted proxies; ``"unix"`` trusts
        a peer on a unix socket (nginx in front through ``unix:/run/app.sock``),
        which has no address to list.
    :param hops: instead of ``proxies``, the exact number of proxies in front.
    :param header: ``"x-forwarded-for"`` (default) or ``"forwarded"`` (RFC 7239).
    """

    __slots__ = ("__weakref__", "environ_key", "header", "hops", "proxies", "unix")

    def __init__(
        self,
        proxies: Iterable[str | IPNetwork | IPAddress] = (),
        *,
        hops: int = 0,
        header: Header = "x-forwarded-for",
    ) -> None:
        if isinstance(hops, bool) or not isinstance(hops, int) or hops < 0:
            raise ConfigError(f"trusted_proxies: hops must be a whole number >= 0, got {hops!r}")
        key = header.lower() if isinstance(header, str) else header
        if key not in _ENVIRON_KEYS:
            raise ConfigError(
                f"trusted_proxies: header must be 'x-forwarded-for' or 'forwarded', got {header!r}"
            )
        if isinstance(proxies, str):
            proxies = [proxies]
        elif not isinstance(proxies, Iterable):
            raise ConfigError(f"trusted_proxies: expected networks or a hop count, got {proxies!r}")
        entries = list(proxies)
        self.unix = "unix" in entries
        self.proxies = NetworkSet(
            [entry for entry in entries if entry != "unix"], option="trusted_proxies"
        )
        if hops and (self.proxies or self.unix):
            raise ConfigError("trusted_proxies: give proxy networks or a hop count, not both")
        self.hops = hops
        self.header: Header = key  # type: ignore[assignment]
        self.environ_key = _ENVIRON_KEYS[key]

    @classmethod
    def coerce(
        cls, value: ProxyTrust | Iterable[str | IPNetwork | IPAddress] | int | None
    ) -> ProxyTrust | None:
        """Accept the forms users write: None, a hop count, a list of networks, a ProxyTrust.

        Equal configurations come back as one object, so the layers of a stack
        that each take ``trusted_proxies=1`` agree on the cached client by
        identity on every request, not by comparing their network sets.
        """
        if value is None:
            return None
        if isinstance(value, ProxyTrust):
            trust = value
        elif isinstance(value, bool):
            raise ConfigError(f"trusted_proxies: expected networks or a hop count, got {value!r}")
        elif isinstance(value, int):
            trust = cls(hops=value)
        else:
            trust = cls(value)  # one network as a str is taken by the constructor too
        return _SHARED.setdefault(trust._identity(), trust)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProxyTrust):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def _identity(self) -> tuple[NetworkSet, bool, int, str]:
        return (self.proxies, self.unix, self.hops, self.header)

    def __repr__(self) -> str:
        if self.hops:
            return f"ProxyTrust(hops={self.hops}, header={self.header!r})"
        nets = ["unix"] * self.unix + [str(n) for n in self.proxies.networks]
        return f"ProxyTrust({nets!r}, header={self.header!r})"


#: The one live ProxyTrust of each configuration (see ``ProxyTrust.coerce``).
_SHARED: weakref.WeakValueDictionary[tuple[Any, ...], ProxyTrust] = weakref.WeakValueDictionary()

#: One RFC 7239 forwarded-pair.  A value is a quoted-string, or (leniently, as
#: proxies send ``for=192.0.2.1:80`` unquoted) a run without separators or quotes.
_PAIR = re.compile(r'[ \t]*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)=("(?:[^"\\]|\\.)*"|[^;,"\s]*)[ \t]*')


def _forwarded_nodes(raw: str) -> list[str]:
    """The ``for=`` node of each element of a ``Forwarded`` value, left to right.

    Elements are split from the right, where our proxies wrote: a client's
    stray quote on the left cannot pair with a quote a proxy wrote (RFC 7239
    quotes IPv6 nodes) and swallow the elements appended after it.  Each
    element is then parsed strictly; one that does not parse (an unclosed
    quote, a repeated ``for``) gives "".
    """
    return [_element_node(element) for element in _elements(raw)]


def _elements(raw: str) -> list[str]:
    """``raw`` split at the commas outside quoted-strings, deciding quotes right to left."""
    elements: list[str] = []
    end = at = len(raw)
    comma = raw.rfind(",")
    quotes = True  # False once a quote had no opener: none further left has one either
    while True:
        if comma >= at:
            comma = raw.rfind(",", 0, at)
        quote = raw.rfind('"', 0, at) if quotes else -1
        if quote > comma:  # a quoted-string closes here; its commas split nothing
            at = _opening_quote(raw, quote)
            if at == -1:  # a stray quote: the element holding it will not parse
                quotes, at = False, quote
            continue
        elements.append(raw[comma + 1 : end])
        if comma == -1:
            elements.reverse()
            return elements
        end = at = comma


def _opening_quote(raw: str, closing: int) -> int:
    """Where the quoted-string ending at ``closing`` opens; -1 if nowhere.

    Inside one, a backslash only starts a quoted-pair, so a quote after an
    odd run of backslashes is escaped and one after an even run opens it.
    """
    at = closing
    while (at := raw.rfind('"', 0, at)) != -1:
        run = at
        while run and raw[run - 1] == "\\":
            run -= 1
        if (at - run) % 2 == 0:
            return at
    return -1


def _element_node(element: str) -> str:
    """The ``for`` value of one element, unquoted; "" if it has none or does not parse."""
    node: str | None = None
    end = len(element)
    at = 0
    while (match := _PAIR.match(element, at)) is not None:
        at = match.end()
        if match[1].lower() == "for":
            if node is not None:
                return ""  # RFC 7239 4: at most once per element
            value = match[2]
            node = re.sub(r"\\(.)", r"\1", value[1:-1]) if value[:1] == '"' else value
        if at < end and element[at] == ";":
            at += 1
            continue
        break
    return node if at == end and node is not None else ""


#: RFC 7239 6: node-port = port / obfport; obfport = "_" 1*(ALPHA / DIGIT / "." / "_" / "-").
_PORT = re.compile(r"[0-9]+|_[A-Za-z0-9._-]+")


def _node_address(node: str) -> IPAddress | None:
    """Parse an X-Forwarded-For entry or a Forwarded node (``"[v6]:port"``, ``v4:port``).

    A zone id (``fe80::1%eth0``) makes the node malformed: it names an interface
    of the writer's own host, no proxy sends one (nor does RFC 7239's node
    grammar have one), and ``ipaddress`` takes any text after ``%``, line feeds
    too, so one client could be many clients and write lines into our logs.
    """
    node = node.strip()
    if "%" in node:
        return None
    if node.startswith("["):
        end = node.find("]")
        if end == -1:
            return None
        rest = node[end + 1 :]
        if rest and not (rest.startswith(":") and _PORT.fullmatch(rest, 1)):
            return None
        return parse_address(node[1:end])
    if node.count(":") == 1:  # IPv4 with a port; a bare IPv6 has several colons
        host, _, port = node.partition(":")
        if not _PORT.fullmatch(port):
            return None
        node = host
    return parse_address(node)


def forwarded_for_values(environ: WSGIEnvironment, trust: ProxyTrust) -> list[str]:
    """The forwarded chain, left (client side) to right (nearest proxy), as raw nodes."""
    raw = environ.get(trust.environ_key, "")
    if not raw:
        return []
    if trust.header == "forwarded":
        return _forwarded_nodes(raw)
    return [part.strip() for part in raw.split(",")]


def _trusted(peer: IPAddress | None, trust: ProxyTrust) -> bool:
    return trust.unix if peer is None else peer in trust.proxies


def trusts_peer(environ: WSGIEnvironment, trust: ProxyTrust | None) -> bool:
    """True if ``trust`` believes the forwarded headers the peer sent.

    The peer is a trusted proxy (its parsed address, so ``::ffff:10.0.0.1`` is
    ``10.0.0.1``), or in hop-count mode the chain is long enough.  A forwarder
    keeps and extends such a peer's ``X-Forwarded-*`` and replaces anyone else's.
    """
    if trust is None:
        return False
    if trust.hops:
        return len(forwarded_for_values(environ, trust)) >= trust.hops
    return _trusted(parse_address(environ.get("REMOTE_ADDR", "") or ""), trust)


def _resolve(environ: WSGIEnvironment, trust: ProxyTrust | None) -> IPAddress | None:
    peer = parse_address(environ.get("REMOTE_ADDR", "") or "")
    if trust is None:
        return peer
    chain = forwarded_for_values(environ, trust)
    if trust.hops:
        if len(chain) < trust.hops:
            return peer
        return _node_address(chain[-trust.hops]) or peer
    if not _trusted(peer, trust):
        return peer
    nearest = peer
    for node in reversed(chain):
        address = _node_address(node)
        if address is None:  # unknown, _obfuscated or malformed: stop at what we know
            return nearest
        if address not in trust.proxies:
            return address
        nearest = address
    return nearest


def client_ip(environ: WSGIEnvironment, trust: ProxyTrust | None = None) -> IPAddress | None:
    """The client's address; ``None`` when the peer has none (a unix socket).

    With ``trust=None`` a layer reuses the answer an outer layer cached, or
    takes the peer: forwarded headers are never believed without configuration.
    The cached answer holds while ``REMOTE_ADDR`` is the peer it was made from.
    """
    peer = environ.get("REMOTE_ADDR")
    if (
        environ.get(CACHE_KEY) is not None
        and environ.get(_PEER_KEY) == peer
        and (trust is None or (cached := environ.get(_TRUST_KEY)) is trust or cached == trust)
    ):
        return environ.get(_ADDRESS_KEY)
    address = _resolve(environ, trust)
    environ[CACHE_KEY] = "" if address is None else _text(address)
    environ[_PEER_KEY] = peer
    environ[_TRUST_KEY] = trust
    environ[_ADDRESS_KEY] = address
    return address


@lru_cache(maxsize=65536)
def _text(address: IPAddress) -> str:
    return str(address)


def client_addr(environ: WSGIEnvironment, trust: ProxyTrust | None = None) -> str:
    """The client's address as text for logs and keys; ``"-"`` when unknown."""
    if client_ip(environ, trust) is None:
        return "-"
    return environ[CACHE_KEY]  # the address as text, as client_ip left it
