"""ErrorCatcher: the four moments a failure can strike, negotiation, logs and hooks."""

from __future__ import annotations

import json
import logging
import re
import socket
import tracemalloc
from wsgiref.validate import validator

import pytest
import webob.exc
from webtest import TestApp

from tests.harness import serve_once
from tests.server.live import RawClient, live_server, read_until_close
from wsgistack import build_pipeline, compose, use
from wsgistack.errors import ConfigError, RequestBodyError, ResponseCut
from wsgistack.middlewares import ErrorCatcher

SECRET = "db-password-hunter2"


class Body:
    """A response body that can fail while iterated or closed, and counts close()."""

    def __init__(self, chunks, fail_at=None, fail_on_close=False):
        self.chunks, self.fail_at, self.fail_on_close = chunks, fail_at, fail_on_close
        self.closed = 0

    def __iter__(self):
        for index, chunk in enumerate(self.chunks):
            if index == self.fail_at:
                raise RuntimeError(SECRET)
            yield chunk

    def close(self):
        self.closed += 1
        if self.fail_on_close:
            raise OSError(SECRET)


def app_with(body=None, *, raise_in_call=None, length=None):
    def app(environ, start_response):
        if raise_in_call is not None:
            raise raise_in_call
        headers = [("Content-Type", "text/plain")]
        if length is not None:
            headers.append(("Content-Length", str(length)))
        start_response("200 OK", headers)
        return body

    return app


def catcher(app, **options):
    return validator(ErrorCatcher(validator(app), **options))


def error_records(caplog):
    return [r for r in caplog.records if r.name == "wsgistack.errors" and r.levelname == "ERROR"]


def test_a_clean_app_passes_through_untouched():
    outcome = serve_once(catcher(app_with([b"ok"])))
    assert (outcome.status, outcome.body) == ("200 OK", b"ok")


def test_error_in_the_call_is_a_500_with_an_id_and_no_secret(caplog):
    response = TestApp(catcher(app_with(raise_in_call=RuntimeError(SECRET)))).get(
        "/boom", status=500
    )
    error_id = response.headers["X-Error-Id"]
    assert re.fullmatch(r"[0-9a-f]{16}", error_id)
    assert error_id in response.text
    assert SECRET not in response.text and "Traceback" not in response.text
    [record] = error_records(caplog)
    assert error_id in record.getMessage() and "GET /boom" in record.getMessage()
    assert record.exc_info[1].args == (SECRET,)


def test_a_request_path_cannot_forge_lines_in_the_error_log(caplog):
    # PATH_INFO is percent-decoded: /%0A would start a new, fake log line.
    app = TestApp(catcher(app_with(raise_in_call=RuntimeError(SECRET))))
    app.get("/a%0D%0A2031-01-01 ERROR forged%1B[2J", status=500)
    [record] = error_records(caplog)
    message = record.getMessage()
    assert "\n" not in message and "\r" not in message and "\x1b" not in message
    assert "GET /a\\x0D\\x0A2031-01-01 ERROR forged\\x1B[2J from" in message


def test_error_on_the_first_chunk_is_a_500_and_the_body_is_closed_once(caplog):
    body = Body([b"never"], fail_at=0)
    outcome = serve_once(catcher(app_with(body)))
    assert outcome.status == "500 Internal Server Error"
    assert outcome.aborted is None and SECRET.encode() not in outcome.body
    assert body.closed == 1
    assert len(error_records(caplog)) == 1


def test_a_generator_app_failing_before_its_first_chunk(caplog):
    def generator_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b""
        raise KeyError(SECRET)

    outcome = serve_once(catcher(generator_app))
    assert outcome.status == "500 Internal Server Error"
    assert outcome.header("X-Error-Id") in outcome.body.decode()


