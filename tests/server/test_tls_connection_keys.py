"""How a client connected: mod_ssl's SSL_PROTOCOL, SSL_CIPHER*, SSL_SESSION_*, SSL_TLS_SNI.

Real TLS clients (Python's ``ssl``, curl) against the server on port 0; the
certificates are the session's (``tls_files``, tests/conftest.py).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import ssl
import subprocess
from typing import NamedTuple

import pytest

from tests.redis_server import OPENSSL

from .live import live_server
from .served import poll
from .test_tls import client_context, read_to_close, tls_options

#: Over TLS 1.2 the client picks the cipher, to know its name and bits.
TLS12_CIPHERS = [
    ("ECDHE-ECDSA-AES128-GCM-SHA256", "128"),
    ("ECDHE-ECDSA-CHACHA20-POLY1305", "256"),
]

TLS_KEYS_APP = """
import json, os
from wsgiref.validate import validator


@validator
def app(environ, start_response):
    seen = {key: value for key, value in environ.items() if key.startswith("SSL_")}
    seen["pid"] = os.getpid()
    body = json.dumps(seen).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    start_response("200 OK", headers)
    return [body]
"""


def tls_keys_app(environ, start_response):
    """Answers ``HTTPS``, the scheme and the ``SSL_*`` keys of its environ, as JSON."""
    seen = {key: value for key, value in environ.items() if key.startswith("SSL_")}
    seen["HTTPS"] = environ.get("HTTPS", "-")
    seen["wsgi.url_scheme"] = environ["wsgi.url_scheme"]
    body = json.dumps(seen).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    start_response("200 OK", headers)
    return [body]


class Client(NamedTuple):
    """What the client's side saw of a connection, kept before its close."""

    cipher: str
    session: ssl.SSLSession | None
    resumed: bool


