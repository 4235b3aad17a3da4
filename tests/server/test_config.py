"""ServerConfig, the serve CLI and Server's interfaces: binds, validation, access log."""

from __future__ import annotations

import os
import re
import socket
import stat
import threading
import time

import pytest

from wsgistack import Server, cli
from wsgistack.errors import ConfigError
from wsgistack.server.access import AccessLog
from wsgistack.server.bind import Bind, parse_bind
from wsgistack.server.config import ServerConfig

from .conftest import echo_app
from .live import RawClient, live_server

GET = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"


@pytest.mark.parametrize(
    ("text", "bind"),
    [
        pytest.param("127.0.0.1:8000", Bind("tcp", "127.0.0.1", 8000), id="ipv4"),
        pytest.param("[::1]:0", Bind("tcp", "::1", 0), id="ipv6"),
        pytest.param(":9000", Bind("tcp", "0.0.0.0", 9000), id="port-only"),
        pytest.param("localhost:80", Bind("tcp", "localhost", 80), id="name"),
        pytest.param("unix:/tmp/s.sock", Bind("unix", path="/tmp/s.sock"), id="unix"),
    ],
)
def test_parse_bind(text, bind):
    assert parse_bind(text) == bind


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"bind": "8000"}, "bind: '8000' is not HOST:PORT", id="bind-no-colon"),
        pytest.param({"bind": "::1:80"}, "bind: '::1:80': write an IPv6", id="bind-ipv6-bare"),
        pytest.param({"bind": "h:70000"}, "bind: 'h:70000' is not HOST:PORT", id="bind-port"),
        pytest.param({"bind": "h:\xb2"}, "bind: 'h:\xb2' is not HOST:PORT", id="bind-port-digit"),
        pytest.param({"bind": []}, "bind: at least one address", id="bind-empty"),
        pytest.param({"bind": 8000}, "bind: 8000 is not HOST:PORT", id="bind-int"),
        pytest.param({"bind": None}, "bind: None is not HOST:PORT", id="bind-none"),
        pytest.param({"bind": b":80"}, "bind: b':80' is not HOST:PORT", id="bind-bytes"),
        pytest.param({"bind": ["h:80", 8001]}, "bind: 8001 is not HOST:PORT", id="bind-list-int"),
        pytest.param({"workers": -1}, "workers: -1 must be an integer >= 0", id="workers"),
        pytest.param({"threads": "many"}, "threads: 'many' is not an integer", id="threads"),
        pytest.param({"timeout": 0}, "timeout: 0 must be a finite number", id="timeout"),
        pytest.param({"keepalive": "x"}, "keepalive: 'x' is not a number", id="keepalive"),
        pytest.param({"root_path": "api"}, "root_path: 'api' must be", id="root-path"),
        # Matched on the decoded path, without the query: these could never match.
        pytest.param(
            {"root_path": "/caf%C3%A9"},
            "root_path: '/caf%C3%A9': it is matched on the decoded path; write '/café'",
            id="root-path-escaped",
        ),
        pytest.param(
            {"root_path": "/api#top"},
            "root_path: '/api#top': it is a path, without",
            id="root-fragment",
        ),
        pytest.param({"log_level": "loud"}, "log_level: 'loud' is not one of", id="log-level"),
        pytest.param({"max_body_size": 1.5}, "max_body_size: 1.5 must be an integer", id="float"),
        pytest.param({"bogus": 1}, "bogus: unknown server option", id="unknown"),
        # Too large for what consumes them: listen() took it with an OverflowError
        # traceback, and a body read past --timeout 1e20 failed every upload with a 500.
        pytest.param(
            {"backlog": "3000000000"},
            "backlog: '3000000000' must be an integer >= 1 and <= 2147483647",
            id="backlog-huge",
        ),
        pytest.param(
            {"timeout": "1e20"},
            "timeout: '1e20' must be a finite number >= 0.001 and <= 31536000",
            id="timeout-huge",
        ),
        pytest.param(
            {"graceful_timeout": "1e300"},
            "graceful_timeout: '1e300' must be a finite number >= 0.0 and <= 31536000",
            id="graceful-timeout-huge",
        ),
        pytest.param(
            {"socket_mode": "rw-rw----", "bind": "unix:/s"},
            "socket_mode: 'rw-rw----' is not an octal mode such as 660",
            id="socket-mode-symbolic",
        ),
        pytest.param(
            {"socket_mode": "689", "bind": "unix:/s"},
            "socket_mode: '689' is not an octal mode",
            id="socket-mode-digit",
        ),
        pytest.param(
            {"socket_mode": 660, "bind": "unix:/s"},
            'socket_mode: 660 is not a mode of 000-777 (read as a decimal number: write 0o660 or "660"',
            id="socket-mode-decimal-int",
        ),
        pytest.param(
            {"socket_mode": "4770", "bind": "unix:/s"},
            "socket_mode: '4770' is not a mode of 000-777",
            id="socket-mode-setuid",
        ),
        pytest.param(
            {"socket_mode": "066", "bind": "unix:/s"},
            "socket_mode: '066': the owner needs read and write",
            id="socket-mode-owner",
        ),
        pytest.param(
            {"socket_mode": "660", "bind": "127.0.0.1:8000"},
            "socket_mode: 660 applies to unix sockets, and no bind is unix:/path",
            id="socket-mode-no-unix-bind",
        ),
        pytest.param(
            {"workers": 0, "max_requests": 3},
            "max_requests: a recycled worker is replaced by the master",
            id="max-requests-in-process",
        ),
    ],
)
def test_bad_options_name_themselves(options, message):
    with pytest.raises(ConfigError, match="^" + message.replace("[", r"\[").replace("(", r"\(")):
        ServerConfig.from_options(**options)


