"""Generated pipelines of requests, valid and subtly broken, sent in pieces over a real socket.

Each example writes several requests on one connection, cut at random points,
to a live server whose app (inside wsgiref's validator) echoes what it parsed.
The responses are parsed with llhttp's response parser, and held to what a
client relies on: every answer is well-formed HTTP/1.1, one per request in
order and none twice; a valid request's app sees exactly its body; a refused
one never reaches the app and ends the connection; a connection that closes
says so in its last response; no error or traceback is logged.  The same for
uwsgi packets at a uwsgi bind.  Bounded (few examples, derandomized) so the
suite stays fast and never flakes.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httptools
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .live import live_server, uwsgi_packet

#: Small limits, so the generated requests cross them.
LIMITS = {"max_body_size": 64, "max_headers": 12, "max_request_line": 120}
BINDS = ["127.0.0.1:0", "uwsgi://127.0.0.1:0"]
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclasses.dataclass
class Sent:
    """One generated request: its bytes and what the server must answer."""

    raw: bytes
    status: int = 200
    body: bytes = b""  # the echo a 200 carries
    closes: bool = False  # the connection ends after the answer
    may_enter: bool = False  # a refusal found in the body: the app may have begun
    may_close: bool = False  # an unread body: the server may close after it
    expects_continue: bool = False
    head: bool = False  # a HEAD: its answer is a head alone
    unread: bool = False  # a broken body the app may not read: a 200 is right too
    continued: bool = False  # seen: a 100 Continue before its answer


class Recorder:
    """The app: echoes ``id|CONTENT_LENGTH|body`` and records which requests it finished."""

    def __init__(self) -> None:
        self.entered: list[str] = []
        self.finished: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        _, _, mode, ident = environ["PATH_INFO"].split("/")
        with self.lock:
            self.entered.append(ident)
        stream = environ["wsgi.input"]
        body = b""
        if mode == "all":
            while block := stream.read(65536):
                body += block
        elif mode == "small":
            while block := stream.read(3):
                body += block
        elif mode == "part":  # the rest is left unread
            body = stream.read(5)
        elif mode == "lines":
            while line := stream.readline():
                body += line
        data = f"{ident}|{environ.get('CONTENT_LENGTH', '-')}|".encode() + body
        with self.lock:
            self.finished.append(ident)
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))]
        )
        return [data]


class Logged(logging.Handler):
    """Records of WARNING and above from the server (errors and tracebacks fail an example)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def failures(self) -> list[str]:
        return [
            record.getMessage()
            for record in self.records
            if record.levelno >= logging.ERROR or record.exc_info
        ]


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Any, Recorder, Logged]]:
    app, logged = Recorder(), Logged()
    logger = logging.getLogger("wsgistack")
    logger.addHandler(logged)
    try:
        with live_server(app, bind=BINDS, timeout=2, **LIMITS) as server:
            yield server, app, logged
    finally:
        logger.removeHandler(logged)


# -- generating requests ---------------------------------------------------------------
BODIES = st.binary(max_size=40)
MODES = st.sampled_from(["all", "small", "lines", "part", "none"])
#: Connection fields that keep an HTTP/1.0 connection open, and that close any.
KEEP_ALIVE = [b"keep-alive", b"Keep-Alive", b"keep-alive, x-other", b"closed, keep-alive"]
CLOSE = [b"close", b"Close", b"keep-alive, close", b"x-other,close", b"CLOSE "]
METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])


def _chunked(draw: st.DrawFn, body: bytes) -> bytes:
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    out = b""
    for piece in pieces:
        if piece:
            ext = draw(st.sampled_from([b"", b";a=b", b';name="q"']))
            out += b"%x%b\r\n%b\r\n" % (len(piece), ext, piece)
    trailer = draw(st.sampled_from([b"", b"X-Trailer: 1\r\n"]))
    return out + b"0\r\n" + trailer + b"\r\n"