def get(
    port: int,
    context: ssl.SSLContext,
    server_hostname: str = "127.0.0.1",
    session: ssl.SSLSession | None = None,
) -> tuple[dict, Client]:
    """GET / on a new TLS connection, read to its close: the app's keys, the client's view."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with context.wrap_socket(raw, server_hostname=server_hostname, session=session) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        answer = read_to_close(sock)  # a TLS 1.3 ticket arrives with the answer
        client = Client(sock.cipher()[0], sock.session, sock.session_reused)
    return json.loads(answer.partition(b"\r\n\r\n")[2]), client


def test_tls_1_3_names_the_protocol_and_cipher_as_mod_ssl(tls_files):
    with live_server(tls_keys_app, **tls_options(tls_files)) as server:
        seen, client = get(server.address[1], client_context(tls_files))
    assert re.fullmatch("[0-9a-f]{64}", seen.pop("SSL_SESSION_ID"))  # OpenSSL names it
    assert seen == {
        "HTTPS": "on",
        "wsgi.url_scheme": "https",
        "SSL_PROTOCOL": "TLSv1.3",
        "SSL_CIPHER": "TLS_AES_256_GCM_SHA384",
        "SSL_CIPHER_USEKEYSIZE": "256",
        "SSL_CIPHER_ALGKEYSIZE": "256",
        "SSL_SESSION_RESUMED": "Initial",
        "SSL_CLIENT_VERIFY": "NONE",
    }  # and no SSL_TLS_SNI: a client sends none for an address
    assert seen["SSL_CIPHER"] == client.cipher  # the name the client agreed on


@pytest.mark.parametrize(("cipher", "bits"), TLS12_CIPHERS)
def test_tls_1_2_names_the_cipher_openssl_s_way(tls_files, cipher, bits):
    context = client_context(tls_files)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(cipher)
    with live_server(tls_keys_app, **tls_options(tls_files)) as server:
        seen, _ = get(server.address[1], context)
    assert seen["SSL_PROTOCOL"] == "TLSv1.2"
    assert seen["SSL_CIPHER"] == cipher
    assert seen["SSL_CIPHER_USEKEYSIZE"] == seen["SSL_CIPHER_ALGKEYSIZE"] == bits


def test_the_server_s_ciphers_option_shows_in_the_cipher_key(tls_files):
    options = tls_options(tls_files, ciphers="ECDHE-ECDSA-CHACHA20-POLY1305")
    context = client_context(tls_files)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with live_server(tls_keys_app, **options) as server:
        seen, _ = get(server.address[1], context)
    assert seen["SSL_CIPHER"] == "ECDHE-ECDSA-CHACHA20-POLY1305"


def test_sni_is_the_name_the_client_asked_for_and_absent_without(tls_files):
    named = client_context(tls_files)
    named.check_hostname = False  # the test certificate is for 127.0.0.1 only
    with live_server(tls_keys_app, **tls_options(tls_files)) as server:
        port = server.address[1]
        tenant_a, _ = get(port, named, server_hostname="tenant-a.example.com")
        tenant_b, _ = get(port, named, server_hostname="Tenant-B.Example.com")
        by_address, _ = get(port, client_context(tls_files))  # no SNI for an IP address
    assert tenant_a["SSL_TLS_SNI"] == "tenant-a.example.com"
    assert tenant_b["SSL_TLS_SNI"] == "Tenant-B.Example.com"  # as sent, as mod_ssl gives it
    assert "SSL_TLS_SNI" not in by_address


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_s_sni_and_tls_1_2(tls_files):
    with live_server(tls_keys_app, **tls_options(tls_files)) as server:
        port = server.address[1]
        out = subprocess.run(
            [
                *("curl", "--silent", "--show-error", "--max-time", "10"),
                *("--cacert", str(tls_files.ca), "--insecure", "--tls-max", "1.2"),
                *("--resolve", f"shop.example.org:{port}:127.0.0.1"),
                f"https://shop.example.org:{port}/",
            ],
            check=True,
            capture_output=True,
            timeout=20,
        ).stdout
    seen = json.loads(out)
    assert seen["SSL_TLS_SNI"] == "shop.example.org"
    assert seen["SSL_PROTOCOL"] == "TLSv1.2"


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"]
)
def test_a_resumed_session_says_resumed(tls_files, version):
    context = client_context(tls_files)
    context.maximum_version = version
    with live_server(tls_keys_app, **tls_options(tls_files)) as server:
        port = server.address[1]
        first, client = get(port, context)
        again, resumed = get(port, context, session=client.session)
        fresh, _ = get(port, context)  # no session offered: a full handshake
    assert resumed.resumed  # the client's side agrees
    assert [first["SSL_SESSION_RESUMED"], again["SSL_SESSION_RESUMED"]] == ["Initial", "Resumed"]
    assert fresh["SSL_SESSION_RESUMED"] == "Initial"


def test_tls_1_2_shows_the_session_id_the_client_resumes_with(tls_files):
    # A full TLS 1.2 handshake that hands out a ticket keeps no id on the
    # server's side, and mod_ssl sets no empty variable; the resumption shows
    # the id the client sent with its ticket, as mod_ssl's SSL_SESSION_ID.
    context = client_context(tls_files)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with live_server(tls_keys_app, **tls_options(tls_files)) as server:
        first, client = get(server.address[1], context)
        again, _ = get(server.address[1], context, session=client.session)
    assert "SSL_SESSION_ID" not in first
    assert client.session is not None
    assert again["SSL_SESSION_ID"] == client.session.id.hex()


def test_the_session_id_is_the_connection_s_for_each_of_its_requests(tls_files):
    request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    with (
        live_server(tls_keys_app, **tls_options(tls_files)) as server,
        socket.create_connection(server.address, timeout=10) as raw,
        client_context(tls_files).wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        file = sock.makefile("rb")
        ids = []
        for _ in range(2):
            sock.sendall(request)
            length = 0
            while (line := file.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            ids.append(json.loads(file.read(length))["SSL_SESSION_ID"])
        file.close()
        other, _ = get(server.address[1], client_context(tls_files))
    assert ids[0] == ids[1]
    assert other["SSL_SESSION_ID"] != ids[0]  # a new connection, a new session


def test_workers_forked_from_one_master_resume_each_other_s_sessions(serve, tmp_path, tls_files):
    # The ticket keys are the context's, which the master made before the fork.
    (tmp_path / "tlskeys.py").write_text(TLS_KEYS_APP)
    server = serve(
        *("--workers", "2", "--threads", "1"),
        *("--certfile", str(tls_files.server_cert), "--keyfile", str(tls_files.server_key)),
        target=("tlskeys:app",),
    )
    context = client_context(tls_files)
    first, client = get(server.port, context)
    elsewhere = []  # answers of the other worker, to a session the first one made
    for _ in range(40):  # bounded: the kernel hands connections to either worker
        seen, _ = get(server.port, context, session=client.session)
        assert seen["SSL_SESSION_RESUMED"] == "Resumed"
        if seen["pid"] != first["pid"]:
            elsewhere.append(seen)
            break
    assert first["SSL_SESSION_RESUMED"] == "Initial"
    assert elsewhere, "the other worker took none of 40 connections"


def test_a_server_name_that_is_not_ascii_is_refused_in_one_log_line(serve, tmp_path, tls_files):
    # RFC 6066 3: a HostName is ASCII, and CPython hands sni_callback no other:
    # the handshake fails.  Its report is the server's line, nothing on stderr.
    (tmp_path / "tlskeys.py").write_text(TLS_KEYS_APP)
    server = serve(
        *("--certfile", str(tls_files.server_cert), "--keyfile", str(tls_files.server_key)),
        target=("tlskeys:app",),
    )
    name = "\u00e9.example".encode()  # UTF-8 bytes, as openssl sends them
    subprocess.run(
        [OPENSSL, "s_client", "-connect", f"127.0.0.1:{server.port}", "-servername", name],
        input=b"",
        capture_output=True,
        timeout=20,
    )
    refused = "TLS handshake with 127.0.0.1 failed: "
    line = poll(lambda: next((x for x in server.log.read_text().splitlines() if refused in x), ""))
    assert line.endswith(refused + "the server name it sent (SNI) is not ASCII (RFC 6066)")
    seen, _ = get(server.port, client_context(tls_files))  # the worker serves on
    assert seen["SSL_CLIENT_VERIFY"] == "NONE"
    assert "Traceback" not in server.log.read_text()  # (the log holds standard error too)
