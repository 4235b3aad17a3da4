"""What the LoadBalancer tells an upstream about the request, and how it maps answers back."""

from __future__ import annotations

from wsgiref.validate import validator

import pytest
import webob
from webtest import TestApp

from tests.server.live import RawClient, live_server
from wsgistack.middlewares import PrefixDispatcher
from wsgistack.middlewares.forward import Upstream, mapping
from wsgistack.middlewares.forward.mapping import map_location, request_headers

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"

SENT = {
    "X-Forwarded-For": "6.6.6.6",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Prefix": "/evil",
    "Forwarded": "for=6.6.6.6",
}
FORWARDING = [name.encode() for name in SENT]


def _forwarded(upstream) -> dict[bytes, list[bytes]]:
    return {name: upstream.header(name) for name in FORWARDING}


REPLACED = {
    b"X-Forwarded-For": [b"203.0.113.9"],
    b"X-Forwarded-Proto": [b"http"],
    b"X-Forwarded-Host": [b"site.example"],
    b"X-Forwarded-Prefix": [b"/legacy"],
    b"Forwarded": [b'for=203.0.113.9;proto=http;host="site.example"'],
}


@pytest.mark.parametrize(
    ("trusted", "peer", "expected"),
    [
        pytest.param(None, "203.0.113.9", REPLACED, id="no-trusted-proxies"),
        pytest.param(["10.0.0.0/8"], "203.0.113.9", REPLACED, id="untrusted-peer"),
        pytest.param(
            ["10.0.0.0/8"],
            "::ffff:203.0.113.9",
            {
                **REPLACED,
                b"X-Forwarded-For": [b"::ffff:203.0.113.9"],
                b"Forwarded": [b'for="[::ffff:203.0.113.9]";proto=http;host="site.example"'],
            },
            id="untrusted-ipv4-mapped-peer",
        ),
        pytest.param(
            ["10.0.0.0/8"],
            "10.0.0.2",
            {
                b"X-Forwarded-For": [b"6.6.6.6, 10.0.0.2"],
                b"X-Forwarded-Proto": [b"https, http"],
                b"X-Forwarded-Host": [b"evil.example"],  # one host, as Django reads it
                b"X-Forwarded-Prefix": [b"/evil/legacy"],
                b"Forwarded": [b'for=6.6.6.6, for=10.0.0.2;proto=http;host="site.example"'],
            },
            id="trusted-peer-chains-extended",
        ),
        pytest.param(
            ["10.0.0.0/8"],
            "::ffff:10.0.0.2",
            {
                b"X-Forwarded-For": [b"6.6.6.6, ::ffff:10.0.0.2"],
                b"X-Forwarded-Proto": [b"https, http"],
                b"X-Forwarded-Host": [b"evil.example"],  # one host, as Django reads it
                b"X-Forwarded-Prefix": [b"/evil/legacy"],
                b"Forwarded": [
                    b'for=6.6.6.6, for="[::ffff:10.0.0.2]";proto=http;host="site.example"'
                ],
            },
            id="trusted-ipv4-mapped-peer",
        ),
        pytest.param(
            1,
            "203.0.113.9",
            {
                b"X-Forwarded-For": [b"6.6.6.6, 203.0.113.9"],
                b"X-Forwarded-Proto": [b"https, http"],
                b"X-Forwarded-Host": [b"evil.example"],  # one host, as Django reads it
                b"X-Forwarded-Prefix": [b"/evil/legacy"],
                b"Forwarded": [b'for=6.6.6.6, for=203.0.113.9;proto=http;host="site.example"'],
            },
            id="one-trusted-hop",
        ),
    ],
)
def test_forwarding_headers_are_replaced_unless_a_trusted_proxy_sent_them(
    lb, raw, trusted, peer, expected
):
    upstream = raw(OK)
    app = TestApp(validator(lb([upstream.url], trusted_proxies=trusted)))
    app.get(
        "/x",
        headers={**SENT, "Host": "site.example"},
        extra_environ={"REMOTE_ADDR": peer, "SCRIPT_NAME": "/legacy"},
    )
    assert _forwarded(upstream) == expected


