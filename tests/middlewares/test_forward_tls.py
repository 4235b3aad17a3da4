"""LoadBalancer to https:// upstreams: real TLS servers on loopback, certificates from openssl.

The certificates are the Redis TLS tests' (``tls_files``): the server's names
only 127.0.0.1, so ``localhost`` is a wrong name for it; ``other_ca`` signed nothing.
"""

from __future__ import annotations

import logging
import re
import select
import socket
import ssl
import subprocess
import threading
from wsgiref.validate import validator

import pytest
from webtest import TestApp

from tests.redis_server import OPENSSL, encrypt_key
from tests.server.live import live_server, post_chunked
from wsgistack import describe
from wsgistack.errors import ConfigError
from wsgistack.middlewares import LoadBalancer


def client(app) -> TestApp:
    return TestApp(validator(app))


def test_a_get_and_a_streamed_post_go_through_with_their_headers_and_bodies(trusting, tls_upstream):
    upstream = tls_upstream()
    balancer = trusting([upstream.url], preserve_host=False)
    got = client(balancer).get("/a/b?q=1", headers={"X-Custom": "kept"})
    assert got.text == "tls GET /a/b?q=1 0\n"
    assert got.headers["X-Upstream"] == "tls"
    body = bytes(range(256)) * 1000
    with live_server(balancer, threads=2) as front:
        blocks = (body[i : i + 10000] for i in range(0, len(body), 10000))
        posted = post_chunked(front.address, "/upload", blocks)
    assert posted == (200, f"tls POST /upload {len(body)}\n".encode() + body)
    (_, _, sent, _), (_, _, posted_headers, received) = upstream.requests
    assert received == body
    assert sent["Host"] == f"127.0.0.1:{upstream.port}"  # the upstream's, as its URL names it
    assert sent["X-Custom"] == "kept"
    assert sent["X-Forwarded-Proto"] == "http"  # the client's scheme, not the hop's
    assert posted_headers["Transfer-Encoding"] == "chunked"
    assert balancer.status()[0]["url"] == upstream.url
    assert f"https://127.0.0.1:{upstream.port}" in describe(balancer)


def test_http_and_https_upstreams_mix_in_one_pool(trusting, tls_upstream, upstreams):
    secure, plain = tls_upstream("secure"), upstreams.start("plain")
    balancer = trusting([secure.url, {"url": plain, "weight": 1}])
    answered = {client(balancer).get("/").text.split()[0] for _ in range(4)}
    assert answered == {"secure", "plain"}


def test_keep_alive_tls_connections_are_reused(trusting, tls_upstream):
    upstream = tls_upstream()
    balancer = trusting([upstream.url])
    for _ in range(4):
        client(balancer).get("/")
    client(balancer).post("/", b"x" * 100)
    assert upstream.handshakes == 1
    assert balancer.status()[0]["connections_made"] == 1


def test_a_tls_record_with_no_data_does_not_make_an_idle_connection_look_dead(
    trusting, tls_upstream
):
    # A connection fresh from its handshake has TLS 1.3 session tickets unread:
    # the socket is readable, yet nothing is there for a response's reader
    # (as with a key update or a late ticket on a connection in the pool).
    upstream = tls_upstream()
    balancer = trusting([upstream.url])
    (pooled,) = balancer.upstreams
    sock = pooled.connect(3.0)
    assert select.select([sock], [], [], 10)[0]  # the tickets are in
    pooled.give_back(sock, balancer.clock())
    assert client(balancer).get("/").text.startswith("tls GET")
    assert upstream.handshakes == 1


def test_decrypted_bytes_waiting_in_openssl_make_an_idle_connection_dirty(
    trusting, tls_upstream, server_context
):
    # Unasked-for bytes the TLS layer already holds are invisible to poll(2):
    # reused, they would be read as the next request's response.
    listener = socket.create_server(("127.0.0.1", 0))
    balancer = trusting([f"https://127.0.0.1:{listener.getsockname()[1]}"])
    (pooled,) = balancer.upstreams
    accepted: list[ssl.SSLSocket] = []
    thread = threading.Thread(
        target=lambda: accepted.append(
            server_context.wrap_socket(listener.accept()[0], server_side=True)
        )
    )
    thread.start()
    try:
        sock = pooled.connect(3.0)
        thread.join(10)
        accepted[0].sendall(b"HTTP/1.1 200 OK\r\n")  # one record
        assert sock.recv(1) == b"H"  # the rest of the record waits in OpenSSL
        pooled.give_back(sock, balancer.clock())
        assert pooled.take_idle(balancer.clock(), 30.0) is None
    finally:
        for conn in accepted:
            conn.close()
        listener.close()


