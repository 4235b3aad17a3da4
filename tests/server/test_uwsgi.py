"""The uwsgi protocol over raw sockets: well-formed packets served, bad ones refused unseen."""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
import wsgiref.util
from collections.abc import Iterator
from wsgiref.validate import validator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsgistack.errors import ConfigError
from wsgistack.server import Server
from wsgistack.server import direct as direct_module
from wsgistack.server import listener as listener_module
from wsgistack.server import worker as worker_module
from wsgistack.server.bind import parse_bind
from wsgistack.server.config import ServerConfig
from wsgistack.server.listener import close_listeners, open_listeners
from wsgistack.server.request import Limits
from wsgistack.server.uwsgi import UwsgiParser

from .conftest import echo_app
from .live import HeldApp, RawClient, live_server, read_until_close
from .live import uwsgi_packet as packet
from .served import poll
from .test_client_gone_log import reset


def nginx_vars(method: str = "GET", uri: str = "/", **extra: str) -> dict[str, str]:
    path, _, query = uri.partition("?")
    variables = {
        "QUERY_STRING": query,
        "REQUEST_METHOD": method,
        "CONTENT_TYPE": "",
        "CONTENT_LENGTH": "",
        "REQUEST_URI": uri,
        "PATH_INFO": path,
        "DOCUMENT_ROOT": "/usr/share/nginx/html",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_SCHEME": "http",
        "REMOTE_ADDR": "203.0.113.7",
        "REMOTE_PORT": "51234",
        "SERVER_PORT": "80",
        "SERVER_NAME": "shop.example",
        "HTTP_HOST": "shop.example",
    }
    variables.update(extra)
    return variables


SEEN: list[dict] = []


def recording(environ, start_response):
    """The echo app, keeping each environ so a test sees what the app was given."""
    SEEN.append(dict(environ))
    return echo_app(environ, start_response)