def test_a_trusted_proxy_that_sent_only_a_proto_keeps_it(lb, raw):
    upstream = raw(OK)
    app = TestApp(validator(lb([upstream.url], trusted_proxies=["10.0.0.0/8"])))
    app.get("/", headers={"X-Forwarded-Proto": "https"}, extra_environ={"REMOTE_ADDR": "10.0.0.2"})
    assert upstream.header(b"X-Forwarded-Proto") == [b"https, http"]
    assert upstream.header(b"X-Forwarded-For") == [b"10.0.0.2"]
    assert upstream.header(b"X-Forwarded-Prefix") == []  # no prefix anywhere


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded_for", "real_ip"),
    [
        pytest.param(None, "203.0.113.9", "198.51.100.1", b"203.0.113.9", id="no-trust"),
        pytest.param(["10.0.0.0/8"], "203.0.113.9", "198.51.100.1", b"203.0.113.9", id="untrusted"),
        pytest.param(["10.0.0.0/8"], "10.0.0.2", "198.51.100.1", b"198.51.100.1", id="trusted"),
        pytest.param(["10.0.0.0/8"], "10.0.0.2", "", b"10.0.0.2", id="trusted-no-chain"),
    ],
)
def test_x_real_ip_is_the_client_this_hop_decided_never_the_clients_own(
    lb, raw, trusted, peer, forwarded_for, real_ip
):
    upstream = raw(OK)
    app = TestApp(validator(lb([upstream.url], trusted_proxies=trusted)))
    headers = {"X-Real-IP": "6.6.6.6"}
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    app.get("/", headers=headers, extra_environ={"REMOTE_ADDR": peer})
    assert upstream.header(b"X-Real-IP") == [real_ip]


def test_a_unix_socket_client_with_no_address_sends_no_x_real_ip(lb, raw):
    upstream = raw(OK)
    app = TestApp(validator(lb([upstream.url])))
    app.get("/", headers={"X-Real-IP": "6.6.6.6"}, extra_environ={"REMOTE_ADDR": ""})
    assert upstream.header(b"X-Real-IP") == []


def test_a_proxy_header_is_not_passed_on(lb, raw):
    # httpoxy: a CGI-style upstream would read it as HTTP_PROXY, its outgoing proxy.
    upstream = raw(OK)
    app = TestApp(validator(lb([upstream.url])))
    app.get("/", headers={"Proxy": "http://evil.example:3128", "X-Kept": "yes"})
    assert upstream.header(b"Proxy") == []
    assert upstream.header(b"X-Kept") == [b"yes"]


@pytest.mark.parametrize(
    ("host", "quoted"),
    [
        pytest.param('a", for=6.6.6.6;by="b', r'"a\", for=6.6.6.6;by=\"b"', id="quote-ends-early"),
        pytest.param('a\\", for=6.6.6.6', r'"a\\\", for=6.6.6.6"', id="backslash-before-quote"),
    ],
)
def test_a_clients_host_cannot_add_a_hop_to_forwarded(lb, raw, host, quoted):
    # The reference server refuses such a Host (400), but other servers pass it
    # on; unescaped in host="...", it would close the quotes and make the last
    # element say for=6.6.6.6.
    upstream = raw(OK)
    app = TestApp(validator(lb([upstream.url])))
    app.get("/", extra_environ={"HTTP_HOST": host, "REMOTE_ADDR": "127.0.0.1"}, status=200)
    assert upstream.header(b"Forwarded") == [b"for=127.0.0.1;proto=http;host=" + quoted.encode()]


