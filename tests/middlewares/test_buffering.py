"""RequestBuffering: a chunked request body read whole, so Django gets a CONTENT_LENGTH.

Django reads no body without one: behind the reference server (as behind
gunicorn or uWSGI) a chunked upload reaches a view as b"".  The layer reads it
whole first, as waitress does and nginx's proxy_request_buffering.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import logging
import re
import socket
import struct
import subprocess
import sys
import threading
import tracemalloc
import wsgiref.simple_server
from wsgiref.validate import validator

import pytest
import webob
from django.test import override_settings
from paste.deploy import loadapp

from tests.djangoapp import application as django_app
from tests.server.live import live_server, post_chunked, read_until_close
from tests.server.served import poll
from wsgistack import build_pipeline, compose, describe, use
from wsgistack.errors import ConfigError
from wsgistack.middlewares import RequestBuffering


def blocks_of(data: bytes, size: int = 65536):
    return (data[i : i + size] for i in range(0, len(data), size))


class Calls:
    """A WSGI app in front of ``app`` that counts the requests reaching it."""

    def __init__(self, app) -> None:
        self.app = app
        self.count = 0

    def __call__(self, environ, start_response):
        self.count += 1
        return self.app(environ, start_response)


def hashing_app(environ, start_response):
    """Reads wsgi.input in blocks; answers the CONTENT_LENGTH it saw, the size and the hash."""
    digest = hashlib.sha256()
    size = 0
    while chunk := environ["wsgi.input"].read(65536):
        digest.update(chunk)
        size += len(chunk)
    text = json.dumps(
        {
            "content_length": environ.get("CONTENT_LENGTH"),
            "transfer_encoding": environ.get("HTTP_TRANSFER_ENCODING"),
            "size": size,
            "sha256": digest.hexdigest(),
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [text]


def chunked_environ(body) -> dict:
    environ = webob.Request.blank("/", method="POST").environ
    environ.update(HTTP_TRANSFER_ENCODING="chunked", CONTENT_TYPE="text/plain")
    environ["wsgi.input_terminated"] = True  # as a server that reads chunked bodies says
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input"] = body
    return environ


def call(app, environ) -> tuple[str, bytes]:
    statuses = []
    result = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
    try:
        body = b"".join(result)
    finally:
        result.close()
    return statuses[0], body


@pytest.mark.parametrize(
    "size", [pytest.param(5000, id="a-few-KB"), pytest.param(6 * 1024 * 1024, id="several-MB")]
)
@pytest.mark.parametrize(
    "buffered", [pytest.param(True, id="layer"), pytest.param(False, id="bare")]
)
def test_a_chunked_post_to_a_real_django_app(size, buffered):
    data = (bytes(range(256)) * (size // 256 + 1))[:size]
    app = RequestBuffering(validator(django_app)) if buffered else django_app
    # Django's own 2.5 MB cap on request.body is not what is tested here.
    with (
        override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=None),
        live_server(app, threads=2, timeout=30) as server,
    ):
        status, body = post_chunked(server.address, "/body/", blocks_of(data, 4096))
    assert status == 200
    seen = json.loads(body)
    if buffered:
        assert seen == {
            "size": size,
            "sha256": hashlib.sha256(data).hexdigest(),
            "content_length": str(size),
            "transfer_encoding": None,
        }
    else:  # what a Django user saw: the upload silently lost
        assert (seen["size"], seen["content_length"], seen["transfer_encoding"]) == (
            0,
            None,
            "chunked",
        )


#: What gunicorn serves in the test below (it imports this module).
buffered_django_app = RequestBuffering(django_app)


@pytest.mark.parametrize(
    ("target", "size"),
    [
        pytest.param("tests.middlewares.test_buffering:buffered_django_app", 5000, id="layer"),
        pytest.param("tests.djangoapp:application", 0, id="bare"),
    ],
)
def test_the_layer_keeps_the_body_under_gunicorn_too(target, size):
    """gunicorn streams a chunked body as the reference server does: the same loss, the same fix."""
    data = b"z" * 5000
    with subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-b", "127.0.0.1:0", "-w", "1", target],
        stderr=subprocess.PIPE,
        text=True,
    ) as gunicorn:
        listening = None
        try:
            for line in gunicorn.stderr:
                if listening := re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", line):
                    break
            assert listening, "gunicorn did not start"
            address = ("127.0.0.1", int(listening[1]))
            status, body = post_chunked(address, "/body/", blocks_of(data, 1000))
        finally:
            gunicorn.terminate()
            gunicorn.wait(timeout=30)
    assert status == 200
    assert json.loads(body)["size"] == size


def test_an_empty_chunked_body_reaches_the_app_as_content_length_0():
    with live_server(RequestBuffering(validator(hashing_app)), threads=2) as server:
        status, body = post_chunked(server.address, "/", [])
    assert status == 200
    assert json.loads(body)["content_length"] == "0"


def test_a_chunked_body_over_max_size_is_413_and_never_reaches_the_view(caplog):
    view = Calls(validator(django_app))
    caplog.set_level(logging.INFO, logger="wsgistack.buffering")
    with live_server(RequestBuffering(view, max_size=10_000), threads=2) as server:
        status, body = post_chunked(server.address, "/body/", [b"x" * 4096] * 3)
        calls = view.count
        again = post_chunked(server.address, "/body/", [b"x" * 4096, b"y" * 5904])
    assert status == 413
    assert b"larger than 10000 bytes" in body
    assert calls == 0
    assert "request body failed: The request body is larger than 10000 bytes." in caplog.text
    assert again[0] == 200  # exactly max_size is not over it
    assert json.loads(again[1])["size"] == 10_000


@pytest.mark.parametrize(
    ("stall", "status"),
    [
        pytest.param(False, b"400", id="client-left"),
        pytest.param(True, b"408", id="client-stalled"),
    ],
)
def test_a_body_cut_short_never_reaches_the_app(stall, status):
    app = Calls(validator(hashing_app))
    with (
        live_server(RequestBuffering(app), threads=2, timeout=0.5) as server,
        socket.create_connection(server.address, timeout=5) as client,
    ):
        client.sendall(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        if not stall:
            client.shutdown(socket.SHUT_WR)  # gone before the last chunk
        received = read_until_close(client)
    assert received.startswith(b"HTTP/1.1 " + status)
    assert app.count == 0


class _Reset(io.BytesIO):
    def read(self, size: int = -1) -> bytes:
        raise ConnectionResetError("the client reset the connection")


def test_a_body_that_fails_to_read_is_400_logged_under_any_server(caplog):
    app = Calls(validator(hashing_app))
    caplog.set_level(logging.INFO, logger="wsgistack.buffering")
    status, body = call(validator(RequestBuffering(app)), chunked_environ(_Reset()))
    assert status == "400 Bad Request"
    assert b"did not arrive whole" in body
    assert app.count == 0
    assert "request body failed: the client reset the connection before the body ended" in (
        caplog.text
    )


def test_a_content_length_body_streams_to_the_app_untouched():
    """The app reads the first half before the client has sent the second."""
    first_half_read = threading.Event()
    seen = {}

    def app(environ, start_response):
        body = environ["wsgi.input"]
        seen["length"] = environ["CONTENT_LENGTH"]
        first = body.read(5)
        first_half_read.set()
        rest = body.read(5)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "11")])
        return [first + b"|" + rest]

    with (
        live_server(RequestBuffering(validator(app), max_size=4), threads=2) as server,
        socket.create_connection(server.address, timeout=10) as client,
    ):
        client.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello")
        assert first_half_read.wait(10), "the app did not get the first half on its own"
        client.sendall(b"world")
        client.shutdown(socket.SHUT_WR)
        received = read_until_close(client)
    assert received.startswith(b"HTTP/1.1 200")
    assert received.endswith(b"hello|world")
    assert seen["length"] == "10"  # max_size bounds only what it buffers


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_request_with_a_length_or_no_body_is_passed_on_as_it_came(method):
    environ = webob.Request.blank("/", method=method, POST=b"abc" if method == "POST" else None)
    environ = environ.environ
    before = dict(environ)
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("204 No Content", [])
        return []

    assert call(validator(RequestBuffering(validator(app))), environ)[0] == "204 No Content"
    # The same stream, under the two validators' wrappers.
    assert seen["wsgi.input"].input.input is before["wsgi.input"]
    assert seen.get("CONTENT_LENGTH") == before.get("CONTENT_LENGTH")


def test_a_large_body_goes_to_a_file_and_memory_stays_bounded():
    size = 8 * 1024 * 1024
    block = bytes(range(256)) * 256  # 64 KiB
    expected = hashlib.sha256(block * (size // len(block))).hexdigest()
    with live_server(RequestBuffering(validator(hashing_app)), threads=2, timeout=30) as server:
        tracemalloc.start()
        try:
            status, body = post_chunked(server.address, "/", (block for _ in range(size // 65536)))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert status == 200
    assert json.loads(body)["sha256"] == expected
    assert peak < size // 2, f"peak Python memory {peak} bytes for a body of {size}"


def test_the_spooled_body_is_closed_with_the_response_under_the_validator():
    inputs = []

    def app(environ, start_response):
        inputs.append(environ["wsgi.input"].input)  # under the inner validator's wrapper
        data = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [data.upper()]

    stack = validator(RequestBuffering(validator(app)))
    assert call(stack, chunked_environ(io.BytesIO(b"hello"))) == ("200 OK", b"HELLO")
    assert inputs[0].closed


def test_the_spooled_body_is_closed_when_the_app_raises():
    inputs = []

    def app(environ, start_response):
        inputs.append(environ["wsgi.input"])
        raise RuntimeError("the view failed")

    with pytest.raises(RuntimeError, match="the view failed"):
        RequestBuffering(app)(chunked_environ(io.BytesIO(b"hello")), lambda *a: None)
    assert inputs[0].closed


@pytest.mark.parametrize("value", [-1, "10", 1.5, True, None], ids=repr)
def test_a_bad_max_size_fails_at_start_up(value):
    with pytest.raises(ConfigError, match=r"RequestBuffering: max_size: expected a whole number"):
        RequestBuffering(hashing_app, max_size=value)


def test_a_bad_logger_fails_at_start_up():
    with pytest.raises(ConfigError, match=r"RequestBuffering: logger: expected a logging\.Logger"):
        RequestBuffering(hashing_app, logger="myapp")


def test_it_is_a_builtin_of_pipelines_and_describes_itself():
    app = build_pipeline(
        {
            "layer": [{"use": "request_buffering", "max_size": 8}],
            "app": "tests.middlewares.test_buffering:hashing_app",
        }
    )
    assert describe(app).splitlines() == [
        "RequestBuffering(max_size=8)",
        "tests.middlewares.test_buffering.hashing_app",
    ]
    assert call(validator(app), chunked_environ(io.BytesIO(b"123456789")))[0].startswith("413")
    assert describe(compose(use(RequestBuffering), hashing_app)).splitlines()[0] == (
        "RequestBuffering(max_size=1073741824)"
    )
    with pytest.raises(ConfigError, match=r"layer 1 \(request_buffering\): .*max_size"):
        build_pipeline(
            {
                "layer": [{"use": "request_buffering", "max_size": "1m"}],
                "app": "tests.middlewares.test_buffering:hashing_app",
            }
        )


PASTE_INI = """
[pipeline:main]
pipeline = buffering app

