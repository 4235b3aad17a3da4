"""LoadBalancer to https:// upstreams: session reuse, the protocol floor and the ciphers.

Counted on the upstream's side: each good handshake, and whether it resumed a
session (the server's ``session_reused``).  ``max_idle=0`` closes each
connection after its response, so every request opens a new one.  The
certificates' keys are EC (P-256): the TLS 1.2 suites named are ECDSA ones.
"""

from __future__ import annotations

import logging
import re
import ssl
from wsgiref.validate import validator

import pytest
from paste.deploy import loadapp
from webtest import TestApp

from tests.processes import in_a_child
from wsgistack.errors import ConfigError
from wsgistack.middlewares import LoadBalancer
from wsgistack.pipeline import build_pipeline


def client(app) -> TestApp:
    return TestApp(validator(app))


def tls12_only(context: ssl.SSLContext, ciphers: str | None = None) -> ssl.SSLContext:
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    if ciphers is not None:
        context.set_ciphers(ciphers)
    return context


@pytest.fixture
def fresh_context(tls_files):
    """fresh_context(): a new server context for the same certificate (new ticket keys)."""

    def make() -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls_files.server_cert, tls_files.server_key)
        return context

    return make


@pytest.mark.parametrize("version", ["TLSv1.3", "TLSv1.2"])
def test_each_new_connection_resumes_the_upstreams_last_session(
    trusting, tls_upstream, fresh_context, version
):
    context = fresh_context() if version == "TLSv1.3" else tls12_only(fresh_context())
    upstream = tls_upstream(context=context)
    balancer = trusting([upstream.url], max_idle=0)
    for _ in range(4):
        assert client(balancer).get("/").text.startswith("tls GET")
    assert upstream.versions == [version] * 4
    assert (upstream.handshakes, upstream.resumed) == (4, 3)  # a full one, then resumed


def test_with_session_reuse_off_every_handshake_is_a_full_one(trusting, tls_upstream):
    upstream = tls_upstream()
    balancer = trusting([upstream.url], max_idle=0, tls_session_reuse=False)
    for _ in range(3):
        client(balancer).get("/")
    assert (upstream.handshakes, upstream.resumed) == (3, 0)


def test_a_session_the_restarted_upstream_does_not_know_falls_back_to_a_full_handshake(
    trusting, tls_upstream, fresh_context, caplog
):
    upstream = tls_upstream()
    balancer = trusting([upstream.url], max_idle=0)
    client(balancer).get("/")
    upstream.context = fresh_context()  # restarted: new session ticket keys
    with caplog.at_level(logging.WARNING, "wsgistack.forward"):
        assert client(balancer).get("/").status_int == 200
        assert client(balancer).get("/").status_int == 200
    assert not caplog.records
    assert (upstream.handshakes, upstream.resumed) == (3, 1)  # full, full, then the new one's
    assert balancer.status()[0]["up"] is True


def test_a_session_offered_to_a_handshake_that_failed_is_offered_no_more(
    trusting, tls_upstream, fresh_context, caplog
):
    # The upstream turns TLS 1.2-only for a moment (a bad deploy): the handshake
    # that offered the session fails.  Back to its old context, which would
    # still resume that session, the next handshake is a full one all the same.
    upstream = tls_upstream()
    known = upstream.context
    balancer = trusting([upstream.url], max_idle=0, max_fails=0, tls_min_version="TLSv1.3")
    client(balancer).get("/")
    upstream.context = tls12_only(fresh_context())
    with caplog.at_level(logging.WARNING, "wsgistack.forward"):
        client(balancer).get("/", status=502)
    assert "TLS handshake with 127.0.0.1 failed" in caplog.text
    upstream.context = known
    client(balancer).get("/")
    client(balancer).get("/")  # and the session of that full one resumes again
    assert (upstream.handshakes, upstream.resumed) == (3, 1)
    row = balancer.status()[0]
    assert (row["tls_full_handshakes"], row["tls_resumed_handshakes"]) == (2, 1)