def test_an_untrusted_certificate_is_a_502_and_the_next_upstream_answers(
    lb, tls_files, tls_upstream, upstreams, caplog
):
    secure = tls_upstream()
    alone = lb([secure.url], tls_ca_certs=str(tls_files.other_ca))
    with caplog.at_level(logging.WARNING, "wsgistack.forward"):
        assert client(alone).get("/", status=502).status_int == 502
    assert "certificate verify failed" in caplog.text
    plain = upstreams.start("plain")
    pool = lb([secure.url, plain], tls_ca_certs=str(tls_files.other_ca), max_fails=1)
    assert client(pool).post("/", b"body").text == "plain / 4"  # any method: nothing was sent
    assert not secure.requests
    assert [row["up"] for row in pool.status()] == [False, True]  # counted by max_fails


def test_the_system_store_is_trusted_by_default(lb, tls_upstream):
    upstream = tls_upstream()
    assert client(lb([upstream.url])).get("/", status=502).status_int == 502
    assert not upstream.requests


@pytest.mark.parametrize(
    ("host", "server_name", "status"),
    [
        pytest.param("localhost", None, 502, id="url-names-another-host"),
        pytest.param("127.0.0.1", "localhost", 502, id="server-name-another-host"),
        pytest.param("localhost", "127.0.0.1", 200, id="server-name-the-certificates"),
    ],
)
def test_the_certificate_must_name_the_server_name(
    trusting, tls_upstream, host, server_name, status, caplog
):
    upstream = tls_upstream()
    balancer = trusting([f"https://{host}:{upstream.port}"], tls_server_name=server_name)
    with caplog.at_level(logging.WARNING, "wsgistack.forward"):
        client(balancer).get("/", status=status)
    if status == 502:
        assert "certificate verify failed" in caplog.text
        assert not upstream.requests


def test_tls_verify_false_trusts_any_certificate_and_says_so(lb, tls_upstream, caplog):
    upstream = tls_upstream()
    with caplog.at_level(logging.WARNING, "wsgistack.forward"):
        balancer = lb([f"https://localhost:{upstream.port}"], tls_verify=False)
    assert "tls_verify=False" in caplog.text
    assert client(balancer).get("/").text.startswith("tls GET")
    assert "tls_verify=False" in repr(balancer)


@pytest.fixture
def mtls_context(server_context, tls_files) -> ssl.SSLContext:
    server_context.verify_mode = ssl.CERT_REQUIRED
    server_context.load_verify_locations(cafile=tls_files.ca)
    return server_context


def test_an_upstream_asking_for_a_client_certificate_gets_it(
    trusting, tls_upstream, mtls_context, tls_files
):
    upstream = tls_upstream(context=mtls_context)
    balancer = trusting(
        [upstream.url],
        tls_certfile=str(tls_files.client_cert),
        tls_keyfile=str(tls_files.client_key),
    )
    assert client(balancer).get("/").text.startswith("tls GET")


def test_without_the_client_certificate_an_upstream_asking_for_one_is_a_502(
    trusting, tls_upstream, mtls_context, caplog
):
    upstream = tls_upstream(context=mtls_context)
    with caplog.at_level(logging.WARNING, "wsgistack.forward"):
        client(trusting([upstream.url])).get("/", status=502)
    # TLS 1.3: the server checks the client's certificate after the client's
    # handshake is done, so the refusal comes as the answer (an alert, or the end).
    (line,) = [r.getMessage() for r in caplog.records if "failed (error)" in r.getMessage()]
    assert line.startswith(f"upstream {upstream.url} failed (error)")
    # The alert in words, as the server says a client's ("TLS error: bad record mac"),
    # or, when the upstream closes instead, that it did; and when it came (as the
    # request went out, or after).
    assert re.search(
        r": (TLS error: [a-z0-9 ]+|the upstream (closed|reset) the connection)"
        r" (while sending the request|while reading the response head|before the response head)\Z",
        line,
    ), line
    assert not upstream.requests


def test_a_handshake_that_never_finishes_is_a_504_within_connect_timeout(trusting, caplog):
    listener = socket.create_server(("127.0.0.1", 0))  # the kernel accepts; nothing answers
    try:
        balancer = trusting([f"https://127.0.0.1:{listener.getsockname()[1]}"], connect_timeout=0.2)
        with caplog.at_level(logging.WARNING, "wsgistack.forward"):
            assert client(balancer).get("/", status=504).status_int == 504
        # Which step, and which timeout ran out: not Python's "_ssl.c:983: The
        # handshake operation timed out".
        assert "failed (timeout) for GET / from -: TLS handshake with 127.0.0.1" in (caplog.text)
        assert "TLS handshake with 127.0.0.1 timed out (connect_timeout 0.2 s)\n" in caplog.text
    finally:
        listener.close()


