"""How limits are counted: pure arithmetic on one key's state, no storage, no clock.

GCRA (the generic cell rate algorithm) keeps one number per key and rate, the
theoretical arrival time (TAT): a request at ``now`` is admitted when
``max(TAT, now) + interval - burst * interval <= now``, and then moves TAT on
by one interval.  It is a token bucket with exact, O(1) arithmetic.

Exact means integers: at ``time.time()`` values (1.7e9 s) a float's step is
2.4e-7 s, enough to refuse the last request of a burst.  Times are whole
microseconds, and GCRA counts in ticks small enough that an interval is a whole
number of them (``Rate.ticks_per_us``, ``Rate.interval_ticks``).  TAT is kept
as (whole microseconds, ticks): every number stays below 2**53, exact in Redis's
Lua doubles too.

The sliding-window counter keeps the counts of the current and the previous
fixed window and weighs the previous one by how much of it still overlaps
the sliding window: cheaper to explain, approximate at window edges.  Its
window starts are whole microseconds too, and its float arithmetic runs in the
same order in Lua, so both stores answer alike.

The Redis store runs the same arithmetic in Lua (``stores.py``); the tests
check both against a reference model.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

from .rate import SKEW, Rate

__all__ = ["Decision", "GcraState", "WindowState", "gcra", "microseconds", "sliding_window"]

#: GCRA's state: the TAT as (whole microseconds, ticks past them).
GcraState = tuple[int, int]
#: The sliding window's state: (window start in microseconds, previous count, current count).
WindowState = tuple[int, int, int]


class Decision(NamedTuple):
    """One rate's answer for one request (a tuple: made on every request, so cheap)."""

    rate: Rate
    allowed: bool
    remaining: int
    reset: float  # seconds until the full quota is back (refused: never before retry_after)
    retry_after: float  # seconds until a refused request would be admitted (0 if admitted)


#: A Decision made from the tuple of its fields, in C: ``Decision(...)`` would run the
#: ``__new__`` that NamedTuple writes in Python, on every request.
_decided = partial(tuple.__new__, Decision)


def microseconds(seconds: float) -> int:
    """Whole microseconds: the one rounding of a clock reading, in Python and Lua alike."""
    return round(seconds * 1_000_000)


def gcra(rate: Rate, tat: GcraState | None, now: float) -> tuple[Decision, GcraState | None]:
    """Decide on one request; returns the decision and the new TAT (None: unchanged)."""
    per_us = rate.ticks_per_us
    now_us = round(now * 1_000_000)  # microseconds(now), inline: this runs per request
    if tat is None:
        ahead = 0  # TAT - now, in ticks
    else:
        ahead = (tat[0] - now_us) * per_us + tat[1]
        if ahead < 0:
            ahead = 0
        elif ahead > rate.horizon_ticks:
            # Further ahead than any burst leaves (and SKEW): set by a clock before it stepped
            # back.  Dropped, as Redis's TTL drops it, not held against the client
            # until the clock catches up (an hour's refusals for an hour's step).
            ahead = 0
    room = rate.room_ticks - ahead
    if room < 0:
        per_second = rate.ticks_per_second
        return _decided((rate, False, 0, ahead / per_second, -room / per_second)), None
    step = rate.interval_ticks
    ahead += step
    if per_us == 1:  # intervals of whole microseconds: most rates
        return _decided((rate, True, room // step, ahead / 1_000_000, 0.0)), (now_us + ahead, 0)
    whole, ticks = divmod(ahead, per_us)
    decision = _decided((rate, True, room // step, ahead / rate.ticks_per_second, 0.0))
    return decision, (now_us + whole, ticks)


def sliding_window(
    rate: Rate, state: WindowState | None, now: float
) -> tuple[Decision, WindowState | None]:
    """Decide on one request with a sliding-window counter.

    ``state`` is (current window start in microseconds, previous count, current count).
    A stored window ahead of ``now`` (another host's clock, or this one stepped
    back) is kept with its counts, weighed as if it had just begun: a window
    never moves backwards, so a late clock cannot reopen a spent quota.  A window
    further ahead than one window and ``SKEW`` is from a clock that has stepped back
    since: it is dropped (as Redis's TTL drops it), not held until the clock catches up.
    """
    period = rate.period_us
    now_us = microseconds(now)
    start = now_us - now_us % period
    previous = current = 0
    if state is not None:
        old_start, old_previous, old_current = state
        if old_start >= start:
            if old_start - start <= period + SKEW * 1_000_000:
                start, previous, current = old_start, old_previous, old_current
        elif old_start == start - period:
            previous = old_current
    elapsed = now_us - start  # negative while the stored window is ahead of this clock
    weight = (period - max(elapsed, 0)) / period
    estimate = previous * weight + current
    if estimate + 1 > rate.amount + 1e-9:
        if current + 1 > rate.amount:
            # Full in this window: wait for the next, where this window weighs in.
            need = max(0.0, 1.0 - (rate.amount - 1) / current)
            retry = (period - elapsed) + need * period
        else:
            # Wait until the previous window's weight has decayed enough.
            retry = period * (1.0 - (rate.amount - 1 - current) / previous) - elapsed
        retry = max(retry, 1000.0)  # at least a millisecond
        # Refused, the window's end is no reset: the client has room again only
        # after `retry`, so the RateLimit field never promises sooner than Retry-After.
        reset = max(period - elapsed, retry)
        return _decided((rate, False, 0, reset / 1_000_000, retry / 1_000_000)), None
    remaining = max(int(rate.amount - (estimate + 1)), 0)
    return _decided((rate, True, remaining, (period - elapsed) / 1_000_000, 0.0)), (
        start,
        previous,
        current + 1,
    )
