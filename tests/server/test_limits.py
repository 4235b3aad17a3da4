"""Limits and slow clients: 414, 431, 413, 408, and random bytes never kill a worker."""

from __future__ import annotations

import contextlib
import http.client
import logging
import select
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import echo_app
from .live import RawClient, live_server, read_until_close, uwsgi_packet

GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


@pytest.fixture(scope="module")
def server():
    with live_server(
        echo_app,
        max_request_line=1024,
        max_headers=20,
        max_header_size=4096,
        max_body_size=1000,
        timeout=0.5,
    ) as server:
        yield server


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        pytest.param(b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414, id="long-url"),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-A: b\r\n" * 30 + b"\r\n", 431, id="many-headers"
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 8000 + b"\r\n\r\n",
            431,
            id="big-header",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 8000, 431, id="big-header-unfinished"
        ),
        pytest.param(b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 8000, 431, id="first-header-unfinished"),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n", 413, id="content-length"
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"100\r\n"
            + b"x" * 256
            + b"\r\n" * 1
            + b"400\r\n"
            + b"x" * 1024
            + b"\r\n0\r\n\r\n",
            413,
            id="chunked",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n"
            + b"X-Trailer: "
            + b"t" * 200_000
            + b"\r\n\r\n",
            431,
            id="big-trailer",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n"
            + b"X-T: t\r\n" * 30_000,
            431,
            id="many-trailers-unfinished",
        ),
    ],
)
def test_limits_are_refused_with_their_status(server, raw, status):
    with RawClient(server.address) as client:
        with contextlib.suppress(OSError):  # refused before we finished sending
            client.send(raw)
        got, headers, _ = client.response()
        assert (got, headers["connection"]) == (status, "close")
        assert client.closed_by_peer()


def _request(method: bytes, line_length: int) -> bytes:
    """A request whose line (``method SP target SP HTTP/1.1``) is ``line_length`` bytes long."""
    target = b"/" + b"a" * (line_length - len(method) - len(b"  HTTP/1.1") - 1)
    return method + b" " + target + b" HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize(
    ("method", "length", "status"),
    [
        pytest.param(b"GET", 1024, 200, id="at-the-limit"),
        pytest.param(b"POST", 1025, 414, id="the-method-a-byte-over"),  # the same target
        pytest.param(b"GET", 1025, 414, id="the-target-a-byte-over"),
        pytest.param(b"BREW", 1024, 501, id="an-unknown-method-at-the-limit"),
        pytest.param(b"BREWS", 1025, 414, id="an-unknown-method-a-byte-over"),
    ],
)
def test_the_request_line_limit_counts_the_whole_line_as_gunicorns(method, length, status):
    # gunicorn's limit_request_line, and our option's help, count the method,
    # the target and the version; we counted the target alone, so a line over
    # the limit passed while its target (1011 bytes here) was within it.
    called: list[str] = []

    def app(environ, start_response):
        called.append(environ["REQUEST_METHOD"])
        return echo_app(environ, start_response)

    with live_server(app, max_request_line=1024) as server, RawClient(server.address) as client:
        got, _, _ = client.request(_request(method, length))
    assert got == status
    assert called == ([method.decode()] if status == 200 else [])


LONG_LINE = (
    "request from 127.0.0.1: request line longer than --max-request-line (64 bytes), answered 414"
)


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: a\r\n\r\n", id="http-target"),
        pytest.param(b"BREWS /" + b"a" * 100 + b" HTTP/1.1\r\n\r\n", id="http-unknown-method"),
        pytest.param(b"GET /" + b"a" * 100, id="http-line-that-never-ends"),
        pytest.param(
            uwsgi_packet(
                {
                    "REQUEST_METHOD": "GET",
                    "REQUEST_URI": "/" + "a" * 100,
                    "PATH_INFO": "/" + "a" * 100,
                    "SERVER_PROTOCOL": "HTTP/1.1",
                    "REMOTE_ADDR": "127.0.0.1",  # nginx's client, and the HTTP test's
                }
            ),
            id="uwsgi",
        ),
    ],
)
def test_a_request_line_over_the_limit_is_one_info_line_from_either_bind(caplog, request_bytes):
    # As nginx's "client sent too long URI" (info): the uwsgi bind said it as a
    # WARNING a client could repeat at will, and the HTTP bind only at DEBUG.
    said = _said_refusing(caplog, request_bytes, 414, max_request_line=64)
    assert [line for line in said if "request line" in line[1]] == [(logging.INFO, LONG_LINE)]


