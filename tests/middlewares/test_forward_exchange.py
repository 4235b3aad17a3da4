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
