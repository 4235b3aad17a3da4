"""The CLI in a subprocess: prefork, signals, respawn, recycling, start-up errors."""

from __future__ import annotations

import http.client
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


class Served:
    """``wsgistack serve`` running in a subprocess; stopped by PID in close()."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wsgistack.cli", "serve", *args],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        self.log: list[str] = []
        line = self.wait_for(r"listening on http://127\.0\.0\.1:(\d+)")
        self.port = int(re.search(r":(\d+) ", line).group(1))

    def wait_for(self, pattern: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stderr], [], [], 0.2)
            if ready:
                line = self.proc.stderr.readline()
                if not line:
                    break
                self.log.append(line)
                if re.search(pattern, line):
                    return line
        raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(self.log)}")

    def get(self, path: str = "/pid") -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    def worker_pids(self) -> set[int]:
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True
        )
        return {int(p) for p in out.stdout.split()}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                for pid in self.worker_pids():
                    os.kill(pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait(5)
        self.proc.stderr.close()


@pytest.fixture
def served():
    running = []

    def start(*args: str) -> Served:
        server = Served("tests.server.apps:app", "--bind", "127.0.0.1:0", *args)
        running.append(server)
        return server

    yield start
    for server in running:
        server.close()


def until(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)  # polling for another process, not waiting for a result


def test_sigterm_lets_a_request_in_flight_finish(served, tmp_path):
    server = served("--workers", "1")
    marker = tmp_path / "started"
    result = {}
    client = threading.Thread(target=lambda: result.update(r=server.get(f"/slow?1.0&{marker}")))
    client.start()
    until(marker.exists)
    server.proc.send_signal(signal.SIGTERM)
    client.join(15)
    assert result["r"] == (200, "slow done")
    assert server.proc.wait(15) == 0


def test_a_killed_worker_is_replaced(served):
    server = served("--workers", "2")
    until(lambda: len(server.worker_pids()) == 2)
    victim = next(iter(server.worker_pids()))
    os.kill(victim, signal.SIGKILL)
    until(lambda: victim not in server.worker_pids() and len(server.worker_pids()) == 2)
    assert server.get()[0] == 200


def test_sighup_reloads_without_a_failed_request(served):
    server = served("--workers", "2")
    until(lambda: len(server.worker_pids()) == 2)
    old = server.worker_pids()
    failures, answers = [], []
    stop = threading.Event()

    def load():
        while not stop.is_set() and len(answers) < 3000:
            try:
                status, body = server.get()
                answers.append(int(body)) if status == 200 else failures.append(status)
            except OSError as exc:
                failures.append(repr(exc))

    clients = [threading.Thread(target=load) for _ in range(4)]
    for client in clients:
        client.start()
    until(lambda: len(answers) > 50)
    server.proc.send_signal(signal.SIGHUP)
    until(lambda: not (server.worker_pids() & old) and len(server.worker_pids()) == 2)
    count = len(answers)
    until(lambda: len(answers) > count + 50)
    stop.set()
    for client in clients:
        client.join(15)
    assert failures == []
    assert set(answers) - old, "the new workers answered after the reload"


def test_workers_are_recycled_after_max_requests(served):
    server = served("--workers", "1", "--max-requests", "5")
    first = server.get()[1]
    pids = {server.get()[1] for _ in range(12)} | {first}
    assert len(pids) >= 2


def test_a_bad_option_fails_at_start_up_naming_it():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "wsgistack.cli",
            "serve",
            "tests.server.apps:app",
            "--workers",
            "-1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "workers: expected a whole number >= 0, got -1" in result.stderr


def test_an_app_that_cannot_load_stops_the_master():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "wsgistack.cli",
            "serve",
            "tests.server.apps:broken_factory()",
            "--workers",
            "2",
            "--bind",
            "127.0.0.1:0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "this app cannot load" in proc.stderr
    assert "a worker failed to load the app; stopping" in proc.stderr
