"""The words of the forwarder's 502 and 504 lines: what failed, and what was being done.

As nginx's "upstream prematurely closed connection while reading response
header from upstream", each line says who broke the connection (a reset, a
close) and at which step (connecting, sending the request, reading the
response head or the body), in the words of the server's own lines: never
Python's ``[Errno 104] Connection reset by peer``.  Real upstreams on
loopback: one that resets (SO_LINGER 0), one that hangs up, one that stalls.
"""

from __future__ import annotations

import logging
from wsgiref.validate import validator

import pytest
from webtest import TestApp

from tests.server.live import exchange

from .forward_parts import HastyUpstream, ResettingUpstream

GET = b"GET /p HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n"


@pytest.fixture
def resetting():
    made = []

    def make(*args, **options) -> ResettingUpstream:
        made.append(ResettingUpstream(*args, **options))
        return made[-1]

    yield make
    for upstream in made:
        upstream.close()


def failed_try(caplog) -> str:
    """The one line of a failed try (a WARNING), with its upstream's URL as "URL"."""
    lines = [r.getMessage() for r in caplog.records if r.name == "wsgistack.forward"]
    assert len(lines) == 1 and [r.levelname for r in caplog.records] == ["WARNING"], lines
    return lines[0]


def test_an_upstream_resetting_before_it_answers(lb, resetting, caplog):
    upstream = resetting()
    assert exchange(lb([upstream.url]), GET).startswith(b"HTTP/1.1 502 ")
    assert failed_try(caplog) == (
        f"upstream {upstream.url} failed (error) for GET /p from 127.0.0.1:"
        " the upstream reset the connection while reading the response head"
    )


def test_an_upstream_resetting_mid_head(lb, resetting, caplog):
    upstream = resetting(b"HTTP/1.1 200 OK\r\nContent-")
    assert exchange(lb([upstream.url]), GET).startswith(b"HTTP/1.1 502 ")
    assert failed_try(caplog) == (
        f"upstream {upstream.url} failed (error) for GET /p from 127.0.0.1:"
        " the upstream reset the connection while reading the response head"
    )


def test_an_upstream_hanging_up_unanswered(lb, dying, caplog):
    assert exchange(lb([dying.url]), GET).startswith(b"HTTP/1.1 502 ")
    assert failed_try(caplog) == (
        f"upstream {dying.url} failed (error) for GET /p from 127.0.0.1:"
        " the upstream closed the connection before the response head"
    )


def test_an_upstream_hanging_up_mid_head(lb, raw, caplog):
    upstream = raw(b"HTTP/1.1 200 OK\r\nContent-", close_after=True)
    assert exchange(lb([upstream.url]), GET).startswith(b"HTTP/1.1 502 ")
    assert failed_try(caplog) == (
        f"upstream {upstream.url} failed (error) for GET /p from 127.0.0.1:"
        " the upstream closed the connection while reading the response head"
    )


def test_an_upstream_that_never_answers_names_the_timeout(lb, caplog):
    upstream = HastyUpstream(b"", then="hold")  # reads the head, then holds on
    try:
        answer = exchange(lb([upstream.url], read_timeout=0.3), GET)
    finally:
        upstream.close()
    assert answer.startswith(b"HTTP/1.1 504 ")
    assert failed_try(caplog) == (
        f"upstream {upstream.url} failed (timeout) for GET /p from 127.0.0.1:"
        " the upstream timed out (read_timeout 0.3 s) while reading the response head"
    )


def test_an_upstream_resetting_as_the_request_goes_out(lb, resetting, caplog):
    # It resets once the head is in: a body larger than both sockets' buffers
    # cannot all go out before.
    upstream = resetting()
    app = TestApp(validator(lb([upstream.url])))
    app.post("/up", b"x" * (16 * 1024 * 1024), status=502)
    assert failed_try(caplog) == (
        f"upstream {upstream.url} failed (error) for POST /up from -:"
        " the upstream reset the connection while sending the request"
    )


def test_an_upstream_resetting_mid_body(lb, resetting, caplog):
    caplog.set_level(logging.INFO)
    upstream = resetting(HEAD + b"abc")
    received = exchange(lb([upstream.url]), GET)
    assert received.startswith(b"HTTP/1.1 200 ") and received.endswith(b"\r\n\r\nabc")
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert line == (
        f"upstream {upstream.url} closed mid-response"
        " (the upstream reset the connection while reading the body)"
        " to GET /p from 127.0.0.1; aborting the response"
    )
