"""PrefixDispatcher with real Flask and Django apps mounted side by side."""

from __future__ import annotations

import http.client
import json
from urllib.request import urlopen
from wsgiref.validate import validator

import pytest
from flask import Flask, redirect, request, url_for
from webob import Request
from webtest import TestApp

from tests.djangoapp import application as django_app
from tests.djangoapp import fresh_static_url
from tests.server.live import RawClient, live_server
from tests.server.nginx import Nginx
from wsgistack import Server, build_pipeline, compose, describe, use
from wsgistack.errors import ConfigError
from wsgistack.middlewares import ErrorCatcher, IPFilter, PrefixDispatcher, RateLimiter


def make_flask() -> Flask:
    app = Flask("mounted", static_folder=None)

    @app.post("/upload")
    def upload():
        sent = request.files["upload"]
        return {"name": request.form["name"], "file": sent.filename, "size": len(sent.read())}

    app.add_url_rule("/static/<path:filename>", endpoint="static", view_func=lambda filename: "")

    @app.get("/users/<name>")
    def user(name):
        return {"self": url_for("user", name=name), "static": url_for("static", filename="a.css")}

    @app.get("/old")
    def old():
        return redirect(url_for("user", name="moved"))

    return app


def echo(name):
    def app(environ, start_response):
        body = f"{name} {environ['SCRIPT_NAME']}|{environ['PATH_INFO']}".encode("latin-1")
        start_response("200 OK", [("Content-Type", "text/plain; charset=latin-1")])
        return [body]

    return validator(app)


@pytest.fixture
def site():
    dispatcher = PrefixDispatcher(
        {"/flask": validator(make_flask().wsgi_app), "/django": validator(django_app)},
        default=echo("default"),
    )
    with fresh_static_url():  # whichever test ran Django first must not fix its prefix
        yield TestApp(validator(dispatcher))


def test_flask_builds_prefixed_urls(site):
    assert site.get("/flask/users/ann").json == {
        "self": "/flask/users/ann",
        "static": "/flask/static/a.css",
    }


def test_flask_redirects_land_under_the_prefix(site):
    assert site.get("/flask/old", status=302).location.endswith("/flask/users/moved")


def test_django_builds_prefixed_urls(site):
    assert site.get("/django/articles/intro/").json == {
        "self": "/django/articles/intro/",
        "path": "/django/articles/intro/",
        "path_info": "/articles/intro/",
        "static": "/django/static/site.css",
    }


def test_django_redirects_land_under_the_prefix(site):
    assert site.get("/django/old/", status=302).location.endswith("/django/articles/home/")


def multipart(size: int) -> tuple[bytes, str]:
    body = (
        b'--B\r\nContent-Disposition: form-data; name="name"\r\n\r\nann\r\n'
        b'--B\r\nContent-Disposition: form-data; name="upload"; filename="u.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + b"u" * size + b"\r\n--B--\r\n"
    )
    return body, "multipart/form-data; boundary=B"


@pytest.mark.parametrize(
    ("path", "chunked"),
    [
        pytest.param("/flask/upload", False, id="flask"),
        pytest.param("/flask/upload", True, id="flask-chunked"),
        # Django reads no body without CONTENT_LENGTH (under gunicorn too): no chunked case.
        pytest.param("/django/upload/", False, id="django"),
    ],
)
def test_uploads_reach_each_framework_through_the_whole_stack(path, chunked):
    # The demo's stack, over the real server: no layer reads, buffers or loses
    # the body on its way to the mounted app.
    stack = compose(
        use(ErrorCatcher),
        use(IPFilter, deny=["192.0.2.0/24"]),
        use(RateLimiter, "100/minute"),
        PrefixDispatcher({"/flask": make_flask().wsgi_app, "/django": django_app}),
    )
    body, content_type = multipart(300_000)
    headers = {"Content-Type": content_type, "Expect": "100-continue"}
    with Server(validator(stack), bind="127.0.0.1:0") as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.addresses[0][1], timeout=10)
        try:
            conn.request("POST", path, body=iter([body]) if chunked else body, headers=headers)
            response = conn.getresponse()
            answer = json.loads(response.read())
        finally:
            conn.close()
    assert response.status == 200
    assert answer == {"name": "ann", "file": "u.bin", "size": 300_000}


