"""The store's circuit breaker: after failures in a row, apply the fail policy at once for a while.

While a store is down, every check waits for the store's timeout (a
connect or a read) before ``fail="open"``/``"closed"`` applies: a 0.25 s
timeout becomes 0.25 s more on every request of the site.  After
``threshold`` failures in a row (no answer between them) the breaker opens:
for ``backoff`` seconds requests skip the store.  Then one request (the
probe) asks it again, while the others still skip it; its answer closes the
breaker, its failure opens it for another ``backoff``.  A lone failure (one
slow reply while Redis forks to save, a failover's first second) costs the
request it struck, not every request of the next ``backoff``.

    breaker = Breaker(1.0, threshold=3)
    if breaker.opened_at is None or breaker.admit(now): ...ask the store...

Rules: one lock guards the state, and no I/O happens under it; closed and
healthy, the hot path reads one attribute before and one after the store.
A probe starts a new window, so a probe that never reports (it raised
something other than a store failure) holds the breaker for one ``backoff``
only.  A window is over when the clock leaves it either way, so a clock
stepped back does not keep the store skipped.
"""

from __future__ import annotations

import threading

from ...forking import forget_on_fork

__all__ = ["Breaker"]


class Breaker:
    """Whether to ask the store now; thread-safe, one per limiter (so per worker).

    :param backoff: seconds after the opening failure (or a probe's start)
        during which requests skip the store.
    :param threshold: failures in a row that open the breaker.
    """

    def __init__(self, backoff: float, threshold: int = 1) -> None:
        self.backoff = backoff
        self.threshold = threshold
        self._lock = threading.Lock()
        #: When the current window began; None while the store is asked (closed).
        self.opened_at: float | None = None
        #: Store failures since its last answer (>= threshold while open).
        self.failures = 0
        self._down_since = 0.0  # the first failure of the run
        self._skipped = 0  # requests that got the fail policy since then
        forget_on_fork(self)

    def _forked(self) -> None:
        """In a new child: a new lock, in case a thread of the parent held the old one."""
        self._lock = threading.Lock()

    def admit(self, now: float) -> bool:
        """True: ask the store (closed, or this request is the probe); False: skip it."""
        with self._lock:
            opened = self.opened_at
            if opened is None:
                return True
            if opened <= now < opened + self.backoff:
                self._skipped += 1
                return False
            self.opened_at = now  # this request probes; the others wait a window more
            return True

    def failed(self, now: float) -> bool:
        """The store failed; True if that opened the breaker (the threshold's failure)."""
        with self._lock:
            if self.failures == 0:
                self._down_since = now
                self._skipped = 0
            self.failures += 1
            self._skipped += 1
            if self.opened_at is None and self.failures < self.threshold:
                return False  # still closed: the next request asks the store again
            opening = self.opened_at is None
            self.opened_at = now
            return opening

    def answered(self, now: float) -> tuple[float, int] | None:
        """The store answered; if that closed the breaker: seconds it was down, requests failed.

        Called only when ``failures`` is not 0; answers after failures that did not
        open it just end their run (None).
        """
        with self._lock:
            self.failures = 0
            if self.opened_at is None:  # below the threshold, or another answer closed it
                return None
            self.opened_at = None
            return max(0.0, now - self._down_since), self._skipped

    def __repr__(self) -> str:
        return f"Breaker(backoff={self.backoff:g}, threshold={self.threshold})"
