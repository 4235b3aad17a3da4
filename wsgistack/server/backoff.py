"""When the master may start its next worker, after workers that failed to start.

Rules: a worker that cannot load the app, once some worker has loaded it (a
deploy without a reload, a failed reload's lost old worker), is tried again
after 1 s, then 2, 4 ... up to ``BOOT_RETRY_MAX``: each try is a whole import
of the app, so the tries come ever more slowly while the others serve on.
The first worker that loads the app again ends the wait, so one lost or
recycled from then on is replaced at once, and a later failure waits 1 s.
A worker that crashes within a second of its start delays the next spawn by
a second: no fork storm.  What to do when no worker has ever loaded the app
(stop with status 2) is the master's decision; ``booted`` tells it.

    backoff = Backoff()
    wait = backoff.failed_to_load(now)   # a worker could not load the app
    backoff.loaded()                     # a worker said ready
    if backoff.may_spawn(now): ...
"""

from __future__ import annotations

__all__ = ["BOOT_RETRY_MAX", "Backoff"]

#: The longest wait between two tries to start a worker whose app cannot load
#: (the wait doubles from 1 s): each try is a whole import of the app.
BOOT_RETRY_MAX = 30.0


class Backoff:
    """The master's pacing of spawns: the boot back-off's wait and the time the next may start."""

    def __init__(self) -> None:
        self.booted = False  # some worker has loaded the app
        self.wait = 0.0  # after a worker could not load the app: doubles to BOOT_RETRY_MAX
        self._spawn_at = 0.0  # no worker is started before (monotonic time)

    def may_spawn(self, now: float) -> bool:
        """Whether a worker may be started at ``now``."""
        return now >= self._spawn_at

    def loaded(self) -> None:
        """A worker has loaded the app: the back-off's wait ends with it."""
        self.booted = True
        if self.wait:
            self.wait = 0.0
            self._spawn_at = 0.0

    def died(self, started: float, now: float) -> None:
        """A serving worker died with an error status: one that started under a second ago waits."""
        if now - started < 1.0:
            self._spawn_at = now + 1.0

    def failed_to_load(self, now: float) -> float:
        """A worker could not load the app although others did: the wait until the next try."""
        self.wait = min(BOOT_RETRY_MAX, max(1.0, 2 * self.wait))
        self._spawn_at = now + self.wait
        return self.wait