def test_unmatched_goes_to_the_default(site):
    assert site.get("/elsewhere").text == "default |/elsewhere"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/api/users", "api /api|/users", id="below"),
        pytest.param("/api/", "api /api|/", id="slash"),
        pytest.param("/apiv2/users", "404", id="not-a-segment"),
        pytest.param("/api/v2/users", "v2 /api/v2|/users", id="longest"),
        pytest.param("/api/v2x", "api /api|/v2x", id="longest-not-a-segment"),
        pytest.param("/api//double", "api /api|//double", id="double-slash"),
        pytest.param("/caf%C3%A9/menu", "cafe /caf\xc3\xa9|/menu", id="utf8"),
        pytest.param("/a%20b/x", "space /a b|/x", id="percent-encoded"),
    ],
)
def test_segment_boundaries_and_encodings(path, expected):
    dispatcher = PrefixDispatcher(
        {"/api": echo("api"), "/api/v2": echo("v2"), "/café": echo("cafe"), "/a b": echo("space")}
    )
    response = TestApp(validator(dispatcher)).get(path, expect_errors=True)
    assert (response.text if response.status_int == 200 else str(response.status_int)) == expected


@pytest.mark.parametrize("doubled", ["//", "///"], ids=["two", "three"])
def test_a_doubled_slash_leaves_no_protocol_relative_urls(site, doubled):
    # SCRIPT_NAME "//flask" would make url_for and reverse() write "//flask/...":
    # a link (and a redirect) to the host "flask".
    def get(path, **kwargs):
        return site.get(path, extra_environ={"PATH_INFO": doubled + path[1:]}, **kwargs)

    assert get("/flask/users/ann").json["self"] == "/flask/users/ann"
    assert get("/flask/old", status=302).location == "/flask/users/moved"
    assert get("/django/articles/intro/").json["self"] == "/django/articles/intro/"
    assert get("/django/old/", status=302).location == "/django/articles/home/"
    assert get("/flask", status=308).location == "/flask/"


def test_an_existing_script_name_stays_in_front():
    dispatcher = PrefixDispatcher({"/api": echo("api")})
    response = TestApp(validator(dispatcher)).get("/api/x", extra_environ={"SCRIPT_NAME": "/site"})
    assert response.text == "api /site/api|/x"


def test_the_bare_prefix_redirects_to_the_slash_keeping_the_query():
    dispatcher = PrefixDispatcher({"/admin": echo("admin")})
    app = TestApp(validator(dispatcher))
    response = app.get("/admin?next=%2Fusers&x=1", status=308)
    assert response.location == "/admin/?next=%2Fusers&x=1"
    nested = app.get("/admin", extra_environ={"SCRIPT_NAME": "/caf\xc3\xa9"}, status=308)
    assert nested.location == "/caf%C3%A9/admin/"


#: The README's "Behind nginx" block: Host is nginx's $host, which has no port.
BEHIND_NGINX = """
location / {{
    proxy_pass {url};
    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
}}
"""


def test_the_slash_redirect_leads_back_through_nginx_on_its_own_port(tmp_path):
    # The Location was absolute, built from Host and wsgi.url_scheme: behind
    # nginx on port N it sent the browser to http://127.0.0.1/admin/ (port 80),
    # and behind a TLS proxy to http://; nginx's proxy_redirect cannot map it.
    site = PrefixDispatcher({"/admin": validator(echo("admin"))})
    with (
        Server(site, bind="127.0.0.1:0") as server,
        Nginx(tmp_path, BEHIND_NGINX.format(url=server.url)) as nginx,
    ):
        conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10)
        try:
            conn.request("GET", "/admin?next=%2Fx&q=caf%C3%A9")
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        assert response.status == 308
        assert response.headers["Location"] == "/admin/?next=%2Fx&q=caf%C3%A9"
        assert b"moved to /admin/?next=%2Fx&q=caf%C3%A9;" in body and b"http" not in body
        with urlopen(nginx.url + response.headers["Location"], timeout=10) as followed:
            assert followed.read() == b"admin /admin|/"


