"""LoadBalancer exchanges that go wrong: interim responses, stale pooled connections,
bytes nobody asked for, bodies the client never finishes, timeouts, answers to retry."""

from __future__ import annotations

import io
import socket
import threading
from wsgiref.validate import validator

import pytest
import webob
from webtest import TestApp

from tests.server.live import live_server, read_until_close

from .forward_parts import HastyUpstream

FINAL = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nSet-Cookie: s=1\r\n\r\n"
)


# -- interim 1xx responses --------------------------------------------------------------------
@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(
            (
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                + FINAL
                + b"hello",
            ),
            id="103-and-the-response-in-one-packet",
        ),
        pytest.param((b"HTTP/1.1 100 Continue\r\n\r\n", FINAL + b"hello"), id="100-then-response"),
        pytest.param(
            (b"HTTP/1.1 100 Continue\r\n\r\n", FINAL, b"hello"), id="100-then-head-then-body"
        ),
    ],
)
def test_interim_responses_are_skipped_and_the_connection_stays_clean(lb, raw, reply):
    upstream = raw(*reply)
    app = TestApp(validator(lb([upstream.url])))
    for _ in range(3):
        response = app.get("/")
        assert response.status == "200 OK"
        assert response.headerlist == [
            ("Content-Type", "text/plain"),
            ("Content-Length", "5"),
            ("Set-Cookie", "s=1"),
        ]
        assert response.body == b"hello"
    assert upstream.connections == 1


SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(SWITCHING, id="101-alone"),
        pytest.param(SWITCHING + b"\x00\x00\x12\x04", id="101-and-another-protocol"),
    ],
)
def test_a_101_nobody_asked_for_is_a_502_and_the_upstream_is_not_left_busy(lb, raw, reply):
    # Upgrade is hop-by-hop and never sent on, so a 101 is a broken upstream: a
    # 502, as any garbled answer, never a traceback; and the exchange is over,
    # so least_conn does not count it as in flight for good.
    upstream = raw(FINAL + b"hello")
    upstream.queue(reply)
    balancer = lb([upstream.url], strategy="least_conn")
    app = TestApp(validator(balancer))
    assert app.get("/", expect_errors=True).status_int == 502
    assert balancer.status()[0]["active"] == 0
    assert app.get("/").body == b"hello"


def test_a_header_that_cannot_go_out_leaves_no_exchange_in_flight(lb, raw):
    # An outer layer that puts text no HTTP/1.1 head can carry into the environ
    # (PEP 3333 wants latin-1) fails its own request, not the upstream's count.
    upstream = raw(FINAL + b"hello")
    balancer = lb([upstream.url], strategy="least_conn")

    def outer(environ, start_response):
        environ["HTTP_X_USER"] = "\u6797"
        return balancer(environ, start_response)

    with pytest.raises(UnicodeEncodeError):
        TestApp(outer).get("/")
    assert balancer.status()[0]["active"] == 0
    assert TestApp(validator(balancer)).get("/").body == b"hello"


