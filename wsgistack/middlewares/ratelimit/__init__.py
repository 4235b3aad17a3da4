"""RateLimiter: exact limits in one process or across many, in memory or in Redis.

    app = RateLimiter(app, "100/minute")                                  # per client address
    app = RateLimiter(app, "10/second; 1000/hour", key="header:X-Api-Key",
                      store="redis://127.0.0.1:6379/0")                   # shared by all workers

The parts: ``rate`` (what is limited), ``strategies`` (how it is counted,
pure arithmetic), ``stores`` (where the counts live), ``redisclient`` (a
Redis store's URL or client, checked at start-up), ``middleware`` (the
layer).  Time comes from an injectable clock.
"""

from __future__ import annotations

from .middleware import RateLimiter, key_digest
from .rate import Rate, parse_limits
from .stores import MemoryStore, RedisStore, Store, StoreError, make_store
from .strategies import Decision, gcra, sliding_window

__all__ = [
    "Decision",
    "MemoryStore",
    "Rate",
    "RateLimiter",
    "RedisStore",
    "Store",
    "StoreError",
    "gcra",
    "key_digest",
    "make_store",
    "parse_limits",
    "sliding_window",
]