@pytest.fixture(params=["uwsgi only", "beside http"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A uwsgi bind alone (its pool threads accept) and beside an HTTP one (the loop does)."""
    SEEN.clear()
    binds = ["uwsgi://127.0.0.1:0", "127.0.0.1:0"][: 1 if request.param == "uwsgi only" else 2]
    with live_server(recording, bind=binds, timeout=2) as server:
        yield server


@pytest.fixture
def side_by_side() -> Iterator[Server]:
    SEEN.clear()
    with live_server(recording, bind=["uwsgi://127.0.0.1:0", "127.0.0.1:0"], timeout=2) as server:
        yield server


def exchange(server: Server, data: bytes | list[bytes]) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` (in pieces if a list) on a fresh uwsgi connection; read the answer."""
    with RawClient(server.addresses[0]) as client:
        for piece in data if isinstance(data, list) else [data]:
            client.send(piece)
        answer = client.response()
        assert client.closed_by_peer()  # uwsgi: one request per connection, the close ends it
    return answer


def test_a_get_gets_the_environ_nginx_computed(server):
    status, headers, body = exchange(server, packet(nginx_vars(uri="/a/b%20c?x=1&y=2")))
    assert status == 200 and body == b"GET /a/b%20c x=1&y=2 "
    environ = SEEN[0]
    assert environ["REMOTE_ADDR"] == "203.0.113.7"  # the client nginx saw, not nginx itself
    assert environ["SERVER_NAME"] == "shop.example" and environ["SERVER_PORT"] == "80"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1" and environ["RAW_URI"] == "/a/b%20c?x=1&y=2"
    assert environ["wsgi.url_scheme"] == "http"
    assert "CONTENT_LENGTH" not in environ and "CONTENT_TYPE" not in environ  # empty: absent
    assert headers["content-length"] == str(len(body))


def test_a_post_body_is_streamed_by_content_length_even_when_split(server):
    body = bytes(range(256)) * 1000
    data = packet(nginx_vars("POST", "/upload", CONTENT_LENGTH=str(len(body))), body)
    pieces = [data[i : i + 7001] for i in range(0, len(data), 7001)]
    status, _, answer = exchange(server, pieces)
    assert status == 200 and answer == b"POST /upload  " + body
    assert SEEN[0]["CONTENT_LENGTH"] == str(len(body))


def test_a_content_length_with_thousands_of_leading_zeros_is_its_number(server):
    # nginx passes a client's Content-Length as written; int() refused one of
    # over 4300 digits with a ValueError that ended the worker's loop.
    variables = nginx_vars("POST", "/upload", CONTENT_LENGTH="0" * 4999 + "5")
    assert exchange(server, packet(variables, b"hello"))[2] == b"POST /upload  hello"
    assert SEEN[0]["CONTENT_LENGTH"] == "5"
    assert exchange(server, packet(nginx_vars(uri="/after")))[0] == 200  # the worker lives


def test_a_decoded_path_may_hold_a_line_break_as_over_http(server):
    # nginx decodes %0A and %0D in PATH_INFO; the app gets them, not a 400.
    variables = nginx_vars(uri="/notes/a%0Ab%0D", PATH_INFO="/notes/a\nb\r")
    assert exchange(server, packet(variables))[0] == 200
    assert SEEN[0]["PATH_INFO"] == "/notes/a\nb\r"


def test_a_header_name_of_any_token_characters_is_taken_as_over_http(server):
    # nginx with ignore_invalid_headers off sends X-A!B as HTTP_X_A!B.
    assert exchange(server, packet(nginx_vars(**{"HTTP_X_A!B": "1"})))[0] == 200
    assert SEEN[0]["HTTP_X_A!B"] == "1"


def test_repeated_variables_are_joined_as_repeated_headers(server):
    variables = [*nginx_vars().items(), ("HTTP_X_TAG", "a"), ("HTTP_X_TAG", "b")]
    variables += [("HTTP_COOKIE", "s=1"), ("HTTP_COOKIE", "t=2")]
    assert exchange(server, packet(variables))[0] == 200
    assert SEEN[0]["HTTP_X_TAG"] == "a, b" and SEEN[0]["HTTP_COOKIE"] == "s=1; t=2"


def test_https_and_the_script_name_nginx_sends_are_honoured(server):
    variables = nginx_vars(uri="/shop/cart", HTTPS="on", SCRIPT_NAME="/shop")
    variables["HTTP_CONTENT_TYPE"] = "text/plain"  # nginx doubles these: PEP 3333 forbids it
    assert exchange(server, packet(variables))[0] == 200
    environ = SEEN[0]
    assert environ["wsgi.url_scheme"] == "https"
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/shop", "/cart")
    assert "HTTP_CONTENT_TYPE" not in environ


@pytest.mark.parametrize(
    ("extra", "scheme"),
    [
        ({"UWSGI_SCHEME": "https"}, "https"),
        ({"UWSGI_SCHEME": "http", "HTTPS": "on"}, "http"),  # uWSGI: UWSGI_SCHEME first
        ({"UWSGI_SCHEME": "", "HTTPS": "on"}, "https"),
    ],
    ids=["uwsgi-scheme", "over-https-on", "empty"],
)
def test_uwsgi_scheme_sets_the_url_scheme_first(server, extra, scheme):
    assert exchange(server, packet(nginx_vars(**extra)))[0] == 200
    assert SEEN[0]["wsgi.url_scheme"] == scheme


def test_a_streamed_response_ends_with_the_close_not_chunks(server):
    def stream(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"part %d\n" % i for i in range(50))

    with live_server(stream, bind="uwsgi://127.0.0.1:0") as streaming:
        status, headers, body = exchange(streaming, packet(nginx_vars()))
    assert status == 200 and "transfer-encoding" not in headers
    assert body == b"".join(b"part %d\n" % i for i in range(50))


def test_a_uwsgi_head_is_the_apps_own_headers(server):
    # No Date, Server or Connection: nginx adds its own, as for uWSGI's responses.
    status, headers, body = exchange(server, packet(nginx_vars(uri="/plain")))
    assert status == 200 and body == b"GET /plain  "
    assert not {"date", "server", "connection"} & set(headers)


def test_http_and_uwsgi_binds_serve_side_by_side(side_by_side):
    server = side_by_side
    with RawClient(server.addresses[1]) as client:
        status, _, body = client.request(b"GET /plain?q HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (status, body) == (200, b"GET /plain q ")
    assert exchange(server, packet(nginx_vars(uri="/wire")))[2] == b"GET /wire  "
    assert server.url == f"http://127.0.0.1:{server.addresses[1][1]}"  # the HTTP bind


BAD_PACKETS = {
    "unknown modifier1": (packet(nginx_vars(), modifier1=5), 400),
    "unknown modifier2": (packet(nginx_vars(), modifier2=1), 400),
    "no REQUEST_METHOD": (packet({"PATH_INFO": "/"}), 400),
    "empty REQUEST_METHOD": (packet(nginx_vars(method="")), 400),
    "a REQUEST_METHOD with a space": (packet(nginx_vars(method="GE T")), 400),
    "a REQUEST_METHOD with a slash": (packet(nginx_vars(method="GET/1")), 400),
    "key size past the packet": (b"\x00\x04\x00\x00\x09\x00ABC", 400),
    "value size past the packet": (b"\x00\x09\x00\x00\x01\x00K\x09\x00abcd", 400),
    "a key with no value": (b"\x00\x02\x00\x00\x00\x00", 400),
    "a key that is not a name": (packet([("BAD KEY", "x"), ("REQUEST_METHOD", "GET")]), 400),
    "an LF inside a key": (packet(nginx_vars(**{"HTTP_X\nSET_COOKIE": "a"})), 400),
    "a CR in a value": (packet(nginx_vars(HTTP_X_EVIL="a\r\nSet-Cookie: b")), 400),
    "a bad CONTENT_LENGTH": (packet(nginx_vars("POST", CONTENT_LENGTH="-5")), 400),
    "non-ASCII digits in CONTENT_LENGTH": (packet(nginx_vars("POST", CONTENT_LENGTH="\xb2")), 400),
    "a NUL in a value": (packet(nginx_vars(HTTP_X_EVIL="a\x00b")), 400),
    "an LF in a value": (packet(nginx_vars(HTTP_X_EVIL="a\nb")), 400),
    "HTTP sent to the uwsgi bind": (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "a packet past the buffer": (packet(nginx_vars(HTTP_X_BIG="x" * 40000)), 431),
    "a body past --max-body-size": (packet(nginx_vars("POST", CONTENT_LENGTH="99999999999")), 413),
    "a CONTENT_LENGTH of 5000 digits": (packet(nginx_vars("POST", CONTENT_LENGTH="9" * 5000)), 413),
}


@pytest.mark.parametrize(("data", "status"), BAD_PACKETS.values(), ids=BAD_PACKETS.keys())
def test_a_bad_packet_is_refused_logged_and_never_reaches_the_app(server, data, status, caplog):
    caplog.set_level(logging.INFO, logger="wsgistack.server")
    answer, headers, _ = exchange(server, data)
    assert answer == status
    assert not {"date", "server"} & set(headers)  # nginx adds its own, as to any uwsgi answer
    assert SEEN == []
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "wsgistack.server"]
    if status == 400:  # a packet nginx never sends: its setup is wrong
        assert any(lv == logging.WARNING and "uwsgi" in m for lv, m in said), said
    else:  # a client's request over a limit, at INFO, as the HTTP bind says it
        assert any(lv == logging.INFO and m.endswith(f", answered {status}") for lv, m in said)
        assert [m for lv, m in said if lv >= logging.WARNING] == []


def test_a_refused_packet_is_logged_with_the_client_and_request_nginx_sent(tmp_path):
    # The line named nginx's own address and "-": not who sent what.
    log = tmp_path / "access.log"
    too_big = nginx_vars("POST", "/upload?id=7", CONTENT_LENGTH="5000")
    with live_server(
        recording, bind="uwsgi://127.0.0.1:0", access_log=str(log), max_body_size=1000
    ) as uwsgi_server:
        status, _, large_body = exchange(uwsgi_server, packet(too_big))
        assert status == 413
        status, _, bad_body = exchange(uwsgi_server, packet({"PATH_INFO": "/"}))
        assert status == 400
    too_large, no_method = log.read_text().splitlines()
    assert too_large.startswith("203.0.113.7 - - [")
    assert too_large.endswith(f'] "POST /upload?id=7 HTTP/1.1" 413 {len(large_body)} "-" "-"')
    assert no_method.startswith("127.0.0.1 - - [")
    assert no_method.endswith(f'] "-" 400 {len(bad_body)} "-" "-"')


@pytest.mark.parametrize("split", [False, True], ids=["whole", "split"])
def test_a_parser_that_raises_costs_the_connection_not_the_worker(
    server, monkeypatch, caplog, split
):
    # The parser refuses by setting its error; one that raised instead (as
    # int() once did on a long CONTENT_LENGTH) ended the worker's loop.
    feed = UwsgiParser.feed

    def failing(parser, data):
        if b"/parser-bug" in data:
            raise RuntimeError("a parser bug")
        feed(parser, data)

    monkeypatch.setattr(UwsgiParser, "feed", failing)
    data = packet(nginx_vars(uri="/parser-bug"))
    assert exchange(server, [data[:10], data[10:]] if split else data)[0] == 400
    assert exchange(server, packet(nginx_vars(uri="/after")))[2] == b"GET /after  "
    assert SEEN[0]["PATH_INFO"] == "/after"
    assert any("parser failed" in r.getMessage() for r in caplog.records)


def test_a_truncated_packet_is_logged_and_closed_unseen(server, caplog):
    caplog.set_level(logging.WARNING, logger="wsgistack.server")
    with RawClient(server.addresses[0]) as client:
        client.send(packet(nginx_vars())[:20])
        client.sock.shutdown(socket.SHUT_WR)
        assert client.read_to_close() == b""
    assert SEEN == []
    said = [r.getMessage() for r in caplog.records if "middle of a packet" in r.getMessage()]
    assert said == ["uwsgi: 127.0.0.1 closed the connection in the middle of a packet"]


def test_a_packet_cut_on_a_unix_socket_names_no_address(tmp_path, caplog):
    # A unix socket's peer has no address: the warning says "the peer".
    caplog.set_level(logging.WARNING, logger="wsgistack.server")
    path = tmp_path / "app.sock"
    with (
        live_server(recording, bind=f"uwsgi://unix:{path}", timeout=2),
        RawClient(str(path)) as client,
    ):
        client.send(packet(nginx_vars())[:20])
        client.sock.shutdown(socket.SHUT_WR)
        assert client.read_to_close() == b""
        poll(lambda: any("middle of a packet" in r.getMessage() for r in caplog.records))
    said = [r.getMessage() for r in caplog.records if "middle of a packet" in r.getMessage()]
    assert said == ["uwsgi: the peer closed the connection in the middle of a packet"]


@pytest.mark.parametrize("binds", [1, 2], ids=["uwsgi only", "beside http"])
def test_a_packet_cut_by_a_reset_is_a_warning_and_a_400(binds, tmp_path, caplog):
    # A peer that resets mid-packet (nginx killed, a forged client) left no
    # line at all, where one that closes leaves a warning and a "-" 400.
    SEEN.clear()
    caplog.set_level(logging.WARNING, logger="wsgistack.server")
    log = tmp_path / "access.log"
    bind = ["uwsgi://127.0.0.1:0", "127.0.0.1:0"][:binds]
    with live_server(recording, bind=bind, timeout=5, access_log=str(log)) as server:
        worker = server._worker
        client = RawClient(server.addresses[0])
        client.send(packet(nginx_vars())[:20])
        poll(
            lambda: any(
                each.parser.mid_request
                for each in worker.connections() + (worker.direct.held() if worker.direct else [])
            )
        )
        reset(client.sock)
        poll(lambda: " 400 " in log.read_text())
    said = [r.getMessage() for r in caplog.records if "middle of a packet" in r.getMessage()]
    assert said == ["uwsgi: 127.0.0.1 reset the connection in the middle of a packet"]
    (cut,) = log.read_text().splitlines()
    assert cut.endswith('] "-" 400 - "-" "-"')
    assert SEEN == []


def test_a_packet_that_stalls_gets_408_after_the_timeout(server):
    with RawClient(server.addresses[0]) as client:
        client.send(packet(nginx_vars())[:10])
        status, headers, _ = client.response()
        assert status == 408 and headers["connection"] == "close"
        assert not {"date", "server"} & set(headers)
    assert SEEN == []


def test_a_peer_that_connects_first_and_sends_later_is_served(server, side_by_side):
    # The uwsgi listener is deferred (the kernel hands over connections once data
    # came, as uWSGI's are); a peer slower than nginx must still be answered.
    uwsgi_listener, http_listener = side_by_side.listeners
    assert uwsgi_listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) > 0
    assert http_listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) == 0
    with RawClient(server.addresses[0]) as client:
        time.sleep(0.3)
        client.send(packet(nginx_vars(uri="/late")))
        status, _, body = client.response()
    assert status == 200 and body == b"GET /late  "


@pytest.mark.parametrize("sent", [{}, {"REMOTE_ADDR": "203.0.113.7"}], ids=["absent", "sent"])
def test_a_unix_socket_peer_without_remote_addr_has_no_address(tmp_path, sent):
    # nginx's uwsgi_params always sends REMOTE_ADDR; a packet without it, on a
    # unix socket, has no client address, as an HTTP request there has none.
    SEEN.clear()
    variables = {k: v for k, v in nginx_vars().items() if k not in ("REMOTE_ADDR", "REMOTE_PORT")}
    path = tmp_path / "app.sock"
    with (
        live_server(recording, bind=f"uwsgi://unix:{path}"),
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client,
    ):
        client.settimeout(5)
        client.connect(str(path))
        client.sendall(packet({**variables, **sent}))
        assert read_until_close(client).startswith(b"HTTP/1.1 200 OK\r\n")
    assert SEEN[0]["REMOTE_ADDR"] == sent.get("REMOTE_ADDR", "")


def test_a_uwsgi_only_worker_accepts_in_its_pool_threads(server):
    # nginx opens a connection per uwsgi request: on a worker with no other bind
    # the threads accept themselves, sparing a hand-over from the loop each time.
    assert (server._worker.direct is not None) is (len(server.listeners) == 1)


def test_a_stalled_peer_holds_one_thread_while_the_others_serve():
    SEEN.clear()
    with (
        live_server(recording, bind="uwsgi://127.0.0.1:0", threads=2, timeout=3) as server,
        RawClient(server.address) as stalled,
    ):
        stalled.send(packet(nginx_vars(uri="/stalled"))[:10])
        for n in range(4):  # the second thread serves on meanwhile
            assert exchange(server, packet(nginx_vars(uri=f"/{n}")))[2] == f"GET /{n}  ".encode()
        status, _, _ = stalled.response()
        assert status == 408  # once --timeout passed
    assert [environ["PATH_INFO"] for environ in SEEN] == ["/0", "/1", "/2", "/3"]


def test_a_graceful_stop_answers_the_uwsgi_request_in_flight():
    slow = HeldApp()
    entered, release = slow.entered, slow.release
    with live_server(slow, bind="uwsgi://127.0.0.1:0", graceful_timeout=10) as server:
        with RawClient(server.address) as client:
            client.send(packet(nginx_vars()))
            assert entered.wait(10)
            stopper = threading.Thread(target=server.close)
            stopper.start()
            release.set()
            assert client.response()[2] == b"finished"
            stopper.join(10)
        assert not stopper.is_alive()
        with pytest.raises(OSError):  # stopped: the port is closed
            socket.create_connection(server.address, timeout=2).close()


@pytest.mark.parametrize("binds", [["uwsgi://127.0.0.1:0"], ["uwsgi://127.0.0.1:0", "127.0.0.1:0"]])
def test_a_refused_upload_is_answered_while_nginx_still_sends_it(binds):
    # The 413 goes out at once; closing then would reset the connection with the
    # body unread, and nginx would see the reset instead of the answer.
    big = packet(nginx_vars("POST", CONTENT_LENGTH="300000"), b"x" * 300_000)
    with (
        live_server(recording, bind=binds, max_body_size=1000) as server,
        RawClient(server.address) as client,
    ):
        sender = threading.Thread(target=lambda: client.sock.sendall(big))
        sender.start()
        status, _, _ = client.response()
        sender.join(10)
    assert status == 413


def test_running_out_of_descriptors_pauses_accepting_in_the_pool_threads(monkeypatch, caplog):
    # EMFILE from accept() leaves the connection in the backlog: retrying at once
    # would spin; the threads rest for ACCEPT_PAUSE, warn, and accept again after.
    real_accept = direct_module.accept
    failures = [OSError(errno.EMFILE, "Too many open files")]

    def accept(listener, family=None):
        if failures:
            raise failures.pop()
        return real_accept(listener, family)

    monkeypatch.setattr(direct_module, "accept", accept)
    caplog.set_level(logging.WARNING, logger="wsgistack.server")
    with live_server(recording, bind="uwsgi://127.0.0.1:0", threads=1) as server:
        assert exchange(server, packet(nginx_vars(uri="/after")))[2] == b"GET /after  "
    assert not failures
    assert any("pausing accepts" in record.getMessage() for record in caplog.records)


def test_a_body_shorter_than_its_length_is_refused_when_nginx_gives_up(server):
    data = packet(nginx_vars("POST", CONTENT_LENGTH="100"), b"only ten b")
    with RawClient(server.addresses[0]) as client:
        client.send(data)
        client.sock.shutdown(socket.SHUT_WR)
        status, _, _ = client.response()
    assert status == 400  # the app's read failed; nothing partial was handed over as whole


def test_binds_and_protocol_options_are_validated_by_name():
    assert parse_bind("uwsgi://127.0.0.1:9000").protocol == "uwsgi"
    assert str(parse_bind("uwsgi://[::1]:9000")) == "uwsgi://[::1]:9000"
    assert parse_bind("uwsgi://unix:/run/app.sock").path == "/run/app.sock"
    config = ServerConfig.from_options(protocol="uwsgi", bind=["127.0.0.1:1", "http://[::1]:2"])
    assert [bind.protocol for bind in config.bind] == ["uwsgi", "http"]
    with pytest.raises(ConfigError, match=r"^bind: .*unknown scheme 'fcgi'"):
        parse_bind("fcgi://127.0.0.1:9000")
    with pytest.raises(ConfigError, match=r"^protocol: 'spdy'"):
        ServerConfig.from_options(protocol="spdy")


def test_a_server_with_only_uwsgi_binds_has_no_http_url():
    with (
        live_server(echo_app, bind="uwsgi://127.0.0.1:0") as server,
        pytest.raises(ConfigError, match="no HTTP"),
    ):
        server.url  # noqa: B018


@pytest.mark.parametrize(("method", "status"), [("GET", 200), ("POST", 414)])
def test_a_uwsgi_request_line_is_held_to_the_limit_as_an_http_one(method, status):
    # REQUEST_METHOD, REQUEST_URI and SERVER_PROTOCOL are the line nginx read:
    # counted with its two spaces, the same request gets the same answer on
    # either bind.  The GET's line is 256 bytes, the POST's one more.
    SEEN.clear()
    uri = "/" + "a" * (256 - len("GET  HTTP/1.1") - 1)
    with live_server(recording, bind="uwsgi://127.0.0.1:0", max_request_line=256) as server:
        got, _, _ = exchange(server, packet(nginx_vars(method, uri)))
    assert got == status
    assert len(SEEN) == (1 if status == 200 else 0)


NAMES = st.from_regex(r"(HTTP_)?[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,12}", fullmatch=True).filter(
    lambda name: name not in ("CONTENT_LENGTH", "REQUEST_METHOD")
)
VALUES = st.text(
    st.characters(min_codepoint=1, max_codepoint=255, blacklist_characters="\r\n"), max_size=40
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(NAMES, VALUES), max_size=20), st.integers(min_value=1, max_value=64))
def test_any_well_formed_packet_gives_back_its_variables(pairs, step):
    pairs = [("REQUEST_METHOD", "GET"), *pairs]
    expected: dict[str, str] = {}
    for key, value in pairs:
        if key in expected and key.startswith("HTTP_") and key != "HTTP_HOST":
            value = expected[key] + ("; " if key == "HTTP_COOKIE" else ", ") + value
        expected[key] = value
    data = packet(pairs)
    parser = UwsgiParser(Limits())
    for at in range(0, len(data), step):
        parser.feed(data[at : at + step])
    request = parser.next_request()
    assert parser.error is None and request is not None
    assert request.vars == expected


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=50))
def test_the_parser_answers_any_bytes_without_raising(data, step):
    parser = UwsgiParser(Limits())
    for at in range(0, len(data), step):
        parser.feed(data[at : at + step])
    request = parser.next_request()
    if request is not None:
        assert request.method  # only a packet with a REQUEST_METHOD becomes a request