def test_the_slash_redirect_is_ascii_and_never_protocol_relative():
    # A query's raw bytes (WSGI hands them over as latin-1) are %-escaped, and a
    # SCRIPT_NAME starting "//" cannot make "//evil.example/a/", a link to that host.
    dispatcher = validator(PrefixDispatcher({"/a": echo("a")}))
    environ = Request.blank("/a", environ={"SCRIPT_NAME": "//evil.example"}).environ
    environ["QUERY_STRING"] = "q=caf\xc3\xa9 x"
    started = []
    body = dispatcher(environ, lambda status, headers, exc_info=None: started.append(headers))
    try:
        b"".join(body)
    finally:
        body.close()
    assert dict(started[0])["Location"] == "/evil.example/a/?q=caf%C3%A9%20x"


def test_the_bare_prefix_can_pass_through():
    dispatcher = PrefixDispatcher({"/admin": echo("admin")}, redirect_slash=False)
    assert TestApp(validator(dispatcher)).get("/admin").text == "admin /admin|"


@pytest.mark.parametrize(
    ("path_info", "expected"),
    [
        pytest.param("a/x", "a /mnt/a|/x", id="below"),
        pytest.param("a/", "a /mnt/a|/", id="slash"),
        pytest.param("ab/x", "404", id="not-a-segment"),
    ],
)
def test_a_path_info_without_its_slash_is_cut_where_the_match_ends(path_info, expected):
    # Servers send "/..."; a hand-built or proxied environ may not (PEP 3333 allows it).
    dispatcher = PrefixDispatcher({"/a": echo("a")})
    request = Request.blank("/", environ={"SCRIPT_NAME": "/mnt", "PATH_INFO": path_info})
    response = request.get_response(dispatcher)
    assert (response.text if response.status_int == 200 else str(response.status_int)) == expected


def test_a_path_info_without_its_slash_redirects_under_the_prefix():
    dispatcher = PrefixDispatcher({"/a": echo("a")})
    request = Request.blank("/", environ={"SCRIPT_NAME": "/mnt", "PATH_INFO": "a"})
    assert request.get_response(dispatcher).location == "/mnt/a/"


def test_an_empty_path_info_still_tries_the_host_mounts():
    inner = PrefixDispatcher(
        {"docs.example.com": echo("docs"), "*.example.com": echo("wild")},
        default=echo("default"),
    )
    outer = PrefixDispatcher({"/site": validator(inner)}, redirect_slash=False)
    app = TestApp(validator(outer))
    for path in ("/site", "/site/"):
        rest = path.removeprefix("/site")
        assert app.get(path, headers={"Host": "docs.example.com"}).text == f"docs /site|{rest}"
        assert app.get(path, headers={"Host": "x.example.com"}).text == f"wild /site|{rest}"
    assert app.get("/site", headers={"Host": "other.org"}).text == "default /site|"
    assert inner.route("", "docs.example.com")[0] == "docs.example.com"


@pytest.mark.parametrize("value", ["false", 0, None], ids=["string", "int", "none"])
def test_redirect_slash_takes_only_true_or_false(value):
    # bool("false") is True: a string from a config file must not leave the redirect on.
    with pytest.raises(ConfigError, match="PrefixDispatcher: redirect_slash: expected true or"):
        PrefixDispatcher({"/admin": echo("admin")}, redirect_slash=value)
    config = {
        "app": {
            "use": "dispatch",
            "redirect_slash": value,
            "mounts": {"/a": "tests.conftest:hello_app"},
        }
    }
    if value is not None:  # TOML has no null
        with pytest.raises(
            ConfigError, match=r"app \(dispatch\): PrefixDispatcher: redirect_slash"
        ):
            build_pipeline(config)


