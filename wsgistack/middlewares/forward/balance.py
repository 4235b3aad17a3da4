"""Balancing strategies: pure objects that pick an upstream and hear when it is released.

- ``round_robin``: smooth weighted round robin, as nginx does it: weights
  spread evenly (5:1:1 gives a a b a c a a, not a a a a a b c).
- ``least_conn``: the fewest requests in flight, weighted.
- ``p2c``: the power of two choices: two at random, the less loaded wins.
- ``hash``: consistent hashing on a key (sticky sessions); each upstream owns
  many points on a ring, so removing one of n moves only about 1/n of keys.
"""

from __future__ import annotations

import hashlib
import random
import threading
from bisect import bisect
from collections.abc import Sequence

from ...forking import forget_on_fork
from .upstream import Upstream

__all__ = ["STRATEGIES", "ConsistentHash", "LeastConnections", "PowerOfTwo", "SmoothRoundRobin"]


class SmoothRoundRobin:
    def __init__(self, upstreams: Sequence[Upstream]) -> None:
        self._current = {id(u): 0 for u in upstreams}
        self._lock = threading.Lock()
        forget_on_fork(self)

    def _forked(self) -> None:
        """In a new child: a new lock, in case a thread of the parent held the old one."""
        self._lock = threading.Lock()

    def pick(self, candidates: Sequence[Upstream], key: str | None = None) -> Upstream:
        with self._lock:
            total = 0
            best = None
            for upstream in candidates:
                self._current[id(upstream)] += upstream.weight
                total += upstream.weight
                if best is None or self._current[id(upstream)] > self._current[id(best)]:
                    best = upstream
            if best is None:
                raise ValueError("no upstream to pick from")
            self._current[id(best)] -= total
            return best


class LeastConnections:
    def __init__(self, upstreams: Sequence[Upstream]) -> None:
        self._turn = 0

    def pick(self, candidates: Sequence[Upstream], key: str | None = None) -> Upstream:
        self._turn += 1
        start = self._turn % len(candidates)  # rotate ties, so equals share the load
        ordered = [*candidates[start:], *candidates[:start]]
        return min(ordered, key=lambda u: u.active / u.weight)


class PowerOfTwo:
    def __init__(self, upstreams: Sequence[Upstream], rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def pick(self, candidates: Sequence[Upstream], key: str | None = None) -> Upstream:
        if len(candidates) == 1:
            return candidates[0]
        a, b = self._rng.sample(list(candidates), 2)
        return a if a.active / a.weight <= b.active / b.weight else b


def _point(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class ConsistentHash:
    """A ring with ``points`` virtual nodes per unit of weight."""

    def __init__(self, upstreams: Sequence[Upstream], points: int = 160) -> None:
        ring = sorted(
            (_point(f"{u.url}#{n}"), index)
            for index, u in enumerate(upstreams)
            for n in range(points * u.weight)
        )
        self._hashes = [h for h, _ in ring]
        self._owners = [upstreams[i] for _, i in ring]

    def pick(self, candidates: Sequence[Upstream], key: str | None = None) -> Upstream:
        allowed = {id(u) for u in candidates}
        start = bisect(self._hashes, _point(key or ""))
        size = len(self._owners)
        for step in range(size):  # walk clockwise to the first available owner
            owner = self._owners[(start + step) % size]
            if id(owner) in allowed:
                return owner
        return candidates[0]


Picker = SmoothRoundRobin | LeastConnections | PowerOfTwo | ConsistentHash

STRATEGIES: dict[str, type[Picker]] = {
    "round_robin": SmoothRoundRobin,
    "least_conn": LeastConnections,
    "p2c": PowerOfTwo,
    "hash": ConsistentHash,
}