def test_a_location_that_is_no_url_passes_as_sent(lb, raw):
    # "http://[oops/x" is no URL (urlsplit raises): nothing of the pool's to map
    # back, so it goes on as sent (as nginx's proxy_redirect), not as a traceback.
    upstream = raw(
        b"HTTP/1.1 302 Found\r\nLocation: http://[oops/x\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    balancer = lb([upstream.url], strategy="least_conn")
    response = TestApp(validator(balancer)).get("/", status=302)
    assert response.headers["Location"] == "http://[oops/x"
    assert balancer.status()[0]["active"] == 0


def test_an_answer_refused_by_an_outer_layer_leaves_no_exchange_in_flight(lb, raw):
    upstream = raw(FINAL + b"hello")
    balancer = lb([upstream.url], strategy="least_conn")

    def strict(environ, start_response):
        def refuse(status, headers, exc_info=None):
            raise RuntimeError("refused")

        return balancer(environ, refuse)

    with pytest.raises(RuntimeError, match="refused"):
        TestApp(strict).get("/")
    assert [(row["active"], row["idle"]) for row in balancer.status()] == [(0, 0)]
    assert TestApp(validator(balancer)).get("/").body == b"hello"


def test_expect_100_continue_to_the_reference_server_streams_the_whole_answer(lb, upstreams):
    block = b"y" * 65536

    def streams(environ, start_response):
        size = 0  # the server sends 100 Continue at the first read
        while chunk := environ["wsgi.input"].read(65536):
            size += len(chunk)
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield f"{size}:".encode()
        yield from (block for _ in range(16))  # more than one read of the upstream socket

    balancer = lb([upstreams.start("s", streams)])
    app = TestApp(validator(balancer))
    response = app.post(
        "/", b"p" * 2_000_000, content_type="text/plain", headers={"Expect": "100-continue"}
    )
    assert response.body == b"2000000:" + block * 16
    assert app.get("/").body.startswith(b"0:")  # the pooled connection was left clean
    assert balancer.status()[0]["up"]


# -- what a pooled connection may hold -----------------------------------------------------
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


def test_a_post_on_a_connection_the_upstream_closed_while_idle_goes_out_fresh(lb, raw):
    upstream = raw(OK, close_after=True)  # as a keep-alive timeout does, unannounced
    balancer = lb([upstream.url], max_fails=1)
    app = TestApp(validator(balancer))
    assert app.post("/", b"abc", content_type="text/plain").body == b"ok"
    assert upstream.replied.acquire(timeout=5)  # it has hung up: the pooled socket is stale
    assert app.post("/", b"abc", content_type="text/plain").body == b"ok"
    assert upstream.connections == 2
    assert balancer.status()[0]["up"]


@pytest.mark.parametrize(
    ("method", "sent", "status"),
    [
        pytest.param("GET", 3, 200, id="get-goes-out-again-on-a-fresh-connection"),
        pytest.param("POST", 2, 502, id="post-never-twice"),
    ],
)
def test_a_pooled_connection_closed_after_the_request_went_out(lb, raw, method, sent, status):
    # The pooled connection was clean when taken, the request went out, and the
    # upstream hung up without a word: it may have acted on it (RFC 9110 §9.2.2).
    upstream = raw(OK)
    balancer = lb([upstream.url])
    app = TestApp(validator(balancer))
    assert app.request("/", method=method, body=b"").body == b"ok"  # pools the connection
    assert upstream.replied.acquire(timeout=5)
    upstream.queue()  # the next request is read, then the connection closed
    response = app.request("/", method=method, body=b"", status=status)
    assert len(upstream.heads) == sent
    assert all(head.startswith(method.encode()) for head in upstream.heads)
    assert response.status_int == status


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_pooled_connection_closed_unanswered_is_not_held_against_the_upstream(lb, raw, method):
    # The upstream's keep-alive timeout (nginx's keepalive_timeout) closing a pooled
    # connection just as a request goes out on it is a race, not a sick upstream:
    # with max_fails=1 counting it would take a healthy upstream out of a pool of two.
    body = b"abc" if method == "POST" else b""  # a bodiless GET goes out again
    first, second = raw(OK), raw(OK)
    balancer = lb([first.url, second.url], max_fails=1)
    app = TestApp(validator(balancer))
    for _ in range(2):  # one pooled connection to each
        assert app.request("/", method=method, body=body).body == b"ok"
    assert first.replied.acquire(timeout=5) and second.replied.acquire(timeout=5)
    first.queue()  # the next request on it is read, then the connection closed unanswered
    status = 502 if method == "POST" else 200  # a POST is never sent twice
    assert app.request("/", method=method, body=body, status=status).status_int == status
    assert [entry["up"] for entry in balancer.status()] == [True, True]
    assert app.request("/", method=method, body=body).body == b"ok"
    assert app.request("/", method=method, body=body).body == b"ok"
    # Round robin went on as before; a GET went out twice on the first (stale, then fresh).
    assert (len(first.heads), len(second.heads)) == (3 if method == "POST" else 4, 2)


def test_a_get_closed_unanswered_on_a_pooled_connection_goes_out_once_more_not_once_per_idle(
    lb, raw
):
    # Closed unanswered, the request may be one that makes the upstream die (a
    # worker killed by it): it goes out again once, on a new connection, never on
    # each pooled one in turn (max_idle of them, every one a worker killed).
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n"
    upstream = raw(head, b"ok")  # the body a moment after the head: exchanges overlap
    balancer = validator(lb([upstream.url], max_idle=4))
    environ = webob.Request.blank("/").environ
    # Three exchanges in flight at once, so three connections go back to the pool.
    answers = [balancer(dict(environ), lambda *args: None) for _ in range(3)]
    for answer in answers:
        assert b"".join(answer) == b"ok"
        answer.close()
    assert upstream.connections == 3
    for _ in range(3):
        assert upstream.replied.acquire(timeout=5)
    for _ in range(4):
        upstream.queue()  # every request from now on is read, then hung up on unanswered
    response = TestApp(balancer).get("/death", status=502)
    assert response.status_int == 502
    deaths = [h for h in upstream.heads if h.startswith(b"GET /death ")]
    assert len(deaths) == 2  # the pooled connection, then a new one (before: 4)
    assert upstream.connections == 4


def test_a_reset_while_sending_on_a_pooled_connection_goes_out_fresh(lb, raw, monkeypatch):
    # A pooled connection the upstream reset after the check before reuse: the head
    # cannot go out (EPIPE, ECONNRESET), so nothing reached the upstream; a GET goes
    # out again on a fresh connection, as on a close, and nothing is counted.
    from wsgistack.middlewares.forward import attempt as module

    upstream = raw(OK)
    balancer = lb([upstream.url, raw(OK).url], max_fails=1)
    app = TestApp(validator(balancer))
    assert app.get("/").body == b"ok"
    assert upstream.replied.acquire(timeout=5)
    app.get("/")  # the other upstream's turn
    real_send = module.send_request
    failed = []

    def reset_once(sock, *args):
        if not failed:
            failed.append(sock)
            raise ConnectionResetError("reset by peer")
        return real_send(sock, *args)

    monkeypatch.setattr(module, "send_request", reset_once)
    assert app.get("/").body == b"ok"
    assert failed
    assert upstream.connections == 2
    assert [entry["up"] for entry in balancer.status()] == [True, True]


@pytest.mark.parametrize(
    ("method", "first"),
    [
        pytest.param("GET", (FINAL + b"hello", b" and more"), id="a-body-longer-than-announced"),
        pytest.param("GET", (FINAL + b"hello and more",), id="longer-in-the-same-packet"),
        pytest.param("HEAD", (FINAL, b"hello"), id="a-body-for-a-head"),
        pytest.param("HEAD", (FINAL + b"hello",), id="a-body-for-a-head-in-the-same-packet"),
    ],
)
def test_bytes_after_a_whole_response_never_meet_the_next_request(lb, raw, method, first):
    upstream = raw(OK)
    upstream.queue(*first)
    balancer = lb([upstream.url], max_fails=1)
    app = TestApp(validator(balancer))
    response = app.request("/", method=method)
    assert response.status_int == 200
    assert response.body == (b"" if method == "HEAD" else b"hello")
    assert upstream.replied.acquire(timeout=5)  # every byte of the first answer is out
    assert app.get("/").body == b"ok"
    assert upstream.connections == 2
    assert balancer.status()[0]["up"]


def test_a_chunked_http_1_0_answer_is_passed_on_and_its_connection_never_pooled(lb, raw):
    # HTTP/1.0 has no chunked coding: an answer framed so, keep-alive or not, is
    # faulty framing, and the connection closes after it (RFC 9112 6.1); reused,
    # a peer that frames otherwise would have the next answer start mid-body.
    upstream = raw(
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    )
    balancer = lb([upstream.url])
    app = TestApp(validator(balancer))
    for _ in range(2):
        assert app.get("/").body == b"ok"
    assert upstream.connections == 2
    assert [(row["active"], row["idle"]) for row in balancer.status()] == [(0, 0)]


# -- a client body that never arrives whole --------------------------------------------------
class _Reset(io.RawIOBase):
    """A wsgi.input as a server whose client reset the connection gives it."""

    def read(self, size: int = -1) -> bytes:
        raise ConnectionResetError("the client reset the connection")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(lambda: io.BytesIO(b"x" * 10), id="shorter-than-content-length"),
        pytest.param(_Reset, id="input-raises-oserror"),
    ],
)
def test_a_client_body_failing_is_400_and_never_blamed_on_the_upstream(lb, upstreams, body):
    balancer = lb([upstreams.start("a")], max_fails=1, strategy="least_conn")
    environ = webob.Request.blank("/", method="POST").environ
    environ.update(CONTENT_LENGTH="1000", CONTENT_TYPE="text/plain")
    environ["wsgi.input"] = body()
    statuses = []
    result = validator(balancer)(environ, lambda status, headers: statuses.append(status))
    b"".join(result)
    result.close()
    assert statuses == ["400 Bad Request"]
    assert [(row["up"], row["active"]) for row in balancer.status()] == [(True, 0)]
    assert TestApp(validator(balancer)).get("/").text == "a / 0"


