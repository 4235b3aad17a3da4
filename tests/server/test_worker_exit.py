"""How a prefork worker ends: what the app's exit handlers and output see, and what an
exit status means.  The CLI in a subprocess, signals sent by PID, every wait a
bounded poll.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path

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


#: Work the app hands to a background thread after answering (a mail to send):
#: the job waits on ``go``, a FIFO the test opens when it wants the job to end.
THREADS_APP = """
import atexit, os, threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

executor = ThreadPoolExecutor(1)
kept = []


def deliver():
    Path("go").read_text()  # a FIFO: returns once the test has written to it
    Path(f"done-{os.getpid()}").touch()


# Python runs exit handlers after it has waited for the program's threads.
atexit.register(
    lambda: Path(f"atexit-{os.getpid()}").write_text(str(Path(f"done-{os.getpid()}").exists()))
)


def app(environ, start_response):
    if environ["PATH_INFO"] == "/executor":
        executor.submit(deliver)
    elif environ["PATH_INFO"] == "/thread":
        threading.Thread(target=deliver, daemon=False).start()
    elif environ["PATH_INFO"] == "/view-thread":  # the common form: no daemon argument
        threading.Thread(target=deliver).start()
    elif environ["PATH_INFO"] == "/idle-executor":  # made here, kept, never shut down
        kept.append(ThreadPoolExecutor(1))
        kept[-1].submit(int).result()
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


@pytest.fixture
def threaded(serve, tmp_path):
    (tmp_path / "threadsapp.py").write_text(THREADS_APP)
    os.mkfifo(tmp_path / "go")

    def start(*options: str):
        return serve("--workers", "1", "--threads", "8", *options, target=("threadsapp:app",))

    return start


def exiting_worker(pid: int) -> bool:
    """True once worker ``pid`` has let its request threads go (its exit began), or is gone."""
    try:
        return len(os.listdir(f"/proc/{pid}/task")) < 5  # serving: 8 request threads and more
    except FileNotFoundError:
        return True


def release(fifo: Path) -> None:
    """Let the app's waiting job go on (if a reader is still there to hear it)."""
    with contextlib.suppress(OSError):  # ENXIO: no reader, the job's process is gone
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, b"go")
        os.close(fd)


@pytest.mark.parametrize("kind", ["executor", "thread", "view-thread"])
@pytest.mark.parametrize(
    "how",
    [
        ("reload", signal.SIGHUP),
        ("stop", signal.SIGTERM),
        ("recycle", None),
        ("worker quick stop", signal.SIGQUIT),
    ],
    ids=lambda how: how[0],
)
def test_a_worker_that_ends_finishes_the_app_s_background_work_first(threaded, tmp_path, kind, how):
    # Workers left with os._exit() and no threading shutdown: a job submitted to
    # the app's ThreadPoolExecutor, or a non-daemon thread it started, was cut
    # at every reload, recycle and stop, where Python (and gunicorn's workers,
    # through sys.exit) waits for them before running the exit handlers.  And a
    # thread a view started without saying daemon=False was cut all the same: it
    # inherited the daemon flag of our request thread (gunicorn's are not daemon
    # threads, so there the exit waits for it).
    name, signum = how
    server = threaded(*(["--max-requests", "1"] if name == "recycle" else []))
    old = int(server.get(f"/{kind}"))
    if name == "worker quick stop":
        os.kill(old, signal.SIGQUIT)  # the worker's own: no master's deadline behind it
    elif signum is not None:
        server.proc.send_signal(signum)
    poll(lambda: exiting_worker(old), timeout=20)
    release(tmp_path / "go")
    poll((tmp_path / f"done-{old}").exists, timeout=20)
    # ... and only then the exit handlers, as Python does.
    poll((tmp_path / f"atexit-{old}").exists)
    assert (tmp_path / f"atexit-{old}").read_text() == "True"
    if name == "stop":
        assert server.proc.wait(timeout=20) == 0
    else:
        poll(lambda: old not in server.workers(), timeout=20)
    assert "Timeout (" not in server.log.read_text()  # faulthandler's: no deadline hit


