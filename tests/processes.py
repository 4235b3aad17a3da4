"""Processes in tests: stopping what a test started (by the PID we hold, never by
name), and forking a child to check what it inherits."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def stop_process(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM ``proc`` (the one we started); SIGKILL it if it outlives ``grace`` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def in_a_child(check: Callable[[], bool]) -> int:
    """Fork; run ``check()`` in the child, bounded; its exit code (0: it returned True).

    1: it returned something else or raised; 2: it was still running after 10 s
    (a lock copied held by the fork would hang it for ever).
    """
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code only, never return to pytest
        code = 3
        try:
            outcome: list[bool] = []
            thread = threading.Thread(target=lambda: outcome.append(check()), daemon=True)
            thread.start()
            thread.join(10)
            code = 0 if outcome == [True] else (2 if thread.is_alive() else 1)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@contextmanager
def held(*locks: Any) -> Iterator[None]:
    """Each lock held by a thread of its own for the block (as a parent's thread at a fork)."""
    holding, release = threading.Event(), threading.Event()

    def hold(lock: Any) -> None:
        with lock:
            holding.set()
            release.wait(30)

    holders = [threading.Thread(target=hold, args=(lock,), daemon=True) for lock in locks]
    try:
        for holder in holders:
            holding.clear()
            holder.start()
            assert holding.wait(10)
        yield
    finally:
        release.set()
        for holder in holders:
            holder.join(10)
