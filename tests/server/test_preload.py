"""``--preload``: the app loaded once in the master, the workers forked from it, as gunicorn's.

The CLI in a subprocess, signals sent by PID, every wait a bounded poll.  The app
module writes its process's pid to ``imports`` as it is imported, so a test sees
which processes imported it.
"""

from __future__ import annotations

import http.client
import re
import signal
import textwrap
from pathlib import Path

import pytest

from wsgistack.errors import ConfigError
from wsgistack.server.config import ServerConfig
from wsgistack.server.reconfig import check_reload

from .served import RELEASE_APP, Served, deploy, poll, releases
from .test_reload_config import hang_up

PRELOADED_APP = """
import atexit, os
from pathlib import Path
from wsgiref.validate import validator

with open("imports", "a") as imports:
    imports.write(f"{os.getpid()}\\n")
atexit.register(lambda: Path(f"atexit-{os.getpid()}").touch())
VERSION = "v1"


@validator
def app(environ, start_response):
    body = f"{VERSION} {os.getpid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


@pytest.fixture
def preloaded(serve, tmp_path):
    """Serve ``preloadedapp:app`` (or ``target``) with ``options``; the ``Served``."""
    (tmp_path / "preloadedapp.py").write_text(PRELOADED_APP)

    def start(*options: str, target: tuple[str, ...] = ("preloadedapp:app",), **kwargs) -> Served:
        return serve(*options, target=target, **kwargs)

    return start


def imports(directory: Path) -> list[int]:
    """The pids of the processes that imported the app module, in order."""
    return [int(line) for line in (directory / "imports").read_text().split()]


def answer(server: Served) -> tuple[str, int]:
    """The app's version and the pid of the worker that answered."""
    version, pid = server.get().split()
    return version, int(pid)


def test_the_app_is_imported_once_in_the_master_and_every_worker_forks_from_it(preloaded, tmp_path):
    # Each worker imported the app after the fork: N imports, an import error N
    # times, no memory shared.  --max-requests 2 recycles: respawns fork too.
    server = preloaded("--preload", "--workers", "2", "--max-requests", "2")
    served: set[int] = set()
    poll(lambda: served.add(answer(server)[1]) or len(served) >= 3)
    assert imports(tmp_path) == [server.proc.pid]
    assert server.proc.pid not in served
    assert {answer(server)[0] for _ in range(3)} == {"v1"}


def test_with_workers_0_preload_changes_nothing(preloaded, tmp_path):
    # No fork, so the app is loaded once anyway: a dev setting of workers = 0
    # with a production file's preload = true serves rather than fails.
    server = preloaded("--preload", "--workers", "0")
    assert answer(server) == ("v1", server.proc.pid)
    assert imports(tmp_path) == [server.proc.pid]


BROKEN_APP = """
import os

with open("imports", "a") as imports:
    imports.write(f"{os.getpid()}\\n")
raise KeyError("DEBUG")
"""


@pytest.mark.parametrize(
    ("target", "said"),
    [
        ("brokenapp:app", "'brokenapp:app': KeyError: 'DEBUG'"),
        ("no_such_module_xyz:app", "'no_such_module_xyz:app': "),
    ],
    ids=["app-raises", "no-module"],
)
def test_an_app_that_cannot_load_stops_the_master_with_status_2_before_any_worker(
    serve, tmp_path, target, said
):
    (tmp_path / "brokenapp.py").write_text(BROKEN_APP)
    server = serve("--preload", "--workers", "2", target=(target,), wait=False)
    assert server.proc.wait(timeout=15) == 2
    log = server.log.read_text()
    master = server.proc.pid
    assert f"ERROR master {master}: cannot load the app: {said}" in log
    assert log.splitlines()[-1].endswith(
        f"ERROR master {master}: stopped, exit status 2: the app cannot be loaded"
        " (--preload: no worker was started)"
    )
    assert "starting 2 workers" not in log and not re.search(r"worker \d+", log)
    if target == "brokenapp:app":
        assert imports(tmp_path) == [master]
        assert 'brokenapp.py", line 6' in log  # the app's traceback, once


