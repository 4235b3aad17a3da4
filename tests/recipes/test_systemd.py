"""recipes/systemd: its units pass ``systemd-analyze verify``, and its ExecStart serves.

No systemd runs here, so the service's ``ExecStart=`` command line, read from
the unit, runs under ``systemd-socket-activate`` (systemd's own tool: it binds
as the socket unit would, then execs the command with ``LISTEN_FDS``), with
``NOTIFY_SOCKET`` bound by the test in systemd's place.  Only the paths change
(``/srv/myapp`` becomes the test's directory, its virtualenv this one's).  The
server is stopped by its PID; every wait is bounded.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from benchmarks._wrk import free_port
from tests.processes import stop_process
from tests.server.served import poll

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "recipes" / "systemd"
ACTIVATE = shutil.which("systemd-socket-activate")
ANALYZE = shutil.which("systemd-analyze")
#: Missing tools skip the tests here, and fail them in CI: .ci/run installs Debian's systemd.
CI = bool(os.environ.get("CI"))

APP = """
from wsgiref.validate import validator


@validator
def app(environ, start_response):
    body = b"served under systemd"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def unit(name: str, directory: Path) -> str:
    """The unit's text with the recipe's paths made the test's."""
    wsgistack = Path(sys.executable).parent / "wsgistack"
    text = (UNITS / name).read_text()
    text = text.replace("/srv/myapp/venv/bin/wsgistack", str(wsgistack))
    return text.replace("/srv/myapp", str(directory))


def setting(text: str, key: str) -> str:
    """A ``Key=value`` line's value (the unit's only one)."""
    (value,) = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]
    assert "%" not in value  # no specifier this test would have to expand
    return value


@pytest.mark.skipif(ANALYZE is None and not CI, reason="systemd-analyze missing")
def test_the_units_pass_systemd_analyze_verify(tmp_path):
    for name in ("wsgistack.socket", "wsgistack.service"):
        (tmp_path / name).write_text(unit(name, tmp_path))
    done = subprocess.run(
        [ANALYZE, "verify", "--man=no", "wsgistack.socket", "wsgistack.service"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # It warns (unknown key, bad value) on stderr and still exits 0: both must be clean.
    assert (done.returncode, done.stderr) == (0, "")


def test_the_service_stops_after_the_graceful_timeout_it_gives_the_server():
    text = (UNITS / "wsgistack.service").read_text()
    argv = shlex.split(setting(text, "ExecStart"))
    graceful = float(argv[argv.index("--graceful-timeout") + 1])
    assert float(setting(text, "TimeoutStopSec")) > graceful + 1  # the master's second too


@pytest.mark.skipif(ACTIVATE is None and not CI, reason="systemd-socket-activate missing")
def test_exec_start_serves_the_socket_and_says_ready(tmp_path):
    text = unit("wsgistack.service", tmp_path)
    workdir = Path(setting(text, "WorkingDirectory"))
    (workdir / "myapp.py").write_text(APP)
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(str(tmp_path / "notify"))
    manager.settimeout(30)
    port = free_port()
    log = tmp_path / "server.log"
    # The tool passes on only the variables -E names (as systemd sets a unit's own).
    notify = f"NOTIFY_SOCKET={tmp_path / 'notify'}"
    command = [ACTIVATE, "-l", f"127.0.0.1:{port}", "-E", notify, "-E", "PATH"]
    command += shlex.split(setting(text, "ExecStart"))
    with log.open("wb") as handle:
        proc = subprocess.Popen(command, cwd=workdir, stdout=handle, stderr=handle)
    try:
        poll(lambda: f"Listening on 127.0.0.1:{port}" in log.read_text())
        # The tool execs the server at the first connection, which then waits in
        # the socket's queue until the server answers it.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
            assert response.read() == b"served under systemd"
        ready = dict(line.split("=", 1) for line in manager.recv(4096).decode().splitlines())
        assert ready == {"READY": "1", "MAINPID": str(proc.pid), "STATUS": "serving, 2 workers"}
        proc.send_signal(signal.SIGTERM)  # KillSignal=
        assert manager.recv(4096).startswith(b"STOPPING=1\n")
        assert proc.wait(30) == 0
    finally:
        stop_process(proc)
        manager.close()
    assert "socket activation: serving the 1 socket passed by systemd" in log.read_text()
