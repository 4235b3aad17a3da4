"""A real Flask app behind the whole stack, served over real sockets: what its users rely on.

The stack is the README's: ErrorCatcher, IPFilter (trusting the loopback
proxy), RateLimiter, and a PrefixDispatcher mounting the app under ``/app``,
served by the reference server on port 0.  The Flask app is wrapped in
wsgiref's validator, except where a test needs the server to see the app's
own ``wsgi.file_wrapper`` (the validator hides it behind its own iterator).
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import struct
import threading
from wsgiref.validate import validator

import flask
import pytest
import werkzeug.utils
from werkzeug.middleware.proxy_fix import ProxyFix

from tests.server.live import RawClient, live_server
from wsgistack import compose, use
from wsgistack.clientip import ProxyTrust, trusts_peer
from wsgistack.middlewares import (
    ErrorCatcher,
    IPFilter,
    LoadBalancer,
    PrefixDispatcher,
    RateLimiter,
    RequestBuffering,
)

PROXY = "127.0.0.1"  # the test client plays the trusted proxy in front
DENIED = "192.0.2.66"


def build_stack(wsgi_app, *, checked: bool = True, per_minute: int = 1000):
    """The README's pipeline around ``wsgi_app``, mounted under /app."""
    return compose(
        use(ErrorCatcher),
        use(IPFilter, deny=[DENIED], trusted_proxies=[PROXY]),
        use(RateLimiter, f"{per_minute}/minute", trusted_proxies=[PROXY]),
        PrefixDispatcher({"/app": validator(wsgi_app) if checked else wsgi_app}),
    )


def get(path: str, **headers: str) -> bytes:
    fields = "".join(f"{name.replace('_', '-')}: {value}\r\n" for name, value in headers.items())
    return f"GET {path} HTTP/1.1\r\nHost: shop.example\r\n{fields}\r\n".encode()


class CountingFile(io.FileIO):
    """A real file that counts the bytes read from it through Python."""

    def __init__(self, path: os.PathLike[str] | str) -> None:
        super().__init__(path, "rb")
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        block = super().read(size)
        self.bytes_read += len(block)
        return block


def test_a_range_request_for_send_file_seeks_to_the_range_and_closes_the_file(
    tmp_path, monkeypatch
):
    # A player seeking near the end of a video sends Range: werkzeug builds the
    # 206 around the server's wsgi.file_wrapper.  A wrapper that cannot seek made
    # it read and drop every byte before the range, and closing the 206 closed
    # only an iterator, leaving the file open until garbage collection.
    video = tmp_path / "video.mp4"
    video.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    opened: list[CountingFile] = []

    def counting_open(path, mode="r", *args, **kwargs):
        assert mode == "rb"
        opened.append(CountingFile(path))
        return opened[-1]

    monkeypatch.setattr(werkzeug.utils, "open", counting_open, raising=False)  # send_file's
    app = flask.Flask(__name__)

    @app.get("/video")
    def serve_video():
        return flask.send_file(video, conditional=True)

    stack = build_stack(app.wsgi_app)
    with live_server(stack) as server, RawClient(server.address) as client:
        status, headers, body = client.request(get("/app/video", Range="bytes=1048566-"))
        assert (status, headers["content-range"]) == (206, "bytes 1048566-1048575/1048576")
        assert body == video.read_bytes()[-10:]
        assert client.request(get("/app/video"))[0] == 200  # the connection goes on
    assert opened[0].bytes_read < 1024 * 1024 // 4  # a block from the range, not the file
    assert opened[0].closed