@pytest.mark.parametrize(
    ("status", "line"),
    [
        pytest.param("200", b"HTTP/1.1 200 OK\r\n", id="bare-code"),
        pytest.param("103 Early Hints", b"HTTP/1.1 500 ", id="interim-status"),
    ],
)
def test_a_status_without_a_reason_or_an_interim_one_as_over_http(status, line):
    # A bare "200" was a 500 (now "200 OK", for nginx to pass on); a 103 went out
    # as the final response, which nginx would have waited past (now a 500).
    def app(environ, start_response):
        start_response(status, [("Content-Type", "text/plain")])
        return [b"ok"]

    with (
        live_server(app, validate=False, bind="uwsgi://127.0.0.1:0") as server,
        RawClient(server.addresses[0]) as client,
    ):
        client.send(packet(nginx_vars()))
        assert client.read_to_close().startswith(line)


def test_an_empty_server_name_falls_back_to_the_listeners_as_over_http(server):
    # nginx sends $server_name empty for a server block without server_name, and
    # Debian's $host empty for a request without Host: wsgiref's request_uri()
    # gave "http://:80/x" and Django's get_host() refused the empty host.
    variables = nginx_vars(uri="/x", SERVER_NAME="", HTTP_HOST="")
    assert exchange(server, packet(variables))[0] == 200
    environ = SEEN[0]
    assert environ["SERVER_NAME"] == "127.0.0.1" and environ["SERVER_PORT"] == "80"
    assert "HTTP_HOST" not in environ
    assert wsgiref.util.request_uri(environ) == "http://127.0.0.1/x"


