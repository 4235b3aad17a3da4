"""--statsd-host: gunicorn's StatsD metrics, read by a UDP socket the test binds as the daemon.

The CLI in a subprocess (``serve``) for what a gunicorn user's dashboard reads;
in process (``live_server``) for the daemon that is down and the log counters.
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from wsgistack.errors import ConfigError
from wsgistack.server import Server
from wsgistack.server.config import ServerConfig, layered_options

from .live import RawClient, live_server
from .served import poll

#: A validated app: 404 for /missing, 200 with the worker's pid otherwise.
METRICS_APP = """
import os
from wsgiref.validate import validator


@validator
def app(environ, start_response):
    missing = environ["PATH_INFO"] == "/missing"
    body = b"no" if missing else str(os.getpid()).encode()
    status = "404 Not Found" if missing else "200 OK"
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""

DURATION = re.compile(r"^myapp\.gunicorn\.request\.duration:\d+\.\d{3}\|ms\|#env:test,az:b$")


class Daemon:
    """A StatsD daemon's socket on loopback: the datagrams the server sent it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.datagrams: list[list[str]] = []

    def lines(self) -> list[str]:
        return [line for datagram in self.datagrams for line in datagram]

    def until(self, condition: Callable[[Daemon], bool], timeout: float = 10.0) -> None:
        """Read datagrams until ``condition`` holds (bounded)."""
        deadline = time.monotonic() + timeout
        while not condition(self):
            if time.monotonic() > deadline:
                pytest.fail(f"the daemon never saw it; it got {self.datagrams}")
            with contextlib.suppress(TimeoutError):  # nothing yet: look at the clock again
                self.datagrams.append(self.sock.recv(65536).decode().split("\n"))


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    listening = Daemon()
    yield listening
    listening.sock.close()


@pytest.fixture
def metered(serve, tmp_path: Path, daemon: Daemon):
    """``serve`` with the validated app, its metrics to ``daemon``, prefix myapp, two tags."""
    (tmp_path / "metricsapp.py").write_text(METRICS_APP)

    def start(*options: str):
        return serve(
            "--statsd-host",
            daemon.address,
            "--statsd-prefix",
            "myapp",
            "--dogstatsd-tags",
            "env:test,az:b",
            *options,
            target=("metricsapp:app",),
        )

    return start


def _sees(*wanted: str) -> Callable[[Daemon], bool]:
    return lambda daemon: all(line in daemon.lines() for line in wanted)


def test_a_request_is_counted_timed_and_counted_by_status_in_one_datagram(metered, daemon):
    server = metered("--workers", "1")
    server.get("/")
    requests = "myapp.gunicorn.requests:1|c|#env:test,az:b"
    ok = "myapp.gunicorn.request.status.200:1|c|#env:test,az:b"
    daemon.until(_sees(requests, ok))
    (datagram,) = [d for d in daemon.datagrams if requests in d]
    assert datagram[:2] == [requests, ok]
    assert DURATION.match(datagram[2]), datagram  # from the worker, with the others


def test_a_404_and_a_malformed_request_are_counted_with_their_status(metered, daemon):
    server = metered("--workers", "1")
    with pytest.raises(Exception, match="404"):
        server.get("/missing")
    with RawClient(("127.0.0.1", server.port)) as client:
        assert client.request(b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n")[0] == 400
    refused = "myapp.gunicorn.request.status.400:1|c|#env:test,az:b"
    daemon.until(_sees("myapp.gunicorn.request.status.404:1|c|#env:test,az:b", refused))
    (datagram,) = [d for d in daemon.datagrams if refused in d]
    assert datagram == ["myapp.gunicorn.requests:1|c|#env:test,az:b", refused]  # not timed


def test_the_master_sends_the_worker_gauge_at_start_and_after_sigttin(metered, daemon):
    server = metered("--workers", "1")
    daemon.until(_sees("myapp.gunicorn.workers:1|g|#env:test,az:b"))
    server.proc.send_signal(signal.SIGTTIN)
    daemon.until(_sees("myapp.gunicorn.workers:2|g|#env:test,az:b"))
    gauges = [line for line in daemon.lines() if ".workers:" in line]
    assert gauges == [f"myapp.gunicorn.workers:{n}|g|#env:test,az:b" for n in (1, 2)]  # changes


def test_requests_are_answered_while_the_daemon_is_down_and_that_is_logged_once(metered, daemon):
    daemon.sock.close()  # nobody at the address: each datagram draws a port unreachable
    server = metered("--workers", "1")
    pids = {server.get() for _ in range(6)}
    assert len(pids) == 1
    poll(lambda: "cannot send metrics" in server.log.read_text())
    for _ in range(4):
        server.get()
    warnings = [line for line in server.log.read_text().splitlines() if "statsd_host" in line]
    assert len(warnings) == 1, warnings
    assert f"statsd_host {daemon.address}: cannot send metrics (Connection refused)" in warnings[0]


def hello(environ, start_response):
    if environ["PATH_INFO"] == "/raise":
        raise RuntimeError("broken")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"hi"]


def test_a_unix_socket_nobody_listens_on_is_logged_once(tmp_path, caplog):
    target = f"unix:{tmp_path / 'statsd.sock'}"
    with (
        caplog.at_level(logging.WARNING, "wsgistack"),
        live_server(hello, statsd_host=target) as server,
        RawClient(server.address) as client,
    ):
        for _ in range(3):
            assert client.request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")[0] == 200
    lost = [r.getMessage() for r in caplog.records if "cannot send metrics" in r.getMessage()]
    assert len(lost) == 1
    assert lost[0].startswith(f"statsd_host {target}: cannot send metrics (No such file")


def test_the_server_s_warnings_and_exceptions_are_counted_as_gunicorn_s_log_metrics(daemon):
    with live_server(hello, statsd_host=daemon.address) as server:
        with RawClient(server.address) as client:
            assert client.request(b"GET /raise HTTP/1.1\r\nHost: a\r\n\r\n")[0] == 500
        daemon.until(_sees("gunicorn.log.exception:1|c", "gunicorn.request.status.500:1|c"))
    assert "gunicorn.log.error:1|c" not in daemon.lines()  # an exception, as gunicorn counts it


@pytest.mark.parametrize(
    ("given", "written"),
    [
        ("myapp", "myapp."),
        ("myapp.", "myapp."),
        ("", ""),
        ("a.b", "a.b."),
    ],
)
def test_the_prefix_gets_its_dot_as_gunicorn_adds_it(given, written):
    config = ServerConfig.from_options(statsd_host="127.0.0.1", statsd_prefix=given)
    assert config.statsd_prefix == written
    assert config.statsd_host == "127.0.0.1:8125"  # StatsD's port, as gunicorn's default


@pytest.mark.parametrize(
    ("given", "written"),
    [
        ("[::1]:9125", "[::1]:9125"),
        ("[::1]", "[::1]:8125"),
        ("unix:/run/statsd.sock", "unix:/run/statsd.sock"),
        ("unix:///run/statsd.sock", "unix:/run/statsd.sock"),  # gunicorn's form
    ],
)
def test_the_host_takes_gunicorn_s_forms(given, written):
    assert ServerConfig.from_options(statsd_host=given).statsd_host == written


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"statsd_host": "127.0.0.1:99999"}, "statsd_host: '127.0.0.1:99999' is not HOST:PORT"),
        ({"statsd_host": "::1:8125"}, "statsd_host: '::1:8125': write an IPv6 address in brack"),
        ({"statsd_host": "[nope]:1"}, "statsd_host: '[nope]:1': 'nope' is not an IPv6 address"),
        ({"statsd_host": "unix:statsd.sock"}, "statsd_host: 'unix:statsd.sock': the socket path"),
        ({"statsd_host": ""}, "statsd_host: '' is not HOST:PORT or unix:/path"),
        ({"statsd_host": "h", "statsd_prefix": "my app"}, "statsd_prefix: 'my app' must be"),
        ({"statsd_host": "h", "dogstatsd_tags": "a:1,,b"}, "dogstatsd_tags: 'a:1,,b' has an empty"),
        ({"statsd_host": "h", "dogstatsd_tags": "a|b"}, "dogstatsd_tags: 'a|b' must be comma"),
        ({"statsd_prefix": "myapp"}, "statsd_prefix: given, but there is no statsd_host"),
        ({"dogstatsd_tags": "env:prod"}, "dogstatsd_tags: given, but there is no statsd_host"),
    ],
)
def test_each_bad_option_fails_naming_it(options, message):
    with pytest.raises(ConfigError) as caught:
        ServerConfig.from_options(**options)
    assert str(caught.value).startswith(message)


def test_a_host_that_does_not_resolve_fails_at_start_up():
    server = Server(hello, bind="127.0.0.1:0", workers=0, statsd_host="nosuch.invalid:8125")
    with pytest.raises(ConfigError) as caught:
        server.bind()
    assert str(caught.value).startswith(
        "statsd_host: 'nosuch.invalid:8125': cannot resolve 'nosuch.invalid'"
    )
    assert not server.listeners


def test_a_config_file_s_server_table_takes_the_options_by_their_names():
    options = layered_options(
        {"statsd_host": "127.0.0.1:9125", "statsd_prefix": "shop", "dogstatsd_tags": "env:prod"},
        "stack.toml: [server]",
    )
    assert options == {
        "statsd_host": "127.0.0.1:9125",
        "statsd_prefix": "shop.",
        "dogstatsd_tags": "env:prod",
    }
    with pytest.raises(ConfigError, match=r"^stack.toml: \[server\]: statsd_host: 'x:0'"):
        layered_options({"statsd_host": "x:0"}, "stack.toml: [server]")