[filter:buffering]
use = egg:wsgistack#request_buffering
max_size = {max_size}

[app:app]
use = call:tests.pipeline_fixtures:tags_app_factory
"""


def test_the_paste_deploy_filter(tmp_path):
    ini = tmp_path / "site.ini"
    ini.write_text(PASTE_INI.format(max_size=4))
    app = validator(loadapp(f"config:{ini}"))
    assert call(app, chunked_environ(io.BytesIO(b"hello")))[0].startswith("413")
    assert call(app, chunked_environ(io.BytesIO(b"hell")))[0] == "200 OK"
    ini.write_text(PASTE_INI.format(max_size="lots"))
    with pytest.raises(ConfigError, match="filter request_buffering: RequestBuffering: max_size"):
        loadapp(f"config:{ini}")


#: What gunicorn serves in the coding test below.
buffered_hashing_app = RequestBuffering(Calls(hashing_app))


@contextlib.contextmanager
def gunicorn_serving(target: str):
    """gunicorn serving ``target`` on a port the OS chose.

    Yields its address and the lines it writes to stderr from then on (a list
    that grows as they come).
    """
    with subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-b", "127.0.0.1:0", "-w", "1", target],
        stderr=subprocess.PIPE,
        text=True,
    ) as gunicorn:
        said: list[str] = []
        reader = threading.Thread(target=lambda: said.extend(gunicorn.stderr), daemon=True)
        try:
            listening = None
            for line in gunicorn.stderr:
                if listening := re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", line):
                    break
            assert listening, "gunicorn did not start"
            reader.start()  # ends as gunicorn does
            yield ("127.0.0.1", int(listening[1])), said
        finally:
            gunicorn.terminate()
            gunicorn.wait(timeout=30)
            if reader.is_alive():
                reader.join(timeout=30)


def test_a_coding_besides_chunked_is_501_not_handed_on_undecoded():
    """gunicorn takes "gzip, chunked" and removes only the chunks: the gzip bytes are
    no plain body of that length, so the app must not be given them as one."""
    packed = gzip.compress(b"hello world")
    request = (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n"
        b"Connection: close\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(packed), packed)
    )
    target = "tests.middlewares.test_buffering:buffered_hashing_app"
    with (
        gunicorn_serving(target) as (address, _),
        socket.create_connection(address, timeout=30) as client,
    ):
        client.sendall(request)
        received = read_until_close(client)
    assert received.startswith(b"HTTP/1.1 501"), received[:200]
    assert b"only chunked" in received


def logged_buffering():
    """What gunicorn serves in the reset test below (its factory, called in the worker).

    RequestBuffering with its lines on gunicorn's stderr, behind a layer that
    says when a request has reached it, so the client resets only then.
    """
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    buffering = RequestBuffering(Calls(validator(hashing_app)))

    def app(environ, start_response):
        print("a request reached the app", file=sys.stderr, flush=True)
        return buffering(environ, start_response)

    return validator(app)


def test_a_client_reset_mid_body_reads_as_the_reference_server_says_it():
    """gunicorn hands the socket's ConnectionResetError on to the app: it read
    "reading the request body failed: [Errno 104] Connection reset by peer",
    where the reference server's line says who did what."""
    target = "tests.middlewares.test_buffering:logged_buffering()"
    with (
        gunicorn_serving(target) as (address, said),
        socket.create_connection(address, timeout=30) as client,
    ):
        client.sendall(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        poll(lambda: "a request reached the app\n" in said)  # the body is being read
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # a reset, as a client killed mid-upload
        line = "wsgistack.buffering: request body failed: the client reset the connection"
        poll(lambda: any(said_line.startswith(line) for said_line in said))
    assert f"{line} before the body ended\n" in said


@pytest.mark.parametrize(
    "coding",
    ["gzip, chunked", "chunked, chunked", "chunked, gzip", "identity, chunked", "xchunked", "gzip"],
)
def test_only_chunked_alone_is_read_under_any_server(coding):
    app = Calls(validator(hashing_app))
    environ = chunked_environ(io.BytesIO(b"5\r\nhello\r\n0\r\n\r\n"))
    environ["HTTP_TRANSFER_ENCODING"] = coding
    status, body = call(validator(RequestBuffering(app)), environ)
    assert status == "501 Not Implemented"
    assert b"only chunked is supported" in body
    assert app.count == 0


@pytest.mark.parametrize("coding", ["chunked", "Chunked", " CHUNKED ", "chunked,", ", chunked"])
def test_chunked_in_any_case_and_spacing_is_read(coding):
    environ = chunked_environ(io.BytesIO(b"hello"))
    environ["HTTP_TRANSFER_ENCODING"] = coding
    status, body = call(validator(RequestBuffering(validator(hashing_app))), environ)
    assert status == "200 OK"
    assert json.loads(body)["content_length"] == "5"


def test_a_server_that_does_not_end_a_chunked_body_gets_411_not_a_hang():
    """wsgiref (and Django's runserver on it) hands on the raw socket with no
    wsgi.input_terminated: reading it to its end waited for the client to leave."""
    app = Calls(validator(hashing_app))

    class Quiet(wsgiref.simple_server.WSGIRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = wsgiref.simple_server.make_server(
        "127.0.0.1", 0, RequestBuffering(app), handler_class=Quiet
    )
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        with socket.create_connection(server.server_address, timeout=30) as client:
            client.sendall(
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n0\r\n\r\n"
            )
            received = client.recv(65536)
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
    assert received.startswith(b"HTTP/1.0 411"), received[:200]
    assert app.count == 0


def test_a_file_wrapper_over_the_buffered_body_itself_is_sent_whole():
    # An echo (flask.send_file(request.stream), Django's FileResponse(request)):
    # the file the server sends is the layer's copy of the request body, so the
    # copy must stay open until the response is done, and close with it.
    inputs = []

    def echo(environ, start_response):
        inputs.append(environ["wsgi.input"])
        start_response(
            "200 OK",
            [("Content-Type", "text/plain"), ("Content-Length", environ["CONTENT_LENGTH"])],
        )
        return environ["wsgi.file_wrapper"](environ["wsgi.input"], 4096)

    blocks = [b"%05d" % i * 100 for i in range(40)]
    with live_server(RequestBuffering(echo), threads=2) as server:
        status, body = post_chunked(server.address, "/", iter(blocks))
    assert (status, body) == (200, b"".join(blocks))
    assert inputs[0].closed


class SlottedWrapper:
    """Another server's file wrapper, whose instances take no new attributes."""

    __slots__ = ("filelike",)

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike

    def __iter__(self):
        return iter(lambda: self.filelike.read(4096), b"")

    def close(self):
        self.filelike.close()


def test_a_file_wrapper_that_cannot_take_the_close_is_wrapped_and_still_closes_the_copy():
    inputs = []

    def echo(environ, start_response):
        inputs.append(environ["wsgi.input"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](environ["wsgi.input"])

    environ = chunked_environ(io.BytesIO(b"hello"))
    environ["wsgi.file_wrapper"] = SlottedWrapper
    assert call(RequestBuffering(echo), environ) == ("200 OK", b"hello")
    assert inputs[0].closed


def test_a_content_length_that_is_no_length_is_refused_not_handed_to_the_app():
    # A lenient server in front (wsgiref) passes "+5" on; Django would read no
    # body for it and the bytes would be lost unsaid.  As nginx: 400.
    app = Calls(hashing_app)
    environ = webob.Request.blank("/", method="POST", body=b"hello").environ
    environ["CONTENT_LENGTH"] = "+5"
    statuses = []
    body = b"".join(RequestBuffering(app)(environ, lambda s, h, e=None: statuses.append(s)))
    assert statuses == ["400 Bad Request"]
    assert b"is not a length" in body
    assert app.count == 0
