"""The store's circuit breaker: after failures in a row, apply the fail policy at once for a while.

While a store is down, every check waits for the store's timeout (a
connect or a read) before ``fail="open"``/``"closed"`` applies: a 0.25 s
timeout becomes 0.25 s more on every request of the site.  After
``threshold`` failures in a row (no answer between them) the breaker opens:
for ``backoff`` seconds requests skip the store.  In a row means one after
another: a request that asked the store before the last failure came back
was struck by the same stall, so the many requests in flight when Redis
pauses once count as one failure, not as many as there were threads.  Then one request (the
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

``StoreFailures``, a base of the limiter, applies the fail policy when the
store fails or is skipped, and logs the warnings an operator reads meanwhile.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import Any

import webob.exc

from ..._types import StartResponse, WSGIApplication, WSGIEnvironment
from ...forking import forget_on_fork
from ...refusals import refusal
from .stores import StoreError

__all__ = ["Breaker", "StoreFailures"]


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
        self._last_failure = 0.0  # when the last failure counted came back
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

    def failed(self, now: float, asked: float | None = None) -> bool:
        """The store failed at ``now`` a request that asked it at ``asked`` (default ``now``).

        True if that opened the breaker (the threshold's failure).
        """
        asked = now if asked is None else asked
        with self._lock:
            if self.failures == 0:
                self._down_since = asked
                self._skipped = 0
            self._skipped += 1
            if self.opened_at is None:
                if self.failures and now >= self._last_failure > asked:
                    return False  # asked before the last failure came back: the same stall
                self._last_failure = now
            self.failures += 1
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


class StoreFailures:
    """What a limiter does while its store fails: the fail policy, and the warnings saying so.

    A base of :class:`RateLimiter`, beside the :class:`Breaker` that decides when
    to skip the store.  It reads the limiter's options; the admitted request with
    a healthy store never reaches it.
    """

    app: WSGIApplication
    fail: str
    dry_run: bool
    store_backoff: float
    clock: Callable[[], float]
    logger: logging.Logger | logging.LoggerAdapter[Any]
    _breaker: Breaker
    _last_warning: float

    def _failing(self) -> str:
        if self.dry_run and self.fail == "closed":  # a dry run never refuses, not even so
            return "open (dry run; would fail closed)"
        return self.fail

    def _store_failed(
        self,
        error: StoreError,
        asked: float,
        environ: WSGIEnvironment,
        start_response: StartResponse,
    ) -> Any:
        """The store failed a request that asked it at ``asked``: the fail policy, and a warning."""
        breaker = self._breaker
        now = self.clock()  # when it came back: a request that asked before is the same stall
        if breaker.failed(now, asked):
            self._last_warning = now
            self.logger.warning(
                "RateLimiter: store failed%s (%s); failing %s without asking it for %g s, "
                "then trying one request",
                f" {breaker.threshold} times in a row" if breaker.threshold > 1 else "",
                error,
                self._failing(),
                self.store_backoff,
            )
        elif not 0 <= now - self._last_warning < 30.0:  # while it stays down (or a step)
            self._last_warning = now
            if breaker.opened_at is None:  # below the threshold: the store is still asked
                self.logger.warning(
                    "RateLimiter: store failed (%s); failing %s for this request",
                    error,
                    self._failing(),
                )
            else:
                self.logger.warning(
                    "RateLimiter: store still failing (%s); failing %s", error, self._failing()
                )
        return self._without_store(environ, start_response)

    def _store_answered(self, now: float) -> None:
        """Say when the store answers again after failing, and what it cost meanwhile."""
        closed = self._breaker.answered(now)
        if closed is not None:
            down, failed = closed
            self.logger.warning(
                "RateLimiter: store answers again after %.1f s; %d requests failed %s meanwhile",
                down,
                failed,
                self._failing(),
            )

    def _without_store(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        """The fail policy: admit (open, or any dry run) or refuse with 503 (closed)."""
        if self.fail == "open" or self.dry_run:
            return self.app(environ, start_response)
        # Not before the back-off is over: until then the answer is the same 503.
        retry = str(max(1, math.ceil(self.store_backoff)))
        unavailable = refusal(webob.exc.HTTPServiceUnavailable, headers=[("Retry-After", retry)])
        return unavailable(environ, start_response)
