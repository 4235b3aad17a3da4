"""The CLI in a subprocess: prefork workers, signals, respawn, reload, recycling.

Every process started here is stopped by PID in a ``finally``; every wait is
a bounded poll, never a fixed sleep.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from wsgistack.server.pidfile import PidFile

from .live import RawClient
from .served import HELD_IMPORT, RELEASE_APP, Served, deploy, poll, releases


def test_sigterm_lets_the_in_flight_request_finish(serve):
    server = serve("--workers", "1", "--graceful-timeout", "10")
    result: dict[str, str] = {}
    thread = threading.Thread(target=lambda: result.update(body=server.get("/slow?1")))
    thread.start()
    poll(server.marker.exists)  # the request is inside the app
    server.proc.send_signal(signal.SIGTERM)
    thread.join(timeout=15)
    assert result["body"].isdigit()
    assert server.proc.wait(timeout=15) == 0


def test_sigint_quits(serve):
    server = serve("--workers", "2")
    assert server.get().isdigit()
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(timeout=10) == 0


def test_sigusr2_to_the_master_is_logged_and_serving_goes_on(serve):
    # gunicorn's USR2 starts a new master (its binary upgrade); an operator who
    # sends it out of habit, or a script written for gunicorn, ended ours by
    # the signal's default action, and every worker with it, without a line.
    server = serve("--workers", "1")
    serving = server.get()
    server.proc.send_signal(signal.SIGUSR2)
    poll(lambda: "master: SIGUSR2 ignored" in server.log.read_text())
    assert server.get() == serving  # the same worker, not a restart
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=20) == 0


@pytest.mark.parametrize("workers", ["0", "1"])
def test_sigusr2_prints_the_stacks_of_a_serving_process_and_it_serves_on(serve, workers):
    # ``kill -USR2 PID`` shows where a slow request is, with the watchdog off
    # too, and in process, where the signal's default action would end it.
    server = serve("--workers", workers, "--worker-timeout", "0")
    pid = int(server.get())
    result: dict[str, str] = {}
    thread = threading.Thread(target=lambda: result.update(body=server.get("/slow?2")))
    thread.start()
    poll(server.marker.exists)
    os.kill(pid, signal.SIGUSR2)
    poll(lambda: "slowapp.py" in server.log.read_text())
    thread.join(timeout=15)
    assert result["body"] == str(pid)  # the request it was in finished
    assert int(server.get()) == pid
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=20) == 0


def test_killed_worker_is_respawned(serve):
    server = serve("--workers", "2")
    before = poll(lambda: server.count_workers(2))
    victim = int(server.get())
    os.kill(victim, signal.SIGKILL)

    def respawned() -> set[int] | None:
        pids = server.workers()  # read once: the set changes under us
        return pids if len(pids) == 2 and victim not in pids else None

    after = poll(respawned)
    assert len(after - before) == 1
    assert server.get().isdigit()


def test_sighup_replaces_workers_without_a_failed_request(serve):
    server = serve("--workers", "2", "--threads", "2")
    poll(lambda: len(server.workers()) == 2)
    old = server.workers()
    failures: list[BaseException] = []
    served: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                served.append(server.get())
            except (OSError, urllib.error.URLError) as exc:
                failures.append(exc)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        poll(lambda: len(served) > 20)
        server.proc.send_signal(signal.SIGHUP)
        poll(lambda: (pids := server.workers()) and not (pids & old), timeout=20)
        count = len(served)
        poll(lambda: len(served) > count + 20)  # the new workers serve
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
    assert failures == []
    assert {int(pid) for pid in served[-10:]}.isdisjoint(old)


def test_max_requests_recycles_the_worker(serve):
    server = serve("--workers", "1", "--max-requests", "5")
    first = server.get()
    pids = {first}
    for _ in range(40):
        pids.add(server.get())
        if len(pids) > 1:
            break
    assert len(pids) > 1


def test_max_requests_closes_the_keep_alive_connection_with_the_last_response(serve):
    # The response that reaches the limit says Connection: close, so a keep-alive
    # client (a connection pool) sends its next request on a new connection: it
    # used to go out keep-alive, and the next request on it met the recycle's close.
    server = serve("--workers", "1", "--max-requests", "3")  # 3 // 10: no jitter
    request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    with RawClient(("127.0.0.1", server.port), timeout=10) as client:
        answers = [client.request(request) for _ in range(3)]
        assert [headers.get("connection") for _, headers, _ in answers] == [None, None, "close"]
        assert client.closed_by_peer()
    old = answers[0][2].decode()
    assert poll(lambda: (pid := server.get()) != old and pid)


def test_bad_option_fails_at_start_with_its_name(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "wsgistack.cli", "serve", "x:app", "--workers", "-1"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "workers: '-1' must be an integer >= 0" in result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "stack.toml: no such file"),
        (
            '[app]\nuse = "slowapp:app"\n[[layer]\n',
            "stack.toml: not valid TOML: Expected ']]' at the end of an array declaration"
            " (at line 3, column 8)",
        ),
    ],
    ids=["missing", "not-toml"],
)
def test_a_pipeline_file_that_cannot_be_read_fails_before_binding(tmp_path, text, message):
    # It bound the port, forked a worker and failed there, in the server's log lines.
    if text is not None:
        (tmp_path / "stack.toml").write_text(text)
    command = ["serve", "--config", "stack.toml", "--workers", "1", "--bind", "127.0.0.1:0"]
    result = subprocess.run(
        [sys.executable, "-m", "wsgistack.cli", *command],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"wsgistack serve: error: {message}\n"


def test_serve_a_pipeline_file(serve, tmp_path):
    (tmp_path / "stack.toml").write_text('[app]\nuse = "slowapp:app"\n')
    server = serve("--workers", "0", target=("--config", "stack.toml"))
    assert server.get().isdigit()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=10) == 0


@pytest.mark.parametrize("workers", ["1", "0"], ids=["master", "in-process"])
def test_serve_a_pipeline_whose_app_imports_a_missing_module_shows_the_line(
    serve, tmp_path, workers
):
    # serve myapp:app showed the traceback; serve --config named only the
    # missing module, not the file and line of the app that imports it.
    (tmp_path / "needsdep.py").write_text("import os\nimport no_such_dependency_xyz\n")
    (tmp_path / "stack.toml").write_text('[app]\nuse = "needsdep:app"\n')
    server = serve("--workers", workers, target=("--config", "stack.toml"), wait=False)
    assert server.proc.wait(timeout=15) == 2
    log = server.log.read_text()
    assert "cannot load the app: stack.toml: app (needsdep:app): " in log
    assert 'needsdep.py", line 2' in log


def test_sighup_reloads_the_app_code(serve, tmp_path):
    (tmp_path / "versioned.py").write_text(VERSIONED % "one")
    server = serve("--workers", "1", target=("versioned:app",))
    assert server.get() == "one"
    (tmp_path / "versioned.py").write_text(VERSIONED % "version-two")
    server.proc.send_signal(signal.SIGHUP)
    poll(lambda: server.get() == "version-two")


def test_sighup_keeps_the_old_workers_when_the_new_code_is_broken(serve, tmp_path):
    (tmp_path / "versioned.py").write_text(VERSIONED % "one")
    server = serve("--workers", "1", target=("versioned:app",))
    assert server.get() == "one"
    (tmp_path / "versioned.py").write_text("raise ImportError('broken on purpose')\n")
    server.proc.send_signal(signal.SIGHUP)
    poll(lambda: "reload failed" in server.log.read_text())
    assert server.get() == "one"
    assert server.proc.poll() is None


def test_an_app_that_cannot_load_stops_the_master(serve):
    server_proc = serve("--workers", "2", target=("no_such_module:app",), wait=False).proc
    assert server_proc.wait(timeout=15) == 2


VERSIONED = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%s"]
"""