@pytest.mark.parametrize("kind", ["thread", "view-thread"])
def test_an_app_thread_that_never_ends_is_cut_at_the_deadline_with_its_stack(
    threaded, tmp_path, kind
):
    # The worker waits for the app's threads no longer than for its exit handlers:
    # --graceful-timeout and a second, then the stacks and exit status 1.
    server = threaded("--graceful-timeout", "1", "--worker-timeout", "0")
    old = int(server.get(f"/{kind}"))
    server.proc.send_signal(signal.SIGHUP)
    poll(lambda: old not in server.workers(), timeout=30)
    log = server.log.read_text()
    assert "Timeout (0:00:02)!" in log  # faulthandler's, with every thread's stack:
    assert "in deliver" in log  # where the app's thread waited
    assert not (tmp_path / f"done-{old}").exists()


@pytest.mark.parametrize("signum", [signal.SIGQUIT, signal.SIGTERM], ids=["quick stop", "stop"])
def test_a_request_a_stop_cut_does_not_hold_the_worker_s_exit(serve, signum):
    # The worker waits for the app's threads, not for its own request threads
    # (daemon threads): one still in the app after the stop cut its request
    # would otherwise hold the exit until the deadline, then end it with status 1.
    server = serve("--workers", "1", "--graceful-timeout", "1", "--worker-timeout", "0")
    old = int(server.get())

    def ask() -> None:
        with contextlib.suppress(OSError):  # the stop cuts it
            server.get("/slow?60", timeout=30)

    background = threading.Thread(target=ask, daemon=True)
    background.start()
    poll(server.marker.exists)  # the app has the request
    os.kill(old, signum)
    poll(lambda: old not in server.workers(), timeout=20)  # far less than the request's 60 s
    assert "Timeout (" not in server.log.read_text()  # faulthandler's: no deadline hit


def test_in_process_a_second_ctrl_c_ends_the_wait_for_a_view_s_thread(threaded, tmp_path):
    # As for any Python program: the first Ctrl-C stops serving, the exit then
    # waits for the app's threads, and a second one ends that wait.
    server = threaded("--workers", "0")
    pid = server.proc.pid
    assert int(server.get("/view-thread")) == pid
    server.proc.send_signal(signal.SIGINT)
    poll(lambda: "Ctrl-C again to quit now" in server.log.read_text())
    server.proc.send_signal(signal.SIGINT)
    server.proc.wait(timeout=20)
    assert not (tmp_path / f"done-{pid}").exists()  # never released: cut, as asked


def test_in_process_an_idle_executor_does_not_hold_the_exit_or_fill_the_log(threaded):
    # Python's exit hook ends an idle executor's threads at once: no wait, so
    # no "waiting for" line naming a thread that is about to end anyway.
    server = threaded("--workers", "0")
    assert int(server.get("/idle-executor")) == server.proc.pid
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=20) == 0
    assert "waiting for" not in server.log.read_text()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "stop"])
def test_in_process_the_exit_waits_for_a_thread_a_view_started(threaded, tmp_path, signum):
    # With --workers 0 the server is the program, and Python's exit waits for
    # its non-daemon threads; a view's thread inherited our request thread's
    # daemon flag, so it was cut as the process ended.
    server = threaded("--workers", "0")
    pid = server.proc.pid
    assert int(server.get("/view-thread")) == pid
    server.proc.send_signal(signum)
    poll(lambda: exiting_worker(pid), timeout=20)
    # Nothing bounds that wait without a master: the log says what it waits for.
    poll(lambda: "waiting for 1 thread the app started to end" in server.log.read_text())
    assert "Ctrl-C again to quit now" in server.log.read_text()
    release(tmp_path / "go")
    assert server.proc.wait(timeout=20) == 0
    assert (tmp_path / f"done-{pid}").exists()
    assert (tmp_path / f"atexit-{pid}").read_text() == "True"  # the handlers after it
