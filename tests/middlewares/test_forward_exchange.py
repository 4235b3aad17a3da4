"""LoadBalancer exchanges that go wrong: interim responses, stale pooled connections,
bytes nobody asked for, bodies the client never finishes, timeouts, answers to retry."""

from __future__ import annotations

from wsgiref.validate import validator

import pytest
from webtest import TestApp

FINAL = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nSet-Cookie: s=1\r\n\r\n"
)


# -- interim 1xx responses --------------------------------------------------------------------
@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(
            (
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                + FINAL
                + b"hello",
            ),
            id="103-and-the-response-in-one-packet",
        ),
        pytest.param((b"HTTP/1.1 100 Continue\r\n\r\n", FINAL + b"hello"), id="100-then-response"),
        pytest.param(
            (b"HTTP/1.1 100 Continue\r\n\r\n", FINAL, b"hello"), id="100-then-head-then-body"
        ),
    ],
)
def test_interim_responses_are_skipped_and_the_connection_stays_clean(lb, raw, reply):
    upstream = raw(*reply)
    app = TestApp(validator(lb([upstream.url])))
    for _ in range(3):
        response = app.get("/")
        assert response.status == "200 OK"
        assert response.headerlist == [
            ("Content-Type", "text/plain"),
            ("Content-Length", "5"),
            ("Set-Cookie", "s=1"),
        ]
        assert response.body == b"hello"
    assert upstream.connections == 1


def test_expect_100_continue_to_the_reference_server_streams_the_whole_answer(lb, upstreams):
    block = b"y" * 65536

    def streams(environ, start_response):
        size = len(environ["wsgi.input"].read())  # the server sends 100 Continue here
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield f"{size}:".encode()
        yield from (block for _ in range(16))  # more than one read of the upstream socket

    balancer = lb([upstreams.start("s", streams)])
    app = TestApp(validator(balancer))
    response = app.post(
        "/", b"p" * 2_000_000, content_type="text/plain", headers={"Expect": "100-continue"}
    )
    assert response.body == b"2000000:" + block * 16
    assert app.get("/").body.startswith(b"0:")  # the pooled connection was left clean
    assert balancer.status()[0]["up"]


# -- what a pooled connection may hold -----------------------------------------------------
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


def test_a_post_on_a_connection_the_upstream_closed_while_idle_goes_out_fresh(lb, raw):
    upstream = raw(OK, close_after=True)  # as a keep-alive timeout does, unannounced
    balancer = lb([upstream.url], max_fails=1)
    app = TestApp(validator(balancer))
    assert app.post("/", b"abc", content_type="text/plain").body == b"ok"
    assert upstream.replied.acquire(timeout=5)  # it has hung up: the pooled socket is stale
    assert app.post("/", b"abc", content_type="text/plain").body == b"ok"
    assert upstream.connections == 2
    assert balancer.status()[0]["up"]


@pytest.mark.parametrize(
    ("method", "first"),
    [
        pytest.param("GET", (FINAL + b"hello", b" and more"), id="a-body-longer-than-announced"),
        pytest.param("GET", (FINAL + b"hello and more",), id="longer-in-the-same-packet"),
        pytest.param("HEAD", (FINAL, b"hello"), id="a-body-for-a-head"),
        pytest.param("HEAD", (FINAL + b"hello",), id="a-body-for-a-head-in-the-same-packet"),
    ],
)
def test_bytes_after_a_whole_response_never_meet_the_next_request(lb, raw, method, first):
    upstream = raw(OK)
    upstream.queue(*first)
    balancer = lb([upstream.url], max_fails=1)
    app = TestApp(validator(balancer))
    response = app.request("/", method=method)
    assert response.status_int == 200
    assert response.body == (b"" if method == "HEAD" else b"hello")
    assert upstream.replied.acquire(timeout=5)  # every byte of the first answer is out
    assert app.get("/").body == b"ok"
    assert upstream.connections == 2
    assert balancer.status()[0]["up"]
