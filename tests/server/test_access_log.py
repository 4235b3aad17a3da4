"""The access log's lines for the answers the server makes itself (its refusals): size, request."""

from __future__ import annotations

import pytest

from tests.djangoapp import application as django_site

from .conftest import echo_app
from .live import RawClient, live_server
from .served import poll


def bad_head(environ, start_response):
    start_response("200 OK", [("X-Evil", "a\r\nSet-Cookie: b")])
    return [b"never sent"]


def reads_the_body(environ, start_response):
    while environ["wsgi.input"].read(65536):
        pass
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"read"]


def test_the_500_for_a_broken_head_logs_the_bytes_of_its_body(tmp_path):
    # Logged as "500 -", as if nothing had been sent: nginx and gunicorn log
    # the size of the error body they sent.
    log = tmp_path / "access.log"
    with (
        live_server(bad_head, validate=False, access_log=str(log)) as server,
        RawClient(server.address) as client,
    ):
        status, _, body = client.request(b"GET /evil HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status == 500 and body
    (line,) = log.read_text().splitlines()
    assert line.endswith(f'"GET /evil HTTP/1.1" 500 {len(body)} "-" "-"')


def test_a_413_while_the_app_reads_logs_the_bytes_of_its_body(tmp_path):
    log = tmp_path / "access.log"
    with (
        live_server(reads_the_body, access_log=str(log), max_body_size=10) as server,
        RawClient(server.address) as client,
    ):
        # The body goes once the app asks for it: the 413 comes while the app reads.
        assert (
            client.request(
                b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                b"Expect: 100-continue\r\n\r\n"
            )[0]
            == 100
        )
        status, _, body = client.request(b"14\r\n" + b"x" * 20 + b"\r\n0\r\n\r\n")
    assert status == 413 and body
    (line,) = log.read_text().splitlines()
    assert line.endswith(f'"POST /up HTTP/1.1" 413 {len(body)} "-" "-"')


def test_a_head_the_client_cut_short_is_a_400_line_and_a_silent_close_none(tmp_path):
    # A client that closed mid-head left an INFO line and no access line, where
    # its stalled twin has "-" 408 and nginx writes a 400 for both.  A client
    # that closes between requests, or before a byte (a preconnect), is no request.
    log = tmp_path / "access.log"
    with live_server(echo_app, access_log=str(log)) as server:
        with RawClient(server.address) as client:
            assert client.request(b"GET /whole HTTP/1.1\r\nHost: a\r\n\r\n")[0] == 200
        with RawClient(server.address):
            pass  # connected, sent nothing, left
        with RawClient(server.address) as client:
            client.send(b"GET /cut HTTP/1.1\r\nHo")
        poll(lambda: " 400 " in log.read_text())
    whole, cut = log.read_text().splitlines()  # after the stop: nothing else came
    assert '"GET /whole HTTP/1.1" 200 ' in whole
    assert cut.startswith("127.0.0.1 - - [") and cut.endswith('] "-" 400 - "-" "-"')


def upload(size: int) -> bytes:
    return (
        b'--B\r\nContent-Disposition: form-data; name="name"\r\n\r\nann\r\n'
        b'--B\r\nContent-Disposition: form-data; name="upload"; filename="u.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + b"u" * size + b"\r\n--B--\r\n"
    )


_FORM = b"Content-Type: multipart/form-data; boundary=B\r\n"


@pytest.mark.parametrize(
    ("head", "rest", "status"),
    [
        pytest.param(
            b"POST /upload/ HTTP/1.1\r\nHost: a\r\n" + _FORM + b"Content-Length: 6000\r\n",
            upload(6000 - len(upload(0))),
            413,
            id="content-length-over-max-body-size",
        ),
        pytest.param(
            b"POST /upload/ HTTP/1.1\r\nHost: a\r\n" + _FORM + b"Transfer-Encoding: chunked\r\n",
            b"1770\r\n" + upload(6000 - len(upload(0))) + b"\r\n0\r\n\r\n",
            413,
            id="chunked-body-over-max-body-size",
        ),
        pytest.param(
            b"POST /upload/ HTTP/1.1\r\nHost: a\r\n" + _FORM + b"Transfer-Encoding: gzip\r\n",
            b"",
            501,
            id="unsupported-transfer-coding",
        ),
        pytest.param(
            b"POST /upload/ HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 0\r\n",
            b"",
            417,
            id="unmet-expectation",
        ),
    ],
)
def test_a_request_refused_after_its_head_is_logged_with_its_request_line(
    tmp_path, head, rest, status
):
    # An upload over --max-body-size never reaches Django, but an operator
    # looking for "POST /upload/" in the access log finds its 413 there, as
    # nginx logs it, and as the same refusal from a uwsgi bind is logged.
    log = tmp_path / "access.log"
    with (
        live_server(django_site, access_log=str(log), max_body_size=5000) as server,
        RawClient(server.address) as client,
    ):
        client.send(head + b"\r\n" + rest)
        assert client.response()[0] == status
    request_line = head.partition(b"\r\n")[0].decode()
    (line,) = log.read_text().splitlines()
    assert f'"{request_line}" {status} ' in line


def test_a_head_that_is_not_http_is_still_logged_without_a_request_line(tmp_path):
    # RTSP is no HTTP request: its line is not one to log as if it were.
    log = tmp_path / "access.log"
    with (
        live_server(django_site, access_log=str(log)) as server,
        RawClient(server.address) as client,
    ):
        assert client.request(b"GET / RTSP/1.0\r\nHost: a\r\n\r\n")[0] == 400
    (line,) = log.read_text().splitlines()
    assert '] "-" 400 ' in line


def test_a_queued_request_refused_is_logged_with_its_own_line_not_the_next_ones(tmp_path):
    # Refused as its environ is built (a trusted proxy's scheme headers
    # disagree) while the next, pipelined request's body is still arriving.
    log = tmp_path / "access.log"
    with (
        live_server(echo_app, access_log=str(log)) as server,
        RawClient(server.address) as client,
    ):
        client.send(
            b"GET /first HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\n"
            b"X-Forwarded-Ssl: off\r\n\r\n"
            b"POST /second HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc"
        )
        assert client.response()[0] == 400
    (line,) = log.read_text().splitlines()
    assert '"GET /first HTTP/1.1" 400 ' in line