def _said_refusing(
    caplog: pytest.LogCaptureFixture, request_bytes: bytes, status: int, **limits: int
) -> list[tuple[int, str]]:
    """Send ``request_bytes`` (to a uwsgi bind if it is a packet); the server's lines, INFO up.

    The answer is checked to be ``status`` first.
    """
    caplog.set_level(logging.DEBUG, logger="wsgistack.server")
    bind = "uwsgi://127.0.0.1:0" if request_bytes[:1] == b"\x00" else "127.0.0.1:0"
    with (
        live_server(echo_app, bind=bind, **limits) as server,
        socket.create_connection(server.address, timeout=5) as client,
    ):
        client.sendall(request_bytes)
        assert read_until_close(client).startswith(b"HTTP/1.1 %d " % status)
    return [
        (r.levelno, r.getMessage())
        for r in caplog.records
        if r.name == "wsgistack.server" and r.levelno >= logging.INFO
    ]


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-A: b\r\n" * 10 + b"\r\n",
            "more than --max-headers (8) header fields",
            id="many-fields",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 600 + b"\r\n\r\n",
            "header fields larger than --max-header-size (512 bytes)",
            id="large-fields",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 800,
            "request head larger than --max-request-line + --max-header-size (576 bytes)",
            id="head-that-never-ends",
        ),
    ],
)
def test_a_head_over_a_header_limit_is_one_info_line_naming_the_limit(
    caplog, request_bytes, reason
):
    # The README says an over-limit line names the limit; the 431s said only
    # "too many header fields", leaving the operator to guess which option.
    limits = {"max_headers": 8, "max_header_size": 512, "max_request_line": 64}
    said = _said_refusing(caplog, request_bytes, 431, **limits)
    assert said == [(logging.INFO, f"request from 127.0.0.1: {reason}, answered 431")]


def _uwsgi_post(length: str) -> bytes:
    variables = {
        "REQUEST_METHOD": "POST",
        "REQUEST_URI": "/up",
        "PATH_INFO": "/up",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_LENGTH": length,
        "REMOTE_ADDR": "127.0.0.1",  # nginx's client, and the HTTP tests'
    }
    return uwsgi_packet(variables)


DECLARED = "Content-Length 2000000 larger than --max-body-size (1000 bytes)"


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [
        pytest.param(
            b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n",
            DECLARED,
            id="http-content-length",
        ),
        pytest.param(
            b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"400\r\n"
            + b"x" * 1024
            + b"\r\n0\r\n\r\n",
            "request body larger than --max-body-size (1000 bytes)",
            id="http-chunked",
        ),
        pytest.param(_uwsgi_post("0002000000"), DECLARED, id="uwsgi"),
        pytest.param(
            _uwsgi_post("9" * 30),
            "a 30-digit Content-Length larger than --max-body-size (1000 bytes)",
            id="uwsgi-too-many-digits",
        ),
    ],
)
def test_a_body_over_the_limit_is_one_info_line_naming_it_from_either_bind(
    caplog, request_bytes, reason
):
    # "request body too large" named neither the limit nor what came, where
    # nginx's "client intended to send too large body: N bytes" does.
    said = _said_refusing(caplog, request_bytes, 413, max_body_size=1000)
    said = [line for line in said if "413" in line[1]]
    assert said == [(logging.INFO, f"request from 127.0.0.1: {reason}, answered 413")]


