"""Who is the client: truth tables for trusted and untrusted peers and headers."""

from __future__ import annotations

import ipaddress
from functools import partial
from wsgiref.validate import validator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from webtest import TestApp
from werkzeug.middleware.proxy_fix import ProxyFix

from wsgistack import compose, use
from wsgistack.clientip import (
    CACHE_KEY,
    ProxyTrust,
    client_addr,
    client_ip,
    forwarded_for_values,
)
from wsgistack.errors import ConfigError
from wsgistack.middlewares import IPFilter, RateLimiter

LB = ProxyTrust(["10.0.0.0/8", "2001:db8:ffff::/48"])
FWD = ProxyTrust(["10.0.0.0/8"], header="forwarded")
UNIX = ProxyTrust(["unix", "10.0.0.0/8"])  # nginx in front over a unix socket


def env(peer, xff=None, forwarded=None):
    environ = {"REMOTE_ADDR": peer}
    if xff is not None:
        environ["HTTP_X_FORWARDED_FOR"] = xff
    if forwarded is not None:
        environ["HTTP_FORWARDED"] = forwarded
    return environ


CASES = [
    # (id, environ, trust, expected)
    ("no-trust-ignores-xff", env("203.0.113.5", xff="1.2.3.4"), None, "203.0.113.5"),
    ("untrusted-peer-spoofs", env("203.0.113.5", xff="1.2.3.4"), LB, "203.0.113.5"),
    ("trusted-peer", env("10.0.0.1", xff="198.51.100.7"), LB, "198.51.100.7"),
    ("spoof-left-of-real", env("10.0.0.1", xff="1.2.3.4, 198.51.100.7"), LB, "198.51.100.7"),
    (
        "chain-of-proxies",
        env("10.0.0.1", xff="198.51.100.7, 10.0.0.9, 10.0.0.8"),
        LB,
        "198.51.100.7",
    ),
    ("all-trusted", env("10.0.0.1", xff="10.0.0.3, 10.0.0.2"), LB, "10.0.0.3"),
    ("no-header", env("10.0.0.1"), LB, "10.0.0.1"),
    ("garbage-stops-at-nearest", env("10.0.0.1", xff="1.2.3.4, garbage"), LB, "10.0.0.1"),
    ("garbage-behind-proxy", env("10.0.0.1", xff="nonsense, 10.0.0.7"), LB, "10.0.0.7"),
    ("empty-entry", env("10.0.0.1", xff="1.2.3.4,,"), LB, "10.0.0.1"),
    ("ipv6-client", env("2001:db8:ffff::1", xff="2001:db8::42"), LB, "2001:db8::42"),
    ("mapped-peer", env("::ffff:10.0.0.1", xff="198.51.100.7"), LB, "198.51.100.7"),
    ("mapped-client", env("10.0.0.1", xff="::ffff:198.51.100.7"), LB, "198.51.100.7"),
    ("xff-with-port", env("10.0.0.1", xff="198.51.100.7:5555"), LB, "198.51.100.7"),
    ("xff-port-not-ascii", env("10.0.0.1", xff="198.51.100.7:\xb2"), LB, "10.0.0.1"),
    ("xff-v6-port-not-ascii", env("10.0.0.1", xff="[2001:db8::9]:\xb2"), LB, "10.0.0.1"),
    ("xff-bracketed-v6", env("10.0.0.1", xff="[2001:db8::9]:80"), LB, "2001:db8::9"),
    ("hops-1", env("192.0.2.1", xff="1.1.1.1, 198.51.100.7"), ProxyTrust(hops=1), "198.51.100.7"),
    ("hops-2", env("192.0.2.1", xff="1.1.1.1, 198.51.100.7"), ProxyTrust(hops=2), "1.1.1.1"),
    ("hops-too-few", env("192.0.2.1", xff="198.51.100.7"), ProxyTrust(hops=2), "192.0.2.1"),
    ("hops-garbage", env("192.0.2.1", xff="junk"), ProxyTrust(hops=1), "192.0.2.1"),
    ("forwarded", env("10.0.0.1", forwarded="for=198.51.100.7;proto=https"), FWD, "198.51.100.7"),
    (
        "forwarded-quoted-v6-port",
        env("10.0.0.1", forwarded='for="[2001:db8::1]:4711"'),
        FWD,
        "2001:db8::1",
    ),
    (
        "forwarded-chain",
        env("10.0.0.1", forwarded="for=1.2.3.4, for=198.51.100.7;by=10.0.0.1, for=10.0.0.5"),
        FWD,
        "198.51.100.7",
    ),
    ("forwarded-unknown", env("10.0.0.1", forwarded="for=unknown"), FWD, "10.0.0.1"),
    (
        "forwarded-obfuscated",
        env("10.0.0.1", forwarded="for=_hidden, for=10.0.0.4"),
        FWD,
        "10.0.0.4",
    ),
    (
        # RFC 7239 6.3: a proxy may hide the port ("_" obfport) and still give the address.
        "forwarded-obfuscated-port",
        env("10.0.0.1", forwarded='for="198.51.100.7:_conn42"'),
        FWD,
        "198.51.100.7",
    ),
    (
        "forwarded-obfuscated-port-v6",
        env("10.0.0.1", forwarded='for="[2001:db8::1]:_p.1-x"'),
        FWD,
        "2001:db8::1",
    ),
    (
        "forwarded-bare-underscore-port",
        env("10.0.0.1", forwarded='for="1.2.3.4:_"'),
        FWD,
        "10.0.0.1",
    ),
    ("forwarded-no-for", env("10.0.0.1", forwarded="proto=https"), FWD, "10.0.0.1"),
    ("forwarded-unbalanced-quote", env("10.0.0.1", forwarded='for="1.2.3.4'), FWD, "10.0.0.1"),
    (
        # The client leaves a quote open to swallow the element our proxy appended.
        "forwarded-open-quote-cannot-swallow-the-proxys-element",
        env("10.0.0.1", forwarded='for=192.0.2.10;proto="x, for=198.51.100.7'),
        FWD,
        "198.51.100.7",
    ),
    (
        "forwarded-open-quote-hops",
        env("10.0.0.1", forwarded='for=192.0.2.10;proto="x, for=198.51.100.7'),
        ProxyTrust(hops=1, header="forwarded"),
        "198.51.100.7",
    ),
    (
        # RFC 7239 has proxies quote IPv6 (and some quote every node): the client's
        # open quote must not pair with the quote our proxy wrote and hide its element.
        "forwarded-open-quote-cannot-swallow-a-quoted-v6-element",
        env("10.0.0.1", forwarded='for="x, for="[2001:db8::1]:4711"'),
        FWD,
        "2001:db8::1",
    ),
    (
        "forwarded-open-quote-cannot-swallow-a-quoted-v4-element",
        env("10.0.0.1", forwarded='for=192.0.2.10;proto="x, for="198.51.100.7"'),
        FWD,
        "198.51.100.7",
    ),
    (
        "forwarded-open-quote-cannot-swallow-a-quoted-element-hops",
        env("10.0.0.1", forwarded='for="x, for="198.51.100.7"'),
        ProxyTrust(hops=1, header="forwarded"),
        "198.51.100.7",
    ),
    (
        "forwarded-escaped-backslash-before-the-closing-quote",
        env("10.0.0.1", forwarded='for=198.51.100.7;ext="a\\\\", for=10.0.0.2'),
        FWD,
        "198.51.100.7",
    ),
    (
        "forwarded-quoted-comma-is-one-element",
        env("10.0.0.1", forwarded='for=198.51.100.7;ext="a, b", for=10.0.0.2'),
        FWD,
        "198.51.100.7",
    ),
    (
        "forwarded-escaped-quote",
        env("10.0.0.1", forwarded='for=198.51.100.7;ext="a\\"b, c"'),
        FWD,
        "198.51.100.7",
    ),
    ("forwarded-two-fors", env("10.0.0.1", forwarded="for=1.2.3.4;for=10.0.0.2"), FWD, "10.0.0.1"),
    ("forwarded-header-not-xff", env("10.0.0.1", xff="1.2.3.4"), FWD, "10.0.0.1"),
    ("xff-trust-ignores-forwarded", env("10.0.0.1", forwarded="for=1.2.3.4"), LB, "10.0.0.1"),
    ("unix-socket-peer", env(""), LB, None),
    ("unix-socket-peer-untrusted", env("", xff="198.51.100.7"), LB, None),
    ("unix-socket-trusted", env("", xff="198.51.100.7"), UNIX, "198.51.100.7"),
    (
        "unix-socket-trusted-chain",
        env("", xff="1.2.3.4, 198.51.100.7, 10.0.0.3"),
        UNIX,
        "198.51.100.7",
    ),
    ("unix-socket-trusted-no-header", env(""), UNIX, None),
    ("unix-trust-still-checks-tcp-peers", env("203.0.113.5", xff="1.2.3.4"), UNIX, "203.0.113.5"),
    # A zone id (%eth0) names an interface of the sender's own host: no proxy writes
    # one, and its text is free (spaces, line feeds), so a node with one is malformed.
    ("xff-zone-id", env("10.0.0.1", xff="198.51.100.7, fe80::1%eth0"), LB, "10.0.0.1"),
    (
        "xff-zone-id-hops",
        env("192.0.2.1", xff="2001:db8::1%x\nforged"),
        ProxyTrust(hops=1),
        "192.0.2.1",
    ),
    ("xff-zone-id-bracketed", env("10.0.0.1", xff="[2001:db8::1%a]:80"), LB, "10.0.0.1"),
    (
        "forwarded-zone-id",
        env("10.0.0.1", forwarded='for="[2001:db8::1%25eth0]"'),
        FWD,
        "10.0.0.1",
    ),
]