@pytest.mark.parametrize(
    ("stall", "status"),
    [
        pytest.param(False, b"400", id="client-left"),
        pytest.param(True, b"408", id="client-stalled"),
    ],
)
def test_the_reference_servers_own_answer_when_its_client_fails_mid_body(
    lb, upstreams, stall, status
):
    balancer = lb([upstreams.start("a")], max_fails=1, strategy="least_conn")
    with (
        live_server(balancer, threads=2, timeout=0.5) as front,
        socket.create_connection(front.address, timeout=5) as client,
    ):
        client.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        if not stall:
            client.shutdown(socket.SHUT_WR)  # gone before the rest of its body
        received = read_until_close(client)
    assert received.startswith(b"HTTP/1.1 " + status)
    assert [(row["up"], row["active"]) for row in balancer.status()] == [(True, 0)]
    assert TestApp(validator(balancer)).get("/").text == "a / 0"


# -- timeouts ------------------------------------------------------------------------------------
def test_an_upstream_that_stops_reading_the_body_is_a_504(lb):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills at once
        port = listener.getsockname()[1]
        held = []
        accepting = threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True)
        accepting.start()
        balancer = lb([f"http://127.0.0.1:{port}"], read_timeout=0.3)
        try:
            response = TestApp(validator(balancer)).post(
                "/", b"x" * 16_000_000, content_type="text/plain", expect_errors=True
            )
        finally:
            accepting.join(5)
            for sock in held:
                sock.close()
    assert response.status_int == 504


