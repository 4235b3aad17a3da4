"""Who a verified client certificate names: the ``SSL_CLIENT_*`` keys, over real TLS.

The values are checked against what openssl itself prints for the same file
(``-nameopt RFC2253``, ``-serial``, ``-enddate``), and against what a real
nginx terminating the same mutual TLS sends over a uwsgi bind.
"""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
from pathlib import Path

import flask
import pytest

from tests.redis_server import OPENSSL

from .live import RawClient, live_server, uwsgi_packet
from .nginx import Nginx, free_port, uwsgi_params
from .test_tls import client_context, tls_options

#: A subject that needs every RFC 4514 escape: leading and trailing space,
#: a leading "#", each of , + " \ < > ;, a byte over 0x7F and a multi-valued RDN.
AWKWARD_SUBJECT = (
    '/C=DE/L=Zürich/O=Acme\\, Inc. <ops>;x=y/OU=#team+UID=svc\\+7/CN= billing "v2" \\\\ edge '
)


def openssl(*args: str) -> str:
    return subprocess.run([OPENSSL, *args], check=True, capture_output=True, text=True).stdout


def printed(cert: Path, what: str) -> str:
    """What ``openssl x509 -noout -<what>`` prints for ``cert``, after its ``name=``."""
    line = openssl("x509", "-in", str(cert), "-noout", f"-{what}", "-nameopt", "RFC2253")
    return line.strip().partition("=")[2]