@pytest.mark.parametrize(
    ("framing", "length", "encoding"),
    [
        pytest.param({"CONTENT_LENGTH": "3"}, [b"3"], [], id="content-length"),
        pytest.param(
            {"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True},
            [],
            [b"chunked"],
            id="chunked-never-with-a-length",
        ),
    ],
)
def test_the_body_is_framed_once_whatever_http_content_keys_say(lb, raw, framing, length, encoding):
    upstream = raw(OK)
    environ = webob.Request.blank("/", method="POST", body=b"abc").environ
    del environ["CONTENT_LENGTH"]
    # Not PEP 3333 (so no validator), but what a uwsgi server builds from nginx's
    # uwsgi_params, which sends CONTENT_LENGTH and HTTP_CONTENT_LENGTH both.
    environ.update(
        CONTENT_TYPE="text/plain",
        HTTP_CONTENT_LENGTH="3",
        HTTP_CONTENT_TYPE="application/evil",
        **framing,
    )
    result = lb([upstream.url])(environ, lambda status, headers: None)
    assert b"".join(result) == b"ok"
    assert upstream.header(b"Content-Length") == length
    assert upstream.header(b"Transfer-Encoding") == encoding
    assert upstream.header(b"Content-Type") == [b"text/plain"]


# -- redirects ---------------------------------------------------------------------------------
def _redirect(location: bytes) -> bytes:
    return (
        b"HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Location: %s\r\nRefresh: 3; url=%s\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 0\r\n\r\n" % (location, location, location)
    )


UPSTREAM = "{upstream}"  # stands for the upstream's own http://host:port


@pytest.mark.parametrize(
    ("base", "options", "script", "location", "expected"),
    [
        pytest.param("", {}, "/legacy", "/next?x=1", "/legacy/next?x=1", id="path"),
        pytest.param("", {}, "/legacy", "next", "next", id="relative-left-alone"),
        pytest.param("", {}, "/legacy", "?page=2", "?page=2", id="query-only-left-alone"),
        pytest.param("/app", {}, "/legacy", "/app/next", "/legacy/next", id="base-swapped"),
        pytest.param("/app", {}, "/legacy", "/other", "/other", id="outside-the-base"),
        pytest.param(
            "",
            {},
            "/legacy",
            "http://site.example/next",
            "http://site.example/legacy/next",
            id="the-clients-host",
        ),
        pytest.param(
            "/app",
            {},
            "/legacy",
            "https://SITE.example/app/n#f",
            "https://SITE.example/legacy/n#f",
            id="the-clients-host-with-a-base",
        ),
        pytest.param(
            "",
            {"preserve_host": False},
            "/legacy",
            "http://site.example/next",
            "http://site.example/next",
            id="the-clients-host-unseen-by-the-upstream",
        ),
        pytest.param(
            "/app",
            {"preserve_host": False},
            "/legacy",
            UPSTREAM + "/app/next",
            "/legacy/next",
            id="the-upstreams-address",
        ),
        pytest.param(
            "",
            {},
            "/legacy",
            "http://other.example/next",
            "http://other.example/next",
            id="another-site",
        ),
        pytest.param("", {}, "/my app", "/next", "/my%20app/next", id="script-name-encoded"),
        # An upstream honouring X-Forwarded-Prefix already says where the client sees it.
        pytest.param("", {}, "/legacy", "/legacy/login", "/legacy/login", id="prefix-applied"),
        pytest.param("", {}, "/legacy", "/legacy", "/legacy", id="prefix-itself"),
        pytest.param("", {}, "/legacy", "/legacyx", "/legacy/legacyx", id="prefix-not-a-segment"),
        pytest.param("", {}, "/my app", "/my%20app/n", "/my%20app/n", id="prefix-applied-encoded"),
        pytest.param(
            "",
            {"preserve_host": False},
            "/legacy",
            UPSTREAM + "/legacy/login",
            "/legacy/login",
            id="prefix-applied-on-the-upstreams-address",
        ),
        pytest.param("", {}, "", "mailto:a@site.example", "mailto:a@site.example", id="mailto"),
    ],
)
def test_location_content_location_and_refresh_map_back_to_the_client(
    lb, raw, base, options, script, location, expected
):
    upstream = raw(OK)
    address = upstream.url.removeprefix("http://")
    upstream.queue(_redirect(location.replace(UPSTREAM, upstream.url).encode()))
    app = TestApp(validator(lb([upstream.url + base], **options)))
    response = app.get("/", extra_environ={"SCRIPT_NAME": script, "HTTP_HOST": "site.example"})
    assert response.status_int == 302
    assert response.headers["Location"] == expected.replace(UPSTREAM, address)
    assert response.headers["Content-Location"] == expected.replace(UPSTREAM, address)
    assert response.headers["Refresh"] == "3; url=" + expected.replace(UPSTREAM, address)


@pytest.mark.parametrize(
    ("url", "location", "expected"),
    [
        # The upstream's own address, spelled as URLs may spell it.
        pytest.param("http://up/app", "http://up:80/app/x", "/legacy/x", id="default-port-written"),
        pytest.param(
            "http://up:80/app", "http://up/app/x", "/legacy/x", id="default-port-left-out"
        ),
        pytest.param("http://up:8000/app", "http://UP:8000/app/x", "/legacy/x", id="host-case"),
        pytest.param(
            "http://Up.Example/app", "http://up.example/app/x", "/legacy/x", id="cfg-case"
        ),
        pytest.param("http://up/app", "//up:80/app/x?q#f", "/legacy/x?q#f", id="scheme-relative"),
        pytest.param("http://[::1]:8000", "http://[::1]:8000/x", "/legacy/x", id="ipv6"),
        pytest.param("http://[::1]:8000", "http://[0:0::1]:8000/x", "/legacy/x", id="ipv6-spelled"),
        pytest.param(
            "http://[2001:db8::a]", "http://[2001:DB8:0::A]/x", "/legacy/x", id="ipv6-case-zeros"
        ),
        pytest.param(
            "http://up.example/app", "http://up.example./app/x", "/legacy/x", id="fqdn-dot"
        ),
        pytest.param("http://up/app", "http://[::1]/app/x", None, id="an-address-is-not-a-name"),
        # The base path, spelled otherwise (RFC 3986 6.2.2: case of escapes, unreserved ones).
        pytest.param("http://up/~app", "/%7Eapp/x", "/legacy/x", id="tilde-escaped"),
        pytest.param("http://up/~app", "http://up:80/%7eapp/x", "/legacy/x", id="escape-case"),
        pytest.param("http://up/%7Eapp", "/~app/x", "/legacy/x", id="base-written-escaped"),
        pytest.param("http://up/app", "/%61pp/x", "/legacy/x", id="letter-escaped"),
        pytest.param("http://up/app/", "/app", "/legacy/", id="base-with-a-trailing-slash"),
        pytest.param("http://up/app", "/app/", "/legacy/", id="location-with-a-trailing-slash"),
        # The client's own Host (which the upstream saw), its default port written.
        pytest.param(
            "http://up/app",
            "http://Site.Example:80/app/x",
            "http://Site.Example:80/legacy/x",
            id="clients-host-port-80",
        ),
        pytest.param(
            "http://up/app",
            "https://site.example:443/app/x",
            "https://site.example:443/legacy/x",
            id="clients-host-port-443",
        ),
        # An https:// upstream's own URLs, its default port written or not.
        pytest.param("https://up/app", "https://up:443/app/x", "/legacy/x", id="https-port-443"),
        pytest.param("https://up:443/app", "https://UP/app/x", "/legacy/x", id="https-443-in-url"),
        # Not ours: left exactly as sent.
        pytest.param("https://up/app", "https://up:8443/app/x", None, id="https-other-port"),
        pytest.param("http://up/app", "http://up:8080/app/x", None, id="other-port"),
        pytest.param("http://up/app", "http://site.example:8443/app/x", None, id="other-port-2"),
        pytest.param("http://up/app", "ftp://up/app/x", None, id="other-scheme"),
        pytest.param("http://up/app", "http://up:99999/app/x", None, id="bad-port"),
        pytest.param("http://up/app", "http://up.evil/app/x", None, id="other-host"),
        pytest.param("http://up/app", "/app%2Fx", None, id="escaped-slash-is-no-segment-end"),
        pytest.param("http://up/app", "/apps/x", None, id="outside-the-base"),
    ],
)
def test_a_location_naming_the_pool_is_mapped_however_it_is_spelled(url, location, expected):
    environ = webob.Request.blank("/", environ={"SCRIPT_NAME": "/legacy"}).environ
    environ["HTTP_HOST"] = "site.example"
    assert map_location(Upstream(url), location, environ, True) == (expected or location)


@pytest.mark.parametrize(
    ("script", "location"),
    [
        pytest.param("/~legacy", "/%7Elegacy/login", id="tilde-escaped"),
        pytest.param("/~legacy", "/%7elegacy", id="escape-case"),
        pytest.param("/legacy", "/%6Cegacy/login", id="letter-escaped"),
    ],
)
def test_a_location_already_under_script_name_is_kept_however_it_is_spelled(script, location):
    environ = webob.Request.blank("/", environ={"SCRIPT_NAME": script}).environ
    assert map_location(Upstream("http://up"), location, environ, True) == location


def test_a_redirect_to_the_upstreams_address_with_its_port_written_reaches_the_client_mapped(
    lb, raw
):
    upstream = raw(OK)
    port = upstream.url.rpartition(":")[2]
    upstream.queue(_redirect(b"HTTP://127.0.0.1:%s/%%7Eapp/next" % port.encode()))
    app = TestApp(validator(lb([upstream.url + "/~app"], preserve_host=False)))
    response = app.get("/", extra_environ={"SCRIPT_NAME": "/legacy"})
    assert response.headers["Location"] == "/legacy/next"
    assert response.headers["Refresh"] == "3; url=/legacy/next"


@pytest.mark.parametrize(
    ("refresh", "expected"),
    [
        pytest.param("5", "5", id="no-url"),
        pytest.param("0;URL='/next'", "0;URL='/legacy/next'", id="quoted-upper-case"),
        pytest.param('1, "/next"', '1, "/legacy/next"', id="comma-and-no-url-key"),
        pytest.param("2.5; url = {upstream}/a", "2.5; url = /legacy/a", id="upstream-address"),
        pytest.param("2; url=https://other.example/", "2; url=https://other.example/", id="other"),
        pytest.param("soon; url=/next", "soon; url=/next", id="not-a-refresh-value"),
    ],
)
def test_refresh_forms_map_as_browsers_read_them(lb, raw, refresh, expected):
    upstream = raw(OK)
    upstream.queue(
        b"HTTP/1.1 200 OK\r\nRefresh: %s\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"
        % refresh.replace(UPSTREAM, upstream.url).encode()
    )
    app = TestApp(validator(lb([upstream.url], preserve_host=False)))
    response = app.get("/", extra_environ={"SCRIPT_NAME": "/legacy"})
    assert response.headers["Refresh"] == expected


# -- the path ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "expected"),
    [
        pytest.param(b"/pool/a%2Fb", b"/base/a%2Fb", id="encoded-slash-kept"),
        pytest.param(b"/pool/a%2fb/c?x=%2F", b"/base/a%2fb/c?x=%2F", id="lower-case-and-query"),
        pytest.param(b"/pool/caf%C3%A9/100%25", b"/base/caf%C3%A9/100%25", id="utf8-and-percent"),
        pytest.param(b"/po%6Fl/a%2Fb", b"/base/a%2Fb", id="encoded-mount"),
        pytest.param(b"/pool%2Fa", b"/base/a", id="slash-ending-the-mount-encoded-falls-back"),
        pytest.param(b"/pool/a|b", b"/base/a%7Cb", id="no-percent-quoted-as-before"),
        pytest.param(b"/pool/", b"/base/", id="the-mount-itself"),
    ],
)
def test_the_upstream_gets_the_path_as_the_client_spelled_it(lb, raw, target, expected):
    upstream = raw(OK)
    site = PrefixDispatcher({"/pool": lb([upstream.url + "/base"])})
    with live_server(site) as front, RawClient(front.address) as client:
        status, _, _ = client.request(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % target)
    assert status == 200
    assert upstream.heads[-1].split(b" ")[1] == expected


