"""The access log's size field for the answers the server makes itself (its refusals)."""

from __future__ import annotations

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