def test_cli_strings_are_converted_like_keywords():
    config = ServerConfig.from_options(workers="3", timeout="2.5", bind=["[::1]:0", "unix:/x"])
    assert (config.workers, config.timeout) == (3, 2.5)
    http = "http"
    assert config.bind == (
        Bind("tcp", "::1", 0, protocol=http),
        Bind("unix", path="/x", protocol=http),
    )


def test_cli_reports_a_bad_option_with_status_2(capsys):
    assert cli.main(["serve", "x:app", "--threads", "0"]) == 2
    assert "threads: '0' must be an integer >= 1" in capsys.readouterr().err


def test_cli_needs_an_app_or_a_config(capsys):
    assert cli.main(["serve"]) == 2
    assert "exactly one of APP" in capsys.readouterr().err


def test_serves_on_ipv6_loopback():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    with live_server(echo_app, bind="[::1]:0") as server, RawClient(server.address) as client:
        assert server.url.startswith("http://[::1]:")
        assert client.request(GET)[2] == b"GET /x  "


def test_serves_on_several_binds_and_a_unix_socket(tmp_path):
    path = str(tmp_path / "s.sock")
    with live_server(echo_app, bind=["127.0.0.1:0", f"unix:{path}"]) as server:
        with RawClient(server.addresses[0]) as client:
            assert client.request(GET)[0] == 200
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(path)
            sock.sendall(b"GET /u HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            data = b"".join(iter(lambda: sock.recv(65536), b""))
        assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"GET /u  ")


@pytest.mark.parametrize("mode", ["660", "0660", "0o660", 0o660])
def test_socket_mode_is_read_as_octal(mode):
    assert ServerConfig.from_options(bind="unix:/s", socket_mode=mode).socket_mode == 0o660


@pytest.mark.parametrize("protocol", ["http", "uwsgi"])
def test_unix_sockets_get_the_socket_mode_whatever_the_umask(tmp_path, protocol):
    # They had the umask's mode, so nginx running as www-data could not connect.
    paths = [tmp_path / "a.sock", tmp_path / "b.sock"]
    binds = [f"{protocol}://unix:{path}" for path in paths] + ["127.0.0.1:0"]
    previous = os.umask(0o077)  # as systemd's default UMask=0022 would narrow 666 too
    try:
        with live_server(echo_app, bind=binds, socket_mode="666") as server:
            assert [stat.S_IMODE(path.stat().st_mode) for path in paths] == [0o666, 0o666]
            with RawClient(server.addresses[-1]) as client:  # TCP binds are left as they are
                assert client.request(GET)[0] == 200
    finally:
        os.umask(previous)
    with live_server(echo_app, bind=f"unix:{paths[0]}"):  # without the option: the umask's
        assert stat.S_IMODE(paths[0].stat().st_mode) == 0o777 & ~previous


def test_the_socket_mode_never_follows_a_file_swapped_in_after_bind(tmp_path, monkeypatch):
    # The mode used to be set by path after bind(): someone able to write to the
    # socket's directory could swap a symlink in, and the chmod opened its target.
    victim = tmp_path / "secret"
    victim.write_text("key")
    victim.chmod(0o600)
    path = tmp_path / "s.sock"
    bind = socket.socket.bind

    def bind_then_swap(sock, address):
        bind(sock, address)
        if sock.family == socket.AF_UNIX:
            path.rename(tmp_path / "moved.sock")
            path.symlink_to(victim)

    monkeypatch.setattr(socket.socket, "bind", bind_then_swap)
    with live_server(echo_app, bind=f"unix:{path}", socket_mode="666"):
        assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "moved.sock").stat().st_mode) == 0o666


