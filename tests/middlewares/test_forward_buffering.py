"""LoadBalancer's request_buffering: a chunked upload read whole, then sent with a length.

Django reads no body without CONTENT_LENGTH (under any WSGI server but waitress), so a
chunked upload streamed to it as it came arrives empty; nginx's default
(``proxy_request_buffering on``) sends a length instead, and so does this option.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import tempfile
import tracemalloc
from wsgiref.validate import validator

import pytest
import webob
from paste.deploy import loadapp
from webtest import TestApp

from tests.djangoapp import application as django_app
from tests.server.live import RawClient, live_server, post_chunked, read_until_close
from wsgistack import build_pipeline
from wsgistack.errors import ConfigError
from wsgistack.middlewares import LoadBalancer


@pytest.mark.parametrize(
    ("buffering", "seen"),
    [
        pytest.param(
            True, lambda data: (len(data), str(len(data)), None), id="buffered-arrives-whole"
        ),
        # Today's default, kept on purpose: the README warns of it.
        pytest.param(False, lambda data: (0, None, "chunked"), id="streamed-arrives-empty"),
    ],
)
def test_a_chunked_upload_to_a_real_django_upstream(lb, upstreams, buffering, seen):
    url = upstreams.start("django", django_app)
    data = b"".join(b"line %d of the upload\n" % n for n in range(2000))
    balancer = lb([url], request_buffering=buffering)
    with live_server(balancer, threads=2) as front:
        status, body = post_chunked(
            front.address, "/body/", (data[i : i + 1000] for i in range(0, len(data), 1000))
        )
    assert status == 200
    answer = json.loads(body)
    assert (answer["size"], answer["content_length"], answer["transfer_encoding"]) == seen(data)
    if buffering:
        assert answer["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_buffered_upload_goes_out_with_a_length_and_no_transfer_encoding(lb, raw):
    upstream = raw(b"HTTP/1.1 204 No Content\r\n\r\n")
    with live_server(lb([upstream.url], request_buffering=True), threads=2) as front:
        assert post_chunked(front.address, "/", [b"hello ", b"world"]) == (204, b"")
    assert upstream.header(b"Content-Length") == [b"11"]
    assert upstream.header(b"Transfer-Encoding") == []


def test_an_empty_chunked_body_goes_out_as_content_length_0(lb, raw):
    upstream = raw(b"HTTP/1.1 204 No Content\r\n\r\n")
    with live_server(lb([upstream.url], request_buffering=True), threads=2) as front:
        assert post_chunked(front.address, "/", [])[0] == 204
    assert upstream.header(b"Content-Length") == [b"0"]
    assert upstream.header(b"Transfer-Encoding") == []


def test_a_body_with_a_length_is_sent_as_before(lb, raw):
    upstream = raw(b"HTTP/1.1 204 No Content\r\n\r\n")
    balancer = lb([upstream.url], request_buffering=True)
    assert TestApp(validator(balancer)).post("/", b"abc").status_int == 204
    assert upstream.header(b"Content-Length") == [b"3"]


def test_a_body_over_the_memory_limit_goes_through_with_bounded_memory(lb, upstreams):
    size = 5 * 1024 * 1024
    block = bytes(range(256)) * 256  # 64 KiB
    expected = hashlib.sha256(block * (size // len(block))).hexdigest()

    def counter(environ, start_response):
        digest = hashlib.sha256()
        while chunk := environ["wsgi.input"].read(65536):
            digest.update(chunk)
        text = f"{environ.get('CONTENT_LENGTH')} {digest.hexdigest()}".encode()
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))]
        )
        return [text]

    url = upstreams.start("count", counter)
    with live_server(lb([url], request_buffering=True), threads=2, timeout=30) as front:
        tracemalloc.start()
        try:
            status, body = post_chunked(
                front.address, "/", (block for _ in range(size // len(block)))
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert (status, body) == (200, f"{size} {expected}".encode())
    assert peak < size // 2, f"peak Python memory {peak} bytes for a body of {size}"


@pytest.mark.parametrize(
    ("stall", "status"),
    [
        pytest.param(False, b"400", id="client-left"),
        pytest.param(True, b"408", id="client-stalled"),
    ],
)
def test_a_client_that_stops_mid_body_reaches_no_upstream(lb, raw, stall, status):
    upstream = raw(b"HTTP/1.1 204 No Content\r\n\r\n")
    balancer = lb([upstream.url], request_buffering=True, max_fails=1, strategy="least_conn")
    with (
        live_server(balancer, threads=2, timeout=0.5) as front,
        socket.create_connection(front.address, timeout=5) as client,
    ):
        client.sendall(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        if not stall:
            client.shutdown(socket.SHUT_WR)  # gone before the last chunk
        received = read_until_close(client)
    assert received.startswith(b"HTTP/1.1 " + status)
    assert (upstream.connections, upstream.heads) == (0, [])
    assert [(row["up"], row["active"], row["connections_made"]) for row in balancer.status()] == [
        (True, 0, 0)
    ]


class _Reset(io.BytesIO):
    def read(self, size: int = -1) -> bytes:
        raise ConnectionResetError("the client reset the connection")


def test_a_body_that_fails_in_process_is_400_and_reaches_no_upstream(lb, raw):
    upstream = raw(b"HTTP/1.1 204 No Content\r\n\r\n")
    balancer = lb([upstream.url], request_buffering=True)
    environ = webob.Request.blank("/", method="POST").environ
    environ.update(HTTP_TRANSFER_ENCODING="chunked", CONTENT_TYPE="text/plain")
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input"] = _Reset()
    environ["wsgi.input_terminated"] = True  # as a server that reads chunked bodies says
    statuses = []
    result = validator(balancer)(environ, lambda status, headers: statuses.append(status))
    b"".join(result)
    result.close()
    assert statuses == ["400 Bad Request"]
    assert balancer.status()[0]["connections_made"] == 0


def test_a_buffered_post_is_never_sent_twice(lb, upstreams, dying):
    balancer = lb([dying.url, upstreams.start("a")], request_buffering=True)
    with live_server(balancer, threads=2) as front:
        assert post_chunked(front.address, "/", [b"once"])[0] == 502
    assert dying.requests == [b"POST once"]
    assert upstreams.received[("a", "POST")] == 0


def test_a_buffered_body_goes_whole_to_the_next_upstream_after_a_connect_failure(lb, upstreams):
    with socket.create_server(("127.0.0.1", 0)) as closed:
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    balancer = lb([dead, upstreams.start("a")], request_buffering=True)
    with live_server(balancer, threads=2) as front:
        assert post_chunked(front.address, "/p", [b"hello ", b"world"]) == (200, b"a /p 11")


@pytest.mark.parametrize("value", ["yes", 1, None], ids=["str", "int", "none"])
def test_a_bad_request_buffering_fails_at_start_up(value):
    with pytest.raises(
        ConfigError, match="LoadBalancer: request_buffering: expected true or false"
    ):
        LoadBalancer(["http://a:1"], request_buffering=value)


def test_request_buffering_in_a_toml_pipeline(upstreams):
    url = upstreams.start("a")
    app = build_pipeline(
        {"app": {"use": "load_balance", "upstreams": [url], "request_buffering": True}}
    )
    assert app.request_buffering is True
    app.close()
    with pytest.raises(ConfigError, match="request_buffering: expected true or false"):
        build_pipeline(
            {"app": {"use": "load_balance", "upstreams": [url], "request_buffering": "on"}}
        )


@pytest.mark.parametrize(("spelling", "value"), [("on", True), ("false", False)])
def test_request_buffering_in_a_paste_ini(tmp_path, spelling, value):
    ini = tmp_path / "site.ini"
    ini.write_text(
        "[app:main]\nuse = egg:wsgistack#load_balance\n"
        f'upstreams = ["http://127.0.0.1:1"]\nrequest_buffering = {spelling}\n'
    )
    app = loadapp(f"config:{ini}")
    assert app.request_buffering is value
    app.close()
    ini.write_text(ini.read_text().replace(f"= {spelling}", "= maybe"))
    with pytest.raises(ConfigError, match="request_buffering: expected true/yes/on/1"):
        loadapp(f"config:{ini}")


# -- max_body_size -----------------------------------------------------------------------------
def _post(address, framing: str, body: bytes) -> bytes:
    """POST ``body`` over a raw socket, with a Content-Length or in two chunks; the answer."""
    if framing == "length":
        head = b"Content-Length: %d\r\n\r\n" % len(body)
        payload = body
    else:
        half = len(body) // 2
        head = b"Transfer-Encoding: chunked\r\n\r\n"
        payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:half], body[half:]))
        payload += b"0\r\n\r\n"
    with socket.create_connection(address, timeout=10) as client:
        client.sendall(b"POST /up HTTP/1.1\r\nHost: a\r\nConnection: close\r\n" + head + payload)
        return read_until_close(client)


@pytest.mark.parametrize(
    ("framing", "buffering"),
    [
        pytest.param("length", False, id="content-length"),
        pytest.param("length", True, id="content-length-buffering-on"),
        pytest.param("chunked", True, id="chunked-buffered"),
    ],
)
def test_a_body_over_max_body_size_is_413_and_reaches_no_upstream(lb, raw, framing, buffering):
    upstream = raw(b"HTTP/1.1 204 No Content\r\n\r\n")
    balancer = lb([upstream.url], request_buffering=buffering, max_body_size=10)
    with live_server(balancer, threads=2) as front:
        refused = _post(front.address, framing, b"hello world")  # 11 bytes
        at_the_limit = _post(front.address, framing, b"hello worl")
    assert refused.startswith(b"HTTP/1.1 413 ")
    assert b"10 bytes" in refused
    assert at_the_limit.startswith(b"HTTP/1.1 204 ")
    assert len(upstream.heads) == 1  # only the one at the limit
    assert [(row["up"], row["active"]) for row in balancer.status()] == [(True, 0)]


def test_a_keep_alive_client_refused_413_unread_gets_its_next_request_answered(lb, raw):
    # The 413 for a Content-Length over the limit comes before the body is read:
    # the server must skip that body, not take it for the next request's head.
    upstream = raw(b"HTTP/1.1 204 No Content\r\n\r\n")
    balancer = lb([upstream.url], max_body_size=10)
    post = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nGET /x HTTP"
    with live_server(balancer, threads=2) as front, RawClient(front.address) as client:
        status, _, _ = client.request(post)
        assert status == 413
        status, _, _ = client.request(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
        assert status == 204  # on the same connection: the refused body was skipped
    assert [head.split(b" ")[1] for head in upstream.heads] == [b"/next"]


def test_a_streamed_chunked_body_over_max_body_size_is_cut_and_answered_413(lb, raw):
    # As nginx with proxy_request_buffering off: the upstream had the head and
    # sees a body that never ends (no last chunk), so it acts on nothing; not blamed.
    upstream = raw(b"HTTP/1.1 204 No Content\r\n\r\n")
    balancer = lb([upstream.url], max_body_size=10, max_fails=1, strategy="least_conn")
    with live_server(balancer, threads=2) as front:
        refused = _post(front.address, "chunked", b"hello world")
    assert refused.startswith(b"HTTP/1.1 413 ")
    assert [(row["up"], row["active"], row["idle"]) for row in balancer.status()] == [(True, 0, 0)]


def _temporary_files(directory: str) -> list[str]:
    """The files under ``directory`` this process holds open (deleted ones too)."""
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:  # closed meanwhile (listdir's own, for one)
            continue
    return [link for link in links if link.startswith(directory)]


def test_a_buffered_body_over_the_limit_leaves_no_temporary_file(lb, raw, monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    upstream = raw(b"HTTP/1.1 204 No Content\r\n\r\n")
    limit = 2 * 1024 * 1024  # past the 1 MiB kept in memory: the spool is a file by then
    balancer = lb([upstream.url], request_buffering=True, max_body_size=limit)
    block = b"x" * 65536
    with live_server(balancer, threads=2, timeout=30) as front:
        status, body = post_chunked(front.address, "/", (block for _ in range(48)))  # 3 MiB
        assert (status, _temporary_files(str(tmp_path))) == (413, [])
    assert upstream.connections == 0
    assert b"2097152 bytes" in body


def test_max_body_size_0_is_no_limit_and_the_default_is_1_gib(lb, raw):
    upstream = raw(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert lb([upstream.url]).max_body_size == 1024**3
    with live_server(lb([upstream.url], max_body_size=0, request_buffering=True)) as front:
        assert _post(front.address, "chunked", b"x" * 100_000).startswith(b"HTTP/1.1 204 ")


def test_a_body_over_the_limit_in_process_is_a_negotiated_413(lb, raw):
    upstream = raw(b"HTTP/1.1 204 No Content\r\n\r\n")
    app = TestApp(validator(lb([upstream.url], max_body_size=3)))
    response = app.post("/", b"abcd", headers={"Accept": "application/json"}, status=413)
    assert response.json["code"].startswith("413")
    assert upstream.connections == 0


@pytest.mark.parametrize("value", [-1, "1m", True, 1.5, None], ids=repr)
def test_a_bad_max_body_size_fails_at_start_up(value):
    with pytest.raises(
        ConfigError, match=r"LoadBalancer: max_body_size: expected a whole number >= 0, got "
    ):
        LoadBalancer(["http://a:1"], max_body_size=value)


def test_max_body_size_in_a_toml_pipeline(upstreams):
    url = upstreams.start("a")
    app = build_pipeline({"app": {"use": "load_balance", "upstreams": [url], "max_body_size": 5}})
    assert TestApp(validator(app)).post("/", b"123456", status=413).status_int == 413
    app.close()


@pytest.mark.parametrize("buffering", [False, True])
@pytest.mark.parametrize(
    ("coding", "terminated", "status"),
    [
        # gunicorn takes "gzip, chunked" and removes only the chunks: re-chunked
        # without its coding, the gzip bytes would reach the upstream unnamed.
        pytest.param("gzip, chunked", True, "501 Not Implemented", id="another-coding"),
        # wsgiref and werkzeug's server pass a coding without chunked on, unread:
        # taken for no body, the POST went out empty and the client heard 200.
        pytest.param("gzip", False, "501 Not Implemented", id="a-coding-without-chunked"),
        pytest.param("identity", False, "501 Not Implemented", id="identity"),
        # wsgiref ends no chunked body: reading to its end would wait for the client.
        pytest.param("chunked", False, "411 Length Required", id="body-not-ended"),
    ],
)
def test_a_chunked_body_that_cannot_go_on_reaches_no_upstream(
    lb, raw, buffering, coding, terminated, status
):
    upstream = raw(b"HTTP/1.1 204 No Content\r\n\r\n")
    balancer = lb([upstream.url], request_buffering=buffering)
    environ = webob.Request.blank("/", method="POST", body=b"hello").environ
    del environ["CONTENT_LENGTH"]
    environ["HTTP_TRANSFER_ENCODING"] = coding
    if terminated:
        environ["wsgi.input_terminated"] = True
    statuses = []
    result = validator(balancer)(environ, lambda status, headers: statuses.append(status))
    b"".join(result)
    result.close()
    assert statuses == [status]
    assert balancer.status()[0]["connections_made"] == 0