def test_a_thread_out_of_descriptors_rests_instead_of_retrying_at_once(monkeypatch):
    # The connection that hit EMFILE stays in the backlog, so the listener stays
    # readable: a rest that also waited on it returned at once, and the thread
    # spun on accept() at full CPU for as long as descriptors ran short.
    monkeypatch.setattr(listener_module, "ACCEPT_PAUSE", 60.0)  # only a stop ends it here
    real_accept = direct_module.accept
    failing = threading.Event()
    attempts: list[int] = []
    retried = threading.Event()

    def accept(listener, family=None):
        if not failing.is_set():
            return real_accept(listener, family)
        attempts.append(1)
        if len(attempts) > 1:
            retried.set()
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(direct_module, "accept", accept)
    with live_server(recording, bind="uwsgi://127.0.0.1:0", threads=1) as server:
        failing.set()
        with RawClient(server.address) as client:
            client.send(packet(nginx_vars()))  # pending: the listener is readable
            assert not retried.wait(1.0)  # resting, not spinning
            assert len(attempts) == 1
            server.stop(graceful=False)  # a stop still ends the rest


@pytest.mark.parametrize(
    "bind",
    [
        pytest.param("127.0.0.1:0", id="http-loop"),
        pytest.param("uwsgi://127.0.0.1:0", id="uwsgi-threads"),
    ],
)
def test_a_listener_that_fails_every_accept_rests_instead_of_spinning(monkeypatch, caplog, bind):
    # A listening socket shut down under the worker stays ready for epoll (HUP)
    # while every accept() fails with EINVAL.  Only out-of-descriptors paused;
    # this was taken for one connection's error and retried at once, at full
    # CPU and with a log line per try, until the worker stopped.
    monkeypatch.setattr(listener_module, "ACCEPT_PAUSE", 60.0)  # only a stop ends it here
    real_accept = worker_module.accept
    attempts: list[int] = []
    failed, retried = threading.Event(), threading.Event()

    def accept(listener, family=None):
        try:
            return real_accept(listener, family)
        except OSError as exc:
            attempts.append(exc.errno)
            (retried if failed.is_set() else failed).set()
            raise

    monkeypatch.setattr(worker_module, "accept", accept)  # the loop's (http-loop)
    monkeypatch.setattr(direct_module, "accept", accept)  # the threads' (uwsgi-threads)
    caplog.set_level(logging.INFO, logger="wsgistack.server")
    with live_server(recording, bind=bind, threads=1) as server:
        server.listeners[0].shutdown(socket.SHUT_RD)  # ready at once (HUP): it wakes a thread
        assert failed.wait(10)
        assert not retried.wait(1.0)  # resting, not spinning
        assert attempts == [errno.EINVAL]
        server.stop(graceful=False)  # a stop still ends the rest
    failed = [r.getMessage() for r in caplog.records if "accept failed" in r.getMessage()]
    assert len(failed) == 1 and "pausing accepts" in failed[0]