def test_cli_takes_socket_mode(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(Server, "serve_forever", lambda server: seen.append(server) or 0)
    path = tmp_path / "s.sock"
    args = ["serve", "tests.server.conftest:echo_app", "--workers", "0"]
    assert cli.main([*args, "--bind", f"unix:{path}", "--socket-mode", "660"]) == 0
    assert seen[0].config.socket_mode == 0o660
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    seen[0].close()


def test_bind_failure_is_a_config_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"bind: cannot listen on 127.0.0.1:{port}"):
            Server(echo_app, bind=f"127.0.0.1:{port}", workers=0).bind()


def test_context_manager_needs_workers_0():
    with pytest.raises(ConfigError, match="workers"), Server(echo_app, workers=2):
        pass


def test_access_log_uses_the_combined_format(tmp_path):
    log = tmp_path / "access.log"
    with live_server(echo_app, access_log=str(log)) as server, RawClient(server.address) as client:
        client.request(
            b"GET /x?q=1 HTTP/1.1\r\nHost: a\r\nReferer: http://r/\r\nUser-Agent: t/1\r\n\r\n"
        )
    line = log.read_text()
    assert line.startswith("127.0.0.1 - - [")
    assert line.endswith('] "GET /x?q=1 HTTP/1.1" 200 11 "http://r/" "t/1"\n')


def test_unwritable_access_log_fails_at_bind(tmp_path):
    server = Server(echo_app, workers=0, access_log=str(tmp_path / "missing" / "a.log"))
    with pytest.raises(ConfigError, match="access_log: cannot open"):
        server.bind()


def test_a_unix_socket_in_use_is_refused_and_a_stale_one_replaced(tmp_path):
    path = tmp_path / "s.sock"
    with (
        live_server(echo_app, bind=f"unix:{path}"),
        pytest.raises(ConfigError, match="in use by a running server"),
    ):
        Server(echo_app, bind=f"unix:{path}", workers=0).bind()
    with socket.socket(socket.AF_UNIX) as crashed:  # a server killed without cleaning up
        crashed.bind(str(path))
    with live_server(echo_app, bind=f"unix:{path}") as server:
        assert server.addresses[0][0] == str(path)


def test_closing_leaves_alone_a_unix_socket_file_that_is_not_ours(tmp_path):
    path = tmp_path / "s.sock"
    with live_server(echo_app, bind=f"unix:{path}"):
        path.unlink()  # someone removed ours, and another server took the path
        with live_server(echo_app, bind=f"unix:{path}"):
            pass
        with socket.socket(socket.AF_UNIX) as other:
            other.bind(str(path))  # a third party's file, there as we close
            other.listen()
    assert path.exists()


@pytest.mark.timeout(30)  # the bug waited out graceful_timeout (120 s) here
def test_close_after_an_immediate_stop_does_not_make_it_graceful():
    # `wsgistack demo` on Ctrl-C: stop(graceful=False), then close() on the way
    # out, which asks for a graceful stop.  The second call used to win, so an
    # interrupted server waited for a stuck request up to --graceful-timeout.
    entered, release, finished = threading.Event(), threading.Event(), threading.Event()

    def stuck(environ, start_response):
        entered.set()
        release.wait(60)
        finished.set()
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    server = Server(stuck, bind="127.0.0.1:0", workers=0, graceful_timeout=120).start()
    address = server.addresses[0]
    try:
        with RawClient(address) as client:
            client.send(GET)
            assert entered.wait(10)
            server.stop(graceful=False)
            server.close()  # returns with the request still in the app
            assert not finished.is_set()
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(address, timeout=5)
    finally:
        release.set()
        finished.wait(10)  # the app's thread ends here, not during a later test
        server.close()


def test_a_prefork_master_outside_the_main_thread_fails_naming_workers():
    # It failed with "ValueError: signal only works in main thread" from deep
    # inside the master, after binding; now a ConfigError, and nothing left bound.
    server = Server(echo_app, bind="127.0.0.1:0", workers=1)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.serve_forever()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    assert len(errors) == 1 and isinstance(errors[0], ConfigError)
    assert str(errors[0]).startswith("workers: a prefork master (workers=1) runs in the main")
    assert server.listeners == []


