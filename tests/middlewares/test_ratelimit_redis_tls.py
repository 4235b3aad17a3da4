"""RedisStore over TLS (``rediss://``), as managed Redis needs it, against a real TLS redis-server.

The TLS options are redis-py's, given in the URL's query: ``ssl_ca_certs``
(the CA to trust), ``ssl_cert_reqs`` (``required`` by default, or ``none``),
``ssl_certfile``/``ssl_keyfile`` (a client certificate, when the server asks).
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from wsgiref.validate import validator

import pytest
import redis
from webtest import TestApp

from tests.conftest import hello_app
from tests.redis_server import TLSFiles, encrypt_key
from wsgistack.errors import ConfigError
from wsgistack.middlewares import RateLimiter
from wsgistack.middlewares.ratelimit import RedisStore


def hits(layer: RateLimiter, client: str, times: int) -> list[int]:
    app = TestApp(validator(layer))
    return [
        app.get("/", extra_environ={"REMOTE_ADDR": client}, expect_errors=True).status_int
        for _ in range(times)
    ]


def test_a_rediss_url_trusting_the_ca_counts_and_refuses(tls_redis, caplog):
    layer = RateLimiter(validator(hello_app), "2/minute", store=tls_redis.url)
    assert hits(layer, "192.0.2.10", 3) == [200, 200, 429]
    assert [r for r in caplog.records if r.levelname == "WARNING"] == []
    with redis.Redis.from_url(tls_redis.url) as admin:
        assert admin.keys("wsgistack:rl:*192.0.2.10*")  # the count landed, over TLS
    layer.close()


def test_ssl_cert_reqs_none_skips_the_certificate_check(tls_redis, caplog):
    # A self-signed managed endpoint, trusted by choice: no CA given.
    url = f"rediss://127.0.0.1:{tls_redis.port}/0?ssl_cert_reqs=none"
    layer = RateLimiter(validator(hello_app), "2/minute", store=url)
    assert hits(layer, "192.0.2.11", 3) == [200, 200, 429]
    assert [r for r in caplog.records if r.levelname == "WARNING"] == []
    layer.close()


def test_a_client_certificate_in_the_url_is_presented(tls_redis_client_certificates, caplog):
    layer = RateLimiter(validator(hello_app), "2/minute", store=tls_redis_client_certificates.url)
    assert hits(layer, "192.0.2.12", 3) == [200, 200, 429]
    assert [r for r in caplog.records if r.levelname == "WARNING"] == []
    layer.close()


@pytest.fixture
def silent_peer():
    """A TCP listener that accepts (in the kernel's backlog) and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def _failing_urls(request) -> dict[str, str]:
    """Store URLs that reach a TLS Redis (or a silent peer) but can never talk to it."""
    files = request.getfixturevalue("tls_files")
    port = request.getfixturevalue("tls_redis").port
    demanding = request.getfixturevalue("tls_redis_client_certificates").port
    silent = request.getfixturevalue("silent_peer")
    return {
        # The server's certificate chains to a CA the client was not told to trust.
        "untrusted-ca": f"rediss://:s3cret@127.0.0.1:{port}/0?ssl_ca_certs={files.other_ca}",
        # The certificate names 127.0.0.1, not localhost.
        "wrong-host-name": f"rediss://:s3cret@localhost:{port}/0?ssl_ca_certs={files.ca}",
        # Plain RESP to a TLS port: the server drops the connection.
        "plain-to-tls": f"redis://:s3cret@127.0.0.1:{port}/0",
        # The server demands a client certificate the URL does not give.
        "no-client-certificate": (
            f"rediss://:s3cret@127.0.0.1:{demanding}/0?ssl_ca_certs={files.ca}"
        ),
        # A peer that never answers the TLS handshake: bounded by the store's timeout.
        "silent-handshake": f"rediss://:s3cret@127.0.0.1:{silent}/0?ssl_ca_certs={files.ca}",
    }


@pytest.mark.parametrize(
    "case",
    [
        "untrusted-ca",
        "wrong-host-name",
        "plain-to-tls",
        "no-client-certificate",
        "silent-handshake",
    ],
)
@pytest.mark.parametrize(("fail", "status"), [("open", 200), ("closed", 503)])
def test_a_tls_store_that_cannot_connect_is_a_store_failure(request, caplog, case, fail, status):
    url = _failing_urls(request)[case]
    layer = RateLimiter(validator(hello_app), "1/minute", store=url, fail=fail)
    app = TestApp(validator(layer))
    responses = [
        app.get("/", extra_environ={"REMOTE_ADDR": "192.0.2.13"}, expect_errors=True)
        for _ in range(2)
    ]
    assert [r.status_int for r in responses] == [status, status]  # the policy, never a 500
    assert not any(b"Traceback" in r.body or b"s3cret" in r.body for r in responses)
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    shown = url.replace(":s3cret@", ":***@")
    assert f"store failed (Redis at {shown}:" in warning
    assert "s3cret" not in warning
    layer.close()


@pytest.fixture
def odd_files(tmp_path, tls_files) -> dict[str, Path]:
    """Files that exist but are no use as they are named: not PEM, encrypted, combined."""
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    combined = tmp_path / "client-and-key.pem"
    combined.write_text(tls_files.client_cert.read_text() + tls_files.client_key.read_text())
    return {
        "junk": junk,
        "encrypted": encrypt_key(tls_files.client_key, tmp_path / "encrypted.key", "pw0rd"),
        "combined": combined,
    }


def _bad_tls_queries(files: TLSFiles, odd: dict[str, Path]) -> dict[str, tuple[str, str]]:
    """The query of a rediss:// URL, and what start-up says about it."""
    cert, key, junk = files.client_cert, files.client_key, odd["junk"]
    return {
        "ca-not-pem": (f"ssl_ca_certs={junk}", f"ssl_ca_certs: '{junk}': no PEM certificate"),
        "ca-is-a-key": (f"ssl_ca_certs={key}", f"ssl_ca_certs: '{key}': no PEM certificate"),
        "cert-not-pem": (
            f"ssl_certfile={junk}&ssl_keyfile={key}",
            f"ssl_certfile: '{junk}': no PEM certificate",
        ),
        "key-not-pem": (
            f"ssl_certfile={cert}&ssl_keyfile={junk}",
            f"ssl_keyfile: '{junk}': no PEM private key in it",
        ),
        "key-of-another-certificate": (
            f"ssl_certfile={cert}&ssl_keyfile={files.server_key}",
            f"ssl_keyfile: '{files.server_key}': not the key of the certificate in '{cert}'",
        ),
        "key-needs-a-password": (
            f"ssl_certfile={cert}&ssl_keyfile={odd['encrypted']}",
            f"ssl_keyfile: '{odd['encrypted']}': the key is encrypted: give its password "
            f"as ssl_password",
        ),
        "wrong-password": (
            f"ssl_certfile={cert}&ssl_keyfile={odd['encrypted']}&ssl_password=n0pe",
            f"ssl_password: does not decrypt '{odd['encrypted']}'",
        ),
        "certificate-without-its-key": (
            f"ssl_certfile={cert}",
            f"ssl_certfile: '{cert}': no PEM private key in it (give the key as ssl_keyfile)",
        ),
        "key-without-certificate": (
            f"ssl_keyfile={key}",
            "ssl_keyfile: needs ssl_certfile, the certificate it is for",
        ),
        "ca-data-not-pem": ("ssl_ca_data=junk", "ssl_ca_data: no certificate in it"),
        "ciphers": (
            "ssl_ciphers=NO-SUCH-CIPHER",
            "ssl_ciphers: no cipher matches 'NO-SUCH-CIPHER'",
        ),
        "min-version": ("ssl_min_version=99", "ssl_min_version: Unsupported TLS/SSL version"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "ca-not-pem",
        "ca-is-a-key",
        "cert-not-pem",
        "key-not-pem",
        "key-of-another-certificate",
        "key-needs-a-password",
        "wrong-password",
        "certificate-without-its-key",
        "key-without-certificate",
        "ca-data-not-pem",
        "ciphers",
        "min-version",
    ],
)
def test_a_tls_file_redis_py_cannot_load_fails_at_start_up(tls_files, odd_files, case):
    # Each was taken, and every connection then failed before its handshake: at
    # the first request, after the deploy (fail="open": no limit at all).  The
    # port is closed: the files are checked without connecting.
    query, message = _bad_tls_queries(tls_files, odd_files)[case]
    url = f"rediss://:s3cret@127.0.0.1:1/0?{query}"
    shown = url.replace(":s3cret@", ":***@")
    with pytest.raises(ConfigError, match=re.escape(f"store: {shown!r}: {message}")) as caught:
        RateLimiter(hello_app, "1/minute", store=url)
    assert "\n" not in str(caught.value) and "s3cret" not in str(caught.value)


@pytest.mark.parametrize("case", ["encrypted-key-and-password", "certificate-and-key-in-one"])
def test_client_certificates_redis_py_accepts_pass_the_check(
    tls_redis_client_certificates, tls_files, odd_files, case
):
    # The check loads what redis-py loads: an encrypted key with ssl_password,
    # and a certificate file holding its key too, reach the server and count.
    query = {
        "encrypted-key-and-password": (
            f"ssl_certfile={tls_files.client_cert}&ssl_keyfile={odd_files['encrypted']}"
            f"&ssl_password=pw0rd"
        ),
        "certificate-and-key-in-one": f"ssl_certfile={odd_files['combined']}",
    }[case]
    port = tls_redis_client_certificates.port
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={tls_files.ca}&{query}"
    layer = RateLimiter(
        validator(hello_app), "2/minute", store=url, fail="closed", key="header:X-Case"
    )
    app = TestApp(validator(layer))
    statuses = [
        app.get("/", headers={"X-Case": case}, expect_errors=True).status_int for _ in range(3)
    ]
    assert statuses == [200, 200, 429]  # fail="closed": a failing store would be 503s
    layer.close()


def test_a_tls_client_passed_in_with_a_file_it_cannot_load_fails_at_start_up(tls_files, odd_files):
    # A redis.Redis(ssl=True, ...) connects at its first command: a CA file with
    # no certificate in it failed every check, from the first request on.
    import redis

    junk = odd_files["junk"]
    with redis.Redis(host="127.0.0.1", port=1, ssl=True, ssl_ca_certs=str(junk)) as client:
        message = (
            f"RedisStore: the client Redis(127.0.0.1:1/0): ssl_ca_certs: '{junk}': "
            f"no PEM certificate in it"
        )
        with pytest.raises(ConfigError, match=re.escape(message)):
            RateLimiter(hello_app, "1/minute", store=RedisStore(client))