def test_an_upstream_speaking_plain_http_on_an_https_url_is_a_502(trusting, upstreams, caplog):
    plain = upstreams.start("plain")  # the reference server: it answers the hello 400
    balancer = trusting([plain.replace("http://", "https://")])
    with caplog.at_level(logging.WARNING, "wsgistack.forward"):
        client(balancer).get("/", status=502)
    # OpenSSL's reason in words, as the server's own lines say it, and the hint
    # (3.0 says "wrong version number"; later versions name the record otherwise).
    (line,) = [r.getMessage() for r in caplog.records if "TLS handshake" in r.getMessage()]
    assert re.search(
        r"TLS handshake with 127\.0\.0\.1 failed: [a-z0-9 ]+ "
        r"\(does it speak plain HTTP on that port\?\)\Z",
        line,
    ), line
    assert not upstreams.received


def test_a_protocol_the_upstream_refuses_is_logged_in_openssl_s_words(
    trusting, tls_upstream, server_context, caplog
):
    # The line kept OpenSSL's tag: "failed: [SSL: TLSV1_ALERT_PROTOCOL_VERSION] tlsv1
    # alert protocol version", where the server says "failed: unsupported protocol".
    server_context.maximum_version = ssl.TLSVersion.TLSv1_2
    upstream = tls_upstream(context=server_context)
    with caplog.at_level(logging.WARNING, "wsgistack.forward"):
        client(trusting([upstream.url], tls_min_version="TLSv1.3")).get("/", status=502)
    (line,) = [r.getMessage() for r in caplog.records if "TLS handshake" in r.getMessage()]
    assert line.endswith(": TLS handshake with 127.0.0.1 failed: tlsv1 alert protocol version")
    assert not upstream.requests


def test_an_upstream_that_leaves_mid_handshake_closed_the_connection(trusting, caplog):
    # It read "EOF occurred in violation of protocol", as the server's line for a
    # client that leaves reads "the client closed the connection".
    listener = socket.create_server(("127.0.0.1", 0))

    def read_the_hello_and_leave() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            conn.recv(65536)  # the ClientHello
            conn.shutdown(socket.SHUT_WR)  # a FIN, no close_notify
            while conn.recv(65536):  # read to the client's close: no reset
                pass

    thread = threading.Thread(target=read_the_hello_and_leave)
    thread.start()
    try:
        balancer = trusting([f"https://127.0.0.1:{listener.getsockname()[1]}"])
        with caplog.at_level(logging.WARNING, "wsgistack.forward"):
            client(balancer).get("/", status=502)
    finally:
        thread.join(10)
        listener.close()
    assert "TLS handshake with 127.0.0.1 failed: the upstream closed the connection" in (
        caplog.text
    )


def test_read_timeout_holds_over_tls(trusting, tls_upstream):
    # OpenSSL retried the kernel's receive timeout on a blocking socket: the
    # forwarder waited for the answer however late it came.
    upstream = tls_upstream()
    balancer = trusting([upstream.url], read_timeout=0.3)
    assert client(balancer).get("/stall", status=504).status_int == 504


def test_a_pooled_connection_the_upstream_closed_is_not_used_for_a_post(trusting, tls_upstream):
    upstream = tls_upstream()
    balancer = trusting([upstream.url])
    client(balancer).get("/bye")  # answered, then a close_notify on a keep-alive connection
    assert client(balancer).post("/", b"once").text == "tls POST / 4\nonce"
    assert [request[0] for request in upstream.requests] == ["GET", "POST"]
    assert upstream.handshakes == 2


def test_a_location_naming_the_https_upstream_is_mapped_back(trusting, tls_upstream):
    upstream = tls_upstream()
    balancer = trusting([upstream.url], preserve_host=False)
    answer = client(balancer).get("/redirect", extra_environ={"SCRIPT_NAME": "/pool"})
    assert answer.headers["Location"] == "/pool/landed"


def test_health_checks_over_tls_take_an_upstream_out_and_bring_it_back(trusting, tls_upstream):
    a, b = tls_upstream("a"), tls_upstream("b")
    balancer = trusting([a.url, b.url], health_path="/health", health_rise=1)
    a.status = 503
    balancer.check_now()
    assert [row["up"] for row in balancer.status()] == [False, True]
    assert {client(balancer).get("/").text.split()[0] for _ in range(3)} == {"b"}
    a.status = 200
    balancer.check_now()
    assert [row["up"] for row in balancer.status()] == [True, True]