def test_running_out_of_descriptors_pauses_accepting_and_the_worker_lives(serve):
    # Idle connections hold a descriptor each; past the limit accept() fails with
    # EMFILE, which used to escape the loop and end the worker.
    server = serve("--workers", "0", max_files=64)
    held = []
    try:
        for _ in range(80):
            held.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        poll(lambda: "pausing accepts" in server.log.read_text())
    finally:
        for sock in held:
            sock.close()
    assert server.get().isdigit()  # descriptors freed: accepting resumed
    assert server.proc.poll() is None


def test_a_graceful_stop_does_not_wait_out_the_timeout_for_a_silent_connection(serve):
    # A browser's preconnect opens a connection and sends nothing; the stop must
    # not keep the worker (and the master) for --timeout on its account.
    server = serve("--workers", "1", "--timeout", "60", "--graceful-timeout", "60")
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as silent:
        assert server.get().isdigit()  # the worker is up and has accepted
        server.proc.send_signal(signal.SIGTERM)
        assert silent.recv(1) == b""  # closed by the server, well before --timeout
    assert server.proc.wait(timeout=20) == 0


def test_a_stop_while_the_app_loads_is_not_lost(serve, tmp_path):
    # A SIGTERM while the worker imports must still stop it (it used to be recorded
    # nowhere: the worker served on until SIGKILL).  The import lasts until the
    # signal arrives, and the test signals only once the worker is inside it: a
    # fixed sleep in the import raced both the fork and a slow machine.
    (tmp_path / "slowimport.py").write_text(HELD_IMPORT)
    server = serve("--workers", "1", "--graceful-timeout", "60", target=("slowimport:app",))
    poll((tmp_path / "loading").exists)  # in the import: its stop handlers are installed
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=20) == 0
    assert "stopped while loading" in server.log.read_text()