def test_the_status_counts_full_and_resumed_handshakes_per_https_upstream(
    lb, trusting, tls_upstream
):
    upstream = tls_upstream()
    balancer = trusting([upstream.url], max_idle=0)
    for _ in range(3):
        client(balancer).get("/")
    row = balancer.status()[0]
    assert (row["tls_full_handshakes"], row["tls_resumed_handshakes"]) == (1, 2)
    assert row["connections_made"] == 3
    plain = lb(["http://127.0.0.1:9"]).status()[0]  # no TLS: no such counts
    assert "tls_full_handshakes" not in plain and "tls_resumed_handshakes" not in plain


def test_a_session_is_kept_per_upstream_never_offered_to_another(trusting, tls_upstream):
    # Both upstreams share one server context, so each would accept the other's
    # session: only the forwarder keeping them apart makes b's first one full.
    a, b = tls_upstream("a"), tls_upstream("b")
    balancer = trusting([a.url, b.url], max_idle=0)
    answered = [client(balancer).get("/").headers["X-Upstream"] for _ in range(4)]
    assert answered == ["a", "b", "a", "b"]
    assert (a.handshakes, a.resumed, b.handshakes, b.resumed) == (2, 1, 2, 1)


def test_health_checks_resume_the_session_too(trusting, tls_upstream):
    upstream = tls_upstream()
    balancer = trusting([upstream.url], health_path="/health")
    balancer.check_now()
    balancer.check_now()
    assert (upstream.handshakes, upstream.resumed) == (2, 1)


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_worker_resumes_the_session_its_parent_kept(trusting, tls_upstream):
    # gunicorn --preload: the pool is built, and may have forwarded, before the
    # fork.  The session is data, not a socket: each worker's first connection
    # resumes it (the parent's pooled connection itself is never shared).
    upstream = tls_upstream()
    balancer = trusting([upstream.url])
    client(balancer).get("/")
    assert in_a_child(lambda: client(balancer).get("/").status_int == 200) == 0
    assert (upstream.handshakes, upstream.resumed) == (2, 1)


def test_a_tls13_floor_refuses_a_tls12_upstream_and_the_next_one_answers(
    trusting, tls_upstream, fresh_context, caplog
):
    old = tls_upstream("old", context=tls12_only(fresh_context()))
    alone = trusting([old.url], tls_min_version="TLSv1.3")
    with caplog.at_level(logging.WARNING, "wsgistack.forward"):
        client(alone).get("/", status=502)
    assert f"upstream {old.url} failed (error)" in caplog.text
    assert "TLS handshake with 127.0.0.1 failed" in caplog.text
    assert not old.requests
    new = tls_upstream("new")
    pool = trusting([old.url, new.url], tls_min_version="TLSv1.3")
    assert {client(pool).get("/").headers["X-Upstream"] for _ in range(2)} == {"new"}
    assert new.versions == ["TLSv1.3"]


def test_a_tls12_floor_speaks_tls13_where_the_upstream_can(trusting, tls_upstream):
    upstream = tls_upstream()
    client(trusting([upstream.url], tls_min_version="TLSv1.2")).get("/")
    assert upstream.versions == ["TLSv1.3"]