# -- retries on an upstream's status -------------------------------------------------------------
def _busy(name: bytes) -> bytes:
    return (
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Type: text/plain\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(name), name)
    )


@pytest.mark.parametrize(
    ("names", "tries"),
    [pytest.param([b"a", b"b"], 3, id="every-upstream-busy"), pytest.param([b"a"], 3, id="one")],
)
def test_when_every_retry_answers_busy_the_client_gets_the_last_answer(lb, raw, names, tries):
    urls = [raw(_busy(name)).url for name in names]
    balancer = lb(urls, next_upstream=["error", "http_503"], tries=tries)
    response = TestApp(validator(balancer)).get("/", status=503)
    assert response.headers["Retry-After"] == "7"
    assert response.body == names[-1]  # round robin: tried in order


def test_a_retried_busy_answer_counts_toward_max_fails(lb, raw, upstreams):
    # As nginx: a status in next_upstream that sends the request on is an
    # unsuccessful attempt, so a busy upstream is taken out for fail_timeout
    # instead of taking the first try of every other request.
    busy = raw(_busy(b"a"))
    balancer = lb([busy.url, upstreams.start("b")], next_upstream=["error", "http_503"])
    app = TestApp(validator(balancer))
    assert {app.get("/").text.split()[0] for _ in range(6)} == {"b"}
    assert len(busy.heads) == 1
    assert not balancer.status()[0]["up"]


def test_a_busy_answer_beats_a_later_upstream_that_is_down(lb, raw):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{sock.getsockname()[1]}"
    balancer = lb([raw(_busy(b"a")).url, down], next_upstream=["error", "http_503"])
    response = TestApp(validator(balancer)).get("/", status=503)
    assert (response.headers["Retry-After"], response.body) == ("7", b"a")


# -- an answer before the whole request ----------------------------------------------------------
@pytest.mark.parametrize("then", ["close", "hold"])
def test_an_answer_before_the_whole_body_is_the_clients(lb, then):
    # A 413 or 401 sent before the body was read, then a close (the send fails
    # with a reset) or no more reading (the send stalls): the client gets the
    # upstream's answer, not a 502 or 504, and the upstream stays up.
    upstream = HastyUpstream(
        b"HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 8\r\n\r\ntoo big!",
        then,
    )
    balancer = lb([upstream.url], max_fails=1, read_timeout=0.5)
    try:
        app = TestApp(validator(balancer))
        response = app.post("/", b"x" * 16_000_000, content_type="text/plain", status=413)
    finally:
        upstream.close()
    assert response.body == b"too big!"
    assert [(row["up"], row["active"], row["idle"]) for row in balancer.status()] == [(True, 0, 0)]


# -- trailers ----------------------------------------------------------------------------------
def test_an_upstreams_trailer_fields_are_dropped_not_made_headers(lb, raw):
    # The whole chunked answer in one packet: its trailer is parsed before the head is passed on.
    upstream = raw(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\nX-Sum: 1\r\nSet-Cookie: t=1\r\n\r\n"
    )
    app = TestApp(validator(lb([upstream.url])))
    for _ in range(2):  # and the connection is reused cleanly after them
        response = app.get("/")
        assert (response.headers.get("X-Sum"), response.headers.get("Set-Cookie")) == (None, None)
        assert response.body == b"ok"
    assert upstream.connections == 1