def test_a_refused_head_packet_is_answered_without_a_body(server):
    # As over HTTP: a HEAD refused before the app (here a bad CONTENT_LENGTH)
    # got the refusal's text body, which nginx would have to discard.
    with RawClient(server.addresses[0]) as client:
        client.send(packet(nginx_vars("HEAD", CONTENT_LENGTH="x1")))
        status, headers, _ = client.response(head_only=True)
        assert status == 400 and int(headers["content-length"]) > 0
        assert client.read_to_close() == b""


def test_an_immediate_stop_leaves_no_idle_accepting_thread_behind():
    # The loop used to return without waiting for the accepting threads (it had
    # no count of which ones serve), so close() returned with them still alive.
    with live_server(recording, bind="uwsgi://127.0.0.1:0", threads=8) as server:
        assert exchange(server, packet(nginx_vars()))[0] == 200
        server.stop(graceful=False)
        server.close()
        assert not any(thread.is_alive() for thread in server._worker.threads)


def test_a_graceful_stop_gives_a_half_sent_packet_the_stop_grace_not_the_timeout():
    # As over HTTP, a head begun but unfinished when the stop comes gets
    # STOP_GRACE, then a 408: its thread waited out --timeout (60 s here),
    # and the stop (a SIGTERM, a reload's old worker) with it.
    SEEN.clear()
    with live_server(recording, bind="uwsgi://127.0.0.1:0", threads=1, timeout=60) as server:
        with RawClient(server.address, timeout=20) as stalled:
            stalled.send(packet(nginx_vars())[:10])
            direct = server._worker.direct
            deadline = time.monotonic() + 10
            while not direct.serving[0] and time.monotonic() < deadline:
                time.sleep(0.01)  # until the thread has accepted it
            assert direct.serving[0]
            stopper = threading.Thread(target=server.close)
            stopper.start()
            assert stalled.response()[0] == 408
        stopper.join(20)
        assert not stopper.is_alive()
    assert SEEN == []


