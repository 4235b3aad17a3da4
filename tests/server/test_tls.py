"""HTTPS in the reference server (--certfile and friends), over real sockets and real TLS.

The certificates are openssl's, made once per session by ``tls_files``
(tests/conftest.py): a CA, a server certificate for 127.0.0.1 and a client one.
"""

from __future__ import annotations

import http.client
import logging
import shutil
import signal
import socket
import ssl
from pathlib import Path

import flask
import pytest

from tests.redis_server import encrypt_key, make_certificates
from tests.server.live import live_server
from tests.server.served import deploy, poll, releases
from wsgistack.errors import ConfigError
from wsgistack.server.config import ServerConfig, layered_options


def scheme_app(environ, start_response):
    """Answers the scheme, HTTPS and the length of the body it read."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    chunked = environ.get("HTTP_TRANSFER_ENCODING") == "chunked"
    body = b"".join(environ["wsgi.input"]) if chunked else environ["wsgi.input"].read(length)
    text = f"{environ['wsgi.url_scheme']} {environ.get('HTTPS', '-')} {len(body)}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))])
    return [text]


def tls_options(files, **more):
    return {"certfile": str(files.server_cert), "keyfile": str(files.server_key), **more}


def client_context(files, cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(files.ca))
    if cert:
        context.load_cert_chain(str(files.client_cert), str(files.client_key))
    return context


def connect(server, files, cert: bool = False) -> ssl.SSLSocket:
    raw = socket.create_connection(server.address, timeout=10)
    try:
        return client_context(files, cert).wrap_socket(raw, server_hostname="127.0.0.1")
    except BaseException:
        raw.close()
        raise


def read_to_close(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_https_keeps_one_connection_alive_and_says_https(tls_files):
    with live_server(scheme_app, **tls_options(tls_files)) as server:
        assert server.url.startswith("https://127.0.0.1:")
        conn = http.client.HTTPSConnection(
            *server.address, context=client_context(tls_files), timeout=10
        )
        answers, sockets = [], set()
        for method, body in (("GET", None), ("POST", b"x" * 100_000), ("HEAD", None)):
            conn.request(method, "/", body=body)
            response = conn.getresponse()
            answers.append((response.status, response.read()))
            sockets.add(id(conn.sock))
        conn.close()
    assert answers == [(200, b"https on 0"), (200, b"https on 100000"), (200, b"")]
    assert len(sockets) == 1  # every request on the one TLS connection


def test_a_trusted_proxy_s_header_cannot_make_a_tls_request_http(tls_files):
    # 127.0.0.1 is in the default --forwarded-allow-ips: on plain HTTP its header counts.
    with live_server(scheme_app, **tls_options(tls_files)) as server:
        conn = http.client.HTTPSConnection(
            *server.address, context=client_context(tls_files), timeout=10
        )
        conn.request("GET", "/", headers={"X-Forwarded-Proto": "http"})
        assert conn.getresponse().read() == b"https on 0"
        conn.close()


def test_pipelined_requests_and_a_body_in_one_tls_record(tls_files):
    requests = (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
        + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" * 2
        + b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    with (
        live_server(scheme_app, **tls_options(tls_files)) as server,
        connect(server, tls_files) as sock,
    ):
        sock.sendall(requests)  # one write, well under 16 KiB: one TLS record
        data = read_to_close(sock)
    assert data.count(b"HTTP/1.1 200 OK") == 4
    assert data.count(b"https on 5") == 1 and data.count(b"https on 0") == 3


def test_a_chunked_upload_and_100_continue_over_tls(tls_files):
    head = (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
    )
    with (
        live_server(scheme_app, **tls_options(tls_files)) as server,
        connect(server, tls_files) as sock,
    ):
        sock.sendall(head)
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"4\r\nabcd\r\n" + b"3\r\nefg\r\n" + b"0\r\n\r\n")
        data = read_to_close(sock)
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"https on 7")


def test_a_large_file_wrapper_response_is_read_and_written(tls_files, tmp_path):
    content = bytes(range(256)) * 12_000  # 3 MB: sendfile() would bypass TLS
    path = tmp_path / "big.bin"
    path.write_bytes(content)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](path.open("rb"))

    # Not validated: wsgiref's validator hides the file wrapper behind its own iterator.
    with live_server(app, validate=False, **tls_options(tls_files)) as server:
        conn = http.client.HTTPSConnection(
            *server.address, context=client_context(tls_files), timeout=10
        )
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.getheader("Content-Length") == str(len(content))
        assert response.read() == content
        conn.request("GET", "/")  # and the connection goes on
        assert conn.getresponse().read() == content
        conn.close()


def test_plain_http_to_the_tls_port_gets_nginx_s_400(tls_files, caplog):
    caplog.set_level(logging.INFO, "wsgistack.server")
    with (
        live_server(scheme_app, **tls_options(tls_files)) as server,
        socket.create_connection(server.address, timeout=10) as sock,
    ):
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        data = read_to_close(sock)
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert data.endswith(b"The plain HTTP request was sent to HTTPS port\n")
    assert "plain HTTP from 127.0.0.1 to an HTTPS port, answered 400" in caplog.text


def test_a_handshake_that_stalls_is_closed_after_timeout(tls_files, caplog):
    caplog.set_level(logging.INFO, "wsgistack.server")
    with live_server(scheme_app, timeout=1, **tls_options(tls_files)) as server:
        with socket.create_connection(server.address, timeout=10) as sock:
            sock.sendall(b"\x16\x03\x01")  # a handshake record begun, never finished
            assert sock.recv(100) == b""  # closed by the server (bounded: timeout=10)
        # Meanwhile the worker's loop was free: another client is served.
        conn = http.client.HTTPSConnection(
            *server.address, context=client_context(tls_files), timeout=10
        )
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
        conn.close()
    assert "TLS handshake with 127.0.0.1: not done within --timeout (1 s), closed" in caplog.text
    assert "Traceback" not in caplog.text


def test_a_required_client_certificate(tls_files, caplog):
    caplog.set_level(logging.INFO, "wsgistack.server")
    options = tls_options(tls_files, ca_certs=str(tls_files.ca), cert_reqs="required")
    with live_server(scheme_app, **options) as server:
        with connect(server, tls_files, cert=True) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            assert read_to_close(sock).endswith(b"https on 0")
        # Without one: TLS 1.3 finishes the client's side first, then the server refuses.
        with (
            pytest.raises((ssl.SSLError, ConnectionResetError)),
            connect(server, tls_files) as sock,
        ):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            read_to_close(sock)
        poll(lambda: "TLS handshake with 127.0.0.1 failed" in caplog.text)
    failed = [r for r in caplog.records if "TLS handshake" in r.getMessage()]
    assert len(failed) == 1 and failed[0].levelno == logging.INFO
    assert "certificate" in failed[0].getMessage() and not failed[0].exc_info


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, tls_files):
    directory = tmp_path_factory.mktemp("bad-tls")
    (directory / "empty.pem").write_text("not a certificate\n")
    return {
        "missing": str(directory / "nowhere.pem"),
        "no_pem": str(directory / "empty.pem"),
        "encrypted": str(encrypt_key(tls_files.server_key, directory / "enc.key", "secret")),
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"certfile": "missing"}, "certfile: no such file: '"),
        ({"certfile": "no_pem"}, "certfile: '.*empty.pem': no PEM certificate in it"),
        ({"keyfile": "client_key"}, "keyfile: '.*client.key': not the key of the certificate"),
        ({"keyfile": "encrypted"}, "keyfile: '.*enc.key': the key is encrypted, and there is no"),
        ({"keyfile": "no_pem"}, "keyfile: '.*empty.pem': no PEM private key in it"),
        ({"keyfile": None}, r"certfile: '.*server.pem': no PEM private key in it \(give the key"),
        ({"cert_reqs": "required"}, "cert_reqs: 'required' needs ca_certs"),
        ({"ca_certs": "ca"}, "ca_certs: verifies client certificates, which cert_reqs 'none'"),
        ({"ca_certs": "no_pem", "cert_reqs": "optional"}, "ca_certs: '.*': no PEM certificate"),
        ({"cert_reqs": "yes"}, "cert_reqs: 'yes' is not one of none, optional, required"),
        ({"ciphers": "NOPE-NOTHING"}, "ciphers: no cipher matches 'NOPE-NOTHING'"),
        ({"certfile": None}, "keyfile: given without certfile"),
        ({"bind": "uwsgi://127.0.0.1:0"}, "certfile: TLS applies to http binds"),
    ],
    ids=[
        "missing-cert",
        "cert-no-pem",
        "key-mismatch",
        "key-encrypted",
        "key-no-pem",
        "cert-without-key",
        "cert-reqs-without-ca",
        "ca-without-cert-reqs",
        "ca-no-pem",
        "cert-reqs-name",
        "ciphers",
        "key-without-cert",
        "uwsgi-only",
    ],
)
def test_a_bad_tls_option_fails_at_start_naming_it(tls_files, bad_files, options, message):
    files = {"ca": str(tls_files.ca), "client_key": str(tls_files.client_key), **bad_files}
    given = tls_options(tls_files)
    for name, value in options.items():
        given[name] = files.get(value, value) if isinstance(value, str) else value
    given = {name: value for name, value in given.items() if value is not None}
    with pytest.raises(ConfigError, match=f"^{message}"):
        ServerConfig.from_options(**given)


def test_a_server_table_s_bad_tls_option_names_the_file(tls_files):
    table = {"certfile": str(tls_files.server_cert), "cert_reqs": "required"}
    with pytest.raises(ConfigError, match=r"^stack.toml: \[server\]: cert_reqs: 'required' needs"):
        layered_options(table, "stack.toml: [server]")


def seen_certificate(port: int) -> bytes:
    """The certificate the server shows now (DER), not verified: only compared."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw) as sock,
    ):
        return sock.getpeercert(binary_form=True)


