"""Other WSGI servers (gunicorn, uWSGI, waitress) run for real, on a port the OS picks.

Each is a subprocess of this interpreter's environment, serving a target from
``tests/recipes/foreign_apps.py``; the port is read from the line the server
logs once it listens, and the server is stopped by its PID.  Its log is kept
(read by a thread, so a chatty server never blocks on a full pipe) for the
test to check.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.processes import stop_process

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

#: What each uWSGI worker logs once it takes requests (``--hook-accepting``).
UWSGI_WORKER_UP = "uWSGI worker accepting"

#: How each server says where it listens, once it does.
LISTENING = {
    "gunicorn": re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)"),
    "uwsgi": re.compile(r"bound to TCP address 127\.0\.0\.1:(\d+)"),
    "waitress": re.compile(r"Serving on http://127\.0\.0\.1:(\d+)"),
}


@dataclass
class Served:
    port: int
    lines: list[str] = field(default_factory=list)
    #: Notified with each new line of the log.
    grown: threading.Condition = field(default_factory=threading.Condition)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, times: int = 1, timeout: float = 30.0) -> None:
        """Wait until ``text`` is in the log ``times`` times (bounded); fail with the log if not."""
        with self.grown:
            found = self.grown.wait_for(lambda: self.log.count(text) >= times, timeout)
        assert found, f"{text!r} was not logged {times} times within {timeout} s:\n{self.log}"

    def uwsgi_finished(self, method: str, path: str) -> None:
        """Wait until uWSGI's worker is done with the request ``method path``.

        uWSGI closes the connection before the rest of its work on a request
        (close(), releasing the environ, the access line last): a client that
        read the whole response may otherwise stop uWSGI while that runs, and
        its workers then die in the middle of it.
        """
        self.wait_for(f"{method} {path} => generated")


def command(server: str, target: str, *options: str) -> list[str]:
    """The command line that serves ``target`` (``module:attr``) on 127.0.0.1, port 0."""
    if server == "gunicorn":
        return [str(BIN / "gunicorn"), "-b", "127.0.0.1:0", *options, target]
    if server == "uwsgi":
        return [
            str(BIN / "uwsgi"),
            "--http-socket", "127.0.0.1:0", "--pythonpath", str(ROOT),
            "--module", target, "--die-on-term", *options,
            # Now and then a worker outlives SIGTERM (most often under
            # --lazy-apps): the master then gives up on it after 2 s, not its
            # default 60, and the stop no longer waits out stop_process's grace.
            "--worker-reload-mercy", "2", "--reload-mercy", "2",
            "--hook-accepting", f"log:{UWSGI_WORKER_UP}",
        ]  # fmt: skip
    return [str(BIN / "waitress-serve"), "--listen=127.0.0.1:0", *options, target]


def uwsgi_workers(options: tuple[str, ...]) -> int:
    """How many workers uWSGI runs with ``options`` (``--processes N``; 1 without)."""
    if "--processes" in options:
        return int(options[options.index("--processes") + 1])
    return 1


@contextmanager
def serving(
    server: str, target: str, *options: str, home: Path, env: dict[str, str] | None = None
) -> Iterator[Served]:
    """Run ``server`` on ``target`` until the block ends; yield its port and its log.

    ``home`` is the server's ``HOME`` (gunicorn keeps its control socket there);
    ``env`` adds variables the app reads.
    """
    proc = subprocess.Popen(
        command(server, target, *options),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": str(BIN), "HOME": str(home), "PYTHONPATH": str(ROOT), **(env or {})},
        start_new_session=True,  # its workers are in its process group, to stop with it
    )
    assert proc.stderr is not None
    served = Served(0)
    ready = threading.Event()

    def read() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            with served.grown:
                served.lines.append(line)
                served.grown.notify_all()
            if not ready.is_set() and (found := LISTENING[server].search(line)):
                served.port = int(found[1])
                ready.set()
        ready.set()  # it ended without listening: the assertion below says so

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        ready.wait(60)
        assert served.port, f"{server} did not start:\n{served.log}"
        if server == "uwsgi":
            # uWSGI logs its port before it forks its workers: one still starting
            # when the test stops uWSGI dies of the SIGINT inside Python code
            # (random.seed() after the fork) and logs a KeyboardInterrupt traceback.
            served.wait_for(UWSGI_WORKER_UP, times=uwsgi_workers(options))
        yield served
    finally:
        stop_process(proc)
        # A worker that outlived its master (one that could not exit) would hold
        # the log pipe open, and the reader with it: end the group we started.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        reader.join(10)
        proc.stderr.close()