def test_a_flask_upstream_behind_proxyfix_redirects_once_under_the_mount(lb, upstreams):
    # Flask with werkzeug's ProxyFix(x_prefix=1) builds URLs from the X-Forwarded-Prefix
    # the forwarder sends: its redirect is already under the mount, and stays so.
    import flask
    from werkzeug.middleware.proxy_fix import ProxyFix

    flask_app = flask.Flask("legacy")

    @flask_app.get("/")
    def index():
        return flask.redirect(flask.url_for("login"))

    @flask_app.get("/login")
    def login():
        return "login page"

    flask_app.wsgi_app = ProxyFix(flask_app.wsgi_app, x_prefix=1)  # type: ignore[method-assign]
    url = upstreams.start("flask", flask_app)
    site = TestApp(validator(PrefixDispatcher({"/legacy": lb([url])})))
    response = site.get("/legacy/")
    assert response.status_int == 302 and response.headers["Location"] == "/legacy/login"
    assert response.follow().text == "login page"


@pytest.mark.parametrize(
    ("target", "seen"),
    [
        pytest.param(b"/a/../../admin", b"/public/admin", id="dot-dot-past-the-root"),
        pytest.param(b"/%2e%2e/admin", b"/public/admin", id="escaped-dots"),
        pytest.param(b"/..%2Fadmin", b"/public/admin", id="escaped-slash"),
        pytest.param(b"/x/./y/../z/", b"/public/x/z/", id="resolved-within-keeps-the-slash"),
        pytest.param(b"/.well-known/a..b", b"/public/.well-known/a..b", id="dots-in-names"),
    ],
)
def test_dot_segments_cannot_reach_past_the_base_path(lb, tmp_path, target, seen):
    # nginx as the upstream resolves dot segments, as routers and file servers do:
    # /public/a/../../admin would be its /admin, which the pool does not expose.
    from tests.server.nginx import Nginx

    locations = (
        'location /public/ { default_type text/plain; return 200 "public $uri"; }\n'
        '    location / { default_type text/plain; return 200 "private $uri"; }'
    )
    with (
        Nginx(tmp_path, locations) as nginx,
        live_server(lb([nginx.url + "/public"])) as front,
        RawClient(front.address) as client,
    ):
        status, _, body = client.request(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % target)
    assert (status, body) == (200, b"public " + seen)


