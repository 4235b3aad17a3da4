"""What an operator reads when an upstream breaks a response: one line, once.

Driven for real: the reference server on port 0, real upstreams, the log as
``caplog`` holds it.  As nginx's "upstream prematurely closed connection",
a body cut short is one ERROR line naming the upstream, the request and the
client, with no traceback (no programmer has to act), and neither the server
nor ErrorCatcher logs the same event again in a shape of its own.
"""

from __future__ import annotations

import logging

import pytest

from tests.server.live import exchange
from wsgistack.middlewares import ErrorCatcher

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n"


def logged(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.INFO]


def only_line(caplog) -> logging.LogRecord:
    records = logged(caplog)
    assert len(records) == 1, [(r.name, r.levelname, r.getMessage()) for r in records]
    (record,) = records
    assert (record.name, record.levelname, record.exc_info) == ("wsgistack.forward", "ERROR", None)
    assert "\n" not in record.getMessage()
    return record


@pytest.mark.parametrize("caught", [False, True], ids=["bare", "in-ErrorCatcher"])
def test_an_upstream_closing_mid_body_is_one_error_line(lb, raw, caplog, caught):
    caplog.set_level(logging.INFO)
    upstream = raw(HEAD, b"abc", close_after=True)
    app = lb([upstream.url])
    received = exchange(
        ErrorCatcher(app) if caught else app, b"GET /p?q=1 HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and body == b"abc"  # cut off, by a close
    message = only_line(caplog).getMessage()
    assert message == (
        f"upstream {upstream.url} closed mid-response"
        " (the upstream closed the connection while reading the body)"
        " to GET /p from 127.0.0.1; aborting the response"
    )


def test_an_upstream_closing_before_its_first_body_byte_answers_502(lb, raw, caplog):
    # The server had sent nothing yet: the client hears 502, not a 500 for a bug,
    # and the log line says so (it said "aborting the response").
    caplog.set_level(logging.INFO)
    upstream = raw(HEAD, close_after=True)
    received = exchange(
        lb([upstream.url]), b"GET /p HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    assert received.startswith(b"HTTP/1.1 502 Bad Gateway\r\n"), received
    assert only_line(caplog).getMessage() == (
        f"upstream {upstream.url} closed mid-response"
        " (the upstream closed the connection while reading the body)"
        " to GET /p from 127.0.0.1; answering 502"
    )


@pytest.mark.parametrize("caught", [False, True], ids=["bare", "in-ErrorCatcher"])
@pytest.mark.parametrize("first", [b"abc", b""], ids=["after-3-bytes", "before-any-byte"])
def test_an_upstream_stalling_mid_body_is_one_error_line(lb, raw, caplog, caught, first):
    caplog.set_level(logging.INFO)
    upstream = raw(HEAD, first) if first else raw(HEAD)  # then it waits, connection open
    app = lb([upstream.url], read_timeout=0.3)
    request = b"GET /s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    received = exchange(ErrorCatcher(app) if caught else app, request)
    if first:
        assert received.startswith(b"HTTP/1.1 200") and received.endswith(b"\r\n\r\nabc")
    else:
        assert received.startswith(b"HTTP/1.1 504 Gateway Timeout\r\n"), received
    assert only_line(caplog).getMessage() == (
        f"upstream {upstream.url} stalled mid-response (read_timeout 0.3 s)"
        f" to GET /s from 127.0.0.1; {'aborting the response' if first else 'answering 504'}"
    )


def test_each_refused_upstream_and_the_503_when_none_is_left_name_the_request(
    lb, upstreams, caplog
):
    # The 503 once every upstream is out logged nothing, and each failed try named
    # the upstream but not the request or client: as nginx's "no live upstreams"
    # and "connect() failed ... client: ..., request: ...", both now say which.
    caplog.set_level(logging.INFO)
    urls = [upstreams.start("a"), upstreams.start("b")]
    upstreams.stop("a")
    upstreams.stop("b")
    app = lb(urls, max_fails=1, fail_timeout=60)
    first = exchange(app, b"GET /one HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 502"), first
    tries = logged(caplog)
    assert [(r.name, r.levelname, r.exc_info) for r in tries] == [
        ("wsgistack.forward", "WARNING", None)
    ] * 2
    tried = []
    for record in tries:
        url, _, rest = record.getMessage().removeprefix("upstream ").partition(" ")
        address = url.removeprefix("http://")
        assert rest == (
            f"failed (error) for GET /one from 127.0.0.1: connect to {address} failed:"
            " connection refused"
        )
        tried.append(url)
    assert sorted(tried) == sorted(urls)
    caplog.clear()
    second = exchange(app, b"GET /two HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert second.startswith(b"HTTP/1.1 503"), second
    record = only_line(caplog)
    assert record.getMessage() == (
        "no upstream available for GET /two from 127.0.0.1 (2 upstreams, none up); answering 503"
    )
