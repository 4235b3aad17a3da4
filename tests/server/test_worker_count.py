"""SIGTTIN / SIGTTOU: one worker more or less, as gunicorn's master does.  The CLI in a
subprocess, signals sent by PID, every wait a bounded poll.
"""

from __future__ import annotations

import signal
import threading

from .served import HELD_IMPORT, poll


def test_sigttin_adds_a_worker_and_sigttou_removes_the_oldest(serve):
    # They were not handled: their default action stopped the master (as job
    # control does), and it served on only through the workers it had.
    server = serve("--workers", "2")
    first = poll(lambda: server.count_workers(2))
    server.proc.send_signal(signal.SIGTTIN)
    three = poll(lambda: server.count_workers(3))
    added = three - first
    assert poll(lambda: int(server.get()) in added)  # it serves
    server.proc.send_signal(signal.SIGTTOU)
    poll(lambda: "one worker less, now 2" in server.log.read_text())  # two at once are one
    server.proc.send_signal(signal.SIGTTOU)
    assert poll(lambda: server.count_workers(1)) == added  # the two oldest drained and left
    server.proc.send_signal(signal.SIGTTOU)  # never fewer than one
    poll(lambda: "master: one worker less, but at least one stays" in server.log.read_text())
    assert server.workers() == added
    assert int(server.get()) in added
    log = server.log.read_text()
    assert "master: one worker more, now 3" in log and "one worker less, now 1" in log
    assert "respawning" not in log
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=20) == 0


def test_the_count_sigttin_set_holds_across_a_reload(serve):
    server = serve("--workers", "1")
    server.proc.send_signal(signal.SIGTTIN)
    first = poll(lambda: server.count_workers(2))
    server.proc.send_signal(signal.SIGHUP)
    poll(lambda: (pids := server.count_workers(2)) and not (pids & first))
    assert "reload done" in server.log.read_text()


#: ``heldapp``: imported at once, unless a file ``hold`` exists; then held until
#: a signal reaches the worker (``HELD_IMPORT``).
HELD_IF_ASKED = """
from pathlib import Path

if Path("hold").exists():
    import slowimport  # noqa: F401
from slowapp import app
"""


def test_sigttou_lets_a_worker_still_loading_go_before_a_serving_one(serve, tmp_path):
    # The oldest went first even while the newest was still loading the app:
    # nothing served until that import ended, however long it took.
    (tmp_path / "slowimport.py").write_text(HELD_IMPORT)
    (tmp_path / "heldapp.py").write_text(HELD_IF_ASKED)
    server = serve("--workers", "1", target=("heldapp:app",))
    serving = {int(server.get())}  # loaded: the hold is for the next one only
    (tmp_path / "hold").touch()
    server.proc.send_signal(signal.SIGTTIN)
    poll((tmp_path / "loading").exists)  # the new one is loading
    server.proc.send_signal(signal.SIGTTOU)
    assert poll(lambda: server.count_workers(1)) == serving
    assert {int(server.get())} == serving
    assert "could not load" not in server.log.read_text()


def test_sigttin_during_a_stop_is_ignored_and_says_so(serve, tmp_path):
    # It was dropped without a word: an operator scaling up during a drain saw nothing.
    server = serve("--workers", "1", "--graceful-timeout", "20")
    background = threading.Thread(target=lambda: server.get("/slow?3"), daemon=True)
    background.start()
    poll((tmp_path / "marker").exists)  # the request is in
    server.proc.send_signal(signal.SIGTERM)
    poll(lambda: "graceful stop" in server.log.read_text())
    server.proc.send_signal(signal.SIGTTIN)
    poll(lambda: "master: SIGTTIN ignored, the master is stopping" in server.log.read_text())
    assert server.proc.wait(timeout=30) == 0
    background.join(timeout=30)