def test_a_path_without_its_leading_slash_stays_under_the_base_path(lb, raw):
    # werkzeug's server passes "GET _admin" on as PATH_INFO "_admin": pasted to the
    # base path it would be /public_admin, another path of the upstream.
    upstream = raw(OK)
    balancer = lb([upstream.url + "/public"])
    app = TestApp(lambda environ, start: balancer({**environ, "PATH_INFO": "_admin"}, start))
    assert app.get("/?q=1").body == b"ok"
    assert upstream.heads[-1].split(b" ")[1] == b"/public/_admin?q=1"


def _environ(**headers: str) -> dict[str, str]:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "REMOTE_ADDR": "203.0.113.9",
        "wsgi.url_scheme": "http",
        "CONTENT_TYPE": "",
        **{"HTTP_" + name.upper(): value for name, value in headers.items()},
    }


def test_requests_with_the_same_headers_each_drop_what_their_own_connection_names():
    first = _environ(host="a", connection="X-A", x_a="1", x_b="2")
    second = _environ(host="a", connection="X-B", x_a="3", x_b="4")
    assert list(first) == list(second)  # one shape: the second is sorted out from memory
    sent = dict(request_headers(first, None))
    assert "X-A" not in sent and sent["X-B"] == "2"
    sent = dict(request_headers(second, None))
    assert sent["X-A"] == "3" and "X-B" not in sent
    assert "Connection" not in sent