SLOW_FORK = """
import sys, time
from wsgistack.server import arbiter

child = arbiter.Arbiter._child

def late_child(self, *args):
    time.sleep(0.5)  # a worker not yet scheduled after fork: its handlers come late
    return child(self, *args)

arbiter.Arbiter._child = late_child
from wsgistack.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_stop_that_reaches_a_worker_before_its_handlers_is_not_lost(serve):
    # Between fork and the worker's own handlers, a stop used to run the master's
    # inherited handler in the child, which recorded it nowhere: the worker
    # served on and the master waited out --graceful-timeout.  It now waits,
    # blocked, until the worker's handlers are in place.
    server = serve(
        "--workers", "1", "--graceful-timeout", "60", launcher=("-c", SLOW_FORK), wait=False
    )
    poll(server.workers)  # forked, and (for 0.5 s) without its own handlers
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=20) == 0


def test_a_sighup_during_a_graceful_stop_does_not_cut_in_flight_requests(serve):
    # A reload asked for while stopping is moot; it used to fall through to the
    # quick stop, so a logrotate or deploy script's SIGHUP cut requests short.
    server = serve("--workers", "1", "--graceful-timeout", "30")
    result: list[str | BaseException] = []
    thread = threading.Thread(target=lambda: result.append(fetch(server, "/slow?2")))
    thread.start()
    poll(server.marker.exists)  # the request is inside the app
    server.proc.send_signal(signal.SIGTERM)
    poll(lambda: "graceful stop" in server.log.read_text())
    server.proc.send_signal(signal.SIGHUP)
    thread.join(timeout=15)
    assert len(result) == 1 and str(result[0]).isdigit(), (result, server.log.read_text())
    assert server.proc.wait(timeout=15) == 0


def fetch(server: Served, path: str) -> str | BaseException:
    """``server.get(path)``, or the error it raised (for a request made in a thread)."""
    try:
        return server.get(path)
    except (OSError, urllib.error.URLError) as exc:
        return exc


STUCK_IMPORT = """
import time
from pathlib import Path

