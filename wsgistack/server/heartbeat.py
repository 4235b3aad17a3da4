"""A worker's pulse, for the master's hung-worker watchdog (``watchdog.py``, --worker-timeout).

Strategy: the master maps a few bytes of anonymous shared memory before each
fork; the worker's loop thread writes the time into them on every turn (a
memory write, no system call, nothing per request) and whether it is draining.
The master reads them about once a second and only compares them with what it
read last: any change is progress, so the two processes never compare clocks
and a torn read can only look like progress, never like silence.

The loop thread beats, not the request threads: a slow request that waits on
I/O leaves the loop turning, while a C extension that holds the GIL, or a
deadlock of the loop itself, stops every beat (as gunicorn's gthread worker
notifies from its loop).

    beat = Heartbeat()          # in the master, before the fork
    beat.beat(draining=False)   # in the worker, each loop turn
    beat.silence(now)           # in the master: seconds since it last changed
"""

from __future__ import annotations

import mmap
import struct
import time

__all__ = ["Heartbeat"]

#: The time of the beat (the worker's monotonic clock) and the draining flag.
_SLOT = struct.Struct("d?")


class Heartbeat:
    """One worker's shared heartbeat slot, and the master's view of it."""

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, _SLOT.size)  # MAP_SHARED | MAP_ANONYMOUS: seen across fork
        self._seen = bytes(_SLOT.size)
        #: Master time of the last change seen; None until the worker's first beat.
        self.progress: float | None = None
        #: Master time it first saw the worker draining (a stop or a recycle began).
        self.draining_since: float | None = None
        #: Master time it sent the stack dump signal, before the kill.
        self.killed_at: float | None = None

    # -- in the worker ----------------------------------------------------------------
    def beat(self, draining: bool = False) -> None:
        """Record a turn of the worker's loop (cheap: one write to shared memory)."""
        _SLOT.pack_into(self._memory, 0, time.monotonic(), draining)

    # -- in the master ----------------------------------------------------------------
    def silence(self, now: float) -> float:
        """Seconds since the master last saw a beat change (0 before the first beat)."""
        current = self._memory[:]
        if current != self._seen:
            self._seen = current
            self.progress = now
            if _SLOT.unpack(current)[1] and self.draining_since is None:
                self.draining_since = now
        return 0.0 if self.progress is None else now - self.progress

    def close(self) -> None:
        self._memory.close()
