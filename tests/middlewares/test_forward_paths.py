"""The target the LoadBalancer sends upstream, as the client spelled it, under any server."""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
import waitress.server
from webtest import TestApp

from tests.server.live import RawClient, live_server
from wsgistack.middlewares import PrefixDispatcher

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


def _sent(upstream) -> bytes:
    """The request line the upstream received last, without its version."""
    return upstream.heads[-1].split(b"\r\n")[0].rpartition(b" ")[0]


# -- under the reference server (RAW_URI) ---------------------------------------------------
@pytest.mark.parametrize("base", ["", "/base"])
@pytest.mark.parametrize("mount", ["bare", "default", "root-mount", "beside-a-mount"])
@pytest.mark.parametrize(
    ("line", "sent"),
    [
        pytest.param(b"OPTIONS *", b"OPTIONS *", id="asterisk-form"),
        pytest.param(b"GET /x?", b"GET {base}/x?", id="empty-query"),
        pytest.param(b"GET /x?a=1", b"GET {base}/x?a=1", id="query"),
        pytest.param(b"GET /x", b"GET {base}/x", id="no-query"),
    ],
)
def test_the_target_goes_upstream_as_the_client_sent_it(lb, raw, base, mount, line, sent):
    # "OPTIONS *" asks about the server as a whole (RFC 9112 3.2.4): as "OPTIONS /"
    # (or "/base/") it asked about one resource.  "/x?" is another URL than "/x"
    # (RFC 3986 6.2.3) to a cache or a signed link.  No mount makes "*" a path.
    upstream = raw(OK)
    pool = lb([upstream.url + base])
    other = raw(OK)
    elsewhere = lb([other.url])
    site = {
        "bare": pool,
        "default": PrefixDispatcher({"/other": elsewhere}, default=pool),
        "root-mount": PrefixDispatcher({"": pool, "/other": elsewhere}),
        "beside-a-mount": PrefixDispatcher({"/other": elsewhere}, default=pool),
    }[mount]
    with live_server(site) as front, RawClient(front.address) as client:
        status, _, body = client.request(line + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (status, body) == (200, b"ok")
    assert _sent(upstream) == sent.replace(b"{base}", base.encode())
    assert other.heads == []


def test_an_empty_query_under_a_mount_keeps_its_mark(lb, raw):
    upstream = raw(OK)
    site = PrefixDispatcher({"/pool": lb([upstream.url + "/base"])})
    with live_server(site) as front, RawClient(front.address) as client:
        status, _, _ = client.request(b"GET /pool/a%2Fb? HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status == 200
    assert _sent(upstream) == b"GET /base/a%2Fb?"


def test_only_options_takes_the_asterisk_form(lb, raw):
    # A server that lets "GET *" through (gunicorn) gives PATH_INFO "*": no
    # server-wide GET exists, so it is a path under the base as before.
    upstream = raw(OK)
    app = TestApp(lb([upstream.url + "/base"]), lint=False)  # (lint refuses PATH_INFO "*")
    app.get("/", extra_environ={"PATH_INFO": "*", "RAW_URI": "*"})
    assert _sent(upstream) == b"GET /base/*"


# -- under other servers -------------------------------------------------------------------
@pytest.mark.parametrize("base", ["", "/base"])
@pytest.mark.parametrize(
    ("environ", "line", "sent"),
    [
        # What each server gives for "OPTIONS * HTTP/1.1" and "GET /x? HTTP/1.1" (as run).
        pytest.param(
            {"PATH_INFO": "*", "RAW_URI": "*"}, "OPTIONS", b"OPTIONS *", id="gunicorn-asterisk"
        ),
        pytest.param(
            {"PATH_INFO": "/x", "RAW_URI": "/x?"}, "GET", b"GET {base}/x?", id="gunicorn-query"
        ),
        pytest.param(
            {"PATH_INFO": "/x", "RAW_URI": "/x?#f"}, "GET", b"GET {base}/x?", id="fragment-after"
        ),
        pytest.param(
            {"PATH_INFO": "/x", "RAW_URI": "/x#f?"}, "GET", b"GET {base}/x", id="mark-in-fragment"
        ),
        pytest.param(
            {"PATH_INFO": "*", "REQUEST_URI": "*"}, "OPTIONS", b"OPTIONS *", id="waitress-asterisk"
        ),
        pytest.param({"PATH_INFO": "*"}, "OPTIONS", b"OPTIONS *", id="wsgiref-asterisk"),
        pytest.param({"PATH_INFO": "/x"}, "GET", b"GET {base}/x", id="wsgiref-cannot-tell"),
    ],
)
def test_the_target_as_each_server_reports_it(lb, raw, base, environ, line, sent):
    upstream = raw(OK)
    app = TestApp(lb([upstream.url + base]), lint=False)  # (lint refuses PATH_INFO "*")
    app.request("/", method=line, environ={"QUERY_STRING": "", **environ})
    assert _sent(upstream) == sent.replace(b"{base}", base.encode())


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("server", ["wsgiref", "waitress"])
def test_options_asterisk_goes_on_under_wsgiref_and_waitress(lb, raw, server):
    # Not inside wsgiref's validator: both servers give PATH_INFO "*" for the
    # asterisk-form, which it refuses (no leading slash).
    upstream = raw(OK)
    pool = lb([upstream.url + "/base"])
    if server == "wsgiref":
        front = make_server("127.0.0.1", 0, pool, handler_class=_Quiet)
        port, run, stop = front.server_port, front.serve_forever, front.shutdown
    else:
        front = waitress.server.create_server(pool, host="127.0.0.1", port=0)
        port, run, stop = int(front.effective_port), front.run, front.close
    threading.Thread(target=run, daemon=True).start()
    try:
        with RawClient(("127.0.0.1", port)) as client:
            client.send(b"OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            answer = client.read_to_close()
    finally:
        stop()
        if server == "wsgiref":
            front.server_close()
    assert answer.startswith(b"HTTP/1.") and b" 200 " in answer.split(b"\r\n")[0], answer
    assert _sent(upstream) == b"OPTIONS *"