Path("loading").touch()
time.sleep(120)  # resumes after every signal handler (PEP 475): only SIGKILL ends it
"""


def test_a_stop_once_begun_only_gets_quicker(serve, tmp_path):
    # A SIGTERM after SIGINT (a supervisor stopping a server someone already
    # interrupted) used to turn the quick stop back into a graceful one and
    # push the deadline to --graceful-timeout: the master waited for a worker
    # stuck in its import instead of killing it a second later.
    (tmp_path / "stuckimport.py").write_text(STUCK_IMPORT)
    server = serve("--workers", "1", "--graceful-timeout", "120", target=("stuckimport:app",))
    poll((tmp_path / "loading").exists)
    server.proc.send_signal(signal.SIGINT)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0


@pytest.mark.parametrize("workers", ["1", "0"], ids=["master", "in-process"])
def test_an_app_that_raises_while_loading_is_logged_with_its_traceback(serve, tmp_path, workers):
    # The worker used to log only str(exc): "cannot load the app: 'DATABASE_URL'",
    # with neither the exception's type nor the line that raised it.  In process
    # it was a bare traceback and status 1: the same failure, another status.
    (tmp_path / "needsenv.py").write_text(
        "import os\n\nDATABASE = os.environ['NO_SUCH_VARIABLE_XYZ']\n"
    )
    server = serve("--workers", workers, target=("needsenv:app",), wait=False)
    assert server.proc.wait(timeout=15) == 2
    log = server.log.read_text()
    # The first line said only "cannot load the app: 'NO_SUCH_VARIABLE_XYZ'".
    assert "cannot load the app: 'needsenv:app': KeyError: 'NO_SUCH_VARIABLE_XYZ'\n" in log
    assert "KeyError: 'NO_SUCH_VARIABLE_XYZ'" in log
    assert 'needsenv.py", line 3' in log


UNPRINTABLE = """\
class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no text")


