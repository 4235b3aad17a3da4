"""NetworkSet agrees with a naive scan of ipaddress networks, on random data."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsgistack.errors import ConfigError
from wsgistack.netset import NetworkSet, parse_network


def v4_networks():
    return st.builds(
        lambda addr, plen: ipaddress.IPv4Network((addr, plen), strict=False),
        st.integers(0, 2**32 - 1),
        st.integers(0, 32),
    )


def v6_networks():
    return st.builds(
        lambda addr, plen: ipaddress.IPv6Network((addr, plen), strict=False),
        st.integers(0, 2**128 - 1),
        st.integers(0, 128),
    )


def mapped_networks():
    """IPv6 networks in and around ::ffff:0:0/96, where entries are their IPv4 selves."""
    return st.builds(
        lambda addr, plen: ipaddress.IPv6Network((0xFFFF_0000_0000 | addr, plen), strict=False),
        st.integers(0, 2**32 - 1),
        st.integers(80, 128),
    )


addresses = st.one_of(
    st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address),
    st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address),
)


def ipv4_self(network):
    """The IPv4 network an entry inside ::ffff:0:0/96 stands for, else None."""
    if network.version == 6 and network.prefixlen >= 96 and network.subnet_of(MAPPED):
        return ipaddress.IPv4Network(
            (int(network.network_address) & 0xFFFF_FFFF, network.prefixlen - 96)
        )
    return None


MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(v4_networks(), v6_networks(), mapped_networks()), max_size=30),
    st.lists(addresses, max_size=20),
)
def test_matches_the_naive_scan(networks, probes):
    netset = NetworkSet(networks)
    for network in networks:  # the edges of every network, where off-by-ones live
        probes += [network.network_address, network.broadcast_address]
        if int(network.broadcast_address) < (2**32 if network.version == 4 else 2**128) - 1:
            probes.append(network.broadcast_address + 1)
    # An entry inside ::ffff:0:0/96 is also its IPv4 self (::ffff:0:0/96 is all of IPv4).
    entries = networks + [v4 for network in networks if (v4 := ipv4_self(network)) is not None]
    for address in probes:
        selves = [address]
        if address.version == 6 and address.ipv4_mapped is not None:
            selves.append(address.ipv4_mapped)  # a mapped address is also its IPv4 self
        naive = any(a.version == n.version and a in n for a in selves for n in entries)
        assert (address in netset) is naive, (address, networks)
        assert (netset.match(address) is not None) is naive


def test_mapped_addresses_match_their_ipv4_network():
    netset = NetworkSet(["10.0.0.0/8", "::ffff:192.0.2.0/120"])
    assert "::ffff:10.1.2.3" in netset
    assert "192.0.2.200" in netset
    assert "11.0.0.1" not in netset


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(v4_networks(), mapped_networks()), max_size=20), st.data())
def test_network_objects_mean_what_their_text_means(networks, data):
    # An ipaddress network and its string are one entry: ::ffff:10.0.0.0/104 is
    # 10.0.0.0/8 either way, so a plain IPv4 client is found in both.
    from_objects = NetworkSet(networks)
    from_text = NetworkSet([str(n) for n in networks])
    assert from_objects == from_text
    for network in networks:
        edge = data.draw(st.sampled_from([network.network_address, network.broadcast_address]))
        if edge.version == 6 and edge.ipv4_mapped is not None:
            assert (edge.ipv4_mapped in from_objects) is (edge.ipv4_mapped in from_text)
        assert (edge in from_objects) is (edge in from_text)


def test_a_mapped_network_object_holds_plain_ipv4_clients():
    netset = NetworkSet([ipaddress.ip_network("::ffff:10.0.0.0/104")])
    assert "10.1.2.3" in netset
    assert netset.match("10.1.2.3") == "10.0.0.0/8"


@pytest.mark.parametrize(
    "address",
    [ipaddress.ip_address("10.0.0.7"), ipaddress.ip_address("::ffff:10.0.0.7")],
    ids=["v4", "mapped"],
)
def test_an_address_object_is_an_entry_like_its_text(address):
    # IPFilter's allow/deny take them; trusted_proxies and exempt lists must too.
    netset = NetworkSet([address], option="trusted_proxies")
    assert netset.networks == (ipaddress.ip_network("10.0.0.7/32"),)
    assert "10.0.0.7" in netset


@pytest.mark.parametrize("bad", ["10.0.0.1/8", "10.0.0", "fe80::zz", ""])
def test_bad_entries_are_refused(bad):
    with pytest.raises(ConfigError, match="is not an IP address or network"):
        parse_network(bad)


@pytest.mark.parametrize(
    ("scoped", "written"),
    [
        ("fe80::1%eth0", "fe80::1%eth0"),
        (ipaddress.ip_network("fe80::1%eth0"), "fe80::1%eth0/128"),
        (ipaddress.ip_address("fe80::1%eth0"), "fe80::1%eth0"),
    ],
    ids=["text", "network", "address"],
)
def test_a_scoped_entry_is_refused_as_it_would_match_every_interface(scoped, written):
    # fe80::1%eth0 as an entry would also hold fe80::1%eth1: matching is by address.
    # The message quotes the entry as written (it quoted the parsed "/128" form).
    with pytest.raises(ConfigError, match=rf"^deny: '{re.escape(written)}' has a scope"):
        NetworkSet([scoped], option="deny")


def test_a_string_is_not_a_list():
    with pytest.raises(ConfigError, match="expected a list of networks"):
        NetworkSet("10.0.0.0/8")


@pytest.mark.parametrize("bad", [5.0, None, 10], ids=["float", "none", "int"])
def test_a_non_list_is_refused_with_the_option_name(bad):
    # A bare "not iterable" TypeError would name no option.
    with pytest.raises(ConfigError, match=f"allow: expected a list of networks, got {bad}"):
        NetworkSet(bad, option="allow")


def test_equal_sets_hash_alike():
    # __eq__ compares the merged ranges, so the hash must too: two spellings of
    # one set are one element of a set or dict.
    whole = NetworkSet(["10.0.0.0/8"])
    halves = NetworkSet(["10.0.0.0/9", "10.128.0.0/9"])
    assert whole == halves
    assert hash(whole) == hash(halves)
    assert len({whole, halves}) == 1
    v6 = NetworkSet(["2001:db8::/32"])
    assert hash(v6) == hash(NetworkSet(["2001:db8::/33", "2001:db8:8000::/33"]))