def test_a_sighup_keeps_the_loaded_code_and_applies_the_file_s_server_options(preloaded, tmp_path):
    # As gunicorn's: new workers fork from the app loaded at start.  The file's
    # [server] table is still read again, and the log says the code is kept.
    stack = tmp_path / "stack.toml"
    app = "\n[app]\nuse = 'preloadedapp:app'\n"
    stack.write_text("[server]\npreload = true\nworkers = 1\n" + app)
    server = preloaded(target=("--config", "stack.toml"))
    old = poll(lambda: server.count_workers(1))
    assert answer(server)[0] == "v1"
    module = tmp_path / "preloadedapp.py"
    module.write_text(module.read_text().replace('VERSION = "v1"', 'VERSION = "v2"'))
    stack.write_text("[server]\npreload = true\nworkers = 2\n" + app)
    log = hang_up(server, "reload done")
    assert "stack.toml read again: workers 1 -> 2" in log
    note = "master: reload: --preload, the app loaded at start is kept; restart for new code"
    assert log.count(note) == 1
    new = poll(lambda: (pids := server.count_workers(2)) and not (pids & old) and pids)
    assert {answer(server) for _ in range(4)} <= {("v1", pid) for pid in new}
    assert imports(tmp_path) == [server.proc.pid]


def test_a_sighup_without_a_file_says_the_code_is_kept(preloaded, tmp_path):
    server = preloaded("--preload")
    old = poll(lambda: server.count_workers(1))
    log = hang_up(server, "reload done")
    assert log.count("master: reload: --preload, the app loaded at start is kept") == 1
    poll(lambda: (pids := server.count_workers(1)) and not (pids & old))
    assert imports(tmp_path) == [server.proc.pid]


def test_an_exit_handler_the_app_registered_at_import_runs_in_the_master_only(preloaded, tmp_path):
    # The README: handlers registered in the master before the fork run only in
    # the master.  Under preload the app's import-time ones are such handlers
    # (gunicorn's workers run them too, as they leave by sys.exit).
    server = preloaded("--preload", "--workers", "2")
    poll(lambda: server.count_workers(2))
    answer(server)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=20) == 0
    assert [path.name for path in tmp_path.glob("atexit-*")] == [f"atexit-{server.proc.pid}"]


PASTE_INI = """
[app:main]
use = call:pastepreload:make_app

[server:main]
use = egg:wsgistack#main
preload = true
workers = 2
"""


def test_a_paste_ini_s_preload_loads_its_app_once(preloaded, tmp_path):
    (tmp_path / "pastepreload.py").write_text(
        "from preloadedapp import app\n\n\ndef make_app(global_conf, **settings):\n    return app\n"
    )
    (tmp_path / "site.ini").write_text(PASTE_INI)
    server = preloaded(target=("--paste", "site.ini"))
    poll(lambda: server.count_workers(2))
    assert answer(server)[0] == "v1"
    assert imports(tmp_path) == [server.proc.pid]


def test_preload_with_reload_is_refused_naming_both(serve):
    server = serve("--preload", "--reload", wait=False)
    assert server.proc.wait(timeout=15) == 2
    assert re.search(
        r"wsgistack serve: error: preload: .* reload could never load new code; give one of"
        r" --preload \(production\) and --reload \(development\)",
        server.log.read_text(),
    )


def test_preload_is_a_flag_in_every_spelling_and_a_reload_cannot_toggle_it():
    assert ServerConfig.from_options(preload="yes").preload is True  # an ini's text
    assert ServerConfig.from_options(preload=False).preload is False
    with pytest.raises(ConfigError, match=r"preload: expected true.* got 'maybe'"):
        ServerConfig.from_options(preload="maybe")
    with pytest.raises(ConfigError, match="preload: turning --preload on takes a restart"):
        check_reload(ServerConfig(), ServerConfig(preload=True), "stack.toml")