raise Unprintable()
"""


@pytest.mark.parametrize("workers", ["1", "0"], ids=["master", "in-process"])
def test_an_app_raising_an_exception_that_cannot_be_printed_is_still_named(
    serve, tmp_path, workers
):
    # Naming the exception called its str(), which raised in turn: the line read
    # "cannot load the app: RuntimeError: no text", naming neither the app nor
    # what it raised.  Python's own traceback says "<exception str() failed>".
    (tmp_path / "unprintable.py").write_text(UNPRINTABLE)
    server = serve("--workers", workers, target=("unprintable:app",), wait=False)
    assert server.proc.wait(timeout=15) == 2
    log = server.log.read_text()
    assert (
        "cannot load the app: 'unprintable:app': unprintable.Unprintable: "
        "<exception str() failed>\n" in log
    ), log
    assert 'unprintable.py", line 6' in log


@pytest.mark.parametrize("workers", ["1", "0"], ids=["master", "in-process"])
def test_a_pipeline_app_that_raises_while_loading_names_the_app_and_the_exception(
    serve, tmp_path, workers
):
    (tmp_path / "needsenv.py").write_text(
        "import os\n\nDATABASE = os.environ['NO_SUCH_VARIABLE_XYZ']\n"
    )
    (tmp_path / "stack.toml").write_text('[app]\nuse = "needsenv:app"\n')
    server = serve("--workers", workers, target=("--config", "stack.toml"), wait=False)
    assert server.proc.wait(timeout=15) == 2
    log = server.log.read_text()
    assert (
        "cannot load the app: stack.toml: app (needsenv:app): KeyError: 'NO_SUCH_VARIABLE_XYZ'\n"
        in log
    )
    assert 'needsenv.py", line 3' in log


@pytest.mark.parametrize("workers", ["1", "0"], ids=["master", "in-process"])
@pytest.mark.parametrize(
    ("module", "target"),
    [
        ("import sys\n\nsys.exit(3)\n", "quits:app"),
        ("import sys\n\n\ndef make():\n    sys.exit('no config')\n", "quits:make()"),
    ],
    ids=["import", "factory"],
)
def test_an_app_that_calls_sys_exit_while_loading_stops_the_server(
    serve, tmp_path, workers, module, target
):
    # SystemExit is not an Exception: a worker ended as if it had served, and
    # the master respawned it twice a second for ever.
    (tmp_path / "quits.py").write_text(module)
    server = serve("--workers", workers, target=(target,), wait=False)
    assert server.proc.wait(timeout=15) == 2
    log = server.log.read_text()
    assert "cannot load the app" in log and "called sys.exit(" in log
    assert "respawning" not in log


@pytest.mark.parametrize(
    "crash",
    [
        pytest.param("os._exit(1)", id="os-exit"),
        pytest.param("os.kill(os.getpid(), signal.SIGKILL)", id="killed"),
    ],
)
def test_a_worker_that_dies_while_loading_the_app_stops_the_master(serve, tmp_path, crash):
    # A crash in an import (a C extension's segfault, os._exit, the OOM killer)
    # is no traceback and no boot-error status: the master respawned the worker
    # every second for ever and never said the app could not be loaded.
    (tmp_path / "crashes.py").write_text(f"import os, signal\n{crash}\n")
    server = serve("--workers", "2", target=("crashes:app",), wait=False)
    assert server.proc.wait(timeout=20) == 2
    log = server.log.read_text()
    assert "died while loading the app" in log
    assert "stopped, exit status 2: the app cannot be loaded" in log
    assert "respawning" not in log


def test_an_app_module_that_is_missing_is_one_line_without_a_traceback(serve):
    server = serve("--workers", "1", target=("no_such_module_xyz:app",), wait=False)
    assert server.proc.wait(timeout=15) == 2
    log = server.log.read_text()
    assert "cannot load the app: 'no_such_module_xyz:app': no module named" in log
    assert "Traceback" not in log


def _release(directory: Path, name: str) -> None:
    """A release whose app answers ``NAME:`` and the release.txt where the worker runs."""
    (directory / "release_app.py").write_text(RELEASE_APP % name)
    (directory / "release.txt").write_text(name)


def test_sighup_reloads_the_release_a_current_symlink_points_to_now(serve, tmp_path):
    # The usual deploy: start in a 'current' symlink, point it at a new release,
    # send SIGHUP.  The new workers must import, and run, in the release it names
    # now, as gunicorn's do; they used to stay in the one resolved at start-up.
    current = releases(tmp_path, _release)
    server = serve("--workers", "1", target=("release_app:app",), cwd=current)
    assert server.get() == "one:one"
    deploy(current, "two")
    server.proc.send_signal(signal.SIGHUP)
    poll(lambda: server.get() == "two:two")


def test_old_workers_ending_after_a_reload_are_not_reported_as_respawned(serve):
    server = serve("--workers", "2")
    old = poll(lambda: server.count_workers(2))
    server.proc.send_signal(signal.SIGHUP)
    poll(lambda: (pids := server.workers()) and len(pids) == 2 and not (pids & old), timeout=20)
    log = server.log.read_text()
    assert "respawning" not in log  # it said so for each old worker, and respawned none
    assert "reload done" in log


HELD_WHILE_FLAGGED = """
import time
from pathlib import Path

while Path("hold").exists():  # a reload's new workers wait here while the test looks
    time.sleep(0.02)
if Path("broken").exists():
    raise ImportError("broken on purpose")