def test_an_in_process_server_refuses_max_requests():
    # start() runs one worker here whatever workers says: nothing would replace it.
    with pytest.raises(ConfigError, match=r"^max_requests: "):
        Server(echo_app, bind="127.0.0.1:0", max_requests=100).start()


def test_access_log_escapes_what_clients_send(tmp_path):
    # A quote would forge fields; bytes past ASCII and control characters are
    # written as \xHH, as nginx does, so the log stays one line per request.
    log = tmp_path / "access.log"
    agent = 'evil" 200 999 "-" "fake \u00e9'.encode()
    with live_server(echo_app, access_log=str(log)) as server, RawClient(server.address) as client:
        client.request(b"GET /x HTTP/1.1\r\nHost: a\r\nUser-Agent: " + agent + b"\r\n\r\n")
    assert log.read_text().endswith(
        '"GET /x HTTP/1.1" 200 8 "-" "evil\\x22 200 999 \\x22-\\x22 \\x22fake \\xC3\\xA9"\n'
    )
    access = AccessLog.open(str(tmp_path / "unit.log"))
    assert access is not None
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": "/\x1b[2J", "SERVER_PROTOCOL": "HTTP/1.0"}
    access(environ, type("Sent", (), {"status": "200 OK", "written": 0, "headers": []})())
    access.close()
    assert '"GET /\\x1B[2J HTTP/1.0" 200 - "-" "-"' in (tmp_path / "unit.log").read_text()


def test_an_access_log_that_cannot_be_reopened_keeps_writing_to_the_old_file(tmp_path, caplog):
    # Reopening must not lose lines: the directory went away (a botched rotation).
    logs = tmp_path / "logs"
    logs.mkdir()
    access = AccessLog.open(str(logs / "access.log"))
    assert access is not None
    moved = logs.rename(tmp_path / "moved")
    access.reopen()
    access.refused(("192.0.2.1", 5000), 400)
    access.close()
    assert "192.0.2.1" in (moved / "access.log").read_text()
    assert "cannot reopen" in caplog.text


def test_access_log_has_a_line_for_refused_and_broken_off_requests(tmp_path):
    def breaks(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"partial"
        raise RuntimeError("the database went away")

    log = tmp_path / "access.log"
    with live_server(breaks, access_log=str(log)) as server:
        with RawClient(server.address) as client:
            client.send(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n")
            status, _, body = client.response()
            assert status == 400
        with RawClient(server.address) as client:
            client.send(b"GET /broken HTTP/1.1\r\nHost: a\r\n\r\n")
            client.read_to_close()
    refused, broken = log.read_text().splitlines()
    # "-" was logged as the size: nginx's $body_bytes_sent counts its refusals' bodies.
    assert refused.startswith("127.0.0.1 - - [")
    assert refused.endswith(f'] "-" 400 {len(body)} "-" "-"')
    assert '"GET /broken HTTP/1.1" 200 ' in broken  # what was sent before it broke


def test_access_log_has_a_line_for_a_request_head_that_timed_out(tmp_path):
    # The 408 a slow client gets when its head does not arrive within --timeout
    # went out unlogged: slowloris attempts left no trace (nginx logs its 408s).
    log = tmp_path / "access.log"
    with (
        live_server(echo_app, access_log=str(log), timeout=0.3) as server,
        RawClient(server.address) as client,
    ):
        client.send(b"GET /slow HTTP/1.1\r\nHost: a\r\n")  # the head never ends
        status, _, body = client.response()
        assert status == 408
    (line,) = log.read_text().splitlines()
    assert line.startswith("127.0.0.1 - - [") and line.endswith(f'] "-" 408 {len(body)} "-" "-"')


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_an_access_log_that_cannot_be_written_does_not_break_serving(caplog):
    # A full disk (or stdout piped to a collector that went away) raised out of
    # every request: each keep-alive connection was cut after one response, a
    # traceback logged each time, and the worker's shutdown itself crashed.
    with (
        live_server(echo_app, access_log="/dev/full") as server,
        RawClient(server.address) as client,
    ):
        for _ in range(2):
            client.send(GET)
            assert client.response()[0] == 200
    assert "unexpected error" not in caplog.text
    assert caplog.text.count("access_log: cannot write") == 1  # once, not per request
    access = AccessLog.open("/dev/full")
    assert access is not None
    access.refused(("192.0.2.1", 5000), 400)
    access.reopen()  # SIGUSR1: closing the old file failed too, and ended the worker's loop
    access.close()


def test_a_background_server_writes_its_pid_file_too(tmp_path):
    # start() (and ``with Server(...)``) took --pid and silently wrote nothing.
    pid_file = tmp_path / "app.pid"
    with Server(echo_app, bind="127.0.0.1:0", workers=0, pid=str(pid_file)):
        assert pid_file.read_text() == f"{os.getpid()}\n"
    assert not pid_file.exists()


def test_access_log_dates_are_in_english_whatever_the_locale(tmp_path, monkeypatch):
    # %b followed LC_TIME: an app that set its locale (de_DE) logged "Mär", which
    # log parsers (goaccess, fail2ban's date patterns) do not read.  Machines
    # without a second locale (CI's) get strftime's %b as de_DE would give it.
    real_strftime = time.strftime

    def strftime_de(fmt, *args):
        return real_strftime(fmt.replace("%b", "Mär"), *args)

    monkeypatch.setattr(time, "strftime", strftime_de)
    access = AccessLog.open(str(tmp_path / "access.log"))
    assert access is not None
    access.refused(("192.0.2.1", 5000), 400)
    access.close()
    line = (tmp_path / "access.log").read_text()
    month = re.search(r"\[\d\d/([^/]+)/\d{4}:", line)
    assert month is not None, line
    assert month[1] in [
        "Jan",
        "Feb",
        "Mar",
        "Apr",
        "May",
        "Jun",
        "Jul",
        "Aug",
        "Sep",
        "Oct",
        "Nov",
        "Dec",
    ]


def test_a_loader_that_fails_in_start_closes_the_sockets(tmp_path):
    # start() bound, then the loader raised: the listener stayed open, so the
    # same address looked "in use by a running server" until the process ended.
    path = tmp_path / "s.sock"

    def broken_loader():
        raise RuntimeError("the app cannot load")

    with pytest.raises(RuntimeError, match="cannot load"):
        Server(loader=broken_loader, bind=f"unix:{path}", workers=0).start()
    assert not path.exists()
    with live_server(echo_app, bind=f"unix:{path}") as server:
        assert server.addresses[0][0] == str(path)


def test_starting_a_server_twice_is_refused_and_leaves_no_threads_behind():
    # A second start() ran a second worker on the same sockets; close() stopped
    # only the second, and the first one's threads kept the process alive.
    before = set(threading.enumerate())
    server = Server(echo_app, bind="127.0.0.1:0", workers=0).start()
    try:
        with pytest.raises(RuntimeError, match=r"Server.start\(\): this server was already"):
            server.start()
        with pytest.raises(RuntimeError, match=r"Server.serve_forever\(\): this server was"):
            server.serve_forever()
        server.stop()  # a stop alone leaves the sockets open: still refused
        with pytest.raises(RuntimeError, match="close"):
            server.start()
    finally:
        server.close()
    assert set(threading.enumerate()) == before
    with server, RawClient(server.addresses[0]) as client:  # once closed, it starts afresh
        assert client.request(GET)[2] == b"GET /x  "
    assert set(threading.enumerate()) == before


def test_a_start_that_fails_to_bind_may_be_tried_again():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        host, port = taken.getsockname()
        server = Server(echo_app, bind=f"{host}:{port}", workers=0)
        with pytest.raises(ConfigError, match="bind: cannot listen"):
            server.start()
    with server, RawClient(server.addresses[0]) as client:
        assert client.request(GET)[0] == 200


def test_the_command_line_sets_the_parser_limits(serve):
    # They were options of Server() only: a gunicorn user's --limit-request-line
    # had no flag here, and a site behind a proxy sending long cookies could not
    # raise them without writing code.
    server = serve("--workers", "0", "--max-request-line", "100", "--max-headers", "3")
    address = ("127.0.0.1", server.port)
    with RawClient(address) as client:
        status, *_ = client.request(b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status == 414
    with RawClient(address) as client:
        fields = b"".join(b"X-%d: 1\r\n" % n for n in range(3))
        status, *_ = client.request(b"GET / HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n")
    assert status == 431
    with RawClient(address) as client:
        status, *_ = client.request(b"GET /" + b"a" * 50 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status == 200


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--max-request-line", "10", "max_request_line: '10' must be an integer >= 64"),
        ("--max-headers", "0", "max_headers: '0' must be an integer >= 1"),
        ("--max-header-size", "lots", "max_header_size: 'lots' is not an integer"),
    ],
)
def test_a_bad_parser_limit_on_the_command_line_fails_naming_it(flag, value, message, capsys):
    args = ["serve", "tests.server.conftest:echo_app", "--workers", "0", flag, value]
    assert cli.main(args) == 2
    assert message in capsys.readouterr().err