def make_app(events: list[str]) -> flask.Flask:
    """A Flask app using what its users rely on; ``events`` records its hooks."""
    app = flask.Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 1000

    @app.after_request
    def after(response):
        events.append("after")
        return response

    @app.teardown_request
    def teardown(exc):
        events.append("teardown")

    @app.get("/where")
    def where():
        request = flask.request
        return {
            "external": flask.url_for("where", _external=True),
            "root": request.url_root,
            "client": request.remote_addr,
        }

    @app.get("/go")
    def go():
        return flask.redirect(flask.url_for("where"))

    @app.get("/admin/")
    def admin():
        return "admin"

    @app.post("/data")
    def data():
        return str(len(flask.request.get_data()))

    @app.post("/pieces")
    def pieces():
        sizes = []
        while block := flask.request.stream.read(100):
            sizes.append(len(block))
        return str(sum(sizes))

    @app.post("/form")
    def form():
        return flask.request.form["name"]

    return app


def behind_trusted_proxies(wsgi_app, **fix):
    """werkzeug's ProxyFix, applied only when the peer is the trusted proxy (the recipe's way)."""
    fixed = ProxyFix(wsgi_app, **fix)
    trust = ProxyTrust([PROXY])

    def app(environ, start_response):
        chosen = fixed if trusts_peer(environ, trust) else wsgi_app
        return chosen(environ, start_response)

    return app


def test_urls_redirects_and_the_client_under_the_mount_and_behind_the_proxy():
    # SCRIPT_NAME from the mount, scheme and host from the trusted proxy: Flask's
    # URLs point where the client came from, and Flask sees the client the
    # IPFilter judged, not the proxy's address.
    app = make_app([])
    app.wsgi_app = behind_trusted_proxies(app.wsgi_app, x_for=1, x_proto=1, x_host=1)
    tls = {"X_Forwarded_Proto": "https", "X_Forwarded_Host": "www.example"}
    with live_server(build_stack(app.wsgi_app)) as server, RawClient(server.address) as client:
        status, _, body = client.request(get("/app/where", X_Forwarded_For="203.0.113.7", **tls))
        assert status == 200
        assert json.loads(body) == {
            "external": "https://www.example/app/where",
            "root": "https://www.example/app/",
            "client": "203.0.113.7",
        }
        status, headers, _ = client.request(get("/app/go"))
        assert (status, headers["location"]) == (302, "/app/where")
        status, headers, _ = client.request(get("/app/admin", **tls))
        assert (status, headers["location"]) == (308, "https://www.example/app/admin/")
        assert client.request(get("/app/where", X_Forwarded_For=DENIED))[0] == 403
        # The proxy's header is believed from the proxy only: the client's own
        # entry on the left names no one (IPFilter and Flask agree).
        spoofed = client.request(get("/app/where", X_Forwarded_For=f"{DENIED}, 203.0.113.7"))
        assert json.loads(spoofed[2])["client"] == "203.0.113.7"


def test_send_file_reaches_the_server_through_every_layer_and_goes_by_sendfile(
    tmp_path, sendfile_spy
):
    # Every layer hands the server Flask's wsgi.file_wrapper untouched, so the
    # kernel copies the file; conditional GETs and HEAD are answered as Flask says.
    page = tmp_path / "report.txt"
    page.write_bytes(b"0123456789" * 10_000)
    sent = sendfile_spy
    app = flask.Flask(__name__)

    @app.get("/files/<name>")
    def files(name):
        return flask.send_from_directory(tmp_path, name)

    stack = build_stack(app.wsgi_app, checked=False)  # the validator would hide the wrapper
    with live_server(stack, validate=False) as server, RawClient(server.address) as client:
        status, headers, body = client.request(get("/app/files/report.txt"))
        assert (status, headers["content-length"], body) == (200, "100000", page.read_bytes())
        etag = headers["etag"]
        status, headers, body = client.request(get("/app/files/report.txt", If_None_Match=etag))
        assert (status, body) == (304, b"")
        # Counted once the server is done with the first response (this one followed it).
        assert sum(sent) == 100_000  # by sendfile(), not one byte through Python
        status, headers, _ = client.request(
            b"HEAD /app/files/report.txt HTTP/1.1\r\nHost: a\r\n\r\n", head_only=True
        )
        assert (status, headers["content-length"]) == (200, "100000")
        assert client.request(get("/app/files/nothing.txt"))[0] == 404
    assert sum(sent) == 100_000  # the HEAD sent no body