from slowapp import app
"""


def reload_losing_the_old_worker(serve, tmp_path) -> tuple[Served, int]:
    """One worker, a reload whose new worker is held in its import, the old one killed."""
    (tmp_path / "heldapp.py").write_text(HELD_WHILE_FLAGGED)
    server = serve("--workers", "1", target=("heldapp:app",))
    old = int(server.get())
    (tmp_path / "hold").touch()
    server.proc.send_signal(signal.SIGHUP)
    poll(lambda: len(server.workers()) == 2)  # the new one is held in its import
    os.kill(old, signal.SIGKILL)
    poll(lambda: "during the reload" in server.log.read_text())
    return server, old


def test_an_old_worker_lost_during_a_reload_is_not_said_to_have_died_loading(serve, tmp_path):
    # A reload takes the old workers out of the ready set while they serve on,
    # so one that crashed then was logged "died while loading the app".
    server, old = reload_losing_the_old_worker(serve, tmp_path)
    (tmp_path / "hold").unlink()
    assert int(server.get()) != old  # the new worker, once loaded, serves
    poll(lambda: "reload done" in server.log.read_text())  # the reload was not forgotten
    log = server.log.read_text()
    assert "died while loading" not in log
    assert f"worker {old} exited (status -9) during the reload" in log


def test_a_reload_that_fails_after_the_old_workers_were_lost_stops_the_master(serve, tmp_path):
    # With the old workers gone, a failed reload was not seen as one (it was
    # told by the old set alone): the master respawned the broken app every
    # second, for ever, serving nothing.  Now it stops, as at start.
    server, _ = reload_losing_the_old_worker(serve, tmp_path)
    (tmp_path / "broken").touch()
    (tmp_path / "hold").unlink()
    assert server.proc.wait(timeout=20) == 2
    log = server.log.read_text()
    assert "reload failed (the new app cannot be loaded), no old worker left" in log
    assert log.rstrip().splitlines()[-1].endswith("says why above)")


def test_a_new_worker_that_dies_while_the_old_ones_drain_is_replaced_at_once(serve):
    # The draining old workers counted as serving ones, so a new worker lost then
    # was replaced only after the old ones had finished (up to --graceful-timeout).
    server = serve("--workers", "1", "--graceful-timeout", "60")
    old = int(server.get())
    result: list[str | BaseException] = []
    thread = threading.Thread(target=lambda: result.append(fetch(server, "/slow?60")))
    thread.start()
    try:
        poll(server.marker.exists)  # the old worker is busy for a minute
        server.proc.send_signal(signal.SIGHUP)
        new = poll(lambda: (pid := int(server.get())) != old and pid)
        os.kill(new, signal.SIGKILL)
        replacement = poll(lambda: server.workers() - {old, new})
        assert int(server.get()) in replacement
        assert old in server.workers()  # still draining its request
    finally:
        server.kill()  # the old worker too, and with it the request
        thread.join(timeout=15)


def test_in_process_sighup_stops_gracefully(serve, tmp_path):
    # Without a master there is nothing to reload, and a closed terminal sends
    # SIGHUP: it was ignored, so a foreground server lived on unseen, holding its
    # port.  It now stops as SIGTERM does: the in-flight request is answered, the
    # unix socket file is removed (SIGHUP's default action left it behind).
    sock = tmp_path / "app.sock"
    server = serve("--workers", "0", "--bind", f"unix:{sock}", "--graceful-timeout", "30")
    result: list[str | BaseException] = []
    thread = threading.Thread(target=lambda: result.append(fetch(server, "/slow?1")))
    thread.start()
    try:
        poll(server.marker.exists)
        server.proc.send_signal(signal.SIGHUP)
        assert server.proc.wait(timeout=20) == 0
    finally:
        thread.join(timeout=15)
    assert result == [str(server.proc.pid)]
    assert not sock.exists()
    assert "stopped on SIGHUP: with --workers 0 there is no master to reload" in (
        server.log.read_text()
    )


NOHUP = """
import signal, sys
signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup leaves it
from wsgistack.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_in_process_sighup_is_ignored_under_nohup_and_sigquit_stops(serve):
    # SIGQUIT's default action dumped core; nohup's ignored SIGHUP stays ignored.
    server = serve("--workers", "0", launcher=("-c", NOHUP))
    assert server.get().isdigit()
    server.proc.send_signal(signal.SIGHUP)
    assert server.get().isdigit()
    assert server.proc.poll() is None
    server.proc.send_signal(signal.SIGQUIT)
    assert server.proc.wait(timeout=15) == 0