def test_an_empty_content_type_is_not_sent_and_a_present_one_is():
    assert "Content-Type" not in dict(request_headers(_environ(host="a"), None))
    environ = {**_environ(host="a"), "CONTENT_TYPE": "text/plain"}
    assert dict(request_headers(environ, None))["Content-Type"] == "text/plain"


def test_requests_of_many_header_shapes_keep_memory_bounded():
    for number in range(3 * mapping._HEADER_KEYS_MAX):
        environ = _environ(host="a", **{f"x_{number}": "v"})
        assert dict(request_headers(environ, None))[f"X-{number}"] == "v"
        assert len(mapping._HEADER_KEYS) <= mapping._HEADER_KEYS_MAX


def test_a_header_an_outer_layer_set_to_a_non_str_goes_upstream_as_str_spells_it(lb, raw):
    # PEP 3333 wants strs, but a layer that counts retries in HTTP_X_ATTEMPT with
    # an int got "X-Attempt: 2" upstream before, as http.client sends an int: not a 500.
    upstream = raw(OK)
    balancer = lb([upstream.url])  # (validator refuses the int: PEP 3333 is broken on purpose)
    app = TestApp(
        validator(lambda environ, start: balancer({**environ, "HTTP_X_ATTEMPT": 2}, start))
    )
    assert app.get("/").body == b"ok"
    assert upstream.header(b"X-Attempt") == [b"2"]


def test_requests_with_huge_header_names_are_not_remembered_by_the_size_of_their_names():
    # Behind gunicorn (100 fields of 8,190 bytes) 128 such shapes held ~200 MiB for good.
    mapping._HEADER_KEYS.clear()
    for number in range(mapping._HEADER_KEYS_MAX):
        names = {f"x_{number}_{field}_".ljust(2000, "a"): "v" for field in range(10)}
        sent = dict(request_headers(_environ(host="a", **names), None))
        assert sent[f"X-{number}-9-".ljust(2000, "a").title()] == "v"
    kept = sum(len(key) for shape in mapping._HEADER_KEYS for key in shape)
    assert kept <= mapping._HEADER_KEYS_MAX * mapping._HEADER_KEYS_CHARS_MAX
