"""Real frameworks behind the server: Flask forms, streaming and send_file."""

from __future__ import annotations

import logging
import socket
import threading
from wsgiref.validate import validator

import flask
import pytest

from wsgistack.middlewares import ErrorCatcher

from .live import RawClient, live_server


def make_app(static_file):
    app = flask.Flask(__name__)

    @app.post("/form")
    def form():
        return f"{flask.request.form['name']}:{len(flask.request.files['upload'].read())}"

    @app.post("/data")
    def data():
        return str(len(flask.request.get_data()))

    @app.get("/stream")
    def stream():
        return flask.Response((f"{i}," for i in range(3)), mimetype="text/plain")

    @app.get("/file")
    def file():
        return flask.send_file(static_file)

    return app


def test_flask_app_through_the_server(tmp_path):
    static = tmp_path / "static.txt"
    static.write_bytes(b"s" * 5000)
    body = (
        b'--B\r\nContent-Disposition: form-data; name="name"\r\n\r\nann\r\n'
        b'--B\r\nContent-Disposition: form-data; name="upload"; filename="u.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + b"u" * 3000 + b"\r\n--B--\r\n"
    )
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    with live_server(make_app(static)) as server, RawClient(server.address) as client:
        status, _, text = client.request(
            b"POST /form HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: multipart/form-data; boundary=B\r\n\r\n" + chunked
        )
        assert (status, text) == (200, b"ann:3000")
        status, headers, text = client.request(b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (headers["transfer-encoding"], text) == ("chunked", b"0,1,2,")
        status, headers, text = client.request(b"GET /file HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (headers["content-length"], text) == ("5000", static.read_bytes())


@pytest.mark.parametrize(
    ("rest", "status"),
    [
        pytest.param(b"800\r\n" + b"x" * 0x800 + b"\r\n0\r\n\r\n", 413, id="too-large"),
        pytest.param(b"3\r\nabc", 408, id="client-stalls"),
        pytest.param(None, 400, id="client-closes"),
    ],
)
def test_a_body_that_breaks_while_flask_reads_it_gets_the_servers_status(
    tmp_path, caplog, rest, status
):
    # Flask turns the error wsgi.input raises into its own 500: the client must
    # still hear why its request failed (the 413 the server promises, or 408/400).
    caplog.set_level(logging.CRITICAL, logger=__name__)  # Flask logs the 500 it built
    reading = threading.Event()
    app = make_app(tmp_path / "unused")
    app.before_request(reading.set)
    with (
        live_server(app, validate=False, max_body_size=1000, timeout=0.5) as server,
        RawClient(server.address) as client,
    ):
        client.send(b"POST /data HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert reading.wait(5)  # the app runs before the body arrives
        if rest is None:
            client.sock.shutdown(socket.SHUT_WR)
        else:
            client.send(rest)
        received, headers, _ = client.response()
    assert (received, headers["connection"]) == (status, "close")


def test_a_body_that_breaks_is_an_unreadable_post_error_for_django():
    # Django expects a broken wsgi.input to raise OSError (as mod_wsgi, uWSGI and
    # gunicorn's sockets do): it becomes UnreadablePostError, which its CSRF
    # middleware and its documented log filters handle quietly.
    from django.core.handlers.wsgi import WSGIRequest
    from django.http import UnreadablePostError

    import tests.djangoapp  # noqa: F401  (configures Django's settings)

    raised = []

    def app(environ, start_response):
        try:
            WSGIRequest(environ).body  # noqa: B018
        except Exception as exc:
            raised.append(exc)
        start_response("403 Forbidden", [("Content-Type", "text/plain")])
        return [b"no"]

    with live_server(app) as server, RawClient(server.address) as client:
        client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        client.sock.shutdown(socket.SHUT_WR)
        assert client.response()[0] == 400
    assert [type(exc) for exc in raised] == [UnreadablePostError]


@pytest.mark.parametrize("catcher", [False, True], ids=["bare", "error-catcher"])
def test_a_body_that_breaks_after_the_response_began_is_cut_off_quietly(caplog, catcher):
    # A streaming response that reads the upload as it answers; the client leaves
    # and the app wraps the error (as Django does): cut off, not an app error.
    def echo(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"reading\n"
        try:
            yield environ["wsgi.input"].read(10)
        except OSError as exc:
            raise RuntimeError("the upload broke") from exc

    app = ErrorCatcher(validator(echo)) if catcher else echo
    with live_server(app) as server, RawClient(server.address) as client:
        client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        assert client.response(head_only=True)[0] == 200  # the response began
        client.sock.shutdown(socket.SHUT_WR)
        client.read_to_close()
    assert client.was_reset  # a cut-off response, never one that looks whole
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("catcher", [False, True], ids=["bare", "error-catcher"])
def test_an_app_bug_while_handling_a_broken_body_is_still_an_application_error(caplog, catcher):
    # The app handles the broken upload, and its handler fails on a bug of its
    # own: that error is the app's (Python: "during handling of the above
    # exception, another exception occurred"), not a wrap of the client's. It
    # must be logged with its traceback, not vanish behind the body's 400.
    def app(environ, start_response):
        try:
            environ["wsgi.input"].read(10)
        except OSError:
            {}["upload-counter"] += 1  # the bug: a KeyError while handling it
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    served = ErrorCatcher(validator(app)) if catcher else app
    with live_server(served) as server, RawClient(server.address) as client:
        client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        client.sock.shutdown(socket.SHUT_WR)
        status = client.response()[0]
    assert status == (400 if catcher else 500)  # the catcher's 500 becomes the body's 400
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [type(r.exc_info[1]) for r in errors if r.exc_info] == [KeyError]


def test_an_error_raised_from_none_over_a_broken_body_is_the_clients(caplog):
    # `raise ... from None` in the handler translates the body error (as the
    # server's own wsgi.input does): still the client's fault, answered 400.
    def app(environ, start_response):
        try:
            environ["wsgi.input"].read(10)
        except OSError:
            raise RuntimeError("the upload broke") from None
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    with live_server(ErrorCatcher(validator(app))) as server, RawClient(server.address) as client:
        client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        client.sock.shutdown(socket.SHUT_WR)
        assert client.response()[0] == 400
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
