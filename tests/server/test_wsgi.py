"""PEP 3333 as the server implements it: environ, start_response, exc_info, file_wrapper."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sys
import threading

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from wsgistack.server.environ import Input
from wsgistack.server.request import Request

from .live import RawClient, live_server

GET = b"GET /%s HTTP/1.1\r\nHost: a\r\n\r\n"
TEXT = [("Content-Type", "text/plain")]


def environ_app(seen):
    def app(environ, start_response):
        seen.update(environ)
        start_response("200 OK", [*TEXT, ("Content-Length", "2")])
        return [b"ok"]

    return app


def test_environ_has_every_required_key():
    seen = {}
    with (
        live_server(environ_app(seen), root_path="/api") as server,
        RawClient(server.address) as client,
    ):
        client.request(
            b"POST /api/caf%C3%A9/x?a=1&b=%20 HTTP/1.1\r\nHost: example.com:8080\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 0\r\nX-Multi: 1\r\nX-Multi: 2\r\n"
            b"Cookie: a=1\r\nCookie: b=2\r\nX_Forwarded_For: 6.6.6.6\r\n\r\n"
        )
        port = server.address[1]
        local_port = client.sock.getsockname()[1]
    assert seen["REQUEST_METHOD"] == "POST"
    assert seen["SCRIPT_NAME"] == "/api"
    assert seen["PATH_INFO"] == "/caf\u00c3\u00a9/x"  # percent-decoded, carried as latin-1
    assert seen["QUERY_STRING"] == "a=1&b=%20"
    assert seen["RAW_URI"] == "/api/caf%C3%A9/x?a=1&b=%20"
    assert (seen["SERVER_NAME"], seen["SERVER_PORT"]) == ("127.0.0.1", str(port))
    assert seen["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert (seen["REMOTE_ADDR"], seen["REMOTE_PORT"]) == ("127.0.0.1", str(local_port))
    assert (seen["CONTENT_TYPE"], seen["CONTENT_LENGTH"]) == ("text/plain", "0")
    assert seen["HTTP_HOST"] == "example.com:8080"
    assert seen["HTTP_X_MULTI"] == "1, 2"
    assert seen["HTTP_COOKIE"] == "a=1; b=2"
    assert "HTTP_X_FORWARDED_FOR" not in seen  # X_Forwarded_For cannot impersonate it
    assert seen["wsgi.version"] == (1, 0)
    assert seen["wsgi.url_scheme"] == "http"
    assert seen["wsgi.input_terminated"] is True
    assert seen["wsgi.multithread"] is True
    assert seen["wsgi.multiprocess"] is False
    assert seen["wsgi.run_once"] is False
    assert callable(seen["wsgi.errors"].write)
    assert callable(seen["wsgi.file_wrapper"])


def test_a_non_ascii_root_path_matches_and_is_a_pep_3333_string():
    # SCRIPT_NAME was the text as given while PATH_INFO carries UTF-8 bytes as
    # latin-1, so --root-path /café never matched a request and stayed undecodable.
    seen = {}
    with (
        live_server(environ_app(seen), root_path="/caf\u00e9") as server,
        RawClient(server.address) as client,
    ):
        client.request(b"GET /caf%C3%A9/x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"]) == ("/caf\u00c3\u00a9", "/x")


def test_header_values_lose_the_whitespace_around_them():
    # RFC 9112 5: OWS around a field value is not part of it (Django's host check
    # would refuse "example.com ").
    seen = {}
    with live_server(environ_app(seen)) as server, RawClient(server.address) as client:
        client.request(
            b"GET / HTTP/1.1\r\nHost: example.com \r\nContent-Type: \ttext/plain\t\r\n"
            b"X-A:  v \t \r\nX-Empty:  \r\n\r\n"
        )
    assert (seen["HTTP_HOST"], seen["CONTENT_TYPE"]) == ("example.com", "text/plain")
    assert (seen["HTTP_X_A"], seen["HTTP_X_EMPTY"]) == ("v", "")


@pytest.mark.parametrize(
    ("target", "host"),
    [
        pytest.param(b"http://good.example/p?q=1", "good.example", id="host"),
        pytest.param(b"http://good.example:8080", "good.example:8080", id="host-and-port"),
        pytest.param(b"http://[::1]:8080/p", "[::1]:8080", id="ipv6"),
        pytest.param(b"/p?q=1", "evil.example", id="origin-form-keeps-host"),
    ],
)
def test_absolute_form_target_gives_the_host(target, host):
    # RFC 9112 3.2.2: with an absolute-form target the server MUST ignore Host.
    seen = {}
    with live_server(environ_app(seen)) as server, RawClient(server.address) as client:
        client.request(b"GET %s HTTP/1.1\r\nHost: evil.example\r\n\r\n" % target)
    assert seen["HTTP_HOST"] == host


def test_write_callable_and_iterable_are_both_sent():
    def app(environ, start_response):
        write = start_response("200 OK", TEXT)
        write(b"written,")
        return [b"returned"]

    with live_server(app) as server, RawClient(server.address) as client:
        assert client.request(GET % b"")[2] == b"written,returned"


def test_close_is_called_even_when_iteration_raises():
    closed = []

    class Body:
        def __iter__(self):
            yield b"start"
            raise RuntimeError("boom")

        def close(self):
            closed.append(True)

    def app(environ, start_response):
        start_response("200 OK", TEXT)
        return Body() if environ["PATH_INFO"] == "/boom" else [b"fine"]

    with live_server(app, validate=False) as server:
        with RawClient(server.address) as client:
            client.send(GET % b"boom")
            # Headers and "start" went out chunked; then the connection is aborted.
            data = client.read_to_close()
            assert data.startswith(b"HTTP/1.1 200 OK")
            assert not data.endswith(b"0\r\n\r\n")
        assert closed == [True]
        with RawClient(server.address) as client:  # the worker is alive
            assert client.request(GET % b"")[0] == 200


def test_exc_info_replaces_headers_before_anything_was_sent():
    def app(environ, start_response):
        start_response("200 OK", [*TEXT, ("X-Old", "1")])
        try:
            raise ValueError("late failure")
        except ValueError:
            start_response("500 Internal Server Error", [*TEXT, ("X-New", "1")], sys.exc_info())
        return [b"replaced"]

    with live_server(app) as server, RawClient(server.address) as client:
        status, headers, body = client.request(GET % b"")
        assert (status, body) == (500, b"replaced")
        assert "x-old" not in headers and headers["x-new"] == "1"


def test_exc_info_after_headers_were_sent_aborts_the_connection():
    def app(environ, start_response):
        write = start_response("200 OK", TEXT)
        write(b"partial")
        try:
            raise ValueError("too late")
        except ValueError:
            start_response("500 Internal Server Error", TEXT, sys.exc_info())
        return [b"never"]

    with live_server(app, validate=False) as server, RawClient(server.address) as client:
        client.send(GET % b"")
        data = client.read_to_close()
        assert b"partial" in data and b"never" not in data and not data.endswith(b"0\r\n\r\n")


def test_a_close_delimited_body_cut_off_by_an_error_ends_with_a_reset():
    # HTTP/1.0 (and nginx's proxy_pass, which speaks it) reads a body without a
    # length to the close: an orderly close would pass the fragment off as whole.
    def app(environ, start_response):
        start_response("200 OK", TEXT)
        yield b"partial"
        raise ValueError("the database went away")

    with live_server(app) as server, RawClient(server.address) as client:
        client.send(b"GET / HTTP/1.0\r\n\r\n")
        client.read_to_close()
        assert client.was_reset


def test_an_error_the_app_reports_after_the_head_is_logged_once_by_the_app(caplog):
    # exc_info after the head went out: the app has the error in hand (and logs
    # it); the server says it cut the response off, without the traceback again.
    # An error the app does not report still gets the server's ERROR with it.
    def app(environ, start_response):
        write = start_response("200 OK", TEXT)
        write(b"partial")
        if environ["PATH_INFO"] == "/silent":
            raise ValueError("unreported")
        try:
            raise ValueError("too late")
        except ValueError:
            start_response("500 Internal Server Error", TEXT, sys.exc_info())
        return [b"never"]

    caplog.set_level(logging.INFO, logger="wsgistack.server")
    with live_server(app, validate=False) as server:
        for path in (b"/reported", b"/silent"):
            with RawClient(server.address) as client:
                client.send(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path)
                assert not client.read_to_close().endswith(b"0\r\n\r\n")
    records = [r for r in caplog.records if r.name == "wsgistack.server"]
    assert [(r.levelno, bool(r.exc_info)) for r in records] == [
        (logging.WARNING, False),
        (logging.ERROR, True),
    ]
    assert "reported ValueError after its response began" in records[0].getMessage()


def test_start_response_twice_without_exc_info_is_a_500():
    def app(environ, start_response):
        start_response("200 OK", TEXT)
        start_response("200 OK", TEXT)
        return [b""]

    with live_server(app, validate=False) as server, RawClient(server.address) as client:
        assert client.request(GET % b"")[0] == 500


@pytest.mark.parametrize(
    ("body", "did"),
    [
        ([], "returned without calling start_response"),
        ([b"never"], "sent a body before calling start_response"),
    ],
    ids=["empty", "a-chunk"],
)
def test_an_app_that_never_calls_start_response_is_a_500_and_logged(body, did, caplog):
    # Logged as "the application raised while iterating" with a traceback of
    # the server's own write(), as if the app had raised: one line says what it did.
    def app(environ, start_response):
        return body

    with live_server(app, validate=False) as server, RawClient(server.address) as client:
        assert client.request(GET % b"x")[0] == 500
    errors = [r for r in caplog.records if r.name == "wsgistack.server" and r.levelname == "ERROR"]
    assert [(r.getMessage(), r.exc_info) for r in errors] == [
        (f"GET /x from 127.0.0.1: the application {did}, answered 500", None)
    ]


def test_an_app_that_calls_start_response_in_an_empty_generator_is_a_200(caplog):
    # Legal (PEP 3333: headers go out with the first non-empty chunk, or at
    # the end): an empty 200, not a 500.
    def app(environ, start_response):  # a generator: nothing runs until iterated
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield from ()

    with live_server(app) as server, RawClient(server.address) as client:
        status, headers, body = client.request(GET % b"x")
    assert (status, headers["content-length"], body) == (200, "0", b"")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        pytest.param("200 OK", [("X-Evil", "a\r\nSet-Cookie: x=1")], id="crlf-in-value"),
        pytest.param("200 OK", [("X-Evil", "a\nb")], id="lf-in-value"),
        pytest.param("200 OK", [("X-Evil\r\nX", "a")], id="crlf-in-name"),
        pytest.param("200 OK", [("X-Uni", "caf\u00e9\u2603")], id="non-latin-1-value"),
        pytest.param("200 OK\r\nSet-Cookie: x=1", [], id="crlf-in-status"),
        pytest.param("OK", [], id="status-without-code"),
        pytest.param("200 OK", [("Content-Length", "x")], id="bad-content-length"),
        pytest.param("200 OK", [("Content-Length", "\xb2")], id="non-ascii-digit-length"),
        pytest.param("200 caf\u2603", [], id="non-latin-1-status"),
        pytest.param("200 OK", [("X-Evil", "a\x00b")], id="nul-in-value"),
        # RFC 9110 5.5: no control byte but HTAB in a field value; llhttp (Node.js)
        # and gunicorn refuse the whole response for one, so the app's fault shows.
        pytest.param("200 OK", [("X-Ctl", "a\x01b")], id="ctl-in-value"),
        pytest.param("200 OK", [("X-Ctl", "a\x0bb")], id="vt-in-value"),
        pytest.param("200 OK", [("X-Ctl", "a\x7fb")], id="del-in-value"),
        pytest.param("200 O\x01K", [], id="ctl-in-reason"),  # RFC 9112 4: the same
        pytest.param("200 O\x7fK", [], id="del-in-reason"),
        pytest.param("200 OK", [(b"X-Bytes", "a")], id="bytes-name"),
        pytest.param("200 OK", [(["X-List"], "a")], id="unhashable-name"),
        pytest.param("200 OK", [("X-Int", 5)], id="int-value"),
        pytest.param("200 OK", [["X-Pair", "a"]], id="list-not-tuple"),
        pytest.param(
            "200 OK",
            [("Content-Length", "4"), ("Content-Length", "40")],
            id="conflicting-content-lengths",
        ),
    ],
)
def test_injected_status_or_header_is_refused_with_500(status, headers):
    def app(environ, start_response):
        start_response(status, headers)
        return [b"body"]

    with live_server(app, validate=False) as server, RawClient(server.address) as client:
        client.send(GET % b"")
        data = client.read_to_close()
        assert data.startswith(b"HTTP/1.1 500 ")
        assert b"Set-Cookie" not in data and b"body" not in data


def test_a_tab_and_obs_text_in_a_header_value_and_reason_go_out():
    # RFC 9110 5.5 and RFC 9112 4: HTAB and obs-text (latin-1) are allowed; only
    # the other control bytes are refused.
    def app(environ, start_response):
        start_response(
            "200 Fine\tThanks", [*TEXT, ("X-Tab", "a\tcaf\u00e9"), ("Content-Length", "2")]
        )
        return [b"ok"]

    # wsgiref's validator refuses every control byte, HTAB too: stricter than the RFC.
    with live_server(app, validate=False) as server, RawClient(server.address) as client:
        client.send(GET % b"")
        head = client._read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 Fine\tThanks\r\n")
        assert b"\r\nX-Tab: a\tcaf\xe9\r\n" in head


def test_a_repeated_content_length_goes_out_once():
    # RFC 9112 6.3: a response with two Content-Length fields is invalid framing;
    # llhttp (Node's and our parser) refuses it even when both values agree.
    def app(environ, start_response):
        start_response("200 OK", [*TEXT, ("Content-Length", "2"), ("Content-Length", "2")])
        return [b"ok"]

    with live_server(app) as server, RawClient(server.address) as client:
        client.send(GET % b"")
        head = client._read_until(b"\r\n\r\n")
        assert head.lower().count(b"content-length:") == 1
        assert client._read_exact(2) == b"ok"
        assert client.request(GET % b"")[2] == b"ok"  # framing intact: keep-alive works


def test_app_exception_before_start_is_500_and_worker_survives():
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/boom":
            raise RuntimeError("boom")
        start_response("200 OK", [*TEXT, ("Content-Length", "2")])
        return [b"ok"]

    with live_server(app) as server:
        with RawClient(server.address) as client:
            assert client.request(GET % b"boom")[0] == 500
        with RawClient(server.address) as client:
            assert client.request(GET % b"fine")[2] == b"ok"


def _exits(environ, start_response):
    sys.exit("the app called sys.exit()")


def _cancelled(environ, start_response):
    raise asyncio.CancelledError  # a BaseException: asyncio.run() inside a view can leak it


def _exits_while_iterating(environ, start_response):
    start_response("200 OK", TEXT)
    yield b"start"
    sys.exit(1)


@pytest.mark.parametrize(
    ("failing", "answer"),
    [(_exits, 500), (_cancelled, 500), (_exits_while_iterating, 200)],
    ids=["sys-exit", "cancelled-error", "sys-exit-mid-body"],
)
def test_an_app_raising_a_base_exception_does_not_cost_the_worker_a_thread(failing, answer):
    """The thread serving it survives: with one thread, a lost one would hang the next request."""

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/fail":
            return failing(environ, start_response)
        start_response("200 OK", [*TEXT, ("Content-Length", "2")])
        return [b"ok"]

    with live_server(app, validate=False, threads=1) as server:
        for _ in range(2):
            with RawClient(server.address) as client:
                client.send(GET % b"fail")
                assert client.read_to_close().startswith(b"HTTP/1.1 %d " % answer)
            with RawClient(server.address, timeout=5) as client:
                assert client.request(GET % b"fine")[2] == b"ok"


def test_file_wrapper_uses_sendfile_for_real_files(tmp_path, sendfile_spy):
    path = tmp_path / "data.bin"
    path.write_bytes(b"0123456789" * 10000)
    sent = sendfile_spy

    def app(environ, start_response):
        start_response("200 OK", TEXT)
        return environ["wsgi.file_wrapper"](open(path, "rb"))

    with live_server(app, validate=False) as server, RawClient(server.address) as client:
        _status, headers, body = client.request(GET % b"")
        assert body == path.read_bytes()
        assert headers["content-length"] == "100000"
    assert sum(sent) == 100000  # the body went by sendfile, none of it by iteration


def test_file_wrapper_positioned_past_the_end_sends_an_empty_body(tmp_path):
    # A Range handler that seeks beyond a file that shrank must not get a
    # negative Content-Length (an invalid response) for its sendfile().
    path = tmp_path / "short.bin"
    path.write_bytes(b"hello")

    def app(environ, start_response):
        file = path.open("rb")
        file.seek(10)
        start_response("200 OK", TEXT)
        return environ["wsgi.file_wrapper"](file)

    with live_server(app, validate=False) as server, RawClient(server.address) as client:
        status, headers, body = client.request(GET % b"")
        assert (status, headers["content-length"], body) == (200, "0", b"")
        assert client.request(GET % b"")[0] == 200


def test_file_wrapper_over_a_non_file_is_iterated():
    def app(environ, start_response):
        start_response("200 OK", TEXT)
        return environ["wsgi.file_wrapper"](io.BytesIO(b"in memory"), 4)

    with live_server(app) as server, RawClient(server.address) as client:
        assert client.request(GET % b"")[2] == b"in memory"


def test_bodyless_statuses_send_no_body():
    def app(environ, start_response):
        start_response("304 Not Modified", [])
        return []

    with live_server(app) as server, RawClient(server.address) as client:
        status, headers, _ = client.request(GET % b"")
        assert status == 304 and "transfer-encoding" not in headers
        assert client.request(GET % b"")[0] == 304  # nothing stray was left on the wire


def test_bodyless_statuses_get_no_content_length_from_a_one_block_body():
    # RFC 9110 8.6: a 204 has no Content-Length; on a 304 it would misstate the resource.
    def app(environ, start_response):
        start_response(environ["PATH_INFO"][1:] + " Status", [])
        return [b""]

    with live_server(app) as server, RawClient(server.address) as client:
        for status in (204, 304):
            got, headers, body = client.request(GET % str(status).encode())
            assert (got, body) == (status, b"")
            assert "content-length" not in headers and "transfer-encoding" not in headers


def test_a_204_never_carries_the_apps_content_length_and_a_304_keeps_it(tmp_path):
    # RFC 9110 8.6: a server MUST NOT send Content-Length in a 204; a 304's tells
    # the length of the representation the client has, so it is the app's to keep.
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"x")

    def app(environ, start_response):
        status = environ["PATH_INFO"][1:4]
        if environ["PATH_INFO"].endswith("/file"):  # sendfile's path adds its own length
            start_response(f"{status} Status", [])
            return environ["wsgi.file_wrapper"](empty.open("rb"))
        start_response(f"{status} Status", [("Content-Length", "0" if status == "204" else "7")])
        return []

    with live_server(app) as server, RawClient(server.address) as client:
        for path, length in ((b"204", None), (b"204/file", None), (b"304", "7")):
            status, headers, body = client.request(GET % path)
            assert status == int(path[:3]) and body == b""
            assert headers.get("content-length") == length


def _str_body(environ, start_response):
    start_response("200 OK", TEXT)
    return ["text, not bytes"]


def _longer_than_its_length(environ, start_response):
    start_response("200 OK", [("Content-Length", "2")])
    return iter([b"hello"])


@pytest.mark.parametrize("app", [_str_body, _longer_than_its_length])
def test_a_first_chunk_that_cannot_be_sent_is_answered_500(app, caplog):
    # Nothing went out yet, so the client hears why instead of an empty reply.
    with live_server(app, validate=False) as server, RawClient(server.address) as client:
        status, headers, _ = client.request(GET % b"")
        assert status == 500 and headers["connection"] == "close"
    assert any(record.exc_info for record in caplog.records)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs procfs")
def test_file_wrapper_over_a_proc_file_sends_its_content():
    # fstat says 0 bytes for /proc files: sendfile would send an empty body.
    def app(environ, start_response):
        start_response("200 OK", TEXT)
        return environ["wsgi.file_wrapper"](open("/proc/self/status", "rb"))

    with live_server(app, validate=False) as server, RawClient(server.address) as client:
        status, headers, body = client.request(GET % b"")
    assert status == 200 and body.startswith(b"Name:")
    assert headers.get("content-length") != "0"


def _input(blocks: list[bytes]) -> Input:
    """A ``wsgi.input`` over a body that has fully arrived in ``blocks``."""
    request = Request()
    request.body.extend(block for block in blocks if block)
    request.complete = True
    return Input(request, lambda: None, lambda: None)


_SIZES = st.one_of(st.none(), st.integers(-2, 12))


@given(
    blocks=st.lists(st.binary(max_size=8).map(lambda b: b.replace(b"\0", b"\n")), max_size=8),
    calls=st.lists(st.tuples(st.sampled_from(["read", "readline", "readlines"]), _SIZES)),
)
@example(blocks=[b"ab\n", b"c"], calls=[("readlines", None)])
def test_wsgi_input_reads_like_bytesio(blocks, calls):
    stream, reference = _input(blocks), io.BytesIO(b"".join(blocks))
    for method, size in calls:
        assert getattr(stream, method)(size) == getattr(reference, method)(size)
    assert next(stream, None) == next(reference, None)
    assert list(stream) == list(reference)


@pytest.mark.parametrize(
    "framing",
    [
        pytest.param(b"Content-Length: 10\r\n\r\nab\ncd\nefg\n", id="length"),
        pytest.param(
            b"Transfer-Encoding: chunked\r\n\r\n5\r\nab\ncd\r\n5\r\n\nefg\n\r\n0\r\n\r\n",
            id="chunked",
        ),
    ],
)
def test_wsgi_input_is_its_own_line_iterator_as_a_file_is(framing):
    # next(environ["wsgi.input"]) works under gunicorn, waitress and uWSGI (their
    # inputs are files or iterators); ours had only __iter__, so it raised TypeError.
    # (wsgiref's validator wraps the input in an object with __iter__ alone: off.)
    def app(environ, start_response):
        stream = environ["wsgi.input"]
        lines = [next(stream), next(stream)]
        lines += list(stream)
        lines.append(next(stream, b"(end)"))
        data = b"|".join(lines)
        start_response("200 OK", [*TEXT, ("Content-Length", str(len(data)))])
        return [data]

    with live_server(app, validate=False) as server, RawClient(server.address) as client:
        status, _, body = client.request(b"POST / HTTP/1.1\r\nHost: a\r\n" + framing)
    assert (status, body) == (200, b"ab\n|cd\n|efg\n|(end)")


@pytest.mark.parametrize("method", ["read", "readline"])
def test_wsgi_input_reads_a_body_of_many_blocks_in_one_pass(method):
    # Each block used to be appended to one buffer (a copy of all before it, and
    # readline() searched it all again): a million blocks took hours.  Gathered and
    # joined once, they take about a second.
    blocks = [b"x" * 10] * 1_000_000
    result = []
    reader = threading.Thread(
        target=lambda: result.append(getattr(_input(blocks), method)()), daemon=True
    )
    reader.start()
    reader.join(60)  # a bound on the wait, far above what one pass takes
    assert result == [b"x" * 10_000_000]


def test_each_bind_gives_its_own_server_name_and_port():
    def app(environ, start_response):
        start_response("200 OK", TEXT)
        return [f"{environ['SERVER_NAME']} {environ['SERVER_PORT']}".encode()]

    with live_server(app, bind=["127.0.0.1:0", "[::1]:0"]) as server:
        for host, port in server.addresses:
            with RawClient((host, port)) as client:
                assert client.request(GET % b"")[2] == f"{host} {port}".encode()


@pytest.mark.parametrize(
    ("given", "date", "server"),
    [
        pytest.param([], None, "wsgistack", id="none-given"),
        pytest.param(
            [("Date", "Sun, 06 Nov 1994 08:49:37 GMT"), ("Server", "upstream/1.0")],
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "upstream/1.0",
            id="both-given",
        ),
        pytest.param([("server", "mine")], None, "mine", id="server-given"),
    ],
)
def test_date_and_server_are_added_only_when_the_app_gave_none(given, date, server):
    # RFC 9110 6.6.1 allows one Date: an app's own (a forwarded response's) wins.
    def app(environ, start_response):
        start_response("200 OK", [*TEXT, *given, ("Content-Length", "2")])
        return [b"ok"]

    with live_server(app) as live, RawClient(live.address) as client:
        client.send(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        head = client.read_to_close().partition(b"\r\n\r\n")[0].decode("latin-1")
    fields = [line.partition(":") for line in head.split("\r\n")[1:]]
    dates = [value.strip() for name, _, value in fields if name.lower() == "date"]
    servers = [value.strip() for name, _, value in fields if name.lower() == "server"]
    assert len(dates) == 1 and (date is None or dates == [date])
    assert servers == [server]


@pytest.mark.parametrize(
    ("status", "line"),
    [
        pytest.param("200", b"HTTP/1.1 200 OK\r\n", id="known-code"),
        pytest.param("404", b"HTTP/1.1 404 Not Found\r\n", id="another-code"),
        pytest.param("299", b"HTTP/1.1 299 \r\n", id="unknown-code-empty-reason"),
        pytest.param("200 ", b"HTTP/1.1 200 \r\n", id="empty-reason-kept"),
    ],
)
def test_a_status_without_a_reason_is_sent_with_the_standard_one(status, line):
    # start_response("200", ...) was a 500; gunicorn, waitress and uWSGI send it on.
    def app(environ, start_response):
        start_response(status, [("Content-Type", "text/plain")])
        return [b"ok"]

    with live_server(app, validate=False) as server, RawClient(server.address) as client:
        assert client.request(GET % b"")[::2] == (int(status[:3]), b"ok")  # kept alive
        client.send(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        data = client.read_to_close()
    assert data.startswith(line) and data.endswith(b"\r\n\r\nok")


@pytest.mark.parametrize("status", ["103 Early Hints", "100 Continue", "101 Switching Protocols"])
def test_an_interim_status_from_the_app_is_a_logged_500(status, caplog):
    # "103 Early Hints" went out as the final response: the client then waited
    # for another one, or took the body for the next response.
    def app(environ, start_response):
        start_response(status, [("Link", "</a.css>; rel=preload")])
        return [b"body"]

    with live_server(app, validate=False) as server, RawClient(server.address) as client:
        client.send(GET % b"")
        data = client.read_to_close()
    assert data.startswith(b"HTTP/1.1 500 ") and b"Link" not in data and b"body" not in data
    assert any("interim status" in str(record.exc_info[1]) for record in caplog.records)
