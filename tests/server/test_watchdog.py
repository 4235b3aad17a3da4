"""The hung-worker watchdog (--worker-timeout), with real processes.

A worker is hung when its loop thread stops turning: here because the app
calls libc's ``sleep`` through ``ctypes.PyDLL``, which keeps the GIL held, so
no other thread of the worker runs.  Every wait is a bounded poll.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.request
from wsgiref.validate import validator

import pytest

from wsgistack import Server
from wsgistack.errors import ConfigError
from wsgistack.server.config import ServerConfig

from .served import HELD_IMPORT, Served, poll

HANGING_APP = """
import ctypes, os, time
from pathlib import Path
from wsgiref.validate import validator

LIBC = ctypes.PyDLL(None)  # PyDLL: the GIL stays held during the call


@validator
def app(environ, start_response):
    path, query = environ["PATH_INFO"], environ["QUERY_STRING"]
    if path == "/hang":  # every thread of the worker stops, the loop too
        Path(os.environ["MARKER"]).write_text("hanging")
        LIBC.sleep(int(query or "60"))
    elif path == "/slow":  # a slow request that leaves the GIL to the others
        Path(os.environ["MARKER"]).write_text("slow")
        time.sleep(float(query))
    elif path == "/drain-then-hang":  # hangs only once the worker is draining
        Path(os.environ["MARKER"]).write_text("waiting")
        go = Path(os.environ["MARKER"] + ".go")
        while not go.exists():
            time.sleep(0.02)
        time.sleep(0.5)  # the worker's loop has seen the stop by now
        LIBC.sleep(int(query))
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


@pytest.fixture
def hanging(serve, tmp_path):
    (tmp_path / "hangapp.py").write_text(HANGING_APP)

    def start(*options: str) -> Served:
        return serve(*options, target=("hangapp:app",))

    return start


def request_in_background(server: Served, path: str) -> dict[str, object]:
    """GET ``path`` in a thread; the result (a body or the error) lands in the dict."""
    result: dict[str, object] = {}

    def fetch() -> None:
        try:
            result["body"] = server.get(path, timeout=60)
        except OSError as exc:  # the hung worker was killed under it
            result["error"] = exc

    thread = threading.Thread(target=fetch, daemon=True)
    thread.start()
    result["thread"] = thread
    return result


def test_a_hung_worker_is_killed_with_its_stacks_and_replaced(hanging):
    server = hanging("--workers", "1", "--worker-timeout", "2")
    victim = int(server.get())
    request_in_background(server, "/hang?60")
    poll(server.marker.exists)

    def replaced() -> set[int] | None:
        pids = server.workers()
        return pids if len(pids) == 1 and victim not in pids else None

    poll(replaced, timeout=30)
    assert int(server.get()) != victim  # serving again, from the new worker
    log = server.log.read_text()
    assert f"worker {victim} timed out (WORKER TIMEOUT)" in log
    assert "(--worker-timeout 2)" in log
    # The dump the worker's faulthandler wrote while the GIL was held: the
    # line of the app that hangs is there.
    assert "hangapp.py" in log
    assert "in app" in log
    assert server.proc.poll() is None


def test_a_slow_request_longer_than_the_limit_is_not_killed(hanging):
    # Only the loop beats: a request that waits (I/O, time.sleep) leaves it turning.
    server = hanging("--workers", "1", "--worker-timeout", "2")
    worker = int(server.get())
    assert int(server.get("/slow?4")) == worker
    assert server.workers() == {worker}
    assert "timed out" not in server.log.read_text()


def test_a_short_hold_of_the_gil_under_the_limit_is_not_killed(hanging):
    server = hanging("--workers", "1", "--worker-timeout", "8")
    worker = int(server.get())
    assert int(server.get("/hang?1")) == worker
    assert "timed out" not in server.log.read_text()


def test_worker_timeout_0_turns_the_watchdog_off(hanging):
    server = hanging("--workers", "1", "--worker-timeout", "0")
    worker = int(server.get())
    assert int(server.get("/hang?3")) == worker
    assert "timed out" not in server.log.read_text()


def test_a_draining_worker_beats_through_a_slow_request(hanging):
    # The drain's own loop beats on: a graceful stop longer than
    # --worker-timeout lets the in-flight request finish.
    server = hanging("--workers", "1", "--worker-timeout", "2", "--graceful-timeout", "20")
    result = request_in_background(server, "/slow?4")
    poll(server.marker.exists)
    server.proc.send_signal(signal.SIGTERM)
    result["thread"].join(timeout=30)  # type: ignore[attr-defined]
    assert str(result.get("body", "")).isdigit(), result
    assert server.proc.wait(timeout=30) == 0
    assert "timed out" not in server.log.read_text()


