"""The forwarder sends each request to its upstream framed one way, whatever the server let in.

The reference server refuses obs-fold, bare CR/LF, NUL and bad names; other
servers do not (wsgiref, so Django's runserver, keeps an obs-fold's CRLF in
the value).  Whatever reaches the forwarder must leave it as one message that
every upstream parses alike: a raw upstream records the bytes it got.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import wsgiref.simple_server
from collections.abc import Iterator
from wsgiref.validate import validator

import pytest
import webob

from tests.server.live import read_until_close

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class _Quiet(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def wsgiref_front(app) -> Iterator[tuple[str, int]]:
    """``app`` served by wsgiref (a lenient front server) on a free loopback port."""
    server = wsgiref.simple_server.make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield server.server_address
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def _exchange(address, request: bytes) -> bytes:
    with socket.create_connection(address, timeout=10) as client:
        client.sendall(request)
        return read_until_close(client)


def _lines(head: bytes) -> list[bytes]:
    """The field lines of a recorded request head."""
    return head.split(b"\r\n")[1:]


@pytest.mark.parametrize("fold", [b"\r\n ", b"\r\n\t", b"\r\n  \t "], ids=["sp", "htab", "mixed"])
def test_an_obs_fold_the_front_server_kept_reaches_the_upstream_as_one_space(lb, raw, fold):
    upstream = raw(OK)
    with wsgiref_front(validator(lb([upstream.url]))) as address:
        answer = _exchange(
            address,
            b"GET / HTTP/1.1\r\nHost: site.example\r\nX-Note: a"
            + fold
            + b"Transfer-Encoding: chunked\r\n\r\n",
        )
    assert answer.startswith(b"HTTP/1.0 200"), answer[:200]
    (head,) = upstream.heads
    # Before, " Transfer-Encoding: chunked" went out as a line of its own, which
    # a lenient upstream (this raw one) takes for the body's framing.
    assert all(line[:1] not in (b" ", b"\t") for line in _lines(head)), head
    assert upstream.header(b"Transfer-Encoding") == []
    assert upstream.header(b"X-Note") == [b"a Transfer-Encoding: chunked"]


def test_an_obs_folded_host_reaches_the_forwarding_headers_as_one_line(lb, raw):
    upstream = raw(OK)
    with wsgiref_front(validator(lb([upstream.url], preserve_host=True))) as address:
        answer = _exchange(address, b"GET / HTTP/1.1\r\nHost: a\r\n x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 200"), answer[:200]
    (head,) = upstream.heads
    assert all(line[:1] not in (b" ", b"\t") for line in _lines(head)), head
    assert upstream.header(b"Host") == [b"a x"]
    assert upstream.header(b"X-Forwarded-Host") == [b"a x"]


def test_a_nul_in_a_header_value_is_refused_before_any_upstream(lb, raw):
    upstream = raw(OK)
    with wsgiref_front(validator(lb([upstream.url]))) as address:
        answer = _exchange(address, b"GET / HTTP/1.1\r\nHost: a\r\nX-Note: a\x00b\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 400"), answer[:200]
    assert upstream.connections == 0


def test_a_header_name_that_is_not_a_token_is_not_passed_on(lb, raw):
    upstream = raw(OK)
    with wsgiref_front(validator(lb([upstream.url]))) as address:
        answer = _exchange(address, b"GET / HTTP/1.1\r\nHost: a\r\nX(y): 1\r\nX-Ok: 2\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 200"), answer[:200]
    (head,) = upstream.heads
    assert b"X(Y)" not in head.upper()
    assert upstream.header(b"X-Ok") == [b"2"]


def _call(balancer, **environ: str) -> tuple[str, bytes]:
    request = webob.Request.blank("/")
    request.environ.update(environ)
    statuses: list[str] = []
    result = balancer(
        request.environ, lambda status, headers, exc_info=None: statuses.append(status)
    )
    try:
        body = b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()
    return statuses[0], body


@pytest.mark.parametrize(
    "environ",
    [
        pytest.param({"HTTP_X_NOTE": "a\r\nTransfer-Encoding: chunked"}, id="crlf-in-value"),
        pytest.param({"HTTP_X_NOTE": "a\nTransfer-Encoding: chunked"}, id="lf-in-value"),
        pytest.param({"HTTP_X_NOTE": "a\rTransfer-Encoding: chunked"}, id="cr-in-value"),
        pytest.param({"HTTP_HOST": "a\r\nX-Evil: 1"}, id="crlf-in-host"),
        pytest.param({"QUERY_STRING": "a HTTP/1.1\r\nX-Evil: 1"}, id="crlf-in-query"),
        pytest.param({"QUERY_STRING": "a b"}, id="space-in-query"),
        pytest.param({"QUERY_STRING": "a\x01"}, id="control-in-query"),
        pytest.param({"REQUEST_METHOD": "GET /x"}, id="space-in-method"),
    ],
)
def test_a_line_break_or_control_byte_an_outer_layer_let_in_is_refused_not_sent(lb, raw, environ):
    upstream = raw(OK)
    status, _ = _call(lb([upstream.url], preserve_host=True), **environ)
    assert status.startswith("400"), status
    assert upstream.connections == 0


def test_a_malformed_head_is_refused_before_an_upstream_is_chosen(lb, raw):
    # The head was built after the choice: with every upstream out the client
    # heard 503 (no upstream) for its own malformed request, and a refused
    # request moved round robin on one place, so the next went to the second.
    first, second = raw(OK), raw(OK)
    balancer = lb([first.url, second.url], max_fails=1, fail_timeout=60)
    status, _ = _call(balancer, HTTP_X_NOTE="a\r\nX-Evil: 1")
    assert status.startswith("400"), status
    assert _call(balancer)[0].startswith("200")
    assert (first.connections, second.connections) == (1, 0)
    now = balancer.clock()
    for upstream in balancer.upstreams:
        upstream.failed(now)  # both out for fail_timeout
    assert _call(balancer)[0].startswith("503")
    status, _ = _call(balancer, QUERY_STRING="a b")
    assert status.startswith("400"), status


# -- Content-Length as the front server passes it ----------------------------------------------
@pytest.mark.parametrize(
    "value",
    [b"5 ", b"5\t", b"5, 5", b"5,5", b"05"],
    ids=["sp", "htab", "list", "list-tight", "zero"],
)
def test_a_content_length_with_whitespace_or_repeated_reaches_the_upstream_as_one_length(
    lb, upstreams, value
):
    # wsgiref keeps the trailing whitespace in CONTENT_LENGTH: before, such a
    # length counted as none, and the upstream got the POST without its body.
    url = upstreams.start("up")
    # No validator in front: it takes int() of CONTENT_LENGTH, which "5, 5" fails.
    with wsgiref_front(lb([url])) as address:
        answer = _exchange(
            address,
            b"POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: " + value + b"\r\n\r\nhello",
        )
    assert answer.startswith(b"HTTP/1.0 200"), answer[:200]
    assert answer.endswith(b"\r\n\r\nup /form 5"), answer[-100:]


@pytest.mark.parametrize("value", [b"+5", b"0x5", b"5, 6", b"-5", b"5 5", b"five"], ids=str)
def test_a_content_length_that_is_no_length_is_refused_before_any_upstream(lb, raw, value):
    upstream = raw(OK)
    with wsgiref_front(lb([upstream.url])) as address:  # (int() would fail in the validator)
        answer = _exchange(
            address, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + value + b"\r\n\r\nhello"
        )
    assert answer.startswith(b"HTTP/1.0 400"), answer[:200]
    assert b"is not a length" in answer
    assert upstream.connections == 0