def read_until(client: RawClient, marker: bytes) -> None:
    """Read the response as it comes until ``marker`` has arrived."""
    while marker not in client.buffer:
        data = client.sock.recv(65536)
        assert data, f"closed before {marker!r}"
        client.buffer += data


def streaming_app(go_on: threading.Event) -> flask.Flask:
    app = flask.Flask(__name__)

    @app.get("/feed")
    def feed():
        @flask.stream_with_context
        def events():
            yield f"first {flask.request.path}\n"
            go_on.wait(30)  # bounded: a layer that buffered would hold "first" back
            yield "second\n"

        return flask.Response(events(), mimetype="text/plain")

    return app


def test_a_streamed_response_reaches_the_client_before_the_view_has_finished():
    go_on = threading.Event()
    stack = build_stack(streaming_app(go_on).wsgi_app)
    with live_server(stack) as server, RawClient(server.address) as client:
        client.send(get("/app/feed"))
        read_until(client, b"first /feed\n")  # sent while the view still waits
        go_on.set()
        read_until(client, b"second\n")


def test_a_flask_upstream_of_the_balancer_streams_and_builds_urls_under_the_mount():
    # Flask behind the LoadBalancer mounted at /pool: ProxyFix(x_prefix=1) reads
    # the X-Forwarded-Prefix the balancer sends, so url_for names /pool/...
    go_on = threading.Event()
    app = streaming_app(go_on)

    @app.get("/where")
    def where():
        return {"external": flask.url_for("where", _external=True)}

    upstream_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_prefix=1)
    with live_server(upstream_app) as upstream:
        pool = LoadBalancer([f"http://127.0.0.1:{upstream.address[1]}"])
        stack = compose(
            use(ErrorCatcher),
            use(IPFilter, deny=[DENIED], trusted_proxies=[PROXY]),
            use(RateLimiter, "1000/minute", trusted_proxies=[PROXY]),
            PrefixDispatcher({"/pool": pool}),
        )
        with live_server(stack) as server, RawClient(server.address) as client:
            status, _, body = client.request(get("/pool/where"))
            assert status == 200
            assert json.loads(body) == {"external": "http://shop.example/pool/where"}
            client.send(get("/pool/feed"))
            read_until(client, b"first /feed\n")
            go_on.set()
            read_until(client, b"second\n")
        pool.close()


def chunked(path: str, body: bytes, content_type: str = "text/plain") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: a\r\nContent-Type: {content_type}\r\n"
    framed = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:]))
    return head.encode() + b"Transfer-Encoding: chunked\r\n\r\n" + framed + b"0\r\n\r\n"


def test_chunked_uploads_reach_get_data_the_stream_and_the_form():
    events: list[str] = []
    stack = build_stack(make_app(events).wsgi_app)
    with live_server(stack) as server, RawClient(server.address) as client:
        assert client.request(chunked("/app/data", b"x" * 900))[2] == b"900"
        assert client.request(chunked("/app/pieces", b"y" * 950))[2] == b"950"
        form = chunked("/app/form", b"name=ann+lee", "application/x-www-form-urlencoded")
        assert client.request(form)[2] == b"ann lee"
        too_large = b"POST /app/data HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n"
        assert (
            client.request(too_large + b"z" * 1001)[0] == 413
        )  # Flask's MAX_CONTENT_LENGTH, before the view reads
    assert events == ["after", "teardown"] * 4


def test_a_chunked_upload_over_max_content_length_is_413_under_request_buffering():
    # werkzeug reads a chunked body only up to MAX_CONTENT_LENGTH and hands the
    # view that much; with the body's length known first, Flask refuses it whole.
    app = make_app([])
    stack = build_stack(RequestBuffering(app.wsgi_app, max_size=10_000))
    with live_server(stack) as server, RawClient(server.address) as client:
        assert client.request(chunked("/app/data", b"x" * 1000))[2] == b"1000"
        assert client.request(chunked("/app/data", b"x" * 1001))[0] == 413