def test_nested_dispatchers():
    inner = PrefixDispatcher({"/v1": echo("v1")}, default=echo("inner-default"))
    outer = PrefixDispatcher({"/api": validator(inner)})
    app = TestApp(validator(outer))
    assert app.get("/api/v1/items").text == "v1 /api/v1|/items"
    assert app.get("/api/other").text == "inner-default /api|/other"


@pytest.mark.parametrize(
    ("host", "path", "expected"),
    [
        pytest.param("api.example.com", "/x", "api |/x", id="host"),
        pytest.param("API.Example.COM:8443", "/x", "api |/x", id="case-and-port"),
        pytest.param("api.example.com", "/v1/x", "api-v1 /v1|/x", id="host-path"),
        pytest.param("admin.internal:8080", "/x", "admin-8080 |/x", id="host-port"),
        pytest.param("admin.internal", "/x", "paths |/x", id="port-mismatch"),
        pytest.param("t1.example.com", "/x", "tenant |/x", id="wildcard"),
        pytest.param("a.b.example.com", "/x", "tenant |/x", id="wildcard-deep"),
        pytest.param("example.com", "/x", "paths |/x", id="wildcard-not-apex"),
        pytest.param("[::1]:8080", "/x", "paths |/x", id="ipv6-literal"),
        # The root's dot: "example.com." is the same name (nginx drops it too).
        pytest.param("api.example.com.", "/x", "api |/x", id="trailing-dot"),
        pytest.param("admin.internal.:8080", "/x", "admin-8080 |/x", id="trailing-dot-port"),
        pytest.param("t1.example.com.", "/x", "tenant |/x", id="trailing-dot-wildcard"),
        pytest.param("docs.example.com", "/x", "docs |/x", id="mount-key-with-a-trailing-dot"),
    ],
)
def test_host_mounts(host, path, expected):
    dispatcher = PrefixDispatcher(
        {
            "api.example.com": echo("api"),
            "docs.example.com.": echo("docs"),
            "api.example.com/v1": echo("api-v1"),
            "admin.internal:8080": echo("admin-8080"),
            "*.example.com": echo("tenant"),
            "/": echo("paths"),
        }
    )
    assert TestApp(validator(dispatcher)).get(path, headers={"Host": host}).text == expected


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        pytest.param("example.com", "443", "tls |/x", id="default-https"),
        pytest.param("example.com", "80", "plain |/x", id="default-http"),
        pytest.param("example.com:443", "8443", "tls |/x", id="host-port-wins"),
        pytest.param("example.com", "8080", "any |/x", id="other-port"),
        pytest.param("[::1]", "443", "v6 |/x", id="ipv6-literal"),
    ],
)
def test_a_host_without_a_port_is_on_the_server_port(host, port, expected):
    # Browsers leave out the default port: "Host: example.com" on 443 is example.com:443.
    dispatcher = PrefixDispatcher(
        {
            "example.com:443": echo("tls"),
            "example.com:80": echo("plain"),
            "example.com": echo("any"),
            "[::1]:443": echo("v6"),
        }
    )
    environ = {"SERVER_PORT": port, "wsgi.url_scheme": "https" if port == "443" else "http"}
    response = TestApp(validator(dispatcher)).get(
        "/x", headers={"Host": host}, extra_environ=environ
    )
    assert response.text == expected