def test_a_draining_worker_gets_its_graceful_timeout_before_the_watchdog(hanging):
    # Stopped gracefully, a worker whose request then holds the GIL past
    # --worker-timeout is still within --graceful-timeout: not killed early.
    server = hanging("--workers", "1", "--worker-timeout", "2", "--graceful-timeout", "20")
    result = request_in_background(server, "/drain-then-hang?4")
    poll(server.marker.exists)
    server.proc.send_signal(signal.SIGTERM)
    poll(lambda: "graceful stop" in server.log.read_text())
    (server.marker.parent / (server.marker.name + ".go")).write_text("")
    result["thread"].join(timeout=30)  # type: ignore[attr-defined]
    assert str(result.get("body", "")).isdigit(), result
    assert server.proc.wait(timeout=30) == 0
    assert "timed out" not in server.log.read_text()


def test_a_worker_hung_while_draining_is_killed_after_its_graceful_timeout(hanging):
    # A reload's old workers drain with no master deadline: one that hangs
    # would otherwise stay for ever.
    server = hanging("--workers", "1", "--worker-timeout", "2", "--graceful-timeout", "3")
    old = poll(lambda: server.count_workers(1))
    (victim,) = old
    result = request_in_background(server, "/drain-then-hang?600")
    poll(server.marker.exists)
    server.proc.send_signal(signal.SIGHUP)
    poll(lambda: "reload done" in server.log.read_text(), timeout=30)
    (server.marker.parent / (server.marker.name + ".go")).write_text("")
    poll(lambda: victim not in server.workers(), timeout=30)
    assert f"worker {victim} timed out (WORKER TIMEOUT)" in server.log.read_text()
    result["thread"].join(timeout=30)  # type: ignore[attr-defined]
    assert "error" in result, result  # its request was cut with it
    assert server.get().isdigit()


def test_a_worker_killed_at_the_stop_s_deadline_is_logged(hanging):
    # A worker that cannot end itself (its request holds the GIL in C) is killed
    # once --graceful-timeout and a second are up; nothing said so before, and the
    # only trace was the client's cut connection.
    server = hanging("--workers", "1", "--worker-timeout", "0", "--graceful-timeout", "1")
    result = request_in_background(server, "/hang?30")
    poll(server.marker.exists)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=20) == 0
    log = server.log.read_text()
    assert log.count("still running at the stop's deadline: killed (SIGKILL)") == 1, log
    assert "master: 1 worker still running" in log, log
    result["thread"].join(timeout=30)  # type: ignore[attr-defined]
    assert "error" in result, result  # its request was cut with it


@pytest.mark.parametrize("value", ["1", "0.5", "-1", "soon", "1e20"])
def test_a_bad_worker_timeout_fails_at_start_naming_it(value):
    with pytest.raises(ConfigError, match=r"^worker_timeout: "):
        ServerConfig.from_options(worker_timeout=value)


def test_worker_timeout_values():
    assert ServerConfig().worker_timeout == 60.0
    assert ServerConfig.from_options(worker_timeout="0").worker_timeout == 0.0
    assert ServerConfig.from_options(worker_timeout=2).worker_timeout == 2.0


def test_the_cli_refuses_a_bad_worker_timeout(serve):
    server = serve("--worker-timeout", "1", wait=False)
    assert server.proc.wait(timeout=30) == 2
    assert "worker_timeout: '1' must be 0 (off) or at least 2 seconds" in server.log.read_text()


def test_in_process_there_is_no_master_and_the_option_does_no_harm():
    @validator
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(os.getpid()).encode()]

    with Server(app, bind="127.0.0.1:0", workers=0, worker_timeout=2) as server:
        assert urllib.request.urlopen(server.url + "/", timeout=10).read().isdigit()


def test_a_worker_still_loading_the_app_is_reported_each_timeout_not_killed(serve, tmp_path):
    # A worker whose import waits (on a database, a lock) has no loop to beat
    # yet: nothing was logged, and with one worker nobody was answered, unseen.
    (tmp_path / "slowimport.py").write_text(HELD_IMPORT)
    server = serve("--workers", "1", "--worker-timeout", "2", target=("slowimport:app",))
    poll((tmp_path / "loading").exists)
    poll(lambda: "has been loading the app" in server.log.read_text())
    loading = server.workers()
    poll(lambda: server.log.read_text().count("has been loading the app") >= 2)
    assert server.workers() == loading  # reported again, not killed
    assert "WORKER TIMEOUT" not in server.log.read_text()
    server.proc.send_signal(signal.SIGTERM)  # ends the held import too
    assert server.proc.wait(timeout=20) == 0


def test_a_reload_does_not_report_the_serving_workers_as_loading(serve):
    # A reload takes the old workers out of the ready set while the new ones
    # load: the master logged each of them "has been loading the app for N s"
    # (N its uptime) on every SIGHUP, though they had been serving all along.
    began = time.monotonic()
    server = serve("--workers", "2", "--worker-timeout", "2")
    old = poll(lambda: server.count_workers(2))
    assert server.get().isdigit()
    poll(lambda: time.monotonic() - began > 3, timeout=10)  # up longer than --worker-timeout
    server.proc.send_signal(signal.SIGHUP)
    poll(lambda: "reload done" in server.log.read_text(), timeout=20)
    poll(lambda: (pids := server.workers()) and not (pids & old), timeout=20)
    assert "has been loading the app" not in server.log.read_text()