def test_error_after_the_headers_were_sent_aborts_instead_of_ending_cleanly(caplog):
    body = Body([b"first half", b"second half"], fail_at=1)
    outcome = serve_once(catcher(app_with(body)))
    assert outcome.status == "200 OK" and outcome.body == b"first half"
    # Logged here; the server gets ResponseCut: cut the connection, log nothing more.
    assert isinstance(outcome.aborted, ResponseCut)
    assert body.closed == 1
    [record] = error_records(caplog)
    assert record.exc_info[0] is RuntimeError
    error_id = record.getMessage().split()[1].rstrip(":")
    assert record.getMessage().endswith("; the response was cut off after it began")
    assert str(outcome.aborted) == (
        f"error {error_id}: the response was cut off after it began (logged above)"
    )
    assert outcome.aborted.__suppress_context__  # a server's traceback of it is short


def test_write_then_raise_aborts(caplog):
    def write_app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written")
        raise ValueError(SECRET)

    outcome = serve_once(catcher(write_app))
    assert outcome.body == b"written" and isinstance(outcome.aborted, ResponseCut)
    assert len(error_records(caplog)) == 1


def test_write_nothing_then_raise_is_still_a_clean_500():
    def write_app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"")
        raise ValueError(SECRET)

    outcome = serve_once(catcher(write_app))
    assert outcome.status == "500 Internal Server Error"


def test_a_failing_close_is_logged_once_and_the_body_still_delivered(caplog):
    body = Body([b"all", b" of it"], fail_on_close=True)
    outcome = serve_once(catcher(app_with(body)))
    assert (outcome.status, outcome.body, outcome.aborted) == ("200 OK", b"all of it", None)
    assert body.closed == 1
    [record] = error_records(caplog)
    assert isinstance(record.exc_info[1], OSError)


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        pytest.param("text/html", "text/html", id="html"),
        pytest.param("application/json", "application/json", id="json"),
        pytest.param("text/plain", "text/plain", id="plain"),
    ],
)
def test_the_500_is_negotiated(accept, content_type):
    app = TestApp(catcher(app_with(raise_in_call=RuntimeError(SECRET))))
    response = app.get("/", headers={"Accept": accept}, status=500)
    assert response.content_type == content_type
    assert response.headers["X-Error-Id"] in response.text
    assert SECRET not in response.text
    if content_type == "application/json":
        assert json.loads(response.text)["code"] == "500 Internal Server Error"


def test_on_error_hooks_get_the_id_and_a_failing_hook_cannot_break_the_response(caplog):
    seen = []

    def broken_hook(exc_info, environ, error_id):
        raise ConnectionError("reporting service down")

    def recording_hook(exc_info, environ, error_id):
        seen.append((exc_info[0], environ["PATH_INFO"], error_id))

    app = TestApp(
        catcher(app_with(raise_in_call=RuntimeError("x")), on_error=[broken_hook, recording_hook])
    )
    response = app.get("/hooked", status=500)
    assert seen == [(RuntimeError, "/hooked", response.headers["X-Error-Id"])]
    assert any("on_error hook" in r.getMessage() for r in caplog.records)


def test_mapped_exception_types_get_their_status():
    app = TestApp(catcher(app_with(raise_in_call=TimeoutError()), statuses={OSError: 504}))
    assert app.get("/", status=504).headers["X-Error-Id"]


def test_webob_http_exceptions_raised_by_the_app_pass_through(caplog):
    app = TestApp(catcher(app_with(raise_in_call=webob.exc.HTTPNotFound())))
    app.get("/", status=404)
    assert error_records(caplog) == []


