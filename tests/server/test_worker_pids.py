"""The master names each worker it starts (``worker PID started``), so an operator
can ``kill -USR2`` the right one.  The CLI in a subprocess, the app answering its
worker's pid, signals sent by PID, every wait a bounded poll.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Set as AbstractSet

from .served import Served, poll

_STARTED = re.compile(r"worker (\d+) started$", re.MULTILINE)


def _logged(server: Served) -> list[int]:
    """The pids of the ``worker PID started`` lines, in order."""
    return [int(pid) for pid in _STARTED.findall(server.log.read_text())]


def _serving(server: Served, count: int, gone: AbstractSet[int] = frozenset()) -> set[int]:
    """The workers once there are ``count``, none of ``gone``, each one's start logged."""

    def logged() -> set[int] | None:
        pids = server.count_workers(count)
        return pids if pids and not (pids & gone) and pids <= set(_logged(server)) else None

    return poll(logged)


def test_each_worker_started_is_logged_with_its_pid(serve):
    server = serve("--workers", "2")
    first = _serving(server, 2)
    assert sorted(_logged(server)) == sorted(first)  # one line each, no other
    assert int(server.get()) in first

    victim = int(server.get())
    os.kill(victim, signal.SIGKILL)
    after = _serving(server, 2, gone={victim})
    (respawned,) = after - first
    assert _logged(server)[2:] == [respawned]

    server.proc.send_signal(signal.SIGTTIN)
    three = _serving(server, 3)
    (added,) = three - after
    assert _logged(server)[3:] == [added]

    server.proc.send_signal(signal.SIGHUP)
    new = _serving(server, 3, gone=three)
    assert sorted(_logged(server)[4:]) == sorted(new)  # three lines for three workers
    assert int(server.get()) in new
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0


def test_a_worker_recycled_by_max_requests_names_its_successor(serve):
    server = serve("--workers", "1", "--max-requests", "3")
    (first,) = _serving(server, 1)
    served = [int(server.get()) for _ in range(5)]  # 3 (no jitter under 10), then 2 more
    second = served[-1]
    assert served == [first] * 3 + [second] * 2 and second != first
    assert _logged(server) == [first, second]
