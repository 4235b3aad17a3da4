"""The master's states (serving, reloading, stopping) meeting each other: the CLI in a
subprocess, signals sent by PID, every wait a bounded poll.

A reload's new workers are held in their import by a flag file (``hold``), so
the test chooses when they come up; ``broken`` makes them fail to load.
"""

from __future__ import annotations

import signal

import pytest

from .served import Served, poll

HELD = """
import time
from pathlib import Path

if Path("hold").exists():
    Path("held-" + str(__import__("os").getpid())).touch()
while Path("hold").exists():  # a reload's new workers wait here while the test looks
    time.sleep(0.02)
if Path("broken").exists():
    raise ImportError("broken on purpose")
from slowapp import app
Path("loaded-" + str(__import__("os").getpid())).touch()
"""

#: The master, made to see a stop signal and its new workers' "ready" in one turn
#: of its loop (they raced): it handles the stop only once the ready has come.
READY_WITH_THE_STOP = """
import select, signal, sys
from wsgistack.server import arbiter

handle = arbiter.Arbiter._handle

def late_handle(self, signum):
    if signum in (signal.SIGTERM, signal.SIGINT):
        select.select([self._ready_pipe.reader], [], [], 20)
    return handle(self, signum)

arbiter.Arbiter._handle = late_handle
from wsgistack.cli import main
sys.exit(main(sys.argv[1:]))
"""


def held_reload(serve, tmp_path, *options: str, **kwargs) -> tuple[Served, set[int]]:
    """A server whose reload's new workers are held in their import; returns the old pids."""
    (tmp_path / "heldapp.py").write_text(HELD)
    server = serve(*options, target=("heldapp:app",), **kwargs)
    workers = int(options[options.index("--workers") + 1])
    old = poll(lambda: server.count_workers(workers))
    assert server.get().isdigit()  # serving
    # Every first worker loaded (one still importing would see "hold" and wait
    # with the reload's, one held worker too many), then the reload is held.
    poll(lambda: len(list(tmp_path.glob("loaded-*"))) == workers)
    (tmp_path / "hold").touch()
    server.proc.send_signal(signal.SIGHUP)
    poll(lambda: len(list(tmp_path.glob("held-*"))) == workers)
    return server, old


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_stop_that_meets_the_reload_s_ready_does_not_finish_the_reload(serve, tmp_path, signum):
    # The stop came in the same turn as the new workers' "ready": the master
    # stopped, then logged "reload done, the old workers drain" and signalled
    # the old workers again (a SIGTERM after a quick stop's SIGQUIT).
    server, _ = held_reload(serve, tmp_path, "--workers", "1", launcher=("-c", READY_WITH_THE_STOP))
    server.proc.send_signal(signum)
    (tmp_path / "hold").unlink()  # the new worker gets ready while the stop waits
    assert server.proc.wait(timeout=30) == 0
    log = server.log.read_text()
    assert "reload done" not in log, log
    assert "the reload under way is abandoned" in log


def test_a_new_worker_failing_to_load_during_a_stop_is_no_failed_reload(serve, tmp_path):
    # A SIGTERM during a reload whose new code turned out broken: the old
    # workers, idle, had drained already, so the master said "reload failed
    # ..., no old worker left" and exited with status 2 (the app cannot be
    # loaded), for a stop that went as asked.
    server, old = held_reload(serve, tmp_path, "--workers", "1")
    server.proc.send_signal(signal.SIGTERM)
    poll(lambda: not (server.workers() & old))  # the old worker has drained
    (tmp_path / "broken").touch()
    (tmp_path / "hold").unlink()
    assert server.proc.wait(timeout=30) == 0
    log = server.log.read_text()
    assert "reload failed" not in log, log
    assert "cannot be loaded" not in log.rstrip().splitlines()[-1]


def test_a_second_sighup_replaces_the_workers_still_starting(serve, tmp_path):
    # A second SIGHUP during a reload (two deploys in a row): the first
    # reload's workers, still loading the older code, are stopped and a new set
    # loads the latest; the old workers serve until it is ready.  They were
    # kept on as "old" workers: a failure of the second set then kept all of
    # them, twice --workers, for good.
    server, old = held_reload(serve, tmp_path, "--workers", "1")
    for held in tmp_path.glob("held-*"):
        held.unlink()
    server.proc.send_signal(signal.SIGHUP)
    poll(lambda: len(list(tmp_path.glob("held-*"))) == 1)  # the second set is loading
    assert "reload again, starting new workers (stopping the 1 still starting)" in (
        server.log.read_text()
    )
    (tmp_path / "broken").touch()
    (tmp_path / "hold").unlink()  # both sets fail: the first was told to stop, the second fails
    poll(lambda: "reload failed" in server.log.read_text())
    assert poll(lambda: server.count_workers(1)) == old  # the old worker, alone
    assert server.log.read_text().count("reload failed") == 1
    assert int(server.get()) in old


def test_a_second_sighup_s_workers_finish_the_reload(serve, tmp_path):
    server, old = held_reload(serve, tmp_path, "--workers", "2")
    first = server.workers() - old
    for held in tmp_path.glob("held-*"):
        held.unlink()
    server.proc.send_signal(signal.SIGHUP)
    poll(lambda: len(list(tmp_path.glob("held-*"))) == 2)
    (tmp_path / "hold").unlink()
    new = poll(lambda: (pids := server.count_workers(2)) and not (pids & (old | first)) and pids)
    assert int(server.get()) in new
    log = server.log.read_text()
    assert log.count("reload done") == 1
    assert "respawning" not in log


#: The master, with the boot back-off made long (an hour) so a wait left over
#: from it cannot pass unseen within a poll.
LONG_BOOT_WAIT = """
import sys
from wsgistack.server import backoff

failed_to_load = backoff.Backoff.failed_to_load

def long_failed_to_load(self, now):
    self.wait = max(self.wait, 1800.0)
    return failed_to_load(self, now)

backoff.BOOT_RETRY_MAX = 3600.0
backoff.Backoff.failed_to_load = long_failed_to_load
from wsgistack.cli import main
sys.exit(main(sys.argv[1:]))
"""

PIDS = """
import os
from pathlib import Path

if Path("broken").exists():
    raise ImportError("broken on purpose")


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%d" % os.getpid()]
"""


def test_a_reload_that_loads_again_ends_the_boot_back_off(serve, tmp_path):
    # The code on disk broke and the lost worker's replacements could not load
    # it, so the master waited longer and longer between tries.  A SIGHUP with
    # fixed code started a new worker at once, but the back-off's wait was kept:
    # that worker, recycled by --max-requests (or crashing) later, was replaced
    # only once the old wait ran out (up to 30 s with no worker at all).
    (tmp_path / "pids.py").write_text(PIDS)
    server = serve(
        "--workers", "1", "--max-requests", "2",
        target=("pids:app",), launcher=("-c", LONG_BOOT_WAIT),
    )  # fmt: skip
    first = int(server.get())
    (tmp_path / "broken").touch()
    server.get()  # the second request: the worker is recycled, its replacement fails
    poll(lambda: "trying again in 3600 s" in server.log.read_text())
    (tmp_path / "broken").unlink()
    server.proc.send_signal(signal.SIGHUP)  # the fix is deployed: not an hour's wait
    fresh = int(server.get(timeout=20))
    assert fresh != first
    assert int(server.get()) == fresh  # its second request: recycled in turn
    # Its replacement loads the good code at once (a get waits while there is none).
    poll(lambda: int(server.get(timeout=20)) not in (first, fresh), timeout=30)
    assert server.proc.poll() is None
