"""Rate-limit checks per second against the ``limits`` library, in memory and on Redis.

Same run, same load: our GCRA and sliding-window stores against limits'
moving-window, sliding-window-counter and fixed-window strategies, each on
its own fresh storage, checking a per-client limit (100/minute) for 10,000
clients in turn, so no key is refused or grows long (limits' moving window
keeps a list per key that costs in proportion to its length).  The stores
take turns over several rounds and the medians are reported.  Then the
middleware's added cost per request around a hello-world app (memory store).
A Redis server (``tests/redis_server.py``) is started on a free loopback port
for the run and stopped by PID.

    python benchmarks/ratelimit.py
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from statistics import median

import limits
import limits.storage
import limits.strategies

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import fmt, per_call, per_call_interleaved
from _wrk import ROOT

sys.path.insert(0, str(ROOT))
from tests.redis_server import RedisServer
from wsgistack.middlewares import RateLimiter
from wsgistack.middlewares.ratelimit import MemoryStore, RedisStore, parse_limits


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def start_response(status, headers, exc_info=None):
    return None


ROUNDS = 6
MOVING = limits.strategies.MovingWindowRateLimiter
SLIDING = limits.strategies.SlidingWindowCounterRateLimiter
FIXED = limits.strategies.FixedWindowRateLimiter


def take_turns(contenders: list[tuple[str, Callable[[], object]]], calls: int) -> dict[str, float]:
    """Median checks per second of each, over ``ROUNDS`` rounds in a rotated order."""
    times = per_call_interleaved(dict(contenders), calls=calls, repeat=ROUNDS, pick=median)
    return {name: 1.0 / seconds for name, seconds in times.items()}


def main() -> None:
    # No options; --help says what the script measures instead of running it.
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    print(f"limits {version('limits')}, redis-py {version('redis')}")
    rate_text = "100/minute"  # per client: 10,000 clients, never refused during the run
    ours = parse_limits(rate_text)
    item = limits.parse(rate_text)

    def clients(prefix: str) -> Callable[[], str]:
        """The next of 10,000 client keys, in turn (each contender has its own)."""
        return itertools.cycle([f"{prefix}{n}" for n in range(10_000)]).__next__

    def limits_hit(strategy, storage, prefix: str):
        limiter, key = strategy(storage), clients(prefix)
        return lambda: limiter.hit(item, key())

    def ours_check(store, algorithm: str, prefix: str):
        key = clients(prefix)
        return lambda: store.check(key(), ours, algorithm, time.time())

    memory = [
        ("wsgistack GCRA", ours_check(MemoryStore(), "gcra", "g")),
        ("wsgistack sliding window", ours_check(MemoryStore(), "sliding_window", "s")),
        ("limits moving window", limits_hit(MOVING, limits.storage.MemoryStorage(), "m")),
        ("limits sliding window", limits_hit(SLIDING, limits.storage.MemoryStorage(), "w")),
        ("limits fixed window", limits_hit(FIXED, limits.storage.MemoryStorage(), "f")),
    ]
    rows = [("memory", name, rate) for name, rate in take_turns(memory, 20_000).items()]

    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(directory)
        server.start()
        try:
            url = server.url
            redis_store = RedisStore(url)
            redis = [
                ("wsgistack GCRA", ours_check(redis_store, "gcra", "g")),
                ("wsgistack sliding window", ours_check(redis_store, "sliding_window", "s")),
                ("limits moving window", limits_hit(MOVING, limits.storage.RedisStorage(url), "m")),
                (
                    "limits sliding window",
                    limits_hit(SLIDING, limits.storage.RedisStorage(url), "w"),
                ),
                ("limits fixed window", limits_hit(FIXED, limits.storage.RedisStorage(url), "f")),
            ]
            # A round trip is mostly the network and Redis itself.
            rows += [("redis", name, rate) for name, rate in take_turns(redis, 2_000).items()]
            # Round trips per check, counted by Redis itself: client commands only
            # (GET/SET run inside the script and are counted apart).
            client = redis_store.client
            client.config_resetstat()
            for _ in range(100):
                redis_store.check("rt", ours, "gcra", time.time())
            stats = client.info("commandstats")
            calls = {name: entry["calls"] for name, entry in stats.items()}
            round_trips = calls.get("cmdstat_evalsha", 0) / 100
        finally:
            server.stop()

    print(f"\n{'store':<7} {'implementation':<26} {'checks/s':>10}")
    for store, name, rate in rows:
        print(f"{store:<7} {name:<26} {rate:>10.0f}")
    by = {(s, n): r for s, n, r in rows}
    for store in ("memory", "redis"):
        smooth = max(by[(store, "limits moving window")], by[(store, "limits sliding window")])
        ours_rate = by[(store, "wsgistack GCRA")]
        print(
            f"{store}: wsgistack GCRA is {ours_rate / smooth:.2f}x the faster of limits' "
            f"sliding strategies, {ours_rate / by[(store, 'limits fixed window')]:.2f}x its "
            "fixed window"
        )
    print(f"redis: EVALSHA round trips per wsgistack check: {round_trips:.2f}")

    environ = {
        "REMOTE_ADDR": "192.0.2.1",
        "PATH_INFO": "/",
        "SCRIPT_NAME": "",
        "REQUEST_METHOD": "GET",
    }
    # One client, never refused (a refusal builds a 429): the check's own cost.
    limited = RateLimiter(hello, "1000000000/hour")
    bare = per_call(lambda: hello(dict(environ), start_response), calls=100_000)
    wrapped = per_call(lambda: limited(dict(environ), start_response), calls=100_000)
    print(f"\nmiddleware added cost per request (memory): {fmt(wrapped - bare)}")


if __name__ == "__main__":
    main()