def test_a_length_no_integer_holds_is_413_without_a_limit_and_says_so(caplog):
    # --max-body-size 0 is no limit, yet a CONTENT_LENGTH of 30 digits is more
    # than any body: its line must not name a limit of 0, or of 2**63 - 1, as the option's.
    caplog.set_level(logging.INFO, logger="wsgistack.server")
    with (
        live_server(echo_app, bind="uwsgi://127.0.0.1:0", max_body_size=0) as server,
        socket.create_connection(server.address, timeout=5) as client,
    ):
        client.sendall(_uwsgi_post("9" * 30))
        assert read_until_close(client).startswith(b"HTTP/1.1 413 ")
    reason = "a 30-digit Content-Length larger than the largest body (9223372036854775807 bytes)"
    assert f"request from 127.0.0.1: {reason}, answered 413" in caplog.messages


@pytest.mark.parametrize(
    "before",
    [
        pytest.param(GET * 100, id="pipelined-gets"),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 900\r\n\r\n" + b"x" * 900, id="body"
        ),
    ],
)
def test_bytes_before_a_split_head_do_not_count_toward_its_limit(before):
    # The limit is on one head; requests sent ahead of it in the same read are not part of it.
    with live_server(echo_app, max_request_line=64, max_header_size=256) as server:
        count = before.count(b" HTTP/1.1")
        with RawClient(server.address) as client:
            client.send(before + b"GET /last HT")
            assert [client.response()[0] for _ in range(count)] == [200] * count
            client.send(b"TP/1.1\r\nHost: a\r\n\r\n")
            assert client.response()[::2] == (200, b"GET /last  ")


def test_an_unfinished_first_header_after_pipelined_requests_gets_431(server):
    # Counted from its own request line, not from the requests before it in the read.
    with RawClient(server.address) as client:
        with contextlib.suppress(OSError):
            client.send(GET * 3 + b"GET /x HTTP/1.1\r\nX-Big: " + b"b" * 8000)
        assert [client.response()[0] for _ in range(4)] == [200, 200, 200, 431]


def test_content_length_over_limit_is_refused_before_the_body_is_sent(server):
    with RawClient(server.address) as client:
        client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000000\r\n\r\n")
        assert client.response()[0] == 413


@pytest.mark.parametrize(
    "partial",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\n", id="head"),
        pytest.param(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc", id="body"),
    ],
)
def test_slow_client_gets_408_after_the_timeout(server, partial):
    with RawClient(server.address) as client:
        client.send(partial)
        status, headers, _ = client.response()  # waits for the server's own --timeout
        assert (status, headers["connection"]) == (408, "close")


def test_idle_keep_alive_connection_is_closed_after_keepalive():
    with live_server(echo_app, keepalive=0.2) as server, RawClient(server.address) as client:
        assert client.request(GET)[0] == 200
        assert client.closed_by_peer()  # closed, no 408: it was between requests


def test_a_pipelined_head_begun_gets_the_timeout_not_the_keepalive():
    # Half of the second request arrived with the first: the connection went back
    # to the loop with --keepalive as its deadline, and the rest of that head got
    # a 408 once 0.2 s passed instead of its --timeout (10 s).
    with (
        live_server(echo_app, keepalive=0.2, timeout=10) as server,
        RawClient(server.address) as client,
    ):
        client.send(GET + b"GET /second HTTP/1.1\r\n")
        assert client.response()[0] == 200
        # Several keep-alive periods and sweeps (every 0.5 s) go by: no 408.
        assert select.select([client.sock], [], [], 1.5)[0] == []
        client.send(b"Host: a\r\n\r\n")
        assert client.response()[0] == 200


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    noise=st.one_of(
        st.binary(min_size=1, max_size=300),
        st.builds(
            lambda head, tail: head + tail,
            st.sampled_from([b"GET / HTTP/1.1\r\n", b"POST /x HTTP/1.1\r\nHost: a\r\n"]),
            st.binary(max_size=200),
        ),
    )
)
def test_random_bytes_get_4xx_or_close_and_the_server_keeps_serving(server, noise):
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(noise)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while data := sock.recv(65536):
                answer += data
        except ConnectionResetError:
            pass
    if answer:
        status = int(answer.split(b" ", 2)[1])
        assert status < 500 or status in (501, 505) or status == 200
    with RawClient(server.address) as client:
        assert client.request(GET)[0] == 200