def der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def test_sighup_loads_a_renewed_certificate_and_refuses_a_broken_one(serve, tmp_path, tls_files):
    (tmp_path / "renewed").mkdir()
    renewed = make_certificates(tmp_path / "renewed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(tls_files.server_cert, cert)
    shutil.copy(tls_files.server_key, key)
    server = serve("--certfile", str(cert), "--keyfile", str(key))
    assert "listening on https://127.0.0.1:" in server.log.read_text()
    assert seen_certificate(server.port) == der(tls_files.server_cert)
    shutil.copy(renewed.server_cert, cert)  # certbot renewed it
    shutil.copy(renewed.server_key, key)
    server.proc.send_signal(signal.SIGHUP)
    poll(lambda: seen_certificate(server.port) == der(renewed.server_cert))
    key.write_text("half a renewal\n")
    server.proc.send_signal(signal.SIGHUP)
    poll(lambda: "reload refused" in server.log.read_text())
    assert "keyfile: " in server.log.read_text()
    assert seen_certificate(server.port) == der(renewed.server_cert)  # the old workers serve on


def test_flask_builds_https_urls(tls_files):
    app = flask.Flask(__name__)

    @app.route("/here")
    def here():
        return flask.url_for("here", _external=True)

    with live_server(app, **tls_options(tls_files)) as server:
        conn = http.client.HTTPSConnection(
            *server.address, context=client_context(tls_files), timeout=10
        )
        conn.request("GET", "/here")
        body = conn.getresponse().read().decode()
        conn.close()
    assert body == f"https://127.0.0.1:{server.address[1]}/here"


def test_sighup_after_a_deploy_reads_the_new_release_s_certificate(serve, tmp_path, tls_files):
    # --chdir in a `current` symlink whose stack.toml names its certificate
    # relatively: after the deploy switched the link, SIGHUP's new workers run
    # the new release, and the master must read that release's certificate,
    # not the one of the release it started in (its own working directory).
    (tmp_path / "renewed").mkdir()
    renewed = make_certificates(tmp_path / "renewed")

    def release(directory: Path, name: str) -> None:
        files = tls_files if name == "one" else renewed
        shutil.copy(files.server_cert, directory / "cert.pem")
        shutil.copy(files.server_key, directory / "key.pem")
        shutil.copy(tmp_path / "slowapp.py", directory / "slowapp.py")
        (directory / "stack.toml").write_text(
            '[app]\nuse = "slowapp:app"\n\n[server]\ncertfile = "cert.pem"\nkeyfile = "key.pem"\n'
        )

    current = releases(tmp_path, release)
    server = serve("--chdir", str(current), target=("--config", str(current / "stack.toml")))
    assert seen_certificate(server.port) == der(tls_files.server_cert)
    deploy(current, "two")
    server.proc.send_signal(signal.SIGHUP)
    poll(lambda: "reload done" in server.log.read_text())
    assert seen_certificate(server.port) == der(renewed.server_cert)


def test_a_handshake_cut_short_by_a_stop_is_logged_as_such(tls_files, caplog):
    # A stop gives a handshake under way the grace an unfinished request head
    # gets; its line says the stop ended it, as the head's does, not --timeout.
    caplog.set_level(logging.INFO, "wsgistack.server")
    with (
        live_server(scheme_app, **tls_options(tls_files)) as server,
        socket.create_connection(server.address, timeout=10) as sock,
    ):
        sock.sendall(b"\x16\x03\x01")  # a handshake record begun, never finished
        poll(lambda: len(server._worker.handshakes))  # accepted, its handshake under way
        server.stop()
        assert sock.recv(100) == b""  # closed by the stop (bounded: timeout=10)
    assert "TLS handshake with 127.0.0.1: not done as the worker stopped, closed" in caplog.text
    assert "--timeout" not in caplog.text
