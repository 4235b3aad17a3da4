"""``--forwarded-allow-ips``: a TLS-terminating proxy's X-Forwarded-Proto sets wsgi.url_scheme.

Over real sockets, as nginx in front (``proxy_set_header X-Forwarded-Proto
$scheme``) reaches the server: from a peer the option lists the scheme is
the proxy's, from any other the header is only a header.
"""

from __future__ import annotations

import socket

import flask
import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.test import override_settings

import tests.djangoapp  # noqa: F401  (configures Django's settings)
from wsgistack import cli
from wsgistack.errors import ConfigError
from wsgistack.paste import ini_server_options
from wsgistack.server.config import ServerConfig, layered_options

from .live import RawClient, live_server, uwsgi_packet

HTTPS = b"X-Forwarded-Proto: https\r\n"


def get(path: str, *headers: bytes) -> bytes:
    return (
        b"GET "
        + path.encode()
        + b" HTTP/1.1\r\nHost: shop.example\r\n"
        + b"".join(headers)
        + b"\r\n"
    )


def scheme_app(environ, start_response):
    """Answers the scheme it was given, and the X-Forwarded-Proto it still sees."""
    body = f"{environ['wsgi.url_scheme']} {environ.get('HTTP_X_FORWARDED_PROTO')}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def flask_app() -> flask.Flask:
    app = flask.Flask(__name__)

    @app.route("/where")
    def where():
        return {"url": flask.url_for("where", _external=True), "scheme": flask.request.scheme}

    @app.route("/go")
    def go():
        return flask.redirect(flask.url_for("where", _external=True))

    return app


def test_flask_builds_https_urls_behind_a_local_proxy_with_no_setting():
    app = flask_app()
    with live_server(app.wsgi_app) as server, RawClient(server.address) as client:
        status, _, body = client.request(get("/where", HTTPS))
        assert status == 200
        assert flask.json.loads(body) == {"url": "https://shop.example/where", "scheme": "https"}
        status, headers, _ = client.request(get("/go", HTTPS))
        assert (status, headers["location"]) == (302, "https://shop.example/where")


def test_flask_keeps_http_when_the_peer_is_not_listed():
    app = flask_app()
    with (
        live_server(app.wsgi_app, forwarded_allow_ips="10.0.0.0/8") as server,
        RawClient(server.address) as client,
    ):
        body = client.request(get("/where", HTTPS))[2]
    assert flask.json.loads(body) == {"url": "http://shop.example/where", "scheme": "http"}


def test_the_header_from_an_untrusted_peer_stays_in_the_environ():
    with (
        live_server(scheme_app, forwarded_allow_ips="192.0.2.1") as server,
        RawClient(server.address) as client,
    ):
        assert client.request(get("/", HTTPS))[2] == b"http https"


def test_ipv6_loopback_is_trusted_by_default_and_can_be_left_out():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    with live_server(scheme_app, bind="[::1]:0") as server, RawClient(server.address) as client:
        assert client.request(get("/", HTTPS))[2] == b"https https"
    with (
        live_server(scheme_app, bind="[::1]:0", forwarded_allow_ips="127.0.0.1") as server,
        RawClient(server.address) as client,
    ):
        assert client.request(get("/", HTTPS))[2] == b"http https"


@pytest.mark.parametrize(
    ("headers", "scheme"),
    [
        pytest.param([b"X-Forwarded-Proto: HTTPS\r\n"], b"https", id="case-insensitive"),
        pytest.param([b"X-Forwarded-Proto: http\r\n"], b"http", id="plain"),
        pytest.param([b"X-Forwarded-Protocol: ssl\r\n"], b"https", id="x-forwarded-protocol"),
        pytest.param([b"X-Forwarded-Ssl: on\r\n"], b"https", id="x-forwarded-ssl"),
        pytest.param([b"X-Forwarded-Proto: http, https\r\n"], b"https", id="nearest-hop-https"),
        pytest.param([b"X-Forwarded-Proto: https, http\r\n"], b"http", id="nearest-hop-http"),
        pytest.param(
            [b"X-Forwarded-Proto: https\r\n", b"X-Forwarded-Proto: http\r\n"],
            b"http",
            id="repeated-last-wins",
        ),
        pytest.param([HTTPS, b"X-Forwarded-Ssl: on\r\n"], b"https", id="agreeing"),
        pytest.param([b"Forwarded: proto=https\r\n"], b"http", id="forwarded-not-read"),
    ],
)
def test_a_trusted_proxys_headers_set_the_scheme(headers, scheme):
    with live_server(scheme_app) as server, RawClient(server.address) as client:
        assert client.request(get("/", *headers))[2].split()[0] == scheme


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([HTTPS, b"X-Forwarded-Ssl: off\r\n"], id="proto-https-ssl-off"),
        pytest.param([b"X-Forwarded-Proto: http\r\n", b"X-Forwarded-Ssl: on\r\n"], id="ssl-on"),
    ],
)
def test_disagreeing_scheme_headers_are_refused_before_the_app(headers):
    called = []

    def app(environ, start_response):
        called.append(environ)
        return scheme_app(environ, start_response)

    with live_server(app) as server, RawClient(server.address) as client:
        assert client.request(get("/", *headers))[0] == 400
    assert not called