def _big_app(environ, start_response):
    body = bytes(range(256)) * 32_768  # 8 MiB: far more than the socket buffers hold
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [body[: len(body) // 2], body[len(body) // 2 :]]


def test_a_large_response_reaches_a_reader_slower_than_the_server_whole():
    with live_server(_big_app) as server, RawClient(server.address) as client:
        client.send(GET)
        status, _, body = client.response()  # the server fills the buffers and waits on them
        assert (status, body) == (200, bytes(range(256)) * 32_768)
        assert client.request(GET)[0] == 200  # and the connection is still good


@pytest.fixture
def big_file(tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(bytes(range(256)) * 32_768)
    return path


@pytest.mark.parametrize("sendfile", [False, True], ids=["iterated", "sendfile"])
def test_a_client_that_never_reads_is_dropped_after_the_timeout_and_others_are_served(
    sendfile, big_file
):
    def app(environ, start_response):
        if not sendfile:
            return _big_app(environ, start_response)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(big_file, "rb"))

    with (
        live_server(app, validate=not sendfile, timeout=0.5, threads=1) as server,
        socket.create_connection(server.address) as stuck,
    ):
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.sendall(GET)  # then never reads: the only pool thread is stuck sending
        with RawClient(server.address) as client:
            status, _, body = client.request(GET)  # served once the stuck one is dropped
            assert (status, body) == (200, bytes(range(256)) * 32_768)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_client_still_uploading_hears_its_413(server, chunked):
    # http.client sends the whole body before it reads: if the server closed with
    # the upload unread, the kernel's reset would discard the 413 (lingering close).
    body = b"x" * (4 * 1024 * 1024)
    connection = http.client.HTTPConnection(*server.address, timeout=10)
    try:
        if chunked:
            blocks = iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
            connection.request("POST", "/upload", body=blocks, encode_chunked=True)
        else:
            connection.request("POST", "/upload", body=body)
        response = connection.getresponse()
        assert response.status == 413
        assert response.getheader("Connection") == "close"
    finally:
        connection.close()
    with RawClient(server.address) as client:
        assert client.request(GET)[0] == 200


def test_an_early_answer_to_an_upload_reaches_the_client_and_says_close():
    # An app may answer (401 here) without reading the body; the client, still
    # sending, must get the answer and know the connection ends with it.
    def deny(environ, start_response):
        start_response("401 Unauthorized", [("Content-Type", "text/plain")])
        return [b"denied"]

    with live_server(deny) as server:
        for _ in range(3):
            _upload_is_answered_401_and_closed(server)


def test_an_early_answer_to_an_upload_survives_a_stop_begun_meanwhile():
    # A SIGTERM, a reload or a --max-requests recycle that began while the app
    # answered used to close at once, skipping the lingering close: the kernel's
    # reset then discarded the 401 before the still-uploading client read it.
    servers = []

    def deny(environ, start_response):
        servers[0].stop()  # graceful, as SIGTERM
        start_response("401 Unauthorized", [("Content-Type", "text/plain")])
        return [b"denied"]

    with live_server(deny) as server:
        servers.append(server)
        _upload_is_answered_401_and_closed(server)


def _upload_is_answered_401_and_closed(server) -> None:
    """A 4 MB upload the app answers early gets that answer whole, with Connection: close."""
    connection = http.client.HTTPConnection(*server.address, timeout=10)
    try:
        connection.request("POST", "/upload", body=b"x" * (4 * 1024 * 1024))
        response = connection.getresponse()
        assert (response.status, response.read()) == (401, b"denied")
        assert response.getheader("Connection") == "close"
    finally:
        connection.close()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_max_body_size_0_is_no_limit(framing):
    # As nginx's client_max_body_size 0 (and our own max_requests 0): off. It
    # refused every request with a body, which is not what anyone writing 0 meant.
    body = b"x" * (1 << 20)
    if framing == "chunked":
        head = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        data = head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    else:
        data = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    with live_server(echo_app, max_body_size=0) as server, RawClient(server.address) as client:
        status, _, answer = client.request(data)
    assert status == 200 and answer == b"POST /up  " + body
