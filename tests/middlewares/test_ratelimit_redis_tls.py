"""RedisStore over TLS (``rediss://``), as managed Redis needs it, against a real TLS redis-server.

The TLS options are redis-py's, given in the URL's query: ``ssl_ca_certs``
(the CA to trust), ``ssl_cert_reqs`` (``required`` by default, or ``none``),
``ssl_certfile``/``ssl_keyfile`` (a client certificate, when the server asks).
"""

from __future__ import annotations

import socket
from wsgiref.validate import validator

import pytest
import redis
from webtest import TestApp

from tests.conftest import hello_app
from wsgistack.middlewares import RateLimiter


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
