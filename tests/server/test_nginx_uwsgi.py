"""A real nginx with ``uwsgi_pass`` and the stock ``uwsgi_params`` in front of the server."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import shutil
import socket
import tempfile
import wsgiref.util
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.wsgi import get_content_length

from wsgistack.server import Server

from .live import live_server, read_until_close
from .nginx import Nginx, uwsgi_params

SHOWN = (
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "SERVER_PROTOCOL",
    "REMOTE_ADDR",
    "HTTP_HOST",
    "HTTP_X_TAG",
    "HTTP_COOKIE",
    "CONTENT_TYPE",
    "REQUEST_SCHEME",
    "wsgi.url_scheme",
)


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/boom":
        raise RuntimeError("the app failed")
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"line %d\n" % i for i in range(1000))
    if path == "/cut":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _cut_off()
    if path == "/url":
        body = wsgiref.util.request_uri(environ).encode()
    elif path == "/framing":
        size = len(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
        seen = [environ.get("CONTENT_LENGTH"), environ.get("HTTP_TRANSFER_ENCODING"), size]
        body = json.dumps([*seen, get_content_length(environ)]).encode()
    elif path == "/upload":
        digest, size = hashlib.sha256(), 0
        while block := environ["wsgi.input"].read(65536):
            digest.update(block)
            size += len(block)
        body = f"{size} {digest.hexdigest()}".encode()
    else:
        body = json.dumps({key: environ.get(key) for key in SHOWN}).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _cut_off() -> Iterator[bytes]:
    yield b"the first part\n"
    raise RuntimeError("the app failed mid-body")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with live_server(app, bind="uwsgi://127.0.0.1:0", threads=4) as server:
        yield server


@pytest.fixture(scope="module")
def nginx(server, tmp_path_factory) -> Iterator[Nginx]:
    port = server.addresses[0][1]
    locations = f"""
    location / {{
      include {uwsgi_params()};
      uwsgi_pass 127.0.0.1:{port};
    }}
    location /mounted/ {{
      include {uwsgi_params()};
      uwsgi_param SCRIPT_NAME /mounted;
      uwsgi_pass 127.0.0.1:{port};
    }}
    location /flask-docs/ {{
      include {uwsgi_params()};
      uwsgi_param SCRIPT_NAME /flask-docs;
      uwsgi_modifier1 30;
      uwsgi_pass 127.0.0.1:{port};
    }}
    location /overrides/ {{
      include {uwsgi_params()};
      uwsgi_param REMOTE_ADDR $http_x_real_ip;
      uwsgi_param HTTP_HOST $http_host;
      uwsgi_param REQUEST_SCHEME https;
      uwsgi_pass 127.0.0.1:{port};
    }}
    location /scheme/ {{
      include {uwsgi_params()};
      uwsgi_param UWSGI_SCHEME https;
      uwsgi_pass 127.0.0.1:{port};
    }}"""
    with Nginx(tmp_path_factory.mktemp("nginx"), locations) as nginx:
        yield nginx


def request(nginx: Nginx, method: str, path: str, body=None, headers=()) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_a_get_with_a_query_arrives_as_the_client_sent_it(nginx):
    status, _, body = request(nginx, "GET", "/shop/caf%C3%A9?q=1&r=%20", headers=[("X-Tag", "t")])
    seen = json.loads(body)
    assert status == 200
    assert seen["REQUEST_METHOD"] == "GET" and seen["QUERY_STRING"] == "q=1&r=%20"
    assert seen["PATH_INFO"] == "/shop/café".encode().decode("latin-1")  # PEP 3333 bytes-as-latin-1
    assert seen["REMOTE_ADDR"] == "127.0.0.1" and seen["HTTP_X_TAG"] == "t"
    assert seen["HTTP_HOST"] == "127.0.0.1" and seen["wsgi.url_scheme"] == "http"
    assert seen["SERVER_PROTOCOL"] == "HTTP/1.1" and seen["SCRIPT_NAME"] == ""


def test_an_encoded_line_break_in_the_path_reaches_the_app_decoded(nginx):
    status, _, body = request(nginx, "GET", "/notes/a%0Ab%0D")
    assert status == 200
    assert json.loads(body)["PATH_INFO"] == "/notes/a\nb\r"


def test_the_client_sees_nginx_date_and_server_as_behind_proxy_pass(nginx):
    # nginx passes a uwsgi server's Date and Server through (proxy_pass hides
    # them); ours are left out, so clients see the same head either way.
    status, headers, _ = request(nginx, "GET", "/")
    assert status == 200
    assert headers["Server"].startswith("nginx")
    assert headers["Date"].endswith(" GMT")


def test_the_servers_own_500_also_carries_nginx_date_and_server(nginx):
    # Refusals went out with ours, which nginx passed on instead of its own
    # (server_tokens, and the backend's name, leaked to the client).
    status, headers, _ = request(nginx, "GET", "/boom")
    assert status == 500
    assert headers["Server"].startswith("nginx")
    assert headers["Date"].endswith(" GMT")


def test_script_name_from_uwsgi_param_is_split_off_path_info(nginx):
    seen = json.loads(request(nginx, "GET", "/mounted/orders/7")[2])
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"]) == ("/mounted", "/orders/7")


def test_uwsgi_modifier1_30_as_flasks_deployment_docs_write_it(nginx):
    # Modifier 30 asks uWSGI to take SCRIPT_NAME off PATH_INFO: what we always do.
    status, _, body = request(nginx, "GET", "/flask-docs/orders/7")
    assert status == 200
    seen = json.loads(body)
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"]) == ("/flask-docs", "/orders/7")


def test_a_uwsgi_param_after_include_uwsgi_params_overrides_it(nginx):
    # nginx then sends the variable twice; the last one is the one configured, as in uWSGI.
    headers = [("X-Real-IP", "198.51.100.9")]
    seen = json.loads(request(nginx, "GET", "/overrides/", headers=headers)[2])
    assert seen["REMOTE_ADDR"] == "198.51.100.9"
    assert seen["HTTP_HOST"] == f"127.0.0.1:{nginx.port}"  # $http_host over the stock $host
    assert seen["REQUEST_SCHEME"] == "https" and seen["wsgi.url_scheme"] == "https"


def test_uwsgi_scheme_sets_the_url_scheme_as_in_uwsgi(nginx):
    seen = json.loads(request(nginx, "GET", "/scheme/")[2])
    assert seen["wsgi.url_scheme"] == "https"


def test_a_head_near_the_http_limits_fits_in_a_packet(nginx):
    # A 7000-byte query and 12 KB of headers pass the HTTP bind's limits (8190
    # for the request line, 16384 for the headers), but nginx sends the query
    # twice (REQUEST_URI and QUERY_STRING): the packet was refused with 431.
    query = "q=" + "x" * 7000
    headers = [(f"X-Big-{n}", "v" * 1000) for n in range(12)]
    status, _, body = request(nginx, "GET", f"/?{query}", headers=headers)
    assert status == 200
    assert json.loads(body)["QUERY_STRING"] == query


def test_a_large_post_body_arrives_whole(nginx):
    body = bytes(range(256)) * 40_000  # 10 MB
    status, _, answer = request(nginx, "POST", "/upload", body, [("Content-Type", "x/y")])
    assert status == 200
    assert answer.decode() == f"{len(body)} {hashlib.sha256(body).hexdigest()}"


def test_a_chunked_upload_arrives_with_its_length_and_no_transfer_encoding(nginx):
    # nginx reads a chunked body whole and sends it with CONTENT_LENGTH, but
    # passes the client's Transfer-Encoding on as HTTP_TRANSFER_ENCODING: the
    # app was told of a chunked body that is not, and werkzeug then gives no
    # content length (Flask's request.content_length was None).
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=30)
    try:
        conn.request("POST", "/framing", body=iter([b"01234", b"56789"]))
        response = conn.getresponse()
        status, answer = response.status, response.read()
    finally:
        conn.close()
    assert status == 200
    assert json.loads(answer) == ["10", None, 10, 10]


def test_repeated_headers_and_cookies_are_joined(nginx):
    headers = [("X-Tag", "a"), ("X-Tag", "b"), ("Cookie", "s=1"), ("Cookie", "t=2")]
    seen = json.loads(request(nginx, "GET", "/", headers=headers)[2])
    assert seen["HTTP_X_TAG"] == "a, b"
    assert seen["HTTP_COOKIE"] == "s=1; t=2"


def test_a_streamed_response_of_unknown_length_arrives_whole(nginx):
    status, headers, body = request(nginx, "GET", "/stream")
    assert status == 200 and "Content-Length" not in headers
    assert body == b"".join(b"line %d\n" % i for i in range(1000))


def test_an_app_error_is_a_500_and_the_next_request_is_served(nginx, caplog):
    caplog.set_level(logging.ERROR, logger="wsgistack.server")
    status, _, body = request(nginx, "GET", "/boom")
    assert status == 500 and b"the app failed" not in body
    assert any("the application raised" in r.getMessage() for r in caplog.records)
    assert request(nginx, "GET", "/after")[0] == 200


def test_many_requests_in_a_row_each_get_their_own_answer(nginx):
    for n in range(30):
        seen = json.loads(request(nginx, "GET", f"/n/{n}")[2])
        assert seen["PATH_INFO"] == f"/n/{n}"
    assert "upstream prematurely closed" not in nginx.error_log()


def test_a_response_cut_off_by_an_app_error_does_not_look_complete(nginx, caplog):
    # The body has no length, so it ends with the connection: a plain close
    # would tell nginx it was whole, and nginx would end its chunked answer
    # (and fill a uwsgi_cache) with a truncated body.
    caplog.set_level(logging.ERROR, logger="wsgistack.server")
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=30)
    try:
        conn.request("GET", "/cut")
        response = conn.getresponse()
        assert response.status == 200
        with pytest.raises(http.client.IncompleteRead):
            response.read()
    finally:
        conn.close()
    assert any("mid-body" in str(r.exc_info and r.exc_info[1]) for r in caplog.records)


def test_a_client_content_length_with_thousands_of_leading_zeros_is_served(nginx):
    # nginx accepts it and passes it on as written: it once ended our worker.
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=30)
    try:
        conn.putrequest("POST", "/upload", skip_accept_encoding=True)
        conn.putheader("Content-Length", "0" * 4999 + "5")
        conn.endheaders(b"hello")
        response = conn.getresponse()
        assert response.status == 200
        assert response.read().decode() == f"5 {hashlib.sha256(b'hello').hexdigest()}"
    finally:
        conn.close()
    assert request(nginx, "GET", "/after")[0] == 200


def test_a_header_nginx_lets_through_with_ignore_invalid_headers_off(server, tmp_path):
    # One odd header name (a token still) made every such request a 400.
    locations = f"""
    ignore_invalid_headers off;
    location / {{
      include {uwsgi_params()};
      uwsgi_pass 127.0.0.1:{server.addresses[0][1]};
    }}"""
    with Nginx(tmp_path, locations) as lenient:
        status = request(lenient, "GET", "/", headers=[("X-Tag!", "t")])[0]
    assert status == 200


def test_uwsgi_pass_to_an_http_bind_says_how_to_fix_it(tmp_path, caplog):
    # The likeliest mistake (a bind without uwsgi://) gave 400s and no warning.
    caplog.set_level(logging.WARNING, logger="wsgistack.server")
    with live_server(app) as http_only:
        locations = f"""
        location / {{
          include {uwsgi_params()};
          uwsgi_pass 127.0.0.1:{http_only.addresses[0][1]};
        }}"""
        with Nginx(tmp_path, locations) as misdirected:
            assert request(misdirected, "GET", "/")[0] == 400
    assert any(
        "uwsgi packet" in r.getMessage() and "uwsgi://" in r.getMessage() for r in caplog.records
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="nginx runs its workers as another user as root")
@pytest.mark.parametrize(("mode", "status"), [(None, 502), ("666", 200)])
def test_nginx_as_another_user_reaches_a_unix_socket_given_socket_mode(mode, status):
    # With the umask's mode (0755 here) nginx's workers, running as nobody as
    # www-data would, got EACCES on connect(): a 502 for every request.
    directory = Path(tempfile.mkdtemp(prefix="wsgistack-"))  # not under pytest's 0700 tmp
    try:
        directory.chmod(0o711)
        path = directory / "app.sock"
        locations = f"""
    location / {{
      include {uwsgi_params()};
      uwsgi_pass unix:{path};
    }}"""
        previous = os.umask(0o022)
        try:
            server = live_server(app, bind=f"uwsgi://unix:{path}", socket_mode=mode)
            with server, Nginx(directory, locations, user="nobody nogroup") as nginx:
                assert request(nginx, "GET", "/")[0] == status
        finally:
            os.umask(previous)
    finally:
        shutil.rmtree(directory)


def test_a_request_without_host_gets_urls_on_the_listeners_name(nginx):
    # This server block has no server_name: nginx sent SERVER_NAME and (Debian's
    # $host) HTTP_HOST empty, and the app built "http://:PORT/url" from them.
    with socket.create_connection(("127.0.0.1", nginx.port), timeout=30) as sock:
        sock.sendall(b"GET /url HTTP/1.0\r\n\r\n")
        answer = read_until_close(sock)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"\r\n\r\nhttp://127.0.0.1:%d/url" % nginx.port)


@pytest.mark.parametrize(
    ("path", "headers", "status", "logged"),
    [
        ("/" + "a" * 300, [], 414, "request line longer than --max-request-line (256 bytes)"),
        ("/", [(f"X-H{n}", "v") for n in range(6)], 431, "uwsgi: 7 header fields are over the"),
        ("/", [("X-Big", "v" * 1500)], 431, "uwsgi: 1526 bytes of header fields are over the 1024"),
        ("/" + "a" * 200, [(f"X-H{n}", "v") for n in range(4)], 200, None),
    ],
    ids=["request-line", "header-count", "header-size", "within"],
)
def test_the_parser_limits_given_on_the_command_line_apply_to_a_uwsgi_bind(
    serve, tmp_path, path, headers, status, logged
):
    # The packet's one size limit (twice the line plus the headers plus 4 KiB)
    # was all a uwsgi bind applied: with these flags, a 300-byte target, 7
    # header fields or a 1500-byte one reached the app, where HTTP says 414 or 431.
    server = serve(
        "--protocol", "uwsgi",
        "--max-request-line", "256",
        "--max-headers", "5",
        "--max-header-size", "1024",
    )  # fmt: skip
    locations = f"""
    location / {{
      include {uwsgi_params()};
      uwsgi_pass 127.0.0.1:{server.port};
    }}"""
    (tmp_path / "nginx").mkdir()
    with Nginx(tmp_path / "nginx", locations) as front:
        got, _, body = request(front, "GET", path, headers=headers)  # with Host: one field more
    assert got == status, body
    log = server.log.read_text()
    # The client's request over a limit: INFO, naming nginx's client, as the HTTP
    # bind says it; never "refused a uwsgi packet", a WARNING of a bad nginx setup.
    assert "refused a uwsgi packet" not in log
    if logged is not None:
        assert f"INFO request from 127.0.0.1: {logged}" in log, log