#: Adds the pid of the worker that answered, also to the rate limiter's 429s; says
#: in ``imports`` which process built the pipeline.
WORKER_PID = """
import os


class WorkerPid:
    def __init__(self, app):
        with open("imports", "a") as imports:
            imports.write(f"{os.getpid()}\\n")
        self.app = app

    def __call__(self, environ, start_response):
        def start(status, headers, exc_info=None):
            return start_response(status, [*headers, ("X-Worker", str(os.getpid()))], exc_info)

        return self.app(environ, start)
"""

BALANCED = """
[server]
preload = true
workers = 2

[[layer]]
use = "workerpid:WorkerPid"

[[layer]]
use = "rate_limit"
limits = "3/minute"
paths = ["/limited"]

[app]
use = "load_balance"
upstreams = ["{sick}", "{well}"]
health_path = "/health"
health_interval = 0.1
max_fails = 0
"""


def _upstream_app(name: str, healthy: bool):
    def app(environ, start_response):
        sick = environ["PATH_INFO"] == "/health" and not healthy
        body = name.encode()
        status = "503 Service Unavailable" if sick else "200 OK"
        start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    return app


def _workers_connections(port: int, count: int) -> dict[int, http.client.HTTPConnection]:
    """A keep-alive connection to each of ``count`` workers, by the worker's pid."""
    found: dict[int, http.client.HTTPConnection] = {}

    def another() -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/")
        response = connection.getresponse()
        response.read()
        pid = int(response.headers["X-Worker"])
        if pid in found:
            connection.close()
        else:
            found[pid] = connection
        return len(found) == count

    poll(another)
    return found


def _get(connection: http.client.HTTPConnection, path: str) -> tuple[int, str]:
    connection.request("GET", path)
    response = connection.getresponse()
    return response.status, response.read().decode()


def test_health_checks_and_rate_limits_run_in_each_preloaded_worker(serve, tmp_path, upstreams):
    # Built once in the master: each worker must start its own health checks
    # (a thread the master started would not come along) and count its own limits.
    sick = upstreams.start("sick", _upstream_app("sick", healthy=False))
    well = upstreams.start("well", _upstream_app("well", healthy=True))
    (tmp_path / "workerpid.py").write_text(WORKER_PID)
    (tmp_path / "stack.toml").write_text(textwrap.dedent(BALANCED.format(sick=sick, well=well)))
    server = serve(target=("--config", "stack.toml"))
    connections = _workers_connections(server.port, 2)
    try:
        for connection in connections.values():
            # Round robin until this worker's own checks take "sick" out.
            poll(lambda c=connection: [_get(c, "/")[1] for _ in range(3)] == ["well"] * 3)
        for connection in connections.values():
            statuses = [_get(connection, "/limited")[0] for _ in range(5)]
            assert statuses == [200, 200, 200, 429, 429]  # 3/minute, in each worker
    finally:
        for connection in connections.values():
            connection.close()
    assert imports(tmp_path) == [server.proc.pid]  # the pipeline was built once


def test_a_sighup_after_a_deploy_keeps_the_new_workers_beside_the_loaded_code(serve, tmp_path):
    # --chdir in a `current` symlink: a SIGHUP reads the new release's stack.toml
    # (its relative paths from there), but --preload keeps the code loaded at
    # start, so the new workers must read the files beside that code, not mix
    # the old code with the new release's files.

    def release(directory: Path, name: str) -> None:
        (directory / "release_app.py").write_text(RELEASE_APP % name)
        (directory / "release.txt").write_text(name)
        (directory / "stack.toml").write_text(
            '[app]\nuse = "release_app:app"\n\n[server]\npreload = true\n'
        )

    current = releases(tmp_path, release)
    server = serve("--chdir", str(current), target=("--config", str(current / "stack.toml")))
    assert server.get() == "one:one"
    deploy(current, "two")
    server.proc.send_signal(signal.SIGHUP)
    poll(lambda: "reload done" in server.log.read_text())
    assert server.get() == "one:one"
