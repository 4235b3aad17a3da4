"""Rate-limit checks per second against the ``limits`` library, in memory and on Redis.

Same run, same keys: our GCRA and sliding-window stores against limits'
moving-window and sliding-window-counter strategies.  On Redis they take
turns over several rounds and the medians are reported.  Then the middleware's
added cost per request around a hello-world app (memory store).  A Redis
server (``tests/redis_server.py``) is started on a free loopback port for the run
and stopped by PID.

    python benchmarks/ratelimit.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from statistics import median

import limits
import limits.storage
import limits.strategies

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import fmt, per_call
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


REDIS_ROUNDS = 6


def checks_per_second(func, calls: int) -> float:
    return 1.0 / per_call(func, calls=calls, repeat=3)


def main() -> None:
    # No options; --help says what the script measures instead of running it.
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    print(f"limits {version('limits')}, redis-py {version('redis')}")
    rate_text = "1000000/hour"  # never refuses during the run: measures the check itself
    ours = parse_limits(rate_text)
    item = limits.parse(rate_text)
    rows = []

    memory = MemoryStore()
    rows.append(
        (
            "memory",
            "wsgistack GCRA",
            checks_per_second(lambda: memory.check("k", ours, "gcra", time.time()), 50_000),
        )
    )
    rows.append(
        (
            "memory",
            "wsgistack sliding window",
            checks_per_second(
                lambda: memory.check("s", ours, "sliding_window", time.time()), 50_000
            ),
        )
    )
    storage = limits.storage.MemoryStorage()
    moving = limits.strategies.MovingWindowRateLimiter(storage)
    sliding = limits.strategies.SlidingWindowCounterRateLimiter(storage)
    rows.append(
        ("memory", "limits moving window", checks_per_second(lambda: moving.hit(item, "k"), 20_000))
    )
    rows.append(
        (
            "memory",
            "limits sliding window",
            checks_per_second(lambda: sliding.hit(item, "s"), 20_000),
        )
    )

    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(directory)
        server.start()
        try:
            url = server.url
            redis_store = RedisStore(url)
            rstorage = limits.storage.RedisStorage(url)
            rmoving = limits.strategies.MovingWindowRateLimiter(rstorage)
            rsliding = limits.strategies.SlidingWindowCounterRateLimiter(rstorage)
            contenders = [
                ("wsgistack GCRA", lambda: redis_store.check("k", ours, "gcra", time.time())),
                (
                    "wsgistack sliding window",
                    lambda: redis_store.check("s", ours, "sliding_window", time.time()),
                ),
                ("limits moving window", lambda: rmoving.hit(item, "k2")),
                ("limits sliding window", lambda: rsliding.hit(item, "s2")),
            ]
            # A round trip is mostly the network and Redis itself, and this machine
            # drifts: the four take turns, in a rotated order, and medians are kept.
            measured: dict[str, list[float]] = {name: [] for name, _ in contenders}
            for round_ in range(REDIS_ROUNDS):
                shift = round_ % len(contenders)
                for name, check in contenders[shift:] + contenders[:shift]:
                    measured[name].append(checks_per_second(check, 2_000))
            rows += [("redis", name, median(rates)) for name, rates in measured.items()]
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
        best_theirs = max(by[(store, "limits moving window")], by[(store, "limits sliding window")])
        ratio = by[(store, "wsgistack GCRA")] / best_theirs
        print(f"{store}: wsgistack GCRA is {ratio:.2f}x limits' faster strategy")
    print(f"redis: EVALSHA round trips per wsgistack check: {round_trips:.2f}")

    environ = {
        "REMOTE_ADDR": "192.0.2.1",
        "PATH_INFO": "/",
        "SCRIPT_NAME": "",
        "REQUEST_METHOD": "GET",
    }
    limited = RateLimiter(hello, rate_text)
    bare = per_call(lambda: hello(dict(environ), start_response), calls=100_000)
    wrapped = per_call(lambda: limited(dict(environ), start_response), calls=100_000)
    print(f"\nmiddleware added cost per request (memory): {fmt(wrapped - bare)}")


if __name__ == "__main__":
    main()
