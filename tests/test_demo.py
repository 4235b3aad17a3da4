"""``wsgistack demo`` as a new user runs it: started in a subprocess, its URLs fetched."""

from __future__ import annotations

import http.client
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def fetch(port: int, path: str) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        conn.close()


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return False
    return True


#: ``wsgistack demo --port 0`` with SIGHUP and SIGINT as a shell leaves them
#: (SIG_DFL in a terminal; SIG_IGN under ``nohup``, or SIGINT for ``demo &`` in a
#: script), whatever the test runner inherited.
RUN_DEMO = (
    "import signal, sys; signal.signal(signal.SIGHUP, signal.{hangup});"
    "signal.signal(signal.SIGINT, signal.{interrupt});"
    "from wsgistack.cli import main; sys.exit(main(['demo', '--port', '0']))"
)


class Demo:
    """``wsgistack demo --port 0`` in a subprocess: what it printed, its ports, its log."""

    def __init__(
        self, tmp_path: Path, hangup: str = "SIG_DFL", interrupt: str = "default_int_handler"
    ) -> None:
        self.log = (tmp_path / "stderr").open("w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RUN_DEMO.format(hangup=hangup, interrupt=interrupt)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        printed: queue.Queue[str] = queue.Queue()
        self.lines: list[str] = []

        def read() -> None:
            for line in self.proc.stdout:
                self.lines.append(line)
                printed.put(line)

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        seen: list[str] = []
        deadline = time.monotonic() + 30
        try:
            while not any("curl -i" in line and "/boom" in line for line in seen):
                seen.append(printed.get(timeout=max(0.1, deadline - time.monotonic())))
        except queue.Empty:
            logged = self.stderr()
            self.close()  # by its PID: a demo that never got going is not left running
            raise AssertionError(f"the demo printed no URLs: {''.join(seen)}{logged}") from None
        self.text = "".join(seen)
        self.port = int(re.search(r"demo on http://127\.0\.0\.1:(\d+)", self.text).group(1))
        found = re.search(
            r"LoadBalancer\(\[http://127\.0\.0\.1:(\d+), http://127\.0\.0\.1:(\d+)\]", self.text
        )
        self.upstream_ports = [int(port) for port in found.groups()]

    def stop(self, signum: int) -> int:
        """Send ``signum`` to the demo (by its PID) and wait for it to end."""
        self.proc.send_signal(signum)
        returncode = self.proc.wait(15)
        self._reader.join(10)  # what it printed last is in ``lines`` once its output ends
        return returncode

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
        finally:
            self._reader.join(10)
            self.proc.stdout.close()
            self.log.close()


@pytest.fixture
def demo(tmp_path):
    started = Demo(tmp_path)
    try:
        yield started
    finally:
        started.close()


def test_the_demo_shows_every_middleware_at_work(demo):
    # Each line pasted into a shell is one curl of one URL: the explanation after
    # it is a comment, as in the README, not words curl would take for hosts.
    commands = [
        shlex.split(line, comments=True) for line in demo.text.splitlines() if "curl" in line
    ]
    assert [argv[:2] for argv in commands] == [["curl", "-i"]] * 5
    assert [argv[2:] for argv in commands] == [
        [f"http://127.0.0.1:{demo.port}{path}"]
        for path in ["/", "/api/hello", "/pool/", "/private/", "/boom"]
    ]
    port = demo.port
    status, _, body = fetch(port, "/")
    assert status == 200 and "wsgistack demo" in body
    api = [fetch(port, "/api/hello") for _ in range(6)]
    assert [s for s, _, _ in api] == [200] * 5 + [429]
    assert api[0][1]["RateLimit-Policy"] == '"5-per-10s";q=5;w=10'
    assert api[5][1]["Retry-After"] == "2"  # as printed: then one every 2 s
    pool = [fetch(port, "/pool/")[2].strip() for _ in range(4)]
    assert pool == ["served by upstream A", "served by upstream B"] * 2
    assert fetch(port, "/private/")[0] == 403
    status, headers, body = fetch(port, "/boom")
    assert status == 500 and headers["X-Error-Id"] in body and "secret" not in body
    assert demo.stop(signal.SIGINT) == 0
    assert demo.lines[-1] == "demo stopped\n"
    logged = demo.stderr()
    # The log shows each refusal, and the traceback under the id the client got.
    assert "RateLimiter refused 127.0.0.1" in logged
    assert "IPFilter refused 127.0.0.1 /private/" in logged
    assert f"error {headers['X-Error-Id']}: GET /boom" in logged and "secret" in logged


@pytest.mark.parametrize(
    "signum",
    [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
    ids=["ctrl-c", "sigterm", "terminal-closed"],
)
def test_a_stop_signal_ends_the_demo_and_both_upstreams(demo, signum):
    assert fetch(demo.port, "/pool/")[0] == 200  # the pool holds a connection to an upstream
    assert all(listening(port) for port in [demo.port, *demo.upstream_ports])
    # A closed terminal sends SIGHUP: a demo that ignored it would live on unseen,
    # holding its port (and the next `wsgistack demo` would find it in use).
    assert demo.stop(signum) == 0
    assert not any(listening(port) for port in [demo.port, *demo.upstream_ports])
    assert "Traceback" not in demo.stderr()


def test_under_nohup_the_demo_outlives_its_terminal(tmp_path):
    demo = Demo(tmp_path, hangup="SIG_IGN")  # as `nohup wsgistack demo &` starts it
    try:
        demo.proc.send_signal(signal.SIGHUP)  # ignored: not even left pending
        assert demo.stop(signal.SIGINT) == 0
        assert demo.lines[-1] == "demo stopped\n"  # Ctrl-C ended it, not the hangup
    finally:
        demo.close()


def test_started_in_the_background_by_a_script_ctrl_c_still_stops_it(tmp_path):
    # `wsgistack demo &` in a script starts it with SIGINT ignored; as the
    # server does, the demo stops on SIGINT all the same.
    demo = Demo(tmp_path, interrupt="SIG_IGN")
    try:
        assert demo.stop(signal.SIGINT) == 0
        assert demo.lines[-1] == "demo stopped\n"
    finally:
        demo.close()


def run_demo_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wsgistack.cli", "demo", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_port_in_use_is_named_with_the_way_out():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_demo_cli("--port", str(port))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        f"wsgistack demo: error: --port {port}: cannot listen on 127.0.0.1:{port}: "
        "Address already in use; choose another port (--port 0: any free one)\n"
    )


@pytest.mark.parametrize("port", ["65536", "-1", "eighty"])
def test_a_port_that_is_no_port_is_refused_naming_the_option(port):
    result = run_demo_cli("--port", port)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        f"wsgistack demo: error: argument --port: {port!r} is not a port (0-65535; 0: any free one)"
    )