def test_a_health_check_verifies_the_certificate(lb, tls_files, tls_upstream):
    upstream = tls_upstream()
    balancer = lb([upstream.url], tls_ca_certs=str(tls_files.other_ca), health_path="/health")
    balancer.check_now()
    assert balancer.status()[0]["up"] is False
    assert not upstream.requests


# -- options ---------------------------------------------------------------------------
def _bad_options(files, tmp_path) -> dict[str, tuple[dict, str]]:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    cert, key = str(files.client_cert), str(files.client_key)
    encrypted = encrypt_key(files.client_key, tmp_path / "encrypted.key", "pw0rd")
    missing = str(tmp_path / "missing.pem")
    return {
        "ca-missing": ({"tls_ca_certs": missing}, f"tls_ca_certs: no such file: '{missing}'"),
        "ca-not-pem": ({"tls_ca_certs": str(junk)}, f"tls_ca_certs: '{junk}': no PEM certificate"),
        "cert-not-pem": (
            {"tls_certfile": str(junk), "tls_keyfile": key},
            f"tls_certfile: '{junk}': no PEM certificate",
        ),
        "key-missing": (
            {"tls_certfile": cert, "tls_keyfile": missing},
            f"tls_keyfile: no such file: '{missing}'",
        ),
        "key-of-another-certificate": (
            {"tls_certfile": cert, "tls_keyfile": str(files.server_key)},
            f"tls_keyfile: '{files.server_key}': not the key of the certificate in '{cert}'",
        ),
        "key-without-certificate": (
            {"tls_keyfile": key},
            "tls_keyfile: needs tls_certfile, the certificate it is for",
        ),
        "encrypted-key-no-password": (
            {"tls_certfile": cert, "tls_keyfile": str(encrypted)},
            "the key is encrypted: give its password as tls_password",
        ),
        "encrypted-key-wrong-password": (
            {"tls_certfile": cert, "tls_keyfile": str(encrypted), "tls_password": "n0pe"},
            "tls_password: does not decrypt",
        ),
        "server-name-with-port": (
            {"tls_server_name": "api.internal:443"},
            "tls_server_name: expected a host name or an IP address",
        ),
        "verify-not-a-flag": ({"tls_verify": "no"}, "tls_verify: expected true or false"),
        "ca-with-verify-off": (
            {"tls_verify": False, "tls_ca_certs": str(files.ca)},
            "tls_ca_certs: has no use with tls_verify=False",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "ca-missing",
        "ca-not-pem",
        "cert-not-pem",
        "key-missing",
        "key-of-another-certificate",
        "key-without-certificate",
        "encrypted-key-no-password",
        "encrypted-key-wrong-password",
        "server-name-with-port",
        "verify-not-a-flag",
        "ca-with-verify-off",
    ],
)
def test_a_bad_tls_option_fails_at_start_up_naming_it(tls_files, tmp_path, case):
    options, message = _bad_options(tls_files, tmp_path)[case]
    with pytest.raises(ConfigError, match="LoadBalancer: .*" + re.escape(message)):
        LoadBalancer(["https://127.0.0.1:8443"], **options)


def test_the_encrypted_keys_password_is_used(tls_files, tmp_path, tls_upstream, mtls_context, lb):
    upstream = tls_upstream(context=mtls_context)
    encrypted = encrypt_key(tls_files.client_key, tmp_path / "encrypted.key", "pw0rd")
    balancer = lb(
        [upstream.url],
        tls_ca_certs=str(tls_files.ca),
        tls_certfile=str(tls_files.client_cert),
        tls_keyfile=str(encrypted),
        tls_password="pw0rd",
    )
    assert client(balancer).get("/").text.startswith("tls GET")


def test_a_ca_directory_is_trusted(lb, tls_files, tmp_path, tls_upstream):
    (tmp_path / "ca.pem").write_bytes(tls_files.ca.read_bytes())
    subprocess.run([OPENSSL, "rehash", str(tmp_path)], check=True, capture_output=True)
    upstream = tls_upstream()
    assert client(lb([upstream.url], tls_ca_certs=str(tmp_path))).get("/").status_int == 200


def test_tls_files_with_no_https_upstream_are_refused(tls_files):
    with pytest.raises(ConfigError, match="LoadBalancer: tls_ca_certs: no upstream is https://"):
        LoadBalancer(["http://127.0.0.1:8000"], tls_ca_certs=str(tls_files.ca))


def test_an_https_url_with_no_port_means_443():
    (upstream,) = LoadBalancer(["https://api.example/v1"]).upstreams
    assert (upstream.scheme, upstream.port, upstream.host_header) == ("https", 443, "api.example")