def test_debug_page_shows_escaped_locals_and_warns_at_start_up(caplog):
    def leaky(environ, start_response):
        hostile = "<script>alert(1)</script>"
        raise RuntimeError(hostile)

    app = TestApp(catcher(leaky, debug=True))
    assert any("debug=True" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    text = app.get("/", status=500).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script>" not in text
    assert "hostile" in text and "leaky" in text


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        pytest.param(None, "text/html", id="any"),
        pytest.param("text/html", "text/html", id="html"),
        pytest.param("application/json", "application/json", id="json"),
        pytest.param("text/plain", "text/plain", id="plain"),
    ],
)
def test_debug_traceback_is_negotiated_like_the_500(accept, content_type):
    # An API client in development reads the 500 as JSON: an HTML page broke its parser.
    def failing_view(environ, start_response):
        raise RuntimeError("<no such row>")

    headers = {"Accept": accept} if accept else {}
    response = TestApp(catcher(failing_view, debug=True)).get("/", headers=headers, status=500)
    assert response.content_type == content_type
    error_id = response.headers["X-Error-Id"]
    if content_type == "application/json":
        answer = json.loads(response.text)
        assert answer["code"] == "500 Internal Server Error"
        assert answer["message"] == f"RuntimeError: <no such row> (error id: {error_id})"
        assert "in failing_view" in answer["traceback"]
    elif content_type == "text/plain":
        assert response.text.startswith("Traceback (most recent call last):")
        assert "in failing_view" in response.text and "RuntimeError: <no such row>" in response.text
        assert f"Error id: {error_id}" in response.text
    else:
        assert "RuntimeError: &lt;no such row&gt;" in response.text and error_id in response.text


def test_debug_page_survives_text_that_is_not_utf_8(caplog):
    # Bytes that are not UTF-8 decoded with surrogateescape (os.fsdecode, file names,
    # PATH_INFO read as UTF-8) leave lone surrogates that UTF-8 cannot encode.
    def undecodable(environ, start_response):
        raise ValueError(environ["PATH_INFO"].encode("latin-1").decode("utf-8", "surrogateescape"))

    response = TestApp(catcher(undecodable, debug=True)).get("/caf%E9", status=500)
    assert response.content_type == "text/html"
    assert "ValueError: /caf\\udce9" in response.text


def test_debug_page_survives_locals_that_are_not_named_by_strings():
    # exec() takes any mapping as locals, and a module's globals may hold any key:
    # sorting 1 with "x" and escaping 1 both raised, and the page was lost.
    def templated(environ, start_response):
        exec("raise LookupError('<no such name>')", {}, {1: "<one>", "x": 2})

    text = TestApp(catcher(templated, debug=True)).get("/", status=500).text
    assert "LookupError: &lt;no such name&gt;" in text
    assert "&#x27;&lt;one&gt;&#x27;" in text and "<one>" not in text


def test_debug_page_cuts_a_huge_upload_before_its_repr_is_made():
    # A view holding a 10 MB upload: its full repr (four bytes a byte) only to be cut to 200.
    def upload(environ, start_response):
        data = b"\0" * 10_000_000
        raise ValueError(len(data))

    app = TestApp(catcher(upload, debug=True))
    tracemalloc.start()
    try:
        text = app.get("/", status=500).text
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "<code>b&#x27;\\x00\\x00" in text and "\\x00&#x27;</code>" in text
    assert peak < 15_000_000  # the upload itself, not four copies of it


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"debug": "yes"}, "debug: expected true or false", id="debug"),
        pytest.param(
            {"pass_http_exceptions": "no"},
            "pass_http_exceptions: expected true or false, got 'no'",
            id="pass-http-exceptions",
        ),
        pytest.param({"on_error": [42]}, "on_error: 42 is not callable", id="hook"),
        pytest.param({"statuses": {"Timeout": 504}}, "'Timeout' is not an exception", id="type"),
        pytest.param({"statuses": {TimeoutError: 200}}, "200 is not an error status", id="status"),
        pytest.param(
            {"statuses": [(TimeoutError, 504)]},
            "statuses: expected a mapping of exception class to status",
            id="statuses-pairs",
        ),
        pytest.param(
            {"on_error": "report"},
            "on_error: expected a callable or a list of callables, got 'report'",
            id="hook-name",
        ),
        pytest.param({"on_error": 5}, "on_error: expected a callable", id="hook-int"),
        pytest.param({"error_id_header": ""}, "error_id_header: '' is not a header", id="empty"),
        pytest.param(
            {"error_id_header": "X Error: Id"}, "error_id_header: 'X Error: Id'", id="spaces"
        ),
        pytest.param(
            {"error_id_header": "X-Id\r\nSet-Cookie: a=b"},
            "error_id_header: 'X-Id\\r\\nSet-Cookie: a=b' is not a header",
            id="injection",
        ),
    ],
)
def test_bad_options_fail_at_start_up(options, message):
    # Each of these used to be accepted and then broke the first error response.
    with pytest.raises(ConfigError, match=re.escape(message)):
        ErrorCatcher(app_with([b""]), **options)


