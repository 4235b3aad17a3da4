"""A signal between writing the pid file and serving: it waits for the server's handlers.

``Server(loader=..., workers=0)`` loads the app after it has bound and written
its pid file, so that window lasts a whole import.  A ``Server`` in a
subprocess, a unix socket in the test's directory, signals sent by PID, every
wait a bounded poll.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .served import poll

#: Loads the app only once the test has created ``go`` (bounded: 30 s).
HELD_LOAD = """
import sys, time
from pathlib import Path
from wsgiref.validate import validator

from wsgistack.server import Server


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def load():
    Path("loading").touch()
    deadline = time.monotonic() + 30
    while not Path("go").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return validator(app)


server = Server(loader=load, bind="unix:" + sys.argv[1], workers=0, pid="app.pid")
sys.exit(server.serve_forever())
"""


def _get(path: Path) -> bytes:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(20)
        sock.connect(str(path))
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while block := sock.recv(65536):
            data += block
    return data


@pytest.mark.parametrize(
    "signum", [signal.SIGUSR1, signal.SIGTERM, signal.SIGHUP], ids=["usr1", "term", "hup"]
)
def test_a_signal_while_the_app_loads_waits_for_the_handlers(tmp_path, signum):
    # The handlers came after the load: logrotate's SIGUSR1 (or a stop) then
    # ended the server with the default action, and the pid file and the unix
    # socket's file were left behind for the next start to trip over.
    sock = tmp_path / "app.sock"
    proc = subprocess.Popen(
        [sys.executable, "-c", HELD_LOAD, str(sock)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        poll((tmp_path / "loading").exists, timeout=20)
        assert (tmp_path / "app.pid").read_text() == f"{proc.pid}\n"
        proc.send_signal(signum)
        (tmp_path / "go").touch()
        if signum == signal.SIGUSR1:  # logrotate's: the log files reopen, it serves on
            assert _get(sock).endswith(b"\r\n\r\nok")
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0  # a stop: graceful, once the app is loaded
        assert not (tmp_path / "app.pid").exists()
        assert not sock.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
