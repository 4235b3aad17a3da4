"""The reference server over real sockets: PEP 3333, framing, keep-alive, refusals, limits."""

from __future__ import annotations

import http.client
import io
import json
import socket
import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server.conftest import (
    connect,
    echo_app,
    exchange,
    live,
    read_until_close,
    split_response,
)


def get(server, path="/", method="GET", body=None, headers=None):
    conn = http.client.HTTPConnection(*server.address[:2], timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def environ_app(environ, start_response):
    keys = {k: v for k, v in environ.items() if isinstance(v, str | bool | int | tuple)}
    data = json.dumps(keys, default=list).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


def test_the_environ_is_complete(serve):
    server = serve(environ_app, root_path="/site")
    status, _, body = get(
        server,
        "/site/caf%C3%A9?x=1",
        headers={"X-Multi": "a", "Cookie": "a=1", "X_Forwarded_For": "6.6.6.6"},
    )
    env = json.loads(body)
    assert status == 200
    assert env["SCRIPT_NAME"] == "/site"
    assert env["PATH_INFO"] == "/caf\xc3\xa9"
    assert env["QUERY_STRING"] == "x=1"
    assert env["RAW_URI"] == "/site/caf%C3%A9?x=1"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_NAME"] == "127.0.0.1" and env["SERVER_PORT"] == str(server.address[1])
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["REMOTE_PORT"].isdigit()
    assert env["wsgi.input_terminated"] is True and env["wsgi.multithread"] is True
    assert env["wsgi.url_scheme"] == "http" and env["wsgi.version"] == [1, 0]
    assert "HTTP_X_FORWARDED_FOR" not in env  # a name with "_" is dropped


def test_repeated_headers_are_joined(serve):
    server = serve(environ_app)
    raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nX-A: 2\r\nCookie: a=1\r\nCookie: b=2\r\nConnection: close\r\n\r\n"
    env = json.loads(split_response(exchange(server, raw))[2])
    assert env["HTTP_X_A"] == "1, 2"
    assert env["HTTP_COOKIE"] == "a=1; b=2"


def test_keep_alive_and_pipelining_answer_in_order(serve):
    server = serve(echo_app)
    requests = (
        b"".join(f"GET /{i} HTTP/1.1\r\nHost: a\r\n\r\n".encode() for i in range(5))
        + b"GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    data = exchange(server, requests)
    bodies = [part.split(b"\r\n\r\n", 1)[1][:8] for part in data.split(b"HTTP/1.1 ")[1:]]
    assert [b.split(b"?")[0] for b in bodies] == [
        b"GET /0",
        b"GET /1",
        b"GET /2",
        b"GET /3",
        b"GET /4",
        b"GET /las",
    ]


def test_one_connection_serves_many_requests(serve):
    server = serve(echo_app)
    conn = http.client.HTTPConnection(*server.address[:2], timeout=5)
    try:
        for i in range(20):
            conn.request("POST", f"/n{i}", body=b"x" * i)
            response = conn.getresponse()
            assert response.read() == f"POST /n{i}?|".encode() + b"x" * i
            assert response.getheader("Connection") is None
    finally:
        conn.close()


def test_http10_keeps_alive_only_when_asked(serve):
    server = serve(echo_app)
    with connect(server) as sock:
        sock.sendall(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        first = sock.recv(65536)
        assert b"Connection: keep-alive" in first
        sock.sendall(b"GET /b HTTP/1.0\r\n\r\n")
        second = read_until_close(sock)
    assert b"Connection: close" in second and second.endswith(b"GET /b?|")


def test_chunked_response_when_no_length_is_known(serve):
    def streaming(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"one "
        yield b""
        yield b"two"

    server = serve(streaming)
    data = exchange(server, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    _status, headers, body = split_response(data)
    assert headers["transfer-encoding"] == "chunked"
    assert body == b"4\r\none \r\n3\r\ntwo\r\n0\r\n\r\n"
    old = exchange(server, b"GET / HTTP/1.0\r\n\r\n")
    assert old.endswith(b"\r\n\r\none two") and b"chunked" not in old


def test_head_has_no_body_but_its_length(serve):
    server = serve(echo_app)
    data = exchange(server, b"HEAD /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    status, headers, body = split_response(data)
    assert status == 200 and headers["content-length"] == "9" and body == b""  # "HEAD /x?|"


def test_date_and_server_headers(serve):
    _, headers, _ = get(serve(echo_app))
    assert headers["Server"] == "wsgistack" and headers["Date"].endswith(" GMT")


def test_expect_100_continue_is_sent_when_the_app_reads(serve):
    server = serve(echo_app)
    with connect(server) as sock:
        sock.sendall(
            b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"data")
        assert read_until_close(sock).endswith(b"POST /up?|data")


def test_no_100_continue_when_the_app_does_not_read(serve):
    def refuser(environ, start_response):
        start_response("403 Forbidden", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"no"]

    server = serve(refuser)
    with connect(server) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        data = read_until_close(sock)
    assert data.startswith(b"HTTP/1.1 403") and b"100 Continue" not in data
    assert b"Connection: close" in data


def test_file_wrapper_is_sent_with_sendfile(serve, tmp_path):
    payload = bytes(range(256)) * 4000
    path = tmp_path / "blob.bin"
    path.write_bytes(payload)

    def files(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        handle = path.open("rb")
        handle.seek(10)
        return environ["wsgi.file_wrapper"](handle, 8192)

    # The validator wraps the body and so hides the file wrapper: serve it bare.
    status, headers, body = get(serve(files, validate=False))
    assert status == 200 and body == payload[10:]
    assert headers["Content-Length"] == str(len(payload) - 10)


def test_file_wrapper_over_a_non_file_is_iterated(serve):
    def files(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"in memory"), 4)

    assert get(serve(files))[2] == b"in memory"


def test_the_write_callable(serve):
    def writer(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"returned"]

    assert get(serve(writer))[2] == b"written returned"


def test_exc_info_replaces_headers_not_yet_sent(serve):
    def second_thoughts(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise RuntimeError("changed my mind")
        except RuntimeError:
            start_response(
                "503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info()
            )
        return [b"later"]

    status, _, body = get(serve(second_thoughts))
    assert (status, body) == (503, b"later")


def test_an_app_failing_mid_stream_aborts_and_the_worker_lives_on(serve):
    def breaks(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"first part"
        if environ["PATH_INFO"] == "/break":
            raise RuntimeError("mid-stream")
        yield b" second part"

    server = serve(breaks)
    data = exchange(server, b"GET /break HTTP/1.1\r\nHost: a\r\n\r\n")
    assert data.endswith(b"a\r\nfirst part\r\n")  # no terminating chunk: visibly cut
    assert get(server, "/fine")[2] == b"first part second part"


def test_an_app_failing_before_sending_is_a_500(serve):
    def fails(environ, start_response):
        raise RuntimeError("boom")

    status, _headers, body = get(serve(fails, validate=False))
    assert status == 500 and b"boom" not in body


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([("X-Bad", "a\r\nSet-Cookie: evil=1")], id="crlf-value"),
        pytest.param([("X-Bad\r\nEvil", "a")], id="crlf-name"),
        pytest.param([("X-Bad", "caf\u00e9\u20ac")], id="not-latin1"),
        pytest.param([("Transfer-Encoding", "chunked")], id="hop-by-hop"),
    ],
)
def test_header_injection_from_the_app_is_refused_with_a_500(serve, headers):
    def injector(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), *headers])
        return [b"never"]

    data = exchange(serve(injector, validate=False), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 500") and b"evil" not in data and b"never" not in data


def test_a_status_with_crlf_is_refused(serve):
    def injector(environ, start_response):
        start_response("200 OK\r\nSet-Cookie: evil=1", [])
        return [b"never"]

    data = exchange(serve(injector, validate=False), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 500") and b"evil" not in data


def test_the_body_limit_is_checked_before_reading_and_while_reading(serve):
    server = serve(echo_app, max_body_size=10)
    declared = exchange(server, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n")
    assert declared.startswith(b"HTTP/1.1 413")
    chunked = exchange(
        server,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n",
    )
    assert chunked.startswith(b"HTTP/1.1 413")


def test_a_slow_client_gets_408_and_holds_no_thread(serve):
    server = serve(echo_app, timeout=0.5, threads=1)
    with connect(server) as slow:
        slow.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")  # never finishes its head
        assert get(server, "/meanwhile")[0] == 200  # the only thread is free
        assert read_until_close(slow).startswith(b"HTTP/1.1 408")


def test_a_slow_body_times_out(serve):
    server = serve(echo_app, timeout=0.5)
    with connect(server) as slow:
        slow.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        assert read_until_close(slow).startswith(b"HTTP/1.1 408")


def test_a_thousand_idle_keep_alive_connections_do_not_starve_a_client(serve):
    server = serve(echo_app, threads=2, keepalive=30)
    idle = []
    try:
        for _ in range(1000):
            sock = connect(server)
            sock.sendall(b"GET /idle HTTP/1.1\r\nHost: a\r\n\r\n")
            idle.append(sock)
        for sock in idle[:10]:
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        assert get(server, "/normal")[2] == b"GET /normal?|"
    finally:
        for sock in idle:
            sock.close()


def test_connection_close_from_the_app_is_honoured(serve):
    def closer(environ, start_response):
        start_response(
            "200 OK",
            [("Content-Type", "text/plain"), ("Connection", "close"), ("Content-Length", "2")],
        )
        return [b"ok"]

    with connect(serve(closer)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert read_until_close(sock).endswith(b"ok")  # the server closed


def test_ipv6_and_unix_binds(tmp_path):
    path = str(tmp_path / "s.sock")
    with live(echo_app, bind=["[::1]:0", f"unix:{path}"]) as server:
        assert server.url.startswith("http://[::1]:")
        assert get(server, "/six")[2] == b"GET /six?|"
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(path)
            sock.sendall(b"GET /unix HTTP/1.0\r\n\r\n")
            assert read_until_close(sock).endswith(b"GET /unix?|")


def test_concurrent_clients(serve):
    server = serve(echo_app, threads=4)
    results = []

    def client(n):
        results.append(get(server, f"/c{n}", method="POST", body=b"z" * 1000)[2])

    threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(results) == sorted(f"POST /c{n}?|".encode() + b"z" * 1000 for n in range(20))


@pytest.fixture(scope="module")
def fuzz_server():
    with live(echo_app, timeout=1.0) as server:
        yield server


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(min_size=1, max_size=300))
def test_random_bytes_get_a_4xx_or_a_close_and_the_server_lives_on(fuzz_server, junk):
    with connect(fuzz_server, timeout=3) as sock:
        try:
            sock.sendall(junk)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        data = read_until_close(sock)
    if data:
        status = int(data.split(b" ", 2)[1])
        assert (400 <= status < 600 and status != 500) or data.startswith(b"HTTP/1.1 200")
    assert get(fuzz_server, "/alive")[0] == 200


def test_stop_is_graceful_for_a_request_in_flight():
    started = threading.Event()

    def slow(environ, start_response):
        started.set()
        time.sleep(0.3)  # the app is slow on purpose; the test waits on events
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"finished"]

    with live(slow) as server:
        result = {}
        client = threading.Thread(target=lambda: result.update(r=get(server)))
        client.start()
        assert started.wait(5)
        server.worker.stop(graceful=True)
        client.join(5)
    assert result["r"][2] == b"finished"
