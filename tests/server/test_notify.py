"""systemd's ``Type=notify``: what the server tells ``NOTIFY_SOCKET``, and when.

No systemd runs here: the test plays the service manager's part, a unix
datagram socket bound in the test's directory, and reads what ``wsgistack
serve`` (a real subprocess, stopped by its PID) sends it.  The app's import
is held until the test creates ``go``, so the bind is long done before the
app loads: a READY sent at bind time would be caught.  Every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from wsgistack.errors import ConfigError
from wsgistack.server.notify import Notify

from .served import Served, launched, poll

APP = """
import os, time
from pathlib import Path
from wsgiref.validate import validator

NAMES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
AT_IMPORT = [os.environ.get(name) for name in NAMES]  # what the app's programs would inherit
for _ in range(3000):  # held until the test says go (30 s at most)
    if Path("go").exists():
        break
    time.sleep(0.01)
if Path("broken").exists():
    raise RuntimeError("this app cannot load")
Path(f"loaded-{os.getpid()}").touch()


@validator
def app(environ, start_response):
    seen = [os.environ.get(name) for name in NAMES]
    body = f"{os.getpid()} {seen} {AT_IMPORT}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


class Manager:
    """systemd's side of ``NOTIFY_SOCKET``: each datagram read as its ``NAME=value`` lines."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)

    def next(self, timeout: float = 30.0) -> dict[str, str]:
        """The next datagram (WATCHDOG=1 pings skipped); fails after ``timeout`` seconds."""
        self.sock.settimeout(timeout)
        while True:
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                pytest.fail(f"no notification within {timeout}s")
            message = dict(line.split("=", 1) for line in data.splitlines())
            if message != {"WATCHDOG": "1"}:
                return message

    def pending(self) -> list[dict[str, str]]:
        """The datagrams already sent and not read yet (no wait)."""
        self.sock.setblocking(False)
        messages = []
        try:
            while True:
                data = self.sock.recv(4096).decode()
                messages.append(dict(line.split("=", 1) for line in data.splitlines()))
        except BlockingIOError:
            return messages


@pytest.fixture
def manager(tmp_path) -> Iterator[Manager]:
    manager = Manager(str(tmp_path / "notify"))
    yield manager
    manager.sock.close()


@pytest.fixture
def start(tmp_path, manager) -> Iterator[Callable[..., Served]]:
    """``wsgistack serve notified:app`` with NOTIFY_SOCKET set (``env`` adds or overrides)."""
    (tmp_path / "notified.py").write_text(APP)

    with launched(tmp_path) as launch:

        def start(
            *options: str,
            env: dict[str, str] | None = None,
            wait: bool = True,
            target: tuple[str, ...] = ("notified:app",),
        ) -> Served:
            environ = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), **(env or {})}
            argv = [sys.executable, "-m", "wsgistack.cli", "serve", *target]
            return launch([*argv, "--bind", "127.0.0.1:0", *options], env=environ, wait=wait)

        yield start


def loaded(tmp_path: Path) -> int:
    return len(list(tmp_path.glob("loaded-*")))


@pytest.mark.parametrize("workers", ["2", "0"])
def test_ready_comes_once_the_app_has_loaded_and_then_a_request_is_answered(
    start, manager, tmp_path, workers
):
    # --workers 2 binds, then the workers load the app; --workers 0 loads it, then binds.
    server = start("--workers", workers, wait=workers == "2")
    assert manager.pending() == []  # bound (or loading) is not ready
    (tmp_path / "go").touch()
    server.port = poll(server._port)
    ready = manager.next()
    assert ready["READY"] == "1"
    assert ready["MAINPID"] == str(server.proc.pid)  # the master, not a worker
    assert loaded(tmp_path) == max(int(workers), 1)  # the whole first set, not the first one
    pid, seen = server.get().split(" ", 1)
    assert seen == "[None, None, None] [None, None, None]"  # unset before the app's import
    assert ready["STATUS"] == (
        "serving, 2 workers" if workers == "2" else "serving, in process (--workers 0)"
    )
    assert int(pid) in (server.workers() if workers == "2" else {server.proc.pid})
    server.proc.send_signal(signal.SIGTERM)
    assert manager.next()["STOPPING"] == "1"
    assert server.proc.wait(30) == 0


def test_a_sighup_says_reloading_then_ready_once_the_new_workers_serve(start, manager, tmp_path):
    (tmp_path / "go").touch()
    server = start("--workers", "2")
    assert manager.next()["READY"] == "1"
    before = time.monotonic_ns() // 1000
    server.proc.send_signal(signal.SIGHUP)
    reloading = manager.next()
    after = time.monotonic_ns() // 1000
    assert reloading["RELOADING"] == "1"
    # CLOCK_MONOTONIC, as Type=notify-reload compares it with its own.
    assert before <= int(reloading["MONOTONIC_USEC"]) <= after
    ready = manager.next()
    assert ready == {"READY": "1", "STATUS": "serving, 2 workers"}
    assert loaded(tmp_path) == 4  # the new set had loaded the app
    assert "reload done" in server.log.read_text()
    server.get()


def test_a_refused_reload_says_ready_again_and_why(start, manager, tmp_path, stack):
    (tmp_path / "go").touch()
    stack('bind = "127.0.0.1:0"\nworkers = 2\n')
    server = start(target=("--config", "stack.toml"))
    assert manager.next()["READY"] == "1"
    stack('bind = "127.0.0.1:0"\nworkers = "many"\n')
    server.proc.send_signal(signal.SIGHUP)
    assert manager.next()["RELOADING"] == "1"
    assert manager.next() == {
        "READY": "1",
        "STATUS": "serving, 2 workers; reload refused, see the log",
    }
    assert "reload refused" in server.log.read_text()
    server.get()


def test_a_reload_whose_app_cannot_load_says_ready_with_the_old_workers(start, manager, tmp_path):
    (tmp_path / "go").touch()
    server = start("--workers", "2")
    assert manager.next()["READY"] == "1"
    old = server.workers()
    (tmp_path / "broken").touch()
    server.proc.send_signal(signal.SIGHUP)
    assert manager.next()["RELOADING"] == "1"
    assert manager.next() == {
        "READY": "1",
        "STATUS": "serving, 2 workers; reload failed, the old app serves",
    }
    assert int(server.get().split()[0]) in old


def test_an_app_that_cannot_load_never_says_ready(start, manager, tmp_path):
    (tmp_path / "go").touch()
    (tmp_path / "broken").touch()
    server = start("--workers", "2", wait=False)
    assert server.proc.wait(30) == 2
    said = manager.pending()
    assert all("READY" not in message for message in said)
    assert said == [{"STOPPING": "1", "STATUS": "stopping (quick)"}]


def test_a_missing_notify_socket_is_logged_once_and_the_server_serves(start, tmp_path):
    (tmp_path / "go").touch()
    server = start("--workers", "1", env={"NOTIFY_SOCKET": str(tmp_path / "nobody")})
    poll(lambda: "cannot tell systemd READY=1" in server.log.read_text())
    server.proc.send_signal(signal.SIGHUP)  # RELOADING=1 and READY=1 fail too
    poll(lambda: "reload done" in server.log.read_text())
    assert server.get().endswith("[None, None, None] [None, None, None]")
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0
    log = server.log.read_text()
    assert log.count("NOTIFY_SOCKET") == 1
    assert f"NOTIFY_SOCKET {tmp_path / 'nobody'}: cannot tell systemd READY=1:" in log
    assert "Traceback" not in log


def test_an_abstract_notify_socket_is_told_too(start, tmp_path):
    name = f"wsgistack-test-{uuid.uuid4().hex}"
    abstract = Manager(b"\0" + name.encode())
    try:
        (tmp_path / "go").touch()
        server = start("--workers", "0", env={"NOTIFY_SOCKET": f"@{name}"})
        assert abstract.next()["MAINPID"] == str(server.proc.pid)
    finally:
        abstract.sock.close()


def test_the_watchdog_is_fed_from_the_master_s_loop(start, manager, tmp_path):
    (tmp_path / "go").touch()
    # WatchdogSec=0.2s: WATCHDOG=1 every 0.1 s, whatever else happens.
    server = start("--workers", "1", env={"WATCHDOG_USEC": "200000"})
    manager.sock.settimeout(30)
    pings = 0
    while pings < 3:
        if manager.sock.recv(4096) == b"WATCHDOG=1":
            pings += 1
    assert server.get().endswith("[None, None, None] [None, None, None]")  # WATCHDOG_USEC unset too


# -- reading the environment -----------------------------------------------------------


def test_the_variables_are_removed_once_read():
    environ = {"NOTIFY_SOCKET": "@manager", "WATCHDOG_USEC": "4000000", "PATH": "/bin"}
    notify = Notify.from_environ(environ, pid=10)
    assert notify.address == b"\0manager"
    assert notify.watchdog_every == 2.0  # half of WatchdogSec=, as sd_watchdog_enabled says
    assert environ == {"PATH": "/bin"}


def test_another_process_s_watchdog_is_not_ours_to_feed():
    environ = {"NOTIFY_SOCKET": "/run/notify", "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "11"}
    assert Notify.from_environ(environ, pid=10).watchdog_every == 0.0
    assert environ == {}


def test_a_watchdog_without_a_number_fails_naming_the_variable():
    with pytest.raises(ConfigError, match=r"^WATCHDOG_USEC \(the environment\): 'soon'"):
        Notify.from_environ({"NOTIFY_SOCKET": "/run/notify", "WATCHDOG_USEC": "soon"})


def test_an_address_that_is_no_socket_path_is_logged_and_ignored(caplog):
    notify = Notify.from_environ({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notify.enabled
    assert "NOTIFY_SOCKET 'vsock:2:1234': not a socket path nor @name" in caplog.text
