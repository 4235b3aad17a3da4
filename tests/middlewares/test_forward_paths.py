"""Paths across the LoadBalancer: the target as the client spelled it (under any
server), and the cookie paths an upstream under a base path sets, mapped back."""

from __future__ import annotations

import http.cookiejar
import threading
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
import waitress.server
from paste.deploy import loadapp
from webtest import TestApp

from tests.middlewares.forward_parts import RawUpstream
from tests.server.live import RawClient, live_server
from wsgistack.errors import ConfigError
from wsgistack.middlewares import LoadBalancer, PrefixDispatcher
from wsgistack.pipeline import build_pipeline

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


def test_a_query_a_layer_removed_leaves_no_mark(lb, raw):
    # A layer that strips the query (a cache key normaliser, a signed-URL check)
    # clears QUERY_STRING; the raw target still has "?token=...": the upstream
    # got "/x?", a query-bearing URL the client never asked for in that form.
    upstream = raw(OK)
    pool = lb([upstream.url])

    def strip_query(environ, start_response):
        environ["QUERY_STRING"] = ""
        return pool(environ, start_response)

    with live_server(strip_query) as front, RawClient(front.address) as client:
        status, _, _ = client.request(b"GET /x?token=secret HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status == 200
    assert _sent(upstream) == b"GET /x"


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


# -- cookie paths --------------------------------------------------------------------------
def _set_cookies(upstream_url: str, cookies: list[str], site_for, path: bytes, **options):
    """The Set-Cookie values a client gets through ``site_for(pool)`` for ``path``."""
    reply = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
    reply += "".join(f"Set-Cookie: {cookie}\r\n" for cookie in cookies) + "\r\nok"
    upstream = RawUpstream(reply.encode("latin-1"))
    pool = LoadBalancer([upstream.url + upstream_url], **options)
    try:
        with live_server(site_for(pool)) as front, RawClient(front.address) as client:
            client.send(b"GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % path)
            head = client.read_to_close().partition(b"\r\n\r\n")[0].decode("latin-1")
    finally:
        pool.close()
        upstream.close()
    return [line[12:] for line in head.split("\r\n") if line.lower().startswith("set-cookie: ")]


def _mounted(pool):
    return PrefixDispatcher({"/legacy": pool})


@pytest.mark.parametrize(
    ("cookie", "seen"),
    [
        pytest.param("sid=1; Path=/app", "sid=1; Path=/legacy", id="the-base-itself"),
        pytest.param("sid=1; Path=/app/", "sid=1; Path=/legacy/", id="its-slash-kept"),
        pytest.param(
            "sid=1; path=/app/admin; HttpOnly", "sid=1; path=/legacy/admin; HttpOnly", id="any-case"
        ),
        pytest.param(
            "sid=1; Secure; PATH = /app/x ; SameSite=Lax",
            "sid=1; Secure; PATH = /legacy/x ; SameSite=Lax",
            id="spaces-kept",
        ),
        pytest.param('sid="a=b"; Path=/app', 'sid="a=b"; Path=/legacy', id="quoted-value"),
        pytest.param("Path=/app; Path=/app/x", "Path=/app; Path=/legacy/x", id="cookie-named-path"),
        pytest.param("sid=1; Path=/%61pp/x", "sid=1; Path=/legacy/x", id="escaped-spelling"),
        pytest.param("sid=1; Path=/application", "sid=1; Path=/application", id="not-a-segment"),
        pytest.param("sid=1; Path=/", "sid=1; Path=/", id="the-whole-site-stays"),
        pytest.param("sid=1; Path=/other", "sid=1; Path=/other", id="outside-the-base"),
        pytest.param('sid=1; Path="/app"', 'sid=1; Path="/app"', id="quoted-path-is-none"),
        pytest.param("sid=1; Path=/legacy/x", "sid=1; Path=/legacy/x", id="already-the-clients"),
        pytest.param("sid=/app/x; Max-Age=60", "sid=/app/x; Max-Age=60", id="value-untouched"),
        pytest.param("sid=1", "sid=1", id="no-attributes"),
    ],
)
def test_a_cookie_path_under_the_base_path_is_mapped_to_the_mount(cookie, seen):
    assert _set_cookies("/app", [cookie], _mounted, b"/legacy/x") == [seen]


@pytest.mark.parametrize(
    ("base", "site_for", "path", "cookie", "seen"),
    [
        pytest.param("/app", lambda pool: pool, b"/x", "s=1; Path=/app", "s=1; Path=/", id="root"),
        pytest.param(
            "/app", lambda pool: pool, b"/x", "s=1; Path=/app/a", "s=1; Path=/a", id="root-under"
        ),
        pytest.param(
            "", _mounted, b"/legacy/x", "s=1; Path=/a", "s=1; Path=/legacy/a", id="mount-no-base"
        ),
        pytest.param("", _mounted, b"/legacy/x", "s=1; Path=/", "s=1; Path=/", id="mount-slash"),
        pytest.param("", lambda pool: pool, b"/x", "s=1; Path=/a", "s=1; Path=/a", id="nothing"),
    ],
)
def test_cookie_paths_follow_the_base_path_and_the_mount(base, site_for, path, cookie, seen):
    assert _set_cookies(base, [cookie], site_for, path) == [seen]


def test_every_cookie_of_an_answer_is_mapped_in_its_order():
    cookies = ["a=1; Path=/app", "b=2; Path=/", "c=3; Path=/app/c; Secure"]
    assert _set_cookies("/app", cookies, _mounted, b"/legacy/") == [
        "a=1; Path=/legacy",
        "b=2; Path=/",
        "c=3; Path=/legacy/c; Secure",
    ]


def test_cookie_paths_false_passes_cookies_on_as_set():
    cookies = ["a=1; Path=/app", "c=3; Path=/app/c"]
    assert _set_cookies("/app", cookies, _mounted, b"/legacy/", cookie_paths=False) == cookies


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_a_cookie_paths_that_is_no_flag_fails_at_start_up(value):
    with pytest.raises(ConfigError, match=r"LoadBalancer: cookie_paths: expected true or false"):
        LoadBalancer(["http://127.0.0.1:9"], cookie_paths=value)


def test_a_login_cookie_under_the_base_path_comes_back_through_the_mount(lb, upstreams):
    # What a user saw: an upstream app served at /app (a Java context, an app under
    # root_path) sets its session cookie on /app; mounted at /legacy the browser
    # never sent it back, and every page asked for the login again.
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/login":
            start_response(
                "200 OK",
                [("Content-Type", "text/plain"), ("Set-Cookie", "sid=42; Path=/app; HttpOnly")],
            )
            return [b"logged in"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ.get("HTTP_COOKIE", "no cookie").encode()]

    url = upstreams.start("java", app, root_path="/app")
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with live_server(PrefixDispatcher({"/legacy": lb([url + "/app"])})) as front:
        site = f"http://127.0.0.1:{front.address[1]}"
        opener.open(site + "/legacy/login", timeout=10).read()
        seen = opener.open(site + "/legacy/whoami", timeout=10).read()
    assert seen == b"sid=42"


def test_cookie_paths_in_a_toml_pipeline_and_a_paste_ini(tmp_path):
    app = build_pipeline(
        {"app": {"use": "load_balance", "upstreams": ["http://127.0.0.1:9"], "cookie_paths": False}}
    )
    assert app.cookie_paths is False
    app.close()
    ini = tmp_path / "site.ini"
    ini.write_text(
        "[app:main]\nuse = egg:wsgistack#load_balance\n"
        'upstreams = ["http://127.0.0.1:9"]\ncookie_paths = off\n'
    )
    app = loadapp(f"config:{ini}")
    assert app.cookie_paths is False
    app.close()
