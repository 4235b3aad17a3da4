"""--proxy-protocol: the client's address from a PROXY protocol header (v1 and v2).

HAProxy is not needed: the tests write the headers themselves, as
haproxy's doc/proxy-protocol.txt lays them out, to the server on port 0.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import struct
from wsgiref.validate import validator

import pytest

from wsgistack.errors import ConfigError
from wsgistack.middlewares import IPFilter
from wsgistack.server.config import ServerConfig
from wsgistack.server.proxyproto import (
    V1_MAX,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    parse_header,
)

from .live import live_server, read_until_close

GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
GET_CLOSE = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


def v2(command: int, family: int, source: str = "", port: int = 0, tlvs: bytes = b"") -> bytes:
    """A v2 header: PROXY (1) or LOCAL (0), family 0x11 (TCP4), 0x21 (TCP6) or 0x00."""
    addresses = b""
    if family >> 4 in (1, 2):
        src = ipaddress.ip_address(source).packed
        dst = ipaddress.ip_address("10.0.0.1" if family >> 4 == 1 else "2001:db8::1").packed
        addresses = src + dst + struct.pack("!HH", port, 443)
    body = addresses + tlvs
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


#: An AWS NLB's VPC endpoint TLV (type 0xEA) and a CRC32C one (0x03): skipped.
_TLVS = b"\xea\x00\x05\x01vpce" + b"\x03\x00\x04abcd"

CLIENTS = {
    "v1-tcp4": (b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\n", "203.0.113.7", "51000"),
    "v1-tcp6": (b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n", "2001:db8::7", "51000"),
    "v2-tcp4": (v2(1, 0x11, "203.0.113.7", 51000, _TLVS), "203.0.113.7", "51000"),
    "v2-tcp6": (v2(1, 0x21, "2001:db8::7", 6000), "2001:db8::7", "6000"),
}


def whoami(environ, start_response):
    body = f"{environ['REMOTE_ADDR']} {environ['REMOTE_PORT']} {environ['SERVER_PORT']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def counting(calls: list[str]):
    def app(environ, start_response):
        calls.append(environ["REMOTE_ADDR"])
        return whoami(environ, start_response)

    return app


def bodies(answer: bytes) -> list[bytes]:
    """The bodies of the responses in ``answer`` (each with a Content-Length)."""
    found = []
    while answer:
        head, _, rest = answer.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        found.append(rest[:length])
        answer = rest[length:]
    return found


def read_responses(sock: socket.socket, count: int) -> list[bytes]:
    data = b""
    while len(found := _complete(data)) < count:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return found


def _complete(data: bytes) -> list[bytes]:
    try:
        return bodies(data)
    except (IndexError, ValueError):
        return []


@pytest.mark.parametrize("header, address, port", CLIENTS.values(), ids=CLIENTS.keys())
def test_the_headers_source_is_remote_addr_for_every_request_and_in_the_log(
    tmp_path, header, address, port
):
    log = tmp_path / "access.log"
    with live_server(whoami, proxy_protocol=True, access_log=str(log)) as server:
        listener_port = str(server.address[1])
        with socket.create_connection(server.address, timeout=10) as sock:
            sock.sendall(header + GET)
            first = read_responses(sock, 1)
            sock.sendall(GET)  # keep-alive: the same connection, the same client
            second = read_responses(sock, 1)
    expected = f"{address} {port} {listener_port}".encode()  # SERVER_PORT: the listener's
    assert first == second == [expected]
    lines = log.read_text().splitlines()
    assert len(lines) == 2
    assert all(line.startswith(address + " ") for line in lines)


@pytest.mark.parametrize(
    "header",
    [v2(0, 0x00), v2(0, 0x11, "203.0.113.7", 1), b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN x y\r\n"],
    ids=["v2-local", "v2-local-with-addresses", "v1-unknown", "v1-unknown-with-fields"],
)
def test_local_and_unknown_keep_the_balancers_address(header):
    with (
        live_server(whoami, proxy_protocol=True) as server,
        socket.create_connection(server.address, timeout=10) as sock,
    ):
        sock.sendall(header + GET_CLOSE)
        answer = read_until_close(sock)
    assert bodies(answer)[0].startswith(b"127.0.0.1 ")


def test_pipelined_requests_in_the_headers_packet_are_all_answered():
    header = CLIENTS["v1-tcp4"][0]
    with (
        live_server(whoami, proxy_protocol=True) as server,
        socket.create_connection(server.address, timeout=10) as sock,
    ):
        sock.sendall(header + GET + GET + GET_CLOSE)
        answer = read_until_close(sock)
    assert [body.split()[0] for body in bodies(answer)] == [b"203.0.113.7"] * 3


@pytest.mark.parametrize("name", ["v1-tcp4", "v2-tcp6"])
@pytest.mark.parametrize("cut", [1, 5, 13, 20])
def test_a_header_split_across_sends_works(name, cut):
    header, address, _ = CLIENTS[name]
    with (
        live_server(whoami, proxy_protocol=True) as server,
        socket.create_connection(server.address, timeout=10) as sock,
    ):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(header[:cut])
        first = read_responses_or_nothing(sock)
        sock.sendall(header[cut:] + GET_CLOSE)
        answer = read_until_close(sock)
    assert first is None  # nothing answered on half a header
    assert bodies(answer)[0].startswith(address.encode() + b" ")


def read_responses_or_nothing(sock: socket.socket) -> bytes | None:
    """What the server says within a short wait after a partial header (nothing, we hope)."""
    sock.settimeout(0.3)
    try:
        return sock.recv(65536) or b"closed"
    except TimeoutError:
        return None
    finally:
        sock.settimeout(10)


REFUSED = {
    "too-long-v1": b"PROXY TCP4 " + b"1" * V1_MAX + b"\r\n",
    "bad-v2-signature": b"\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c" + bytes(12),
    "garbage": b"\x01\x02garbage\r\n\r\n",
    "http-without-header": GET,
    "v1-bad-address": b"PROXY TCP4 203.0.113.300 10.0.0.1 1 2\r\n",
    "v1-tcp6-with-ipv4": b"PROXY TCP6 203.0.113.7 10.0.0.1 1 2\r\n",
    "v1-leading-zero-port": b"PROXY TCP4 203.0.113.7 10.0.0.1 080 2\r\n",
    "v2-bad-command": V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12),
    "v2-too-short-for-tcp6": V2_SIGNATURE + b"\x21\x21\x00\x0c" + bytes(12),
}


@pytest.mark.parametrize("header", REFUSED.values(), ids=REFUSED.keys())
def test_a_bad_header_is_closed_and_never_reaches_the_app(caplog, header):
    calls: list[str] = []
    caplog.set_level(logging.INFO, "wsgistack.server")
    with (
        live_server(counting(calls), proxy_protocol=True) as server,
        socket.create_connection(server.address, timeout=10) as sock,
    ):
        sock.sendall(header + GET_CLOSE)
        answer = read_until_close(sock)
    assert answer == b""  # closed, as nginx closes it: no HTTP to answer yet
    assert calls == []
    lines = [r.getMessage() for r in caplog.records if "PROXY protocol" in r.getMessage()]
    assert len(lines) == 1 and "127.0.0.1" in lines[0], lines


def test_a_peer_not_allowed_is_closed_unread_and_logged_once(caplog):
    calls: list[str] = []
    caplog.set_level(logging.INFO, "wsgistack.server")
    header = CLIENTS["v1-tcp4"][0]
    with live_server(counting(calls), proxy_protocol=True, proxy_allow_from="10.0.0.0/8") as server:
        for _ in range(3):
            with socket.create_connection(server.address, timeout=10) as sock:
                sock.sendall(header + GET_CLOSE)
                try:
                    answer = read_until_close(sock)
                except ConnectionResetError:  # closed with our bytes unread: a reset
                    answer = b""
                assert answer == b""
    assert calls == []
    refused = [r.getMessage() for r in caplog.records if "--proxy-allow-from" in r.getMessage()]
    assert refused == [
        "PROXY protocol: connection from 127.0.0.1 refused: not in --proxy-allow-from"
    ]


def test_proxy_allow_from_star_admits_any_peer():
    header, address, _ = CLIENTS["v2-tcp4"]
    with (
        live_server(whoami, proxy_protocol=True, proxy_allow_from="*") as server,
        socket.create_connection(server.address, timeout=10) as sock,
    ):
        sock.sendall(header + GET_CLOSE)
        answer = read_until_close(sock)
    assert bodies(answer)[0].startswith(address.encode() + b" ")


def test_an_ip_filter_judges_the_headers_source_not_the_balancer():
    filtered = IPFilter(validator(whoami), deny=["203.0.113.0/24"])
    answers = {}
    with live_server(filtered, proxy_protocol=True) as server:
        for client in ("203.0.113.7", "198.51.100.9"):
            header = f"PROXY TCP4 {client} 10.0.0.1 4000 443\r\n".encode()
            with socket.create_connection(server.address, timeout=10) as sock:
                sock.sendall(header + GET_CLOSE)
                answers[client] = read_until_close(sock).split(b" ", 2)[1]
    assert answers == {"203.0.113.7": b"403", "198.51.100.9": b"200"}


def test_the_header_comes_before_the_tls_handshake(tls_files):
    header, address, port = CLIENTS["v1-tcp6"]
    options = {"certfile": str(tls_files.server_cert), "keyfile": str(tls_files.server_key)}
    context = ssl.create_default_context(cafile=str(tls_files.ca))
    with live_server(whoami, proxy_protocol=True, **options) as server:
        raw = socket.create_connection(server.address, timeout=10)
        raw.sendall(header)  # then the ClientHello, as HAProxy in TCP mode sends them
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(GET)
            first = read_responses(sock, 1)
            sock.sendall(GET)
            second = read_responses(sock, 1)
    assert first == second == [f"{address} {port} {server.address[1]}".encode()]


def test_without_the_option_a_header_is_a_bad_request():
    with (
        live_server(whoami) as server,  # the plain path is unchanged
        socket.create_connection(server.address, timeout=10) as sock,
    ):
        sock.sendall(CLIENTS["v1-tcp4"][0] + GET_CLOSE)
        assert read_until_close(sock).startswith(b"HTTP/1.1 400 ")


# -- the parser, without sockets -----------------------------------------------------------
@pytest.mark.parametrize("header, address, _", CLIENTS.values(), ids=CLIENTS.keys())
def test_every_beginning_of_a_header_asks_for_more(header, address, _):
    for end in range(len(header)):
        assert parse_header(header[:end]) is None, end
    assert parse_header(header + GET) == ProxyHeader((address, int(_)), len(header))


@pytest.mark.parametrize("header", REFUSED.values(), ids=REFUSED.keys())
def test_bad_headers_are_refused_by_the_parser(header):
    with pytest.raises(ProxyHeaderError):
        parse_header(header + GET)


# -- the options -----------------------------------------------------------------------------
def test_the_options_convert_as_gunicorns():
    config = ServerConfig.from_options(proxy_protocol="true", proxy_allow_from="10.0.0.0/8, ::1")
    assert config.proxy_protocol is True
    assert config.proxy_allow_from == ("10.0.0.0/8", "::1")
    assert ServerConfig().proxy_allow_from == ("127.0.0.1", "::1")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"proxy_allow_from": "10.0.0.0/8"}, "proxy_allow_from: given, but proxy_protocol is off"),
        ({"proxy_protocol": True, "proxy_allow_from": "10.0.0.300"}, "proxy_allow_from: '10.0"),
        ({"proxy_protocol": "maybe"}, "proxy_protocol"),
        ({"proxy_protocol": True, "bind": "uwsgi://127.0.0.1:0"}, "every bind is uwsgi"),
    ],
    ids=["allow-from-without-protocol", "bad-address", "bad-flag", "only-uwsgi-binds"],
)
def test_bad_proxy_options_fail_at_start_naming_the_option(options, message):
    with pytest.raises(ConfigError, match=message):
        ServerConfig.from_options(**options)


def test_a_header_that_stalls_is_closed_after_timeout(caplog):
    calls: list[str] = []
    caplog.set_level(logging.INFO, "wsgistack.server")
    with (
        live_server(counting(calls), proxy_protocol=True, timeout=1) as server,
        socket.create_connection(server.address, timeout=10) as sock,
    ):
        sock.sendall(CLIENTS["v2-tcp4"][0][:20])  # and nothing more
        assert read_until_close(sock) == b""
    assert calls == []
    assert "PROXY protocol header from 127.0.0.1: not done within --timeout (1 s)" in caplog.text
