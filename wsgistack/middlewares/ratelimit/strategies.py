"""How limits are counted: pure arithmetic on one key's state, no storage, no clock.

GCRA (the generic cell rate algorithm) keeps one number per key and rate, the
theoretical arrival time (TAT): a request at ``now`` is admitted when
``max(TAT, now) + interval - burst * interval <= now``, and then moves TAT on
by one interval.  It is a token bucket with exact, O(1) arithmetic.

The sliding-window counter keeps the counts of the current and the previous
fixed window and weighs the previous one by how much of it still overlaps
the sliding window: cheaper to explain, approximate at window edges.

The Redis store runs the same arithmetic in Lua (``stores.py``); the tests
check both against a reference model.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .rate import Rate

__all__ = ["Decision", "gcra", "sliding_window"]


class Decision(NamedTuple):
    """One rate's answer for one request (a tuple: made on every request, so cheap)."""

    rate: Rate
    allowed: bool
    remaining: int
    reset: float  # seconds until the full quota is back
    retry_after: float  # seconds until a refused request would be admitted (0 if admitted)


def gcra(rate: Rate, tat: float | None, now: float) -> tuple[Decision, float | None]:
    """Decide on one request; returns the decision and the new TAT (None: unchanged)."""
    interval = rate.interval
    base = now if tat is None or tat < now else tat
    new_tat = base + interval
    allow_at = new_tat - rate.burst * interval
    if allow_at > now + 1e-9:
        return Decision(rate, False, 0, base - now, allow_at - now), None
    remaining = int((now - allow_at) / interval + 1e-9)
    return Decision(rate, True, remaining, new_tat - now, 0.0), new_tat


def sliding_window(
    rate: Rate, state: tuple[float, int, int] | None, now: float
) -> tuple[Decision, tuple[float, int, int] | None]:
    """Decide on one request with a sliding-window counter.

    ``state`` is (current window start, previous count, current count).
    """
    period = rate.period
    start = math.floor(now / period) * period
    previous = current = 0
    if state is not None:
        old_start, old_previous, old_current = state
        if old_start == start:
            previous, current = old_previous, old_current
        elif old_start == start - period:
            previous = old_current
    elapsed = now - start
    weight = 1.0 - elapsed / period
    estimate = previous * weight + current
    if estimate + 1 > rate.amount + 1e-9:
        if current + 1 > rate.amount:
            # Full in this window: wait for the next, where this window weighs in.
            need = 1.0 - (rate.amount - 1) / current if current else 0.0
            retry = (period - elapsed) + max(0.0, need) * period
        else:
            # Wait until the previous window's weight has decayed enough.
            retry = period * (1.0 - (rate.amount - 1 - current) / previous) - elapsed
        return Decision(rate, False, 0, period - elapsed, max(retry, 0.001)), None
    remaining = int(rate.amount - (estimate + 1))
    return Decision(rate, True, max(remaining, 0), period - elapsed, 0.0), (
        start,
        previous,
        current + 1,
    )