@pytest.mark.parametrize(
    ("environ", "trust", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_who_is_the_client(environ, trust, expected):
    address = client_ip(environ, trust)
    assert (None if address is None else str(address)) == expected
    assert environ[CACHE_KEY] == (expected or "")


def test_the_answer_is_cached_for_later_layers():
    environ = env("10.0.0.1", xff="198.51.100.7")
    assert str(client_ip(environ, LB)) == "198.51.100.7"
    environ["HTTP_X_FORWARDED_FOR"] = "6.6.6.6"  # a later change does not make layers disagree
    assert client_addr(environ) == "198.51.100.7"
    assert str(client_ip(environ, LB)) == "198.51.100.7"


def test_zone_ids_cannot_make_one_client_many():
    # Each spelling was a client of its own: a rate-limit key, a log name per request.
    one = ProxyTrust(hops=1)
    answers = {client_addr(env("192.0.2.1", xff=f"2001:db8::1%{zone}"), one) for zone in "abc"}
    assert answers == {"192.0.2.1"}


def test_a_rewritten_remote_addr_is_a_new_peer():
    # A foreign layer (werkzeug's ProxyFix) set REMOTE_ADDR to the client it found:
    # the answer cached for the old peer is not the answer for the new one.
    environ = env("10.0.0.1", xff="198.51.100.7")
    assert client_addr(environ) == "10.0.0.1"
    environ["REMOTE_ADDR"] = "198.51.100.7"
    assert client_addr(environ) == "198.51.100.7"
    assert client_addr(environ, LB) == "198.51.100.7"


def test_layers_below_proxyfix_see_the_client_it_set():
    def hello(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hi"]

    stack = compose(
        use(IPFilter, allow=["10.0.0.0/8"]),  # only our load balancer may connect
        partial(ProxyFix, x_for=1),
        use(RateLimiter, "1/minute"),  # per client, as REMOTE_ADDR now says
        validator(hello),
    )
    app = TestApp(validator(stack))
    for client in ("198.51.100.7", "198.51.100.8", "2001:db8::7"):
        # Each client was limited as the balancer: the second one got a 429.
        app.get("/", headers={"X-Forwarded-For": client}, extra_environ={"REMOTE_ADDR": "10.0.0.1"})
    response = app.get(
        "/",
        headers={"X-Forwarded-For": "198.51.100.7"},
        extra_environ={"REMOTE_ADDR": "10.0.0.1"},
        status=429,
    )
    assert response.status_int == 429


def test_a_layer_with_other_trust_recomputes():
    environ = env("10.0.0.1", xff="198.51.100.7")
    assert str(client_ip(environ, LB)) == "198.51.100.7"
    assert str(client_ip(environ, ProxyTrust(["192.168.0.0/16"]))) == "10.0.0.1"


def test_layers_given_equal_trust_share_one_and_still_tell_others_apart():
    # Each layer coerces its own trusted_proxies; equal ones are one object, so a
    # stack's layers match the cached client by identity instead of comparing sets.
    assert ProxyTrust.coerce(1) is ProxyTrust.coerce(1)
    assert ProxyTrust.coerce(["10.0.0.0/8"]) is ProxyTrust.coerce(ProxyTrust("10.0.0.0/8"))
    assert ProxyTrust.coerce(1) is not ProxyTrust.coerce(2)
    assert ProxyTrust.coerce(["10.0.0.0/8"]) is not ProxyTrust.coerce(["10.0.0.0/16"])
    forwarded = ProxyTrust.coerce(ProxyTrust(hops=1, header="forwarded"))
    assert forwarded is not ProxyTrust.coerce(1)
    environ = env("10.0.0.1", xff="198.51.100.7")
    assert client_addr(environ, ProxyTrust.coerce(1)) == "198.51.100.7"
    assert client_addr(environ, forwarded) == "10.0.0.1"  # no Forwarded header sent


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(["10.0.0.300"], "not an IP address or network", id="bad-network"),
        pytest.param(True, "expected networks or a hop count", id="bool"),
        pytest.param(-1, "hops must be a whole number", id="negative"),
        pytest.param(5.0, "expected networks or a hop count", id="float"),
    ],
)
def test_bad_trust_fails_at_start_up(value, message):
    with pytest.raises(ConfigError, match=message):
        ProxyTrust.coerce(value)


def test_proxies_given_as_address_objects():
    trust = ProxyTrust([ipaddress.ip_address("10.0.0.1")])
    assert str(client_ip(env("10.0.0.1", xff="198.51.100.7"), trust)) == "198.51.100.7"


def test_unknown_header_is_refused():
    with pytest.raises(ConfigError, match="header must be"):
        ProxyTrust(["10.0.0.0/8"], header="x-real-ip")  # type: ignore[arg-type]


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_NODES = st.sampled_from(["198.51.100.7", "[2001:db8::1]:4711", "10.0.0.2", "_hidden", "unknown"])
_FRAGMENTS = ["for=", "a=", '"', "\\", ",", ";", " ", "1.2.3.4", "[::1]"]
_EXTRA = st.text(alphabet=' ,;="\\ab', max_size=8)  # quotes, escapes and separators


@given(
    prefix=st.lists(st.sampled_from(_FRAGMENTS), max_size=8).map("".join),
    appended=st.lists(st.tuples(_NODES, st.booleans(), _EXTRA), min_size=1, max_size=4),
)
def test_what_a_client_prepends_never_changes_the_elements_proxies_appended(prefix, appended):
    elements = [
        f"for={_quoted(node) if quote else node};ext={_quoted(extra)}"
        for node, quote, extra in appended
    ]
    nodes = forwarded_for_values({"HTTP_FORWARDED": ", ".join([prefix, *elements])}, FWD)
    assert nodes[-len(appended) :] == [node for node, _, _ in appended]