def test_a_status_key_may_name_the_class_and_is_imported_at_start_up():
    # A config file can only name a class: "builtins:TimeoutError" is TimeoutError.
    catcher = ErrorCatcher(app_with([b""]), statuses={"builtins:TimeoutError": 504})
    assert catcher.statuses == {TimeoutError: 504}


def test_a_status_key_whose_module_fails_to_import_names_it_with_the_cause(tmp_path, monkeypatch):
    (tmp_path / "brokenexc.py").write_text("import os\n\nREGION = os.environ['NO_SUCH_REGION']\n")
    monkeypatch.syspath_prepend(tmp_path)
    with pytest.raises(ConfigError) as raised:
        ErrorCatcher(app_with([b""]), statuses={"brokenexc:Throttled": 429})
    assert str(raised.value) == (
        "ErrorCatcher: statuses: 'brokenexc:Throttled': KeyError: 'NO_SUCH_REGION'"
    )
    assert isinstance(raised.value.__cause__, KeyError)  # its traceback shows the line


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            {"statuses": {SystemExit: 503}},
            "statuses: SystemExit is not an Exception: ErrorCatcher lets it through",
            id="base-exception",
        ),
        pytest.param(
            {"statuses": {RequestBodyError: 400}},
            "statuses: RequestBodyError passes through to the server",
            id="protocol-error",
        ),
        pytest.param(
            {"statuses": {webob.exc.HTTPNotFound: 410}},
            "statuses: HTTPNotFound answers as itself (pass_http_exceptions=True)",
            id="http-exception",
        ),
    ],
)
def test_a_status_for_an_exception_never_caught_fails_at_start_up(options, message):
    # Accepted before, and never applied: the exception was not ErrorCatcher's to answer.
    with pytest.raises(ConfigError, match=re.escape(message)):
        ErrorCatcher(app_with([b""]), **options)


def test_an_http_exception_can_be_mapped_when_it_does_not_pass_through():
    app = catcher(
        app_with(raise_in_call=webob.exc.HTTPNotFound()),
        pass_http_exceptions=False,
        statuses={webob.exc.HTTPNotFound: 410},
    )
    assert TestApp(app).get("/", status=410).headers["X-Error-Id"]


def test_an_app_that_is_not_callable_fails_at_start_up():
    with pytest.raises(
        ConfigError, match=re.escape("ErrorCatcher: app: 'myapp:app' is not a WSGI")
    ):
        ErrorCatcher("myapp:app")


def test_a_custom_error_id_header_carries_the_id():
    app = TestApp(catcher(app_with(raise_in_call=ValueError(SECRET)), error_id_header="X-Trace"))
    response = app.get("/", status=500)
    assert response.headers["X-Trace"] in response.text


def test_registry_name_in_a_pipeline():
    app = build_pipeline({"layer": [{"use": "error_catcher"}], "app": "tests.conftest:hello_app"})
    assert isinstance(app, ErrorCatcher)


def test_repr_shows_the_options():
    def report(exc_info, environ, error_id):
        pass

    layer = compose(use(ErrorCatcher, on_error=report, statuses={TimeoutError: 504}), app_with([]))
    assert repr(layer) == "ErrorCatcher(on_error=['report'], statuses={'TimeoutError': 504})"