def test_disagreeing_headers_from_an_untrusted_peer_reach_the_app():
    with (
        live_server(scheme_app, forwarded_allow_ips="") as server,
        RawClient(server.address) as client,
    ):
        status, _, body = client.request(get("/", HTTPS, b"X-Forwarded-Ssl: off\r\n"))
    assert (status, body) == (200, b"http https")


def test_a_peer_on_a_unix_socket_is_trusted_as_in_gunicorn(tmp_path):
    path = str(tmp_path / "s.sock")
    with (
        live_server(scheme_app, bind=f"unix:{path}", forwarded_allow_ips=""),
        RawClient(path) as client,
    ):
        assert client.request(get("/", HTTPS))[2] == b"https https"


def test_a_uwsgi_bind_takes_the_scheme_from_nginx_not_from_the_header():
    variables = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_SCHEME": "http",
        "HTTP_X_FORWARDED_PROTO": "https",
    }
    with (
        live_server(scheme_app, bind="uwsgi://127.0.0.1:0") as server,
        socket.create_connection(server.address, timeout=5) as sock,
    ):
        sock.sendall(uwsgi_packet(variables))
        data = b"".join(iter(lambda: sock.recv(65536), b""))
    assert data.endswith(b"\r\n\r\nhttp https")


def test_django_with_secure_ssl_redirect_serves_a_trusted_https_request():
    settings = {
        "SECURE_SSL_REDIRECT": True,
        "MIDDLEWARE": ["django.middleware.security.SecurityMiddleware"],
    }
    with override_settings(**settings):
        app = WSGIHandler()  # loads the middleware of the settings in force
        with live_server(app) as server, RawClient(server.address) as client:
            secure = client.request(get("/articles/home/", HTTPS))
            plain = client.request(get("/articles/home/", b"X-Forwarded-Proto: http\r\n"))
        with (
            live_server(app, forwarded_allow_ips="10.0.0.1") as server,
            RawClient(server.address) as client,
        ):
            untrusted = client.request(get("/articles/home/", HTTPS))
    assert secure[0] == 200
    assert (plain[0], plain[1]["location"]) == (301, "https://shop.example/articles/home/")
    assert untrusted[0] == 301


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("127.0.0.1,::1", ("127.0.0.1", "::1"), id="gunicorn-string"),
        pytest.param(" 10.0.0.0/8 , 2001:db8::/32 ", ("10.0.0.0/8", "2001:db8::/32"), id="spaces"),
        pytest.param(["192.0.2.7", "10.0.0.0/8"], ("192.0.2.7", "10.0.0.0/8"), id="list"),
        pytest.param("*", ("*",), id="everyone"),
        pytest.param("", (), id="no-one"),
    ],
)
def test_forwarded_allow_ips_takes_gunicorns_spellings(value, expected):
    assert ServerConfig.from_options(forwarded_allow_ips=value).forwarded_allow_ips == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10.0.0.1/8", "forwarded_allow_ips: '10.0.0.1/8' is not an IP address or network"),
        ("127.0.0.1,localhost", "forwarded_allow_ips: 'localhost' is not an IP address"),
        (8000, "forwarded_allow_ips: expected a list of addresses or networks, got 8000"),
        (["127.0.0.1", 1], "forwarded_allow_ips: 1 is not an IP address or network"),
    ],
)
def test_a_bad_forwarded_allow_ips_fails_naming_the_option(value, message):
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(")):
        ServerConfig.from_options(forwarded_allow_ips=value)


def test_the_command_line_refuses_a_bad_forwarded_allow_ips(capsys):
    args = ["serve", "tests.server.conftest:echo_app", "--workers", "0"]
    assert cli.main([*args, "--forwarded-allow-ips", "10.0.0.1/8"]) == 2
    assert "forwarded_allow_ips: '10.0.0.1/8' is not an IP" in capsys.readouterr().err


def test_config_files_take_forwarded_allow_ips_by_its_name():
    toml = layered_options({"forwarded_allow_ips": ["10.0.0.0/8"]}, "stack.toml: [server]")
    assert ServerConfig.from_options(**toml).forwarded_allow_ips == ("10.0.0.0/8",)
    ini = ini_server_options({"port": "0", "forwarded_allow_ips": "10.0.0.1, 10.0.0.2"}, "ini")
    assert ServerConfig.from_options(**ini).forwarded_allow_ips == ("10.0.0.1", "10.0.0.2")
    with pytest.raises(ConfigError, match=r"^stack.toml: \[server\]: forwarded_allow_ips: 'x'"):
        layered_options({"forwarded_allow_ips": "x"}, "stack.toml: [server]")


def test_the_environment_gives_the_default_as_for_gunicorn(monkeypatch):
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")
    assert ServerConfig.from_options().forwarded_allow_ips == ("*",)
    given = ServerConfig.from_options(forwarded_allow_ips="10.0.0.1")
    assert given.forwarded_allow_ips == ("10.0.0.1",)  # the option wins
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.1/8")
    with pytest.raises(
        ConfigError, match=r"^FORWARDED_ALLOW_IPS .*forwarded_allow_ips: '10\.0\.0\.1/8'"
    ):
        ServerConfig.from_options()
