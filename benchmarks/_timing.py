"""Shared timing helpers for the in-process benchmarks: best-of-N per-call cost."""

from __future__ import annotations

import time
from collections.abc import Callable


def per_call(func: Callable[[], object], *, calls: int, repeat: int = 5) -> float:
    """Seconds per call, the best of ``repeat`` runs of ``calls`` calls (least noisy)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            func()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def per_call_interleaved(
    funcs: dict[str, Callable[[], object]],
    *,
    calls: int,
    repeat: int = 7,
    pick: Callable[[list[float]], float] = min,
) -> dict[str, float]:
    """Seconds per call of each function over ``repeat`` turns taken in rotation.

    Taking turns puts a slow spell of a shared machine on every function alike,
    where timing one after the other would put it on whichever ran then.
    ``pick`` reduces each function's turns: the best (``min``, for CPU-bound
    code) or ``statistics.median`` (for round trips, whose floor is noise).
    """
    turns: dict[str, list[float]] = {name: [] for name in funcs}
    names = list(funcs)
    for turn in range(repeat):
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            func = funcs[name]
            start = time.perf_counter()
            for _ in range(calls):
                func()
            turns[name].append((time.perf_counter() - start) / calls)
    return {name: pick(times) for name, times in turns.items()}


def fmt(seconds: float) -> str:
    """A per-call cost in microseconds."""
    return f"{seconds * 1e6:9.2f} us"
