"""What the RateLimit fields call each rate, and the legacy fields when several limiters meet.

draft-ietf-httpapi-ratelimit-headers: RateLimit-Policy and RateLimit are
structured-field Lists, so limiters stacked in one pipeline (and an app or an
upstream reporting its own quota) each add members; ``X-RateLimit-*`` are
single numbers, so only one set may stay.
"""

from __future__ import annotations

from .rate import Rate

__all__ = ["policy_member", "policy_names", "tighter_legacy"]


def policy_names(name: str | None, rates: tuple[Rate, ...]) -> dict[Rate, str]:
    """Each rate's policy name: ``100-per-60s``; with a name, ``login`` (or ``api:10-per-1s``).

    The default stays the rate alone, as clients may already match on it; a
    name (no ``:`` in it) is the policy, and with several rates each policy is
    the name and its rate, so every member of the lists stays apart.  The store
    keys do not use these names: naming a limiter's policies keeps its counts.
    """
    if name is None:
        return {rate: rate.name for rate in rates}
    if len(rates) == 1:
        return {rates[0]: name}
    return {rate: f"{name}:{rate.name}" for rate in rates}


def policy_member(name: str, rate: Rate) -> str:
    """One RateLimit-Policy member: ``"100-per-60s";q=100;w=60``, the bucket a client paces by.

    ``q`` is the burst (what may come at once, and at most what ``r`` says is
    left) and ``w`` the seconds the rate takes to refill all of it, rounded up:
    a client that sends ``q`` per ``w`` keeps the configured rate and is never
    refused.  Without a burst of its own that is the rate itself (``q=100;w=60``).
    """
    refill_us = rate.burst * rate.period_us
    window = -(-refill_us // (rate.amount * 1_000_000))  # whole seconds, rounded up
    return f'"{name}";q={rate.burst};w={max(1, window)}'


_LEGACY = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


def tighter_legacy(
    theirs: list[tuple[str, str]], ours: list[tuple[str, str]], remaining: int
) -> list[tuple[str, str]]:
    """The app's headers and ours, with one set of ``X-RateLimit-*``: the tighter.

    Those fields are single numbers, not lists: an inner limiter's (or the app's,
    or an upstream's) and ours both sent read as ``"4321, 99"``.  The set with
    fewer requests left stays, as one limiter with several rates tells its
    tightest; theirs on a tie.  RateLimit and RateLimit-Policy are lists: all stay.
    """
    left = None
    for name, value in theirs:
        lower = name.lower()
        if lower == "x-ratelimit-remaining":
            left = value.strip()
        elif lower in _LEGACY and left is None:
            left = ""  # theirs, without a count to compare: ours replace them
    if left is None:
        return theirs + ours
    if left.isdigit() and int(left) <= remaining:
        return theirs + [(k, v) for k, v in ours if k.lower() not in _LEGACY]
    return [(k, v) for k, v in theirs if k.lower() not in _LEGACY] + ours