@pytest.mark.parametrize("key", ["[::1]", "[0:0:0:0:0:0:0:1]"], ids=["short", "long"])
def test_an_ipv6_host_mount_matches_every_spelling_and_a_request_without_host(key):
    # An HTTP/1.0 request may carry no Host: it is on SERVER_NAME, the bound
    # address, which the server writes without brackets ("::1"); and an IPv6
    # address has many spellings ("[0::1]" as typed into curl), all one host.
    dispatcher = PrefixDispatcher({key: echo("v6")}, default=echo("default"))
    with live_server(dispatcher, bind="[::1]:0") as server, RawClient(server.address) as client:
        port = server.address[1]
        answers = [
            client.request(request)[2]
            for request in (
                b"GET /x HTTP/1.1\r\nHost: [::1]:%d\r\n\r\n" % port,
                b"GET /x HTTP/1.1\r\nHost: [0:0::1]:%d\r\n\r\n" % port,
                b"GET /x HTTP/1.1\r\nHost: [0:0:0:0:0:0:0:1]\r\n\r\n",
            )
        ]
        client.send(b"GET /x HTTP/1.0\r\n\r\n")
        answers.append(client.response()[2])
    assert answers == [b"v6 |/x"] * 4


def test_an_ipv6_host_key_must_be_an_address():
    with pytest.raises(ConfigError, match=r"'\[db8::g\]/x': \[db8::g\] is not an IPv6 address"):
        PrefixDispatcher({"[db8::g]/x": echo("x")})


def test_no_default_is_a_negotiated_404():
    app = TestApp(validator(PrefixDispatcher({"/a": echo("a")})))
    response = app.get("/b", headers={"Accept": "application/json"}, status=404)
    assert response.content_type == "application/json"


def test_describe_follows_a_path_through_nested_dispatchers():
    api = compose(use(ErrorCatcher), PrefixDispatcher({"/v1": echo("v1")}))
    stack = compose(use(IPFilter, deny=["192.0.2.0/24"]), PrefixDispatcher({"/api": api}))
    lines = describe(stack, path="/api/v1/users").splitlines()
    assert lines[:5] == [
        "IPFilter(deny=1 networks)",
        "PrefixDispatcher(1 mounts)",
        "  /api ->",
        "    ErrorCatcher()",
        "    PrefixDispatcher(1 mounts)",
    ]
    assert lines[5] == "      /v1 ->"
    assert lines[6].startswith("        wsgiref.validate")
    assert describe(stack, path="/nowhere").splitlines()[-1] == "  (no mount matches)"


@pytest.mark.parametrize(
    "path",
    ["/api/caf%C3%A9/x", "/api/café/x?next=/v1#top", "/api/caf%c3%a9?q=%3F"],
    ids=["as-the-access-log-spells-it", "with-a-query-and-fragment", "escaped-with-a-query"],
)
def test_describe_reads_a_path_as_a_url_carries_it(path):
    # A path copied from an access log or a browser is %-escaped and may have
    # a query: the server decodes it and drops the query before any mount is
    # matched, so describe() must too, or it names no mount where one serves.
    stack = PrefixDispatcher({"/api": PrefixDispatcher({"/café": echo("cafe")})})
    lines = describe(stack, path=path).splitlines()
    assert lines[:4] == [
        "PrefixDispatcher(1 mounts)",
        "  /api ->",
        "    PrefixDispatcher(1 mounts)",
        "      /café ->",
    ]


def test_describe_shows_the_mounts_as_a_tree():
    stack = PrefixDispatcher({"/a": echo("a"), "b.example.com": echo("b")})
    text = describe(stack)
    assert text.splitlines()[:3] == [
        "PrefixDispatcher(2 mounts)",
        "  /a ->",
        "    wsgiref.validate.validator.<locals>.lint_app",
    ]
    assert "  b.example.com ->" in text