def failing_app(events: list[str], *, propagate: bool, own_page: bool) -> flask.Flask:
    app = make_app(events)
    app.config["PROPAGATE_EXCEPTIONS"] = propagate

    @app.get("/boom")
    def boom():
        raise LookupError("secret detail")

    if own_page:

        @app.errorhandler(500)
        def our_page(error):
            return "our own 500 page", 500

    return app


@pytest.mark.parametrize(
    ("propagate", "own_page", "answered_by"),
    [
        pytest.param(False, False, "flask", id="flask-default"),
        pytest.param(False, True, "own-page", id="errorhandler-500"),
        # Flask re-raises before it looks for a 500 handler: the catcher answers.
        pytest.param(True, True, "catcher", id="propagate-with-errorhandler"),
        pytest.param(True, False, "catcher", id="propagate"),
    ],
)
def test_a_view_error_is_answered_and_logged_once(caplog, propagate, own_page, answered_by):
    events: list[str] = []
    app = failing_app(events, propagate=propagate, own_page=own_page)
    with live_server(build_stack(app.wsgi_app)) as server, RawClient(server.address) as client:
        status, headers, body = client.request(get("/app/boom", Accept="text/plain"))
        assert client.request(get("/app/where"))[0] == 200  # the connection survives
    assert status == 500 and b"secret detail" not in body
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1  # one record with the traceback, by whoever answered
    assert errors[0].exc_info is not None
    if answered_by == "catcher":
        assert errors[0].name == "wsgistack.errors"
        assert headers["x-error-id"] in body.decode()
        assert events == ["teardown", "after", "teardown"]  # no after_request on a raise
    else:
        assert errors[0].name == app.logger.name and "x-error-id" not in headers
        assert (body == b"our own 500 page") is (answered_by == "own-page")
        assert events == ["after", "teardown"] * 2


def test_debug_mode_errors_reach_the_catcher_without_leaking_the_traceback(caplog):
    # app.debug turns PROPAGATE_EXCEPTIONS on: outside `flask run` there is no
    # debugger page, so the catcher answers, as it would in production.
    app = failing_app([], propagate=False, own_page=False)
    app.config.pop("PROPAGATE_EXCEPTIONS")
    app.debug = True
    with live_server(build_stack(app.wsgi_app)) as server, RawClient(server.address) as client:
        status, headers, body = client.request(get("/app/boom"))
    assert status == 500 and "x-error-id" in headers and b"secret detail" not in body
    assert [r.name for r in caplog.records if r.levelno >= logging.ERROR] == ["wsgistack.errors"]


def test_hooks_never_run_for_a_request_a_layer_refused():
    events: list[str] = []
    stack = build_stack(make_app(events).wsgi_app, per_minute=1)
    with live_server(stack) as server, RawClient(server.address) as client:
        assert client.request(get("/app/where", X_Forwarded_For=DENIED))[0] == 403
        assert events == []
        assert client.request(get("/app/where"))[0] == 200
        assert client.request(get("/app/where"))[0] == 429
    assert events == ["after", "teardown"]


def test_a_client_that_leaves_mid_stream_closes_the_views_generator_once():
    events: list[str] = []
    closed = threading.Event()
    app = make_app(events)

    @app.get("/download")
    def download():
        def blocks():
            try:
                for _ in range(100_000):  # 6.4 GB: the client leaves long before
                    yield b"b" * 65536
            finally:
                events.append("generator closed")
                closed.set()

        return flask.Response(blocks(), mimetype="application/octet-stream")

    with live_server(build_stack(app.wsgi_app)) as server:
        with socket.create_connection(server.address) as sock:
            sock.sendall(get("/app/download"))
            assert sock.recv(65536)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        assert closed.wait(30)
    # Flask tears the request down when the view returns; the body's generator
    # is closed by the server when the client is gone, exactly once.
    assert events == ["after", "teardown", "generator closed"]