IN_PROCESS_THEN_CTRL_C = """
import os, signal, threading, time
from wsgiref.validate import validator
from wsgistack import Server

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]

def stop_once_serving():
    while signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=stop_once_serving).start()
assert Server(validator(app), bind="127.0.0.1:0", workers=0).serve_forever() == 0
try:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)  # cut short by KeyboardInterrupt, if SIGINT raises it again
except KeyboardInterrupt:
    print("interrupted")
"""


def test_serving_in_process_gives_the_signal_handlers_back(tmp_path):
    # After serve_forever() returned, SIGINT still went to the stopped worker:
    # a script that went on after serving could not be interrupted.
    result = subprocess.run(
        [sys.executable, "-c", IN_PROCESS_THEN_CTRL_C],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert (result.returncode, result.stdout) == (0, "interrupted\n"), result.stderr


@pytest.mark.parametrize("workers", ["1", "0"], ids=["master", "in-process"])
def test_sigusr1_reopens_the_access_log_logrotate_moved(serve, tmp_path, workers):
    # logrotate renames the file, then signals (gunicorn's convention); SIGUSR1's
    # default action would end the server instead.
    log = tmp_path / "access.log"
    server = serve("--workers", workers, "--access-log", str(log))
    server.get("/before")
    poll(lambda: log.exists() and "/before" in log.read_text())
    log.rename(tmp_path / "access.log.1")
    server.proc.send_signal(signal.SIGUSR1)
    poll(log.exists)  # opened again by its name
    server.get("/after")
    poll(lambda: "/after" in log.read_text())
    assert "/after" not in (tmp_path / "access.log.1").read_text()
    assert server.proc.poll() is None


@pytest.mark.parametrize("workers", ["1", "0"], ids=["master", "in-process"])
def test_the_pid_file_names_the_server_and_goes_at_exit(serve, tmp_path, workers):
    pid_file = tmp_path / "run" / "app.pid"
    pid_file.parent.mkdir()
    pid_file.write_text("999999999\n")  # a PID no kernel hands out: left by a dead server
    server = serve("--workers", workers, "--pid", str(pid_file))
    # Written just after the bind that "listening on" reports (atomically: whole or old).
    poll(lambda: pid_file.read_text() == f"{server.proc.pid}\n")
    assert server.get("/").isdigit()  # serving
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0
    assert not pid_file.exists()


@pytest.mark.parametrize("workers", ["1", "0"], ids=["master", "in-process"])
def test_a_pid_file_naming_a_live_server_refuses_the_second_start(serve, tmp_path, workers):
    first = serve("--workers", "1", "--pid", str(tmp_path / "app.pid"))
    poll((tmp_path / "app.pid").exists)
    second = serve("--workers", workers, "--pid", str(tmp_path / "app.pid"), wait=False)
    assert second.proc.wait(timeout=15) == 2
    said = second.log.read_text()
    assert f"already running as PID {first.proc.pid}" in said
    # Refused before the bind, as gunicorn does: it used to say "listening on" first.
    assert "listening on" not in said
    assert (tmp_path / "app.pid").read_text() == f"{first.proc.pid}\n"  # the first's, kept


def test_a_pid_file_in_a_missing_directory_fails_at_start_up(serve, tmp_path):
    server = serve("--pid", str(tmp_path / "no" / "app.pid"), wait=False)
    assert server.proc.wait(timeout=15) == 2
    assert "error: pid: " in server.log.read_text() and "does not exist" in server.log.read_text()


def test_the_pid_file_never_writes_through_a_link_planted_at_its_temporary_name(tmp_path):
    # The temporary file had a predictable name (.app.pid.<pid>) and was opened
    # following links: in a shared directory, a link planted there made a server
    # started as root overwrite the file it pointed to with its PID.
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / f".app.pid.{os.getpid()}").symlink_to(victim)
    pid_file = PidFile.create(tmp_path / "app.pid")
    assert victim.read_text() == "precious\n"
    assert (tmp_path / "app.pid").read_text() == f"{os.getpid()}\n"
    assert (tmp_path / "app.pid").stat().st_mode & 0o777 == 0o644  # readable by init scripts
    pid_file.remove()