def test_tls_ciphers_the_upstream_lacks_are_a_502(trusting, tls_upstream, fresh_context, caplog):
    upstream = tls_upstream(context=tls12_only(fresh_context(), "ECDHE-ECDSA-AES256-GCM-SHA384"))
    lacking = trusting([upstream.url], tls_ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    with caplog.at_level(logging.WARNING, "wsgistack.forward"):
        client(lacking).get("/", status=502)
    assert "TLS handshake with 127.0.0.1 failed" in caplog.text
    assert not upstream.requests
    shared = trusting([upstream.url], tls_ciphers="ECDHE-ECDSA-AES256-GCM-SHA384:!aNULL")
    assert client(shared).get("/").status_int == 200


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            {"tls_session_reuse": "no"}, "tls_session_reuse: expected true or false", id="reuse"
        ),
        pytest.param(
            {"tls_min_version": "TLSv1.1"},
            "tls_min_version: expected 'TLSv1.2' or 'TLSv1.3', got 'TLSv1.1'",
            id="min-version-too-low",
        ),
        pytest.param(
            {"tls_min_version": 1.3},
            "tls_min_version: expected 'TLSv1.2' or 'TLSv1.3', got 1.3",
            id="min-version-a-number",
        ),
        pytest.param(
            {"tls_ciphers": "NO-SUCH-CIPHER"},
            "tls_ciphers: no cipher matches 'NO-SUCH-CIPHER'",
            id="ciphers-match-nothing",
        ),
        pytest.param(
            {"tls_ciphers": "TLS_AES_128_GCM_SHA256"},  # a TLS 1.3 suite: not set by this
            "tls_ciphers: no cipher matches 'TLS_AES_128_GCM_SHA256'",
            id="ciphers-of-tls13",
        ),
        pytest.param(
            {"tls_ciphers": ""}, "tls_ciphers: expected an OpenSSL cipher list", id="ciphers-empty"
        ),
        pytest.param(
            {"tls_ciphers": ["ECDHE+AESGCM"]},
            "tls_ciphers: expected an OpenSSL cipher list",
            id="ciphers-a-list",
        ),
        pytest.param(
            {"tls_ciphers": "ECDHE+AESGCM", "tls_min_version": "TLSv1.3"},
            "tls_ciphers: has no use with tls_min_version='TLSv1.3'",
            id="ciphers-with-tls13-floor",
        ),
    ],
)
def test_a_bad_tls_protocol_option_fails_at_start_up_naming_it(options, message):
    with pytest.raises(ConfigError, match="LoadBalancer: " + re.escape(message)):
        LoadBalancer(["https://127.0.0.1:8443"], **options)


@pytest.mark.parametrize("option", ["tls_min_version", "tls_ciphers"])
def test_a_tls_protocol_option_with_no_https_upstream_is_refused(option):
    value = {"tls_min_version": "TLSv1.3", "tls_ciphers": "ECDHE+AESGCM"}[option]
    with pytest.raises(ConfigError, match=f"LoadBalancer: {option}: no upstream is https://"):
        LoadBalancer(["http://127.0.0.1:8000"], **{option: value})


def test_the_options_from_a_paste_ini(tls_files, tls_upstream, tmp_path):
    upstream = tls_upstream()
    ini = tmp_path / "site.ini"
    ini.write_text(
        "[app:main]\nuse = egg:wsgistack#load_balance\n"
        f'upstreams = ["{upstream.url}"]\ntls_ca_certs = {tls_files.ca}\nmax_idle = 0\n'
        "tls_session_reuse = false\ntls_min_version = TLSv1.3\n"
    )
    app = client(loadapp(f"config:{ini}"))
    for _ in range(2):
        app.get("/")
    assert (upstream.handshakes, upstream.resumed) == (2, 0)
    assert upstream.versions == ["TLSv1.3"] * 2


def test_the_options_from_a_toml_pipeline(tls_files, tls_upstream, fresh_context):
    upstream = tls_upstream(context=tls12_only(fresh_context(), "ECDHE-ECDSA-AES256-GCM-SHA384"))
    options = {"upstreams": [upstream.url], "tls_ca_certs": str(tls_files.ca)}
    options["tls_ciphers"] = "ECDHE-ECDSA-AES128-GCM-SHA256"
    app = build_pipeline({"app": {"use": "load_balance", **options}})
    client(app).get("/", status=502)
    with pytest.raises(
        ConfigError, match=re.escape("tls_min_version: expected 'TLSv1.2' or 'TLSv1.3'")
    ):
        build_pipeline({"app": {"use": "load_balance", **options, "tls_min_version": "1.3"}})