@pytest.fixture(scope="module")
def awkward(tmp_path_factory, tls_files):
    """A client certificate from the session's CA whose subject needs escaping (cert, key)."""
    directory = tmp_path_factory.mktemp("awkward-client")
    ca_dir = tls_files.ca.parent
    (directory / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    openssl(
        *("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
        *("-keyout", str(directory / "client.key"), "-out", str(directory / "client.csr")),
        *("-utf8", "-multivalue-rdn", "-subj", AWKWARD_SUBJECT),
    )
    openssl(
        *("x509", "-req", "-in", str(directory / "client.csr"), "-days", "2"),
        *("-CA", str(tls_files.ca), "-CAkey", str(ca_dir / "ca.key")),
        *("-set_serial", "0x0a1b2c3d4e5f60718293", "-extfile", str(directory / "client.ext")),
        *("-out", str(directory / "client.pem")),
    )
    return directory / "client.pem", directory / "client.key"


def ssl_keys_app(environ, start_response):
    """Answers the ``SSL_*`` keys of its environ, as JSON."""
    seen = {key: value for key, value in environ.items() if key.startswith("SSL_")}
    body = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def ask(address, context: ssl.SSLContext | None, times: int = 1, headers=None) -> list[dict]:
    """GET / ``times`` on one connection (HTTPS with ``context``); the keys each time."""
    if context is None:
        conn: http.client.HTTPConnection = http.client.HTTPConnection(*address, timeout=10)
    else:
        conn = http.client.HTTPSConnection(*address, context=context, timeout=10)
    seen, sockets = [], set()
    try:
        for _ in range(times):
            conn.request("GET", "/", headers=headers or {})
            seen.append(json.loads(conn.getresponse().read()))
            sockets.add(id(conn.sock))
    finally:
        conn.close()
    assert len(sockets) == 1  # kept alive: the keys are the connection's
    return seen


def with_cert(tls_files, cert: Path, key: Path) -> ssl.SSLContext:
    context = client_context(tls_files)
    context.load_cert_chain(str(cert), str(key))
    return context


@pytest.mark.parametrize("which", ["plain", "awkward"])
@pytest.mark.parametrize("cert_reqs", ["required", "optional"])
def test_a_verified_client_certificate_is_named_on_every_request(
    tls_files, awkward, which, cert_reqs
):
    cert, key = awkward if which == "awkward" else (tls_files.client_cert, tls_files.client_key)
    options = tls_options(tls_files, ca_certs=str(tls_files.ca), cert_reqs=cert_reqs)
    with live_server(ssl_keys_app, **options) as server:
        first, second = ask(server.address, with_cert(tls_files, cert, key), times=2)
    assert first == second
    assert first == {
        "SSL_CLIENT_VERIFY": "SUCCESS",
        "SSL_CLIENT_S_DN": printed(cert, "subject"),
        "SSL_CLIENT_I_DN": printed(cert, "issuer"),
        "SSL_CLIENT_M_SERIAL": printed(cert, "serial"),
        "SSL_CLIENT_V_START": printed(cert, "startdate"),
        "SSL_CLIENT_V_END": printed(cert, "enddate"),
        "SSL_CLIENT_CERT": cert.read_text(),
    }


def test_the_awkward_subject_is_escaped_as_rfc_4514_says(tls_files, awkward):
    # The same string openssl printed above, written out: a reader sees each escape.
    options = tls_options(tls_files, ca_certs=str(tls_files.ca), cert_reqs="required")
    with live_server(ssl_keys_app, **options) as server:
        (seen,) = ask(server.address, with_cert(tls_files, *awkward))
    assert seen["SSL_CLIENT_S_DN"] == (
        'CN=\\ billing \\"v2\\" \\\\ edge\\ ,UID=svc\\+7+OU=\\#team,'
        "O=Acme\\, Inc. \\<ops\\>\\;x=y,L=Z\\C3\\BCrich,C=DE"
    )
    assert seen["SSL_CLIENT_M_SERIAL"] == "0A1B2C3D4E5F60718293"


def test_optional_without_a_certificate_says_none_and_nothing_else(tls_files):
    options = tls_options(tls_files, ca_certs=str(tls_files.ca), cert_reqs="optional")
    # A client's header cannot pose as the server's key (it becomes HTTP_SSL_CLIENT_VERIFY).
    forged = {"SSL-Client-Verify": "SUCCESS", "SSL-Client-S-DN": "CN=admin"}
    with live_server(ssl_keys_app, **options) as server:
        seen = ask(server.address, client_context(tls_files), times=2, headers=forged)
    assert seen == [{"SSL_CLIENT_VERIFY": "NONE"}] * 2


def test_plain_http_binds_have_no_ssl_keys():
    with live_server(ssl_keys_app) as server:
        (seen,) = ask(server.address, None, headers={"SSL-Client-Verify": "SUCCESS"})
    assert seen == {}


def test_a_flask_view_authorises_by_the_subject(tls_files, awkward):
    app = flask.Flask(__name__)

    @app.route("/whoami")
    def whoami():
        return flask.request.environ["SSL_CLIENT_S_DN"]

    options = tls_options(tls_files, ca_certs=str(tls_files.ca), cert_reqs="required")
    with live_server(app, **options) as server:
        conn = http.client.HTTPSConnection(
            *server.address, context=with_cert(tls_files, *awkward), timeout=10
        )
        conn.request("GET", "/whoami")
        body = conn.getresponse().read().decode()
        conn.close()
    assert body == printed(awkward[0], "subject")


NGINX_MTLS = """
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_client_certificate {ca};
    ssl_verify_client on;
    location / {{
      include {params};
      uwsgi_param SSL_CLIENT_VERIFY $ssl_client_verify;
      uwsgi_param SSL_CLIENT_S_DN $ssl_client_s_dn;
      uwsgi_param SSL_CLIENT_I_DN $ssl_client_i_dn;
      uwsgi_param SSL_CLIENT_M_SERIAL $ssl_client_serial;
      uwsgi_param SSL_CLIENT_V_START $ssl_client_v_start;
      uwsgi_param SSL_CLIENT_V_END $ssl_client_v_end;
      uwsgi_param SSL_CLIENT_CERT $ssl_client_raw_cert;
      uwsgi_pass 127.0.0.1:{upstream};
    }}
  }}
"""


def test_nginx_s_variables_pass_a_uwsgi_bind_as_sent_and_match_our_own(
    tmp_path, tls_files, awkward
):
    # The uwsgi bind trusts nginx: its SSL_CLIENT_* params arrive as sent, the
    # PEM's line breaks too, and they read as our own TLS bind's keys.
    options = tls_options(tls_files, ca_certs=str(tls_files.ca), cert_reqs="required")
    context = with_cert(tls_files, *awkward)
    with live_server(ssl_keys_app, bind=["uwsgi://127.0.0.1:0"]) as upstream:
        tls_port = free_port()
        server_block = NGINX_MTLS.format(
            port=tls_port,
            cert=tls_files.server_cert,
            key=tls_files.server_key,
            ca=tls_files.ca,
            params=uwsgi_params(),
            upstream=upstream.addresses[0][1],
        )
        with Nginx(tmp_path, "", http_extra=server_block):
            (behind_nginx,) = ask(("127.0.0.1", tls_port), context)
    with live_server(ssl_keys_app, **options) as server:
        (ours,) = ask(server.address, context)
    assert behind_nginx == ours


@pytest.mark.parametrize(
    ("key", "value", "status"),
    [
        ("SSL_CLIENT_CERT", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", 200),
        ("SSL_CLIENT_CERT", "-----BEGIN CERTIFICATE-----\r\nMIIB\r\n", 400),
        ("SSL_CLIENT_S_DN", "CN=a\nCN=b", 400),
    ],
    ids=["pem-lines", "pem-with-cr", "lf-elsewhere"],
)
def test_a_uwsgi_bind_takes_a_pem_s_line_breaks_and_no_others(key, value, status):
    variables = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/", "PATH_INFO": "/", key: value}
    with (
        live_server(ssl_keys_app, bind="uwsgi://127.0.0.1:0") as server,
        RawClient(server.addresses[0]) as client,
    ):
        client.send(uwsgi_packet(variables))
        answer_status, _, body = client.response()
    assert answer_status == status
    if status == 200:
        assert json.loads(body) == {key: value}