PID_APP = """
import os


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%d" % os.getpid()]
"""


def test_a_worker_that_cannot_load_the_code_is_tried_again_ever_more_slowly(serve, tmp_path):
    # After a failed reload, an old worker that is lost is replaced by one that
    # imports the broken code on disk: it was tried again every second for ever,
    # each try a whole import.  The wait now doubles, and starts afresh once a
    # worker loads the app again.
    (tmp_path / "pids.py").write_text(PID_APP)
    server = serve("--workers", "2", target=("pids:app",))
    seen: set[int] = set()
    poll(lambda: seen.add(int(server.get())) or len(seen) == 2)  # both have loaded it
    (tmp_path / "pids.py").write_text("raise ImportError('broken on purpose')\n")
    server.proc.send_signal(signal.SIGHUP)
    poll(lambda: "reload failed" in server.log.read_text())
    old = poll(lambda: server.workers() == seen and seen)
    os.kill(min(old), signal.SIGKILL)
    poll(lambda: "trying again in 2 s" in server.log.read_text(), timeout=20)
    assert int(server.get()) == max(old)  # the other old worker serves on
    (tmp_path / "pids.py").write_text(PID_APP + "# loads again\n")
    back = poll(lambda: (pid := int(server.get())) not in old and pid, timeout=20)
    (tmp_path / "pids.py").write_text("raise ImportError('broken on purpose, again')\n")
    os.kill(back, signal.SIGKILL)
    poll(lambda: server.log.read_text().count("trying again in 1 s") == 2, timeout=20)
    assert server.log.read_text().count("trying again in 2 s") == 1
    assert server.proc.poll() is None


def test_a_relative_pid_file_is_removed_after_a_deploy_s_sighup(serve, tmp_path):
    # The pid file a stack.toml names relatively is written in the release
    # --chdir's `current` link names at start; a SIGHUP after the deploy reads
    # the new release's file from there, and the stop must still remove the
    # file it wrote, not look for it in the new release.
    def release(directory: Path, name: str) -> None:
        _release(directory, name)
        (directory / "stack.toml").write_text(
            '[app]\nuse = "release_app:app"\n\n[server]\npid = "app.pid"\n'
        )

    current = releases(tmp_path, release)
    server = serve("--chdir", str(current), target=("--config", str(current / "stack.toml")))
    written = tmp_path / "releases" / "one" / "app.pid"
    poll(written.exists)  # written once bound, after the `listening on` line
    assert written.read_text() == f"{server.proc.pid}\n"
    deploy(current, "two")
    server.proc.send_signal(signal.SIGHUP)
    poll(lambda: "reload done" in server.log.read_text())
    assert server.get() == "two:two"
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0
    assert not written.exists()


def test_a_sighup_after_the_working_directory_was_removed_is_refused(serve, tmp_path):
    # The file's relative paths are read from the working directory again at
    # each SIGHUP: once it is gone, the reload is refused with the reason and
    # the old worker serves on.
    release = tmp_path / "release"
    release.mkdir()
    shutil.copy(tmp_path / "slowapp.py", release / "slowapp.py")
    stack = tmp_path / "stack.toml"
    stack.write_text('[app]\nuse = "slowapp:app"\n')
    server = serve(target=("--config", str(stack)), cwd=release)
    worker = server.get()
    shutil.rmtree(release)
    server.proc.send_signal(signal.SIGHUP)
    poll(lambda: "reload refused" in server.log.read_text())
    assert f"cannot enter the working directory {str(release)!r} again" in server.log.read_text()
    assert server.get() == worker