@st.composite
def valid(draw: st.DrawFn, ident: str) -> Sent:
    method = draw(st.one_of(METHODS, st.just("HEAD")))
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.0"]))
    mode = draw(MODES)
    body = draw(BODIES)
    framing = draw(st.sampled_from(["length", "chunked"] if version == b"1.1" else ["length"]))
    if not body and draw(st.booleans()):
        framing = "none"
    headers = [b"Host: example.com"]
    if framing == "length":
        headers.append(b"Content-Length: %d" % len(body))
        payload = body
    elif framing == "chunked":
        headers.append(b"Transfer-Encoding: chunked")
        payload = _chunked(draw, body)
    else:
        payload = b""
    expects = version == b"1.1" and framing != "none" and draw(st.booleans())
    if expects:
        headers.append(b"Expect: 100-continue")
    if version == b"1.0":
        connection = draw(st.sampled_from([None, *KEEP_ALIVE, *CLOSE]))
        closes = connection not in KEEP_ALIVE
    else:
        connection = draw(st.sampled_from([None, None, None, *KEEP_ALIVE, *CLOSE]))
        closes = connection in CLOSE
    if connection is not None:
        headers.append(b"Connection: " + connection)
    if framing == "none" and draw(st.integers(0, 5)) == 0:
        # Asked to switch protocols: answered as plain HTTP; closed if it really asked.
        upgrade = draw(st.sampled_from([b"Connection: Upgrade", b"X: y"]))
        headers += [b"Upgrade: websocket", upgrade]
        closes = closes or (upgrade == b"Connection: Upgrade")
    headers.append(b"X-Fuzz: " + draw(st.sampled_from([b"a", b" spaced ", b"", b"\tx\t"])))
    headers = draw(st.permutations(headers))
    raw = b"%s /echo/%s/%s?q=1 HTTP/%s\r\n%s\r\n\r\n%s" % (
        method.encode(),
        mode.encode(),
        ident.encode(),
        version,
        b"\r\n".join(headers),
        payload,
    )
    length = b"-" if framing == "chunked" else (b"%d" % len(body) if framing == "length" else b"-")
    read = {"none": b"", "part": body[:5]}.get(mode, body)
    echo = ident.encode() + b"|" + length + b"|" + read
    return Sent(
        raw,
        body=b"" if method == "HEAD" else echo,
        head=method == "HEAD",
        closes=closes,
        may_close=mode in ("none", "part") and (bool(body) or framing == "chunked"),
        expects_continue=expects,
    )


