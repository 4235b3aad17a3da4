"""The store's circuit breaker: after a failure, apply the fail policy at once for a while.

While a store is down, every check waits for the store's timeout (a
connect or a read) before ``fail="open"``/``"closed"`` applies: a 0.25 s
timeout becomes 0.25 s more on every request of the site.  After a failure
the breaker opens: for ``backoff`` seconds requests skip the store.  Then
one request (the probe) asks it again, while the others still skip it; its
answer closes the breaker, its failure opens it for another ``backoff``.

    breaker = Breaker(1.0)
    if breaker.opened_at is None or breaker.admit(now): ...ask the store...

Rules: one lock guards the state, and no I/O happens under it; closed, the
hot path reads one attribute.  A probe starts a new window, so a probe that
never reports (it raised something other than a store failure) holds the
breaker for one ``backoff`` only.  A window is over when the clock leaves
it either way, so a clock stepped back does not keep the store skipped.
"""

from __future__ import annotations

import threading

from ...forking import forget_on_fork

__all__ = ["Breaker"]


class Breaker:
    """Whether to ask the store now; thread-safe, one per limiter (so per worker).

    :param backoff: seconds after a failure (or a probe's start) during which
        requests skip the store.
    """

    def __init__(self, backoff: float) -> None:
        self.backoff = backoff
        self._lock = threading.Lock()
        #: When the current window began; None while the store answers (closed).
        self.opened_at: float | None = None
        self._down_since = 0.0  # the failure that opened it
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
        """The store failed; True if that opened the breaker (it was closed)."""
        with self._lock:
            opening = self.opened_at is None
            if opening:
                self._down_since = now
                self._skipped = 0
            self._skipped += 1
            self.opened_at = now
            return opening

    def answered(self, now: float) -> tuple[float, int] | None:
        """The store answered; if that closed the breaker: seconds it was down, requests failed."""
        with self._lock:
            if self.opened_at is None:  # another answer closed it meanwhile
                return None
            self.opened_at = None
            return max(0.0, now - self._down_since), self._skipped

    def __repr__(self) -> str:
        return f"Breaker(backoff={self.backoff:g})"
