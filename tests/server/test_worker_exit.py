"""How a prefork worker ends: what the app's exit handlers and output see, and what an
exit status means.  The CLI in a subprocess, signals sent by PID, every wait a
bounded poll.
"""

from __future__ import annotations

import signal

import pytest

from .served import poll

#: Registers an exit handler and prints (stdout is a file here: block-buffered,
#: as under systemd or docker without PYTHONUNBUFFERED).
EXITING_APP = """
import atexit, os
from pathlib import Path

atexit.register(lambda: Path(f"atexit-{os.getpid()}").touch())


def app(environ, start_response):
    if environ["PATH_INFO"] == "/exit3":
        os._exit(3)
    print(f"served by {os.getpid()}")
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""

#: The master registers an exit handler of its own before it forks.
MASTER_ATEXIT = """
import atexit, os, sys
from pathlib import Path

atexit.register(lambda: Path(f"master-atexit-{os.getpid()}").touch())
from wsgistack.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def exiting(serve, tmp_path, monkeypatch):
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # the serve fixture passes os.environ
    (tmp_path / "exitapp.py").write_text(EXITING_APP)

    def start(*options: str):
        return serve(*options, target=("exitapp:app",), launcher=("-c", MASTER_ATEXIT))

    return start


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM], ids=["reload", "stop"])
def test_a_worker_that_ends_runs_the_app_s_exit_handlers_and_flushes_its_output(
    exiting, tmp_path, signum
):
    # Workers left with os._exit(): an app's atexit handlers (a metrics or error
    # reporter's last flush) never ran, and what it printed to a block-buffered
    # stdout was lost, at every reload, recycle and stop.
    server = exiting("--workers", "1")
    old = int(server.get())
    server.proc.send_signal(signum)
    poll((tmp_path / f"atexit-{old}").exists, timeout=20)
    poll(lambda: f"served by {old}\n" in server.log.read_text())
    if signum == signal.SIGTERM:
        assert server.proc.wait(timeout=20) == 0
        # The master's own handler ran in the master, and in no worker.
        assert [path.name for path in tmp_path.glob("master-atexit-*")] == [
            f"master-atexit-{server.proc.pid}"
        ]
    else:
        assert not list(tmp_path.glob("master-atexit-*"))


#: Buffers its records in a MemoryHandler, as apps do to batch them to a file or a
#: service: only logging's own exit handler (logging.shutdown) flushes them.
BUFFERING_APP = """
import logging, logging.handlers, os

log = logging.getLogger("buffered")
log.propagate = False
log.addHandler(
    logging.handlers.MemoryHandler(1000, target=logging.FileHandler(f"applog-{os.getpid()}"))
)
log.warning("loaded in %d", os.getpid())


def app(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM], ids=["reload", "stop"])
def test_a_worker_that_ends_flushes_the_app_s_buffered_log_records(serve, tmp_path, signum):
    # logging registers its shutdown as an exit handler when it is first
    # imported, in the master; the worker clears the master's handlers, so the
    # records a MemoryHandler held were lost at every reload, recycle and stop.
    (tmp_path / "bufferapp.py").write_text(BUFFERING_APP)
    server = serve("--workers", "1", target=("bufferapp:app",))
    old = int(server.get())
    server.proc.send_signal(signum)
    log = tmp_path / f"applog-{old}"
    poll(lambda: f"loaded in {old}" in log.read_text(), timeout=20)
    if signum == signal.SIGTERM:
        assert server.proc.wait(timeout=20) == 0


def test_a_serving_worker_that_exits_with_status_3_is_respawned_not_a_load_failure(exiting):
    # Status 3 is what a worker that cannot load the app exits with, and the
    # master took it as such from any worker: an app's os._exit(3) mid-request
    # was logged "a new worker could not load the app", and the replacement
    # waited out the load back-off (during a reload, the reload was abandoned).
    server = exiting("--workers", "1")
    old = int(server.get())
    with pytest.raises(OSError):
        server.get("/exit3")
    assert poll(lambda: (pid := int(server.get())) != old and pid)
    log = server.log.read_text()
    assert f"worker {old} exited (status 3), respawning" in log
    assert "could not load" not in log


#: An exit handler that waits on a network flush that never ends (bounded: 60 s).
BLOCKED_EXIT_APP = """
import atexit, socket

from slowapp import app


def flush_metrics():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        sock.settimeout(60)
        sock.accept()  # an answer that never comes


atexit.register(flush_metrics)
"""


def test_an_exit_handler_that_hangs_is_cut_after_a_reload(serve, tmp_path):
    # Only a stop had a deadline: after a reload (or a recycle, or SIGTTOU) a
    # drained worker waited in its exit handler for ever (with --worker-timeout 0;
    # else it was killed a minute later as a hung worker).
    (tmp_path / "blockedexit.py").write_text(BLOCKED_EXIT_APP)
    server = serve(
        "--workers", "1", "--graceful-timeout", "1", "--worker-timeout", "0",
        target=("blockedexit:app",),
    )  # fmt: skip
    old = poll(lambda: server.count_workers(1))
    server.proc.send_signal(signal.SIGHUP)
    poll(lambda: (pids := server.count_workers(1)) and pids != old and pids, timeout=30)
    assert "in flush_metrics" in server.log.read_text()  # the stack says where it hung
    assert int(server.get()) not in old