def test_a_worker_whose_master_is_gone_wakes_its_accepting_threads(monkeypatch):
    # The watchdog (the master died: kill -9) set the stop flag without the
    # stop's wake-up, so each accepting thread slept on for ACCEPT_WAKE (made
    # 60 s here) and the orphaned worker outlived its master that long.
    monkeypatch.setattr(direct_module, "ACCEPT_WAKE", 60.0)
    config = ServerConfig.from_options(bind="uwsgi://127.0.0.1:0", threads=2)
    listeners = open_listeners(config.bind, 16)
    master_alive = threading.Event()
    master_alive.set()
    worker = worker_module.Worker(echo_app, config, listeners, watchdog=master_alive.is_set)
    runner = threading.Thread(target=worker.run)
    try:
        runner.start()
        assert worker.ready.wait(10)
        master_alive.clear()
        runner.join(20)
        assert not runner.is_alive()
        assert not any(thread.is_alive() for thread in worker.threads)
    finally:
        worker.stop(graceful=False)
        runner.join(20)
        close_listeners(listeners)


def test_a_draining_uwsgi_worker_lets_go_of_its_listener_while_a_request_runs():
    # A forked worker closes its copy of the listener once nothing in it can
    # accept, so that new connections are refused rather than queued for nobody.
    # A uwsgi-only worker waited for every accepting thread to end, also one busy
    # with a request that will never accept again: while it ran, nginx's new
    # connections were queued for the whole drain, then reset.
    slow = HeldApp()
    entered, release = slow.entered, slow.release
    config = ServerConfig.from_options(bind="uwsgi://127.0.0.1:0", threads=2, graceful_timeout=10)
    listeners = open_listeners(config.bind, 16)
    address = listeners[0].getsockname()
    worker = worker_module.Worker(validator(slow), config, listeners, owns_listeners=True)
    runner = threading.Thread(target=worker.run)

    def refused() -> bool:
        try:
            socket.create_connection(address, timeout=1).close()
        except ConnectionRefusedError:
            return True
        except TimeoutError:  # queued, with the backlog full: not refused
            pass
        return False

    try:
        runner.start()
        assert worker.ready.wait(10)
        with RawClient(address) as client:
            client.send(packet(nginx_vars()))
            assert entered.wait(10)
            worker.stop(graceful=True)
            poll(refused)  # while the request is still running
            release.set()
            assert client.response()[2] == b"finished"
        runner.join(20)
        assert not runner.is_alive()
    finally:
        release.set()
        worker.stop(graceful=False)
        runner.join(20)
        close_listeners(listeners)
