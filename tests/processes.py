"""Stopping what a test started: by the PID we hold, never by name."""

from __future__ import annotations

import subprocess


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