@pytest.mark.parametrize(
    ("mounts", "message"),
    [
        pytest.param(["/a"], "expected a mapping", id="list"),
        pytest.param({"/a": 1}, "'/a': 1 is not a WSGI app", id="app"),
        pytest.param({"/a": echo("x"), "/a/": echo("y")}, "are the same mount", id="dup"),
        pytest.param({"*foo.com": echo("x")}, "is not a host mount", id="bad-wildcard"),
        # Each of these was taken as a host no Host header can match: a mount never reached.
        pytest.param(
            {"http://example.com/api": echo("x")},
            "mounts: 'http://example.com/api' is a URL; mount a path",
            id="url",
        ),
        pytest.param(
            {"example.com:http": echo("x")},
            "mounts: 'example.com:http': the port must be 1-65535",
            id="port-name",
        ),
        pytest.param(
            {"example.com:99999": echo("x")},
            "mounts: 'example.com:99999': the port must be 1-65535",
            id="port-range",
        ),
        pytest.param({":8080": echo("x")}, "mounts: ':8080' is not a host mount", id="no-host"),
        pytest.param(
            {"*.": echo("x")}, "mounts: '\\*.' is not a host mount", id="wildcard-of-nothing"
        ),
        pytest.param(
            {"::1": echo("x")}, "mounts: '::1': write an IPv6 host in brackets", id="ipv6-bare"
        ),
        # nginx's ".example.com" is the domain and its subdomains; here it was an exact
        # host no browser sends, so neither example.com nor www.example.com reached it.
        pytest.param(
            {".example.com": echo("x")},
            "mounts: '.example.com': a host name has no empty labels; mount 'example.com' "
            "for the domain and '\\*.example.com' for its subdomains",
            id="nginx-leading-dot",
        ),
        pytest.param(
            {"*.example..com/v1": echo("x")},
            "mounts: '\\*.example..com/v1': a host name has no empty labels",
            id="empty-label",
        ),
        # Browsers send an international name as IDNA ("xn--"): the Unicode one never matched.
        pytest.param(
            {"Café.example.com:8080/menu": echo("x")},
            "mounts: 'Café.example.com:8080/menu': a Host header carries an international "
            "name in ASCII \\(IDNA\\); write 'xn--caf-dma.example.com:8080/menu'",
            id="idn",
        ),
        pytest.param(
            {"*.straße.de": echo("x")},
            "mounts: '\\*.straße.de': a Host header carries an international name in "
            "ASCII \\(IDNA\\); write its xn-- form",
            id="idn-without-a-sure-spelling",
        ),
        pytest.param(
            {"/api?v=1": echo("x")},
            "mounts: '/api\\?v=1': a mount is matched on the path, without a query",
            id="query",
        ),
        pytest.param(
            {"/caf%C3%A9": echo("x")},
            "mounts: '/caf%C3%A9': a mount is matched on the decoded path; write '/café'",
            id="percent-encoded",
        ),
        # Nothing to dispatch to: every request would be a 404.
        pytest.param({}, "mounts: none given and no default app", id="empty"),
    ],
)
def test_bad_mounts_fail_at_start_up(mounts, message):
    with pytest.raises(ConfigError, match=message):
        PrefixDispatcher(mounts)


def test_mounts_in_a_pipeline_with_nested_pipelines():
    app = build_pipeline(
        {
            "app": {
                "use": "dispatch",
                "mounts": {
                    "/hello": "tests.conftest:hello_app",
                    "/guarded": {
                        "layer": [{"use": "ip_filter", "deny": ["192.0.2.0/24"]}],
                        "app": "tests.conftest:hello_app",
                    },
                },
            }
        }
    )
    client = TestApp(validator(app))
    assert client.get("/hello/x").text == "hello /hello|/x"
    assert client.get("/guarded/x", extra_environ={"REMOTE_ADDR": "192.0.2.1"}, status=403)


def test_no_mounts_with_a_default_serves_the_default():
    client = TestApp(validator(PrefixDispatcher({}, default=echo("site"))))
    assert client.get("/anything").text.startswith("site")


def test_a_mount_with_non_ascii_text_matches_the_encoded_request():
    # The form the start-up error asks for: the key as text, the request as sent.
    client = TestApp(validator(PrefixDispatcher({"/café": echo("menu")})))
    assert client.get("/caf%C3%A9/du-jour").text == "menu /caf\xc3\xa9|/du-jour"
