"""The CLI served in a subprocess, for the process tests: start, ask, stop by PID.

server = serve("--workers", "2")    # the ``serve`` fixture (conftest.py)
server.get("/slow?1")               # the worker's pid, after a second
server.workers()                    # the master's children
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "APP",
    "HELD_IMPORT",
    "RELEASE_APP",
    "Served",
    "deploy",
    "launched",
    "limit_files",
    "orphans",
    "poll",
    "releases",
]

APP = """
import os, time
from pathlib import Path

def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        Path(os.environ["MARKER"]).write_text("started")
        time.sleep(float(environ["QUERY_STRING"] or "1"))
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


#: An app module (``slowimport``) whose import lasts until a signal reaches it.
HELD_IMPORT = """
import os, select, signal
from pathlib import Path

# Hold the import until a signal reaches this process: the wakeup fd is written
# whatever Python handler the worker has installed for it.
reader, writer = os.pipe()
os.set_blocking(writer, False)
signal.set_wakeup_fd(writer)
Path("loading").touch()
select.select([reader], [], [], 60)
signal.set_wakeup_fd(-1)
from slowapp import app
"""


def poll(condition, timeout: float = 10.0, interval: float = 0.02):
    """Wait until ``condition()`` is truthy (bounded); returns its value or fails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {condition}")


class Served:
    def __init__(self, proc: subprocess.Popen, log: Path, marker: Path, wait: bool) -> None:
        self.proc = proc
        self.log = log
        self.marker = marker
        self.port = poll(self._port) if wait else 0

    def _port(self) -> int | None:
        if self.proc.poll() is not None:
            pytest.fail(f"server exited: {self.log.read_text()}")
        for line in self.log.read_text().splitlines():
            if "listening on" in line:
                return int(line.rsplit(":", 1)[1])
        return None

    def get(self, path: str = "/", timeout: float = 10.0) -> str:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", headers={"Connection": "close"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read().decode()

    def count_workers(self, count: int) -> set[int] | None:
        """The worker pids if there are exactly ``count`` (one /proc read), else None."""
        pids = self.workers()
        return pids if len(pids) == count else None

    def workers(self) -> set[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        return {int(pid) for pid in children.split()}

    def kill(self) -> None:
        """SIGKILL the master and its workers, which are read first: once it is
        reaped, nothing names them (a draining one would outlive the test)."""
        if self.proc.poll() is not None:
            return
        workers = orphans(self.proc.pid)
        self.proc.kill()
        self.proc.wait(timeout=10)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def launched(directory: Path) -> Iterator[Callable[..., Served]]:
    """Start server commands in subprocesses as ``Served``; each is killed by PID at the end.

    Each one logs to ``directory/serverN.log``; with ``wait`` its port is read
    from its log before it is handed over.
    """
    started: list[Served] = []

    def launch(
        argv: Sequence[str],
        *,
        cwd: Path = directory,
        env: dict[str, str] | None = None,
        preexec_fn: Callable[[], Any] | None = None,
        wait: bool = True,
        pass_fds: Sequence[int] = (),
    ) -> Served:
        log = directory / f"server{len(started)}.log"
        with log.open("wb") as handle:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=preexec_fn,
                pass_fds=pass_fds,
            )
        served = Served(proc, log, directory / "marker", wait=False)
        started.append(served)
        if wait:
            served.port = poll(served._port)
        return served

    try:
        yield launch
    finally:
        for served in started:
            served.kill()


def limit_files(count: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))


def orphans(master: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
    except OSError:
        return []


#: A release's app (``% name``): answers its name and the release.txt beside
#: the worker's working directory, so a test sees which code runs where.
RELEASE_APP = """
from pathlib import Path

def app(environ, start_response):
    body = ("%s:" + Path("release.txt").read_text()).encode()  # relative: the worker's cwd
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"""


def releases(root: Path, fill: Callable[[Path, str], None]) -> Path:
    """``root/releases/one`` and ``two``, each ``fill(directory, name)``; the ``current`` link to one.

    The usual deploy layout: a server started in ``current`` (``--chdir`` or
    its working directory), then ``deploy(current, "two")`` and a SIGHUP.
    """
    for name in ("one", "two"):
        release = root / "releases" / name
        release.mkdir(parents=True)
        fill(release, name)
    current = root / "current"
    current.symlink_to(root / "releases" / "one")
    return current


def deploy(current: Path, name: str) -> None:
    """Point ``current`` at ``releases/NAME`` in one step, as ``ln -sfn`` and ``mv -T`` do."""
    link = current.with_name("next")
    link.symlink_to(current.parent / "releases" / name)
    os.replace(link, current)
