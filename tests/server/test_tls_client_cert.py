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
import time
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
    return client_certificate(
        tmp_path_factory.mktemp("awkward-client"), tls_files, AWKWARD_SUBJECT, ""
    )


#: A person's certificate as a company CA issues them: three OUs, a non-ASCII
#: CN, an Email field, a domainComponent (no key of its own in mod_ssl).
RICH_SUBJECT = (
    "/DC=example/C=DE/ST=Bayern/L=München/O=Example GmbH/OU=payments/OU=platform/OU=sre"
    "/CN=Zoë Dürr/title=Engineer/GN=Zoë/SN=Dürr/UID=zd7/emailAddress=zoe@example.com"
)
RICH_SANS = (
    "subjectAltName=DNS:billing.internal,DNS:billing-2.internal,email:zoe@example.com,"
    "URI:spiffe://example.org/ns/prod/sa/billing,IP:10.0.0.7,IP:2001:db8:0:0:0:0:0:7,"
    "otherName:msUPN;UTF8:zd7@example.com\n"
)


def client_certificate(directory: Path, tls_files, subject: str, extensions: str) -> tuple:
    """A client certificate from the session's CA for ``subject`` (cert, key), by openssl."""
    ca_dir = tls_files.ca.parent
    (directory / "client.ext").write_text("extendedKeyUsage=clientAuth\n" + extensions)
    openssl(
        *("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
        *("-keyout", str(directory / "client.key"), "-out", str(directory / "client.csr")),
        *("-utf8", "-multivalue-rdn", "-subj", subject),
    )
    openssl(
        *("x509", "-req", "-in", str(directory / "client.csr"), "-days", "2"),
        *("-CA", str(tls_files.ca), "-CAkey", str(ca_dir / "ca.key")),
        *("-set_serial", "0x0a1b2c3d4e5f60718293", "-extfile", str(directory / "client.ext")),
        *("-out", str(directory / "client.pem")),
    )
    return directory / "client.pem", directory / "client.key"


@pytest.fixture(scope="module")
def rich(tmp_path_factory, tls_files):
    """A client certificate with many subject fields and SANs of each kind (cert, key)."""
    directory = tmp_path_factory.mktemp("rich-client")
    return client_certificate(directory, tls_files, RICH_SUBJECT, RICH_SANS)


def ssl_keys_app(environ, start_response):
    """Answers the ``SSL_*`` keys of its environ, as JSON."""
    seen = {key: value for key, value in environ.items() if key.startswith("SSL_")}
    body = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


#: The keys of one field or SAN each (SSL_CLIENT_S_DN_CN...), not of the whole DN.
FIELD_KEYS = ("SSL_CLIENT_S_DN_", "SSL_CLIENT_I_DN_", "SSL_CLIENT_SAN_")


def picked(seen: dict, prefix: str) -> dict:
    """The keys of ``seen`` under ``prefix``, but for the fields' keys and the days left."""
    return {
        key: value
        for key, value in seen.items()
        if key.startswith(prefix) and not key.startswith((*FIELD_KEYS, "SSL_CLIENT_V_REMAIN"))
    }


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
    assert picked(first, "SSL_CLIENT_") == {
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
    assert [picked(keys, "SSL_CLIENT_") for keys in seen] == [{"SSL_CLIENT_VERIFY": "NONE"}] * 2
    assert not any(key.startswith("SSL_CLIENT_") and key != "SSL_CLIENT_VERIFY" for key in seen[0])
    assert seen[0]["SSL_PROTOCOL"] == "TLSv1.3"  # the connection's own keys, certificate or not


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


def wsgi(text: str) -> str:
    """``text`` as PEP 3333 carries it in an environ: its UTF-8 bytes, decoded latin-1."""
    return text.encode("utf-8").decode("latin-1")


def test_each_subject_field_and_san_has_its_mod_ssl_key(tls_files, rich):
    options = tls_options(tls_files, ca_certs=str(tls_files.ca), cert_reqs="required")
    with live_server(ssl_keys_app, **options) as server:
        first, second = ask(server.address, with_cert(tls_files, *rich), times=2)
    assert first == second
    fields = {key: value for key, value in first.items() if key.startswith(FIELD_KEYS)}
    assert fields == {
        # In the certificate's order; a second and third OU are _1 and _2.
        "SSL_CLIENT_S_DN_C": "DE",
        "SSL_CLIENT_S_DN_ST": "Bayern",
        "SSL_CLIENT_S_DN_L": wsgi("München"),
        "SSL_CLIENT_S_DN_O": "Example GmbH",
        "SSL_CLIENT_S_DN_OU": "payments",
        "SSL_CLIENT_S_DN_OU_1": "platform",
        "SSL_CLIENT_S_DN_OU_2": "sre",
        "SSL_CLIENT_S_DN_CN": wsgi("Zoë Dürr"),
        "SSL_CLIENT_S_DN_T": "Engineer",
        "SSL_CLIENT_S_DN_G": wsgi("Zoë"),
        "SSL_CLIENT_S_DN_S": wsgi("Dürr"),
        "SSL_CLIENT_S_DN_UID": "zd7",
        "SSL_CLIENT_S_DN_Email": "zoe@example.com",
        "SSL_CLIENT_I_DN_CN": "wsgistack test ca",
        # Numbered from 0 by kind; the msUPN otherName has no key (Python cannot read it).
        "SSL_CLIENT_SAN_DNS_0": "billing.internal",
        "SSL_CLIENT_SAN_DNS_1": "billing-2.internal",
        "SSL_CLIENT_SAN_Email_0": "zoe@example.com",
        "SSL_CLIENT_SAN_URI_0": "spiffe://example.org/ns/prod/sa/billing",
        "SSL_CLIENT_SAN_IP_0": "10.0.0.7",
        "SSL_CLIENT_SAN_IP_1": "2001:db8::7",
    }
    # The app gets the text back as under mod_wsgi; the whole DN stays RFC 4514's ASCII.
    assert first["SSL_CLIENT_S_DN_CN"].encode("latin-1").decode("utf-8") == "Zoë Dürr"
    assert first["SSL_CLIENT_S_DN"] == printed(rich[0], "subject")
    assert "CN=Zo\\C3\\AB D\\C3\\BCrr" in first["SSL_CLIENT_S_DN"]


def test_the_days_left_are_counted_as_mod_ssl_counts_them(tls_files, rich):
    # mod_ssl counts whole days from the request's second to a day past
    # notAfter: 2 for this certificate, which ends two days after the fixture
    # made it (3 within the second it was made; nginx's $ssl_client_v_remain
    # says 1).  Counted at the handshake, which happens between these two.
    end = ssl.cert_time_to_seconds(printed(rich[0], "enddate")) + 86400
    options = tls_options(tls_files, ca_certs=str(tls_files.ca), cert_reqs="required")
    with live_server(ssl_keys_app, **options) as server:
        before = int(time.time())
        (seen,) = ask(server.address, with_cert(tls_files, *rich))
        after = int(time.time())
    assert seen["SSL_CLIENT_V_REMAIN"] in {str((end - now) // 86400) for now in (before, after)}
    assert seen["SSL_CLIENT_V_REMAIN"] in ("2", "3")


def test_a_field_s_control_character_is_escaped_as_openssl_does(tls_files, tmp_path):
    cert, key = client_certificate(tmp_path, tls_files, "/CN=tab\there/description=a\x7fb", "")
    options = tls_options(tls_files, ca_certs=str(tls_files.ca), cert_reqs="required")
    with live_server(ssl_keys_app, **options) as server:
        (seen,) = ask(server.address, with_cert(tls_files, cert, key))
    assert seen["SSL_CLIENT_S_DN_CN"] == "tab\\09here"
    assert seen["SSL_CLIENT_S_DN_D"] == "a\\7Fb"


NGINX_MTLS = """
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_client_certificate {ca};
    ssl_verify_client on;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {{
      include {params};
      uwsgi_param SSL_CLIENT_VERIFY $ssl_client_verify;
      uwsgi_param SSL_CLIENT_S_DN $ssl_client_s_dn;
      uwsgi_param SSL_CLIENT_I_DN $ssl_client_i_dn;
      uwsgi_param SSL_CLIENT_M_SERIAL $ssl_client_serial;
      uwsgi_param SSL_CLIENT_V_START $ssl_client_v_start;
      uwsgi_param SSL_CLIENT_V_END $ssl_client_v_end;
      uwsgi_param SSL_CLIENT_CERT $ssl_client_raw_cert;
      uwsgi_param SSL_PROTOCOL $ssl_protocol;
      uwsgi_param SSL_CIPHER $ssl_cipher;
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
    assert len(behind_nginx) == 9  # every key nginx was told to pass, and no other
    assert behind_nginx == {key: ours[key] for key in behind_nginx}


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