def test_over_the_reference_server_an_error_after_headers_truncates_and_the_worker_lives_on():
    def streaming(environ, start_response):
        path = environ["PATH_INFO"]
        return app_with(Body([b"a" * 10, b"b" * 10], fail_at=1 if path == "/fail" else None))(
            environ, start_response
        )

    with live_server(ErrorCatcher(validator(streaming))) as server:
        with socket.create_connection(server.address, timeout=5) as sock:
            sock.sendall(b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\n")
            first = read_until_close(sock)
        with socket.create_connection(server.address, timeout=5) as sock:
            sock.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            second = read_until_close(sock)
    head, _, body = first.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert body == b"a\r\n" + b"a" * 10 + b"\r\n"  # no terminating chunk: visibly cut short
    assert second.endswith(b"0\r\n\r\n") and b"b" * 10 in second


def test_over_the_reference_server_an_error_after_headers_is_logged_once(caplog):
    # ErrorCatcher logs it with its traceback and says the response was cut; the
    # server cuts the connection without a line of its own.
    caplog.set_level(logging.INFO)
    app = app_with(Body([b"a" * 10, b"b" * 10], fail_at=1))
    with (
        live_server(ErrorCatcher(validator(app))) as server,
        socket.create_connection(server.address, timeout=5) as sock,
    ):
        sock.sendall(b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\n")
        read_until_close(sock)
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in errors] == ["wsgistack.errors"] and errors[0].exc_info
    assert errors[0].getMessage().endswith("; the response was cut off after it began")


def test_a_file_wrapper_reaches_the_server_so_it_is_sent_whole_with_a_length(tmp_path):
    # The server sendfile()s a wsgi.file_wrapper it recognises; wrapped in a guard
    # it would stream it chunked with no Content-Length. (No validator here: its
    # own iterator wrapper would hide the file wrapper just the same.)
    path = tmp_path / "report.pdf"
    path.write_bytes(b"%PDF" * 2000)

    def download(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/pdf")])
        return environ["wsgi.file_wrapper"](path.open("rb"))

    with (
        live_server(ErrorCatcher(download), validate=False) as server,
        RawClient(server.address) as client,
    ):
        status, headers, body = client.request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (status, headers.get("content-length"), body) == (200, "8000", b"%PDF" * 2000)
    assert "transfer-encoding" not in headers


@pytest.mark.parametrize("lazily", [False, True], ids=["in-the-call", "while-iterating"])
def test_a_client_whose_body_stalls_gets_the_servers_408_not_a_500(lazily, caplog):
    # wsgi.input raises the server's ProtocolError: the client's fault, for the
    # server to answer, not an application error with a traceback and an id.
    def reader(environ, start_response):
        def body():
            yield environ["wsgi.input"].read(10)

        start_response("200 OK", [("Content-Type", "text/plain")])
        return body() if lazily else [environ["wsgi.input"].read(10)]

    with (
        live_server(ErrorCatcher(reader), timeout=0.5) as server,
        RawClient(server.address) as client,
    ):
        client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        assert client.response()[0] == 408
    assert error_records(caplog) == []


def uwsgi_file_wrapper(filelike, chunk=4096):
    """As uWSGI's ``wsgi.file_wrapper``: a function that hands back the file it was given."""
    return filelike


class ReadableBody(Body):
    """A body with ``read()`` that is no file wrapper: a stream of rows, say."""

    def read(self, size=-1):
        return b""


def test_under_uwsgi_a_failing_body_with_read_is_still_caught(caplog):
    # uWSGI's file wrapper is a function, so any body with read() counted as one
    # and went to uWSGI unguarded: its failure became an empty 200, logged by uWSGI.
    # (No validator inside: its iterator would hide the body's own type.)
    body = ReadableBody([b"never"], fail_at=0)
    environ = {"wsgi.file_wrapper": uwsgi_file_wrapper}
    outcome = serve_once(validator(ErrorCatcher(app_with(body))), "/rows", **environ)
    assert outcome.status == "500 Internal Server Error"
    [record] = error_records(caplog)
    assert dict(outcome.headers)["X-Error-Id"] in record.getMessage()
    assert body.closed == 1


def test_under_uwsgi_what_its_file_wrapper_returned_goes_to_uwsgi_untouched(tmp_path):
    # uWSGI sendfile()s the body only if it is the very object its wrapper returned.
    path = tmp_path / "report.pdf"
    path.write_bytes(b"%PDF")
    files = []

    def download(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/pdf")])
        files.append(path.open("rb"))
        return environ["wsgi.file_wrapper"](files[0], 65536)

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.file_wrapper": uwsgi_file_wrapper}
    body = ErrorCatcher(download)(environ, lambda status, headers, exc_info=None: None)
    with files[0]:
        assert body is files[0]


def _failing_view(environ, start_response):
    raise RuntimeError("the view failed")


def _logged_client(caplog, app) -> str:
    """The client ErrorCatcher's line names for a request from a proxy on loopback."""
    with live_server(app) as server, RawClient(server.address) as client:
        status, _, _ = client.request(
            b"GET /boom HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n"
        )
    assert status == 500
    [record] = error_records(caplog)
    return re.search(r"GET /boom from (\S+)", record.getMessage())[1]


def test_behind_a_trusted_proxy_the_log_names_the_client_not_the_proxy(caplog):
    # nginx in front: every failure line said "from 127.0.0.1", the proxy.
    app = ErrorCatcher(validator(_failing_view), trusted_proxies=["127.0.0.1"])
    assert _logged_client(caplog, app) == "203.0.113.9"


def test_without_trusted_proxies_the_forwarded_header_is_not_believed(caplog):
    assert _logged_client(caplog, ErrorCatcher(validator(_failing_view))) == "127.0.0.1"


def test_the_client_a_layer_below_resolved_is_reused(caplog):
    from wsgistack.middlewares import IPFilter

    inner = IPFilter(validator(_failing_view), deny=["192.0.2.0/24"], trusted_proxies=["127.0.0.1"])
    assert _logged_client(caplog, ErrorCatcher(inner)) == "203.0.113.9"


@pytest.mark.parametrize("value", ["not-a-network", True, 1.5, ["10.0.0.0/8", "nope"]])
def test_a_bad_trusted_proxies_fails_at_start_up(value):
    with pytest.raises(ConfigError, match=r"trusted_proxies"):
        ErrorCatcher(_failing_view, trusted_proxies=value)


def test_repr_shows_trusted_proxies():
    layer = ErrorCatcher(_failing_view, trusted_proxies=1)
    assert (
        repr(layer) == "ErrorCatcher(trusted_proxies=ProxyTrust(hops=1, header='x-forwarded-for'))"
    )


def test_trusted_proxies_in_a_pipeline_file():
    spec = {
        "layer": [{"use": "error_catcher", "trusted_proxies": 1}],
        "app": "tests.conftest:hello_app",
    }
    assert "trusted_proxies=ProxyTrust(hops=1" in repr(build_pipeline(spec))
    spec["layer"][0]["trusted_proxies"] = "10.0.0.0/33"
    with pytest.raises(ConfigError, match=r"trusted_proxies.*10\.0\.0\.0/33"):
        build_pipeline(spec)


def test_nested_catchers_log_a_write_then_raise_once_and_report_it_once(caplog):
    # A site-wide ErrorCatcher around a mounted app that has its own: the inner one
    # logs the failure and raises ResponseCut; the outer must pass that on to the
    # server, not log it (and report it to on_error) a second time as an app error.
    reported = []

    def write_app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written")
        raise ValueError(SECRET)

    inner = ErrorCatcher(validator(write_app))
    outer = ErrorCatcher(validator(inner), on_error=lambda *args: reported.append(args))
    outcome = serve_once(validator(outer))
    assert outcome.body == b"written" and isinstance(outcome.aborted, ResponseCut)
    [record] = error_records(caplog)
    assert record.exc_info[0] is ValueError
    assert reported == []
