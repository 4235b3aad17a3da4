"""Upstream answers framed wrongly, byte for byte, through the reference server.

Each upstream is a raw socket that writes exact bytes.  What the client must
see: a 502 for an answer no hop may pass on (RFC 9112 §6.3: a proxy that
receives a response with invalid framing closes the connection to the server
and answers 502), a cut connection for a body that breaks after its head went
out (never a short body that looks whole), and no answer bytes left on a
pooled connection for the next request to read.
"""

from __future__ import annotations

import logging
from wsgiref.validate import validator

import pytest
from webtest import TestApp

from tests.server.live import exchange

TEXT = b"Content-Type: text/plain\r\n"
OK = b"HTTP/1.1 200 OK\r\n" + TEXT + b"Content-Length: 2\r\n\r\nok"


# -- heads no hop may pass on -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "logged"),
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\n" + TEXT + b"Content-Length: 2\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            "Transfer-Encoding can't be present with Content-Length",
            id="content-length-and-chunked",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\n" + TEXT + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\nokk",
            "Duplicate Content-Length",
            id="two-content-lengths",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\n"
            + TEXT
            + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
            "Invalid character in chunk size",
            id="a-bad-first-chunk-size",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\n" + TEXT + b"X-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
            "bad response from the upstream",
            id="obs-fold",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\n" + TEXT + b"X-A a\r\nContent-Length: 2\r\n\r\nok",
            "Invalid header token",
            id="a-line-without-a-colon",
        ),
        pytest.param(
            b"HTTP/1.1 2OO OK\r\n" + TEXT + b"Content-Length: 2\r\n\r\nok",
            "Invalid status code",
            id="a-status-that-is-no-number",
        ),
        pytest.param(b"ok", "Expected HTTP/", id="no-status-line"),
    ],
)
def test_a_misframed_head_is_a_502_and_its_connection_is_not_reused(
    lb, raw, caplog, answer, logged
):
    upstream = raw(OK)
    upstream.queue(answer)
    balancer = lb([upstream.url], strategy="least_conn")
    app = TestApp(validator(balancer))
    assert app.get("/", status=502).status_int == 502
    assert logged in caplog.text
    assert app.get("/").body == b"ok"
    assert upstream.connections == 2
    assert [(row["active"], row["idle"]) for row in balancer.status()] == [(0, 1)]


# -- bodies that break after the head went out ------------------------------------------------
@pytest.mark.parametrize(
    ("parts", "close_after", "sent", "why"),
    [
        pytest.param(
            (
                b"HTTP/1.1 200 OK\r\n" + TEXT + b"Transfer-Encoding: chunked\r\n\r\n",
                b"5\r\nhello\r\n",
            ),
            True,
            b"5\r\nhello\r\n",
            "closed mid-response (the upstream closed the connection while reading the body)",
            id="chunked-closed-before-its-last-chunk",
        ),
        pytest.param(
            (
                b"HTTP/1.1 200 OK\r\n" + TEXT + b"Transfer-Encoding: chunked\r\n\r\n",
                b"5\r\nhello\r\n",
                b"zz\r\nxx\r\n0\r\n\r\n",
            ),
            False,
            b"5\r\nhello\r\n",
            "failed mid-response (bad response from the upstream: Invalid character in chunk size",
            id="a-bad-chunk-size-mid-body",
        ),
    ],
)
def test_a_chunked_body_that_breaks_mid_way_reaches_the_client_cut(
    lb, raw, caplog, parts, close_after, sent, why
):
    # The head is out, so no 502 can follow: the client's connection is cut
    # before a last chunk, so it can tell the body is incomplete (as nginx).
    caplog.set_level(logging.INFO)
    upstream = raw(*parts, close_after=close_after)
    received = exchange(lb([upstream.url]), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Transfer-Encoding: chunked" in head
    assert body == sent  # no "0\r\n\r\n": a cut, not an end
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and why in errors[0] and "aborting the response" in errors[0]


# -- bodies that must not exist ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "method"),
    [("204 No Content", "GET"), ("304 Not Modified", "GET"), ("200 OK", "HEAD")],
    ids=["204", "304", "head"],
)
@pytest.mark.parametrize("split", [False, True], ids=["one-packet", "body-apart"])
def test_a_body_for_an_answer_that_has_none_never_reaches_anyone(lb, raw, status, method, split):
    # RFC 9112 §6.3: 204, 304 and an answer to HEAD end with their head, whatever
    # they announce.  The bytes that follow are not the client's, and on a pooled
    # connection they would be read as the answer to the next request.
    typed = TEXT if method == "HEAD" else b""  # (wsgiref's validator: none on a 204 or 304)
    head = b"HTTP/1.1 %s\r\n%sContent-Length: 5\r\n\r\n" % (status.encode(), typed)
    upstream = raw(OK)
    upstream.queue(*((head, b"hello") if split else (head + b"hello",)))
    balancer = lb([upstream.url])
    app = TestApp(validator(balancer))
    response = app.request("/", method=method, status="*")
    assert (response.status, response.body) == (status, b"")
    assert upstream.replied.acquire(timeout=5)  # every byte of it is out
    assert app.get("/").body == b"ok"
    assert upstream.connections == 2


@pytest.mark.parametrize("status", [b"204 No Content", b"304 Not Modified"], ids=["204", "304"])
def test_a_bodiless_answer_with_a_length_and_nothing_after_keeps_its_connection(lb, raw, status):
    upstream = raw(OK)
    upstream.queue(b"HTTP/1.1 %s\r\nContent-Length: 5\r\n\r\n" % status)
    app = TestApp(validator(lb([upstream.url])))
    assert app.get("/", status="*").body == b""
    assert upstream.replied.acquire(timeout=5)
    assert app.get("/").body == b"ok"
    assert upstream.connections == 1