def _broken_heads(ident: str) -> list[tuple[bytes, int]]:
    target = b"/echo/all/" + ident.encode()
    get = b"GET " + target + b" HTTP/1.1\r\n"
    return [
        (get + b"Host: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc", 400),
        (get + b"Host: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (get + b"Host: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
        (b"GET " + target + b" HTTP/1.2\r\nHost: a\r\n\r\n", 505),
        (get + b"X: y\r\n\r\n", 400),
        (get + b"Host: a\r\nHost: b\r\n\r\n", 400),
        (get + b"Host: a\r\nExpect: fancy\r\n\r\n", 417),
        (get + b"Host: a\r\nX: y\r\n  folded\r\n\r\n", 400),
        (get + b"Host: a\nX: y\r\n\r\n", 400),
        (get + b"Host: a\r\nContent-Length: 1e3\r\n\r\n", 400),
        (get + b"Host: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (get + b"Host: a\r\nContent-Length: 65\r\n\r\n", 413),
        (get + b"Host: a\r\nX : y\r\n\r\n", 400),
        (get + b"Host: a/b\r\n\r\n", 400),
        (get + b"".join(b"X-%d: y\r\n" % n for n in range(13)) + b"Host: a\r\n\r\n", 431),
        (b"GET /" + b"a" * 130 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
        (b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 501),
        (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"POST " + target + b" HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (uwsgi_packet({"REQUEST_METHOD": "GET", "PATH_INFO": "/echo/all/" + ident}), 400),
    ]


@st.composite
def refused(draw: st.DrawFn, ident: str) -> Sent:
    """A request the server refuses before the app, or (a broken body) as the app reads."""
    if draw(st.integers(0, 3)) == 0:
        mode = draw(st.sampled_from([b"all", b"lines", b"none"]))
        head = (
            b"POST /echo/" + mode + b"/%s HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        bodies = [(b"zz\r\nab\r\n0\r\n\r\n", 400), (b"3\r\nabcd\r\n0\r\n\r\n", 400)]
        bodies.append((b"".join(b"10\r\n" + b"x" * 16 + b"\r\n" for _ in range(5)), 413))
        body, status = draw(st.sampled_from(bodies))
        raw = (head % ident.encode()) + body
        method = b"POST "
    else:
        raw, status = draw(st.sampled_from(_broken_heads(ident)))
        method = b"GET "
    if raw.startswith(method) and draw(st.booleans()):
        raw = b"HEAD " + raw[len(method) :]
    head = raw.startswith(b"HEAD ")
    # An app that never reads the broken body answers; the server then closes.
    unread = method == b"POST " and b"/none/" in raw
    return Sent(raw, status, closes=True, may_enter=method == b"POST ", head=head, unread=unread)


@st.composite
def pipelines(draw: st.DrawFn) -> list[Sent]:
    count = draw(st.integers(1, 6))
    sent = []
    for n in range(count):
        ident = f"r{n}"
        sent.append(draw(refused(ident) if draw(st.integers(0, 3)) == 0 else valid(ident)))
    last = b"GET /echo/all/end HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    sent.append(Sent(last, body=b"end|-|", closes=True))
    return sent


def cut(draw: st.DrawFn, data: bytes) -> list[bytes]:
    points = sorted(set(draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=30))))
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


# -- reading answers ---------------------------------------------------------------------
@dataclasses.dataclass
class Answer:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = dataclasses.field(default_factory=list)
    body: bytes = b""

    def header(self, name: bytes) -> bytes | None:
        values = [value for key, value in self.headers if key.lower() == name]
        return b", ".join(values) if values else None


class Answers:
    """httptools callbacks: the status and fields of a response head."""

    def __init__(self) -> None:
        self.list: list[Answer] = []
        self.parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        self.list.append(Answer())

    def on_header(self, name: bytes, value: bytes) -> None:
        self.list[-1].headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.list[-1].status = self.parser.get_status_code()


def exchange(address: Any, pieces: list[bytes], *, half_close: bool = False) -> bytes:
    """Send ``pieces`` one by one, then read until the server closes (bounded by 10 s).

    ``half_close``: then end the sending side, as a client cut off mid-request.
    """
    with socket.create_connection(address, timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for piece in pieces:
                sock.sendall(piece)
                time.sleep(0.0005)  # let most pieces arrive on their own
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # refused and closed (or reset) before the rest went out
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
        return data


def parse(data: bytes, heads: list[bool] | None = None) -> list[Answer]:
    """Split ``data`` into responses, each head checked by llhttp's response parser.

    ``heads[n]``: the n-th final answer is to a HEAD, so a head alone whatever
    its Content-Length (llhttp cannot be told).  Every answer here has a length.
    """
    answers = []
    finals = 0
    while data:
        end = data.find(b"\r\n\r\n")
        assert end >= 0, data
        head, data = data[: end + 4], data[end + 4 :]
        parsed = Answers()
        parsed.parser.feed_data(head)  # raises on a head that is not well-formed HTTP/1.1
        (answer,) = parsed.list
        assert parsed.parser.get_http_version() == "1.1", head
        if answer.status >= 200:
            assert answer.header(b"transfer-encoding") is None, head
            head_only = heads is not None and finals < len(heads) and heads[finals]
            finals += 1
            if not head_only and answer.status not in (204, 304):
                length = int(answer.header(b"content-length") or b"-1")
                assert 0 <= length <= len(data), (head, data)
                answer.body, data = data[:length], data[length:]
        answers.append(answer)
    return answers


def check_http(sent: list[Sent], data: bytes, app: Recorder, logged: Logged) -> None:
    answers = parse(data, [request.head for request in sent])
    finals = []
    for answer in answers:
        if answer.status == 100:
            assert not answer.body
            # 100 Continue only to a request that asked for it, once, before its answer.
            request = sent[len(finals)]
            assert request.expects_continue and not request.continued, data
            request.continued = True
        else:
            finals.append(answer)
    assert finals, data
    assert len(finals) <= len(sent)
    for index, answer in enumerate(finals):
        request = sent[index]
        if request.unread and answer.status == 200:
            assert answer.body == (b"" if request.head else f"r{index}|-|".encode())
        else:
            assert answer.status == request.status, (request.raw, data)
        if request.status == 200:
            assert answer.body == request.body, (request.raw, data)
        last = index == len(finals) - 1
        closes = answer.header(b"connection") in (b"close",)
        if request.closes or request.status != 200:
            assert last and closes, (request.raw, data)
        elif last:
            # The server ended the connection early: only allowed after an unread body.
            assert request.may_close and closes, (request.raw, data)
        else:
            assert not closes, (request.raw, data)
    for index, request in enumerate(sent):
        ident = f"r{index}" if index < len(sent) - 1 else "end"
        reached = ident in app.finished
        if index < len(finals) and request.status == 200:
            assert reached, (ident, data)
        elif not request.may_enter:
            assert ident not in app.entered, (ident, request.raw)
    assert not logged.failures(), logged.failures()


@SETTINGS
@given(data=st.data())
def test_pipelined_requests_in_pieces_get_one_right_answer_each(served, data):
    server, app, logged = served
    app.entered.clear(), app.finished.clear(), logged.records.clear()
    sent = data.draw(pipelines())
    pieces = cut(data.draw, b"".join(s.raw for s in sent))
    half_close = data.draw(st.booleans())  # a client may end its side once all is sent
    check_http(sent, exchange(server.addresses[0], pieces, half_close=half_close), app, logged)


# -- uwsgi ---------------------------------------------------------------------------------
HEADER_NAMES = st.sampled_from(["HTTP_X_A", "HTTP_ACCEPT", "HTTP_COOKIE", "HTTP_HOST", "X_VAR"])
HEADER_VALUES = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=12)


@st.composite
def packets(draw: st.DrawFn) -> tuple[bytes, Sent, bool]:
    """A packet (with its body), what it must get, and whether the client then half-closes."""
    mode = draw(MODES)
    body = draw(BODIES)
    path = f"/echo/{mode}/u"
    variables = [
        ("REQUEST_METHOD", draw(METHODS)),
        ("REQUEST_URI", path + "?q=1"),
        ("PATH_INFO", path),
        ("QUERY_STRING", "q=1"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
    ]
    variables += draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=6))
    zeros = "0" * draw(st.integers(0, 2))
    length = f"{zeros}{len(body)}" if body or draw(st.booleans()) else ""
    variables.append(("CONTENT_LENGTH", length))
    variables = draw(st.permutations(variables))
    read = {"none": b"", "part": body[:5]}.get(mode, body)
    echo = b"u|%s|%s" % (str(len(body)).encode() if length else b"-", read)
    packet = uwsgi_packet(variables, body) + draw(st.sampled_from([b"", b"stray"]))
    kind = draw(st.integers(0, 9))
    if kind < 5:
        return packet, Sent(packet, body=echo, closes=True), False
    head = uwsgi_packet(variables)
    block = head[4:]
    if kind == 5:  # cut short: in the head (no answer), or in the body
        if body and mode in ("all", "small", "lines") and draw(st.booleans()):
            short = uwsgi_packet(variables, body)[:-1]
            return short, Sent(short, 400, closes=True, may_enter=True), True
        short = head[: draw(st.integers(1, len(head) - 1))]
        return short, Sent(short, 0), True
    broken = [
        (b"\x05" + packet[1:], 400),  # an unknown modifier1
        (b"\x00\xff\xff\x00" + block, 431),  # over the packet limit
        (head[:4] + b"\xff\x00" + block[2:], 400),  # a key that runs past the block
        (uwsgi_packet([*variables, ("A B", "x")]), 400),  # a name that is no token
        (b"GET /echo/all/u HTTP/1.1\r\nHost: a\r\n\r\n", 400),  # HTTP at a uwsgi bind
        (uwsgi_packet([*variables, ("HTTP_X", "a\r\nb")]), 400),
        (uwsgi_packet([pair for pair in variables if pair[0] != "REQUEST_METHOD"]), 400),
        (uwsgi_packet([*variables, ("CONTENT_LENGTH", "1e3")]), 400),
        (uwsgi_packet([*variables, ("CONTENT_LENGTH", "65")]), 413),
        (uwsgi_packet([*variables, ("CONTENT_LENGTH", "9" * 5000)]), 413),
        (uwsgi_packet([*variables, ("REQUEST_URI", "/" + "a" * 130)]), 414),
        (uwsgi_packet([*variables, *((f"HTTP_X_{n}", "y") for n in range(13))]), 431),
    ]
    raw, status = draw(st.sampled_from(broken))
    return raw, Sent(raw, status, closes=True), False


@SETTINGS
@given(data=st.data())
def test_uwsgi_packets_in_pieces_get_one_right_answer(served, data):
    server, app, logged = served
    app.entered.clear(), app.finished.clear(), logged.records.clear()
    raw, sent, half_close = data.draw(packets())
    pieces = cut(data.draw, raw)
    answer = exchange(server.addresses[1], pieces, half_close=half_close)
    if not sent.status:  # the packet's head never ended: closed without an answer
        assert answer == b"" and app.entered == []
    else:
        (final,) = parse(answer)
        assert final.status == sent.status, (raw, answer)
        if sent.status == 200:
            assert final.body == sent.body and app.finished == ["u"], (raw, answer)
        elif not sent.may_enter:
            assert app.entered == [], (raw, answer)
    assert not logged.failures(), logged.failures()