# -- a response head without end ----------------------------------------------------------------
def _head_of(size: int, interim: bytes = b"") -> bytes:
    """A response head of exactly ``size`` bytes, ``interim`` heads included, and a body."""
    start = interim + b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nX-Pad: "
    return start + b"a" * (size - len(start) - 4) + b"\r\n\r\nok"


EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        pytest.param(_head_of(65536), 200, id="64-kib-passes"),
        pytest.param(_head_of(65537), 502, id="a-byte-more-is-a-502"),
        pytest.param(_head_of(100_000), 502, id="one-huge-field"),
        pytest.param(_head_of(200_000, EARLY_HINTS * 3000), 502, id="endless-1xx"),
    ],
)
def test_a_response_head_over_64_kib_is_a_502(lb, raw, caplog, reply, status):
    upstream = raw(reply)
    response = TestApp(validator(lb([upstream.url]))).get("/", status=status)
    if status == 200:
        assert response.body == b"ok"
    assert ("a response head over 65536 bytes" in caplog.text) == (status == 502)


# -- transfer codings --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("coding", "body"),
    [
        pytest.param(b"gzip, chunked", b"3\r\n\x1f\x8b\x08\r\n0\r\n\r\n", id="gzip-then-chunked"),
        pytest.param(b"gzip", b"\x1f\x8b\x08", id="gzip-ended-by-the-close"),
    ],
)
def test_a_transfer_coding_other_than_chunked_is_a_502(lb, raw, caplog, coding, body):
    # Transfer-Encoding does not cross the hop, so the client would get gzip bytes
    # with nothing saying so; nginx answers such an upstream with a 502 too.
    upstream = raw(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: %s\r\n\r\n%s"
        % (coding, body),
        close_after=True,
    )
    response = TestApp(validator(lb([upstream.url]))).get("/", status=502)
    assert response.status_int == 502
    assert f"a Transfer-Encoding other than chunked: {coding.decode()}" in caplog.text


# -- the status line ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "status"),
    [
        pytest.param(b"HTTP/1.1 404 \r\n", "404 Not Found", id="empty-reason"),
        pytest.param(b"HTTP/1.1 201\r\n", "201 Created", id="no-reason"),
        pytest.param(b"HTTP/1.1 599 \r\n", "599 Unknown", id="no-reason-unknown-code"),
        pytest.param(b"HTTP/1.1 200 Fine\r\n", "200 Fine", id="the-upstreams-own-kept"),
        pytest.param(
            b"HTTP/1.1 200 Tr\xe8s\tbien\r\n", "200 Tr\xe8s\tbien", id="obs-text-and-htab-kept"
        ),
    ],
)
def test_an_empty_reason_phrase_becomes_the_usual_one(lb, raw, line, status):
    upstream = raw(line + b"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
    assert TestApp(validator(lb([upstream.url]))).get("/", status="*").status == status


@pytest.mark.parametrize("code", [b"000", b"099", b"600", b"999"], ids=lambda code: code.decode())
def test_a_status_outside_100_to_599_is_a_502_at_once(lb, raw, caplog, code):
    # RFC 9110 §15: a status is 100-599.  Below 100 it was taken for an interim
    # 1xx and the final answer awaited until read_timeout (a 504, counted as a
    # timeout); above 599 the reference server refused it as the app's bug (a 500).
    upstream = raw(
        b"HTTP/1.1 %s Odd\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok" % code
    )
    balancer = lb([upstream.url], read_timeout=5, strategy="least_conn")
    response = TestApp(validator(balancer)).get("/", status="*")
    assert response.status_int == 502
    assert f"a status outside 100-599: {code.decode()}" in caplog.text
    assert [(row["active"], row["idle"]) for row in balancer.status()] == [(0, 0)]


@pytest.mark.parametrize("reason", [b"O\x01K", b"OK\x7f", b"O\x1bK"], ids=["soh", "del", "esc"])
def test_a_control_byte_in_the_reason_phrase_is_a_502(lb, raw, caplog, reason):
    # RFC 9112 §4: reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ).  The parser
    # let these through and the reference server refused them as the app's bug (a 500).
    upstream = raw(
        b"HTTP/1.1 200 %s\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok" % reason
    )
    assert TestApp(validator(lb([upstream.url]))).get("/", status="*").status_int == 502
    assert "a control byte in the reason phrase" in caplog.text
