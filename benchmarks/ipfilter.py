"""IPFilter cost per request at 10, 10,000 and 100,000 networks, against a naive filter.

The naive filter is what people write first: ``any(ip in net for net in networks)``
over ``ipaddress`` networks.  Both run in this process, in the same run.
IPFilter remembers the addresses it parsed (a bounded cache), so it is also
timed with a new client on every call, past the cache's size: the cost a
site with that many distinct clients pays.

    python benchmarks/ipfilter.py
"""

from __future__ import annotations

import argparse
import ipaddress
import itertools
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import fmt, per_call, per_call_interleaved

from wsgistack.middlewares import IPFilter
from wsgistack.netset import NetworkSet, parse_address


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


class NaiveFilter:
    def __init__(self, app, deny):
        self.app = app
        self.deny = [ipaddress.ip_network(n) for n in deny]

    def __call__(self, environ, start_response):
        ip = ipaddress.ip_address(environ["REMOTE_ADDR"])
        if any(ip in net for net in self.deny):
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"forbidden"]
        return self.app(environ, start_response)


def networks(count: int, rng: random.Random) -> list[str]:
    nets = set()
    while len(nets) < count:
        prefix = rng.randint(16, 32)
        address = rng.randint(0, 2**32 - 1) >> (32 - prefix) << (32 - prefix)
        nets.add(f"{ipaddress.IPv4Address(address)}/{prefix}")
    return sorted(nets)


def unlisted(deny: list[str], count: int) -> list[str]:
    """``count`` distinct client addresses outside ``deny`` (more than the parse cache holds)."""
    denied = NetworkSet(deny)
    start = int(ipaddress.IPv4Address("100.64.0.0"))
    found = []
    for value in range(start, start + 4 * count):
        if len(found) == count:
            break
        address = ipaddress.IPv4Address(value)
        if address not in denied:
            found.append(str(address))
    return found


def start_response(status, headers, exc_info=None):
    return None


def main() -> None:
    # No options; --help says what the script measures instead of running it.
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    rng = random.Random(7)
    environ = {"REMOTE_ADDR": "203.0.113.77", "PATH_INFO": "/", "SCRIPT_NAME": ""}
    results = {}
    print(f"{'networks':>9} {'IPFilter':>12} {'naive':>12} {'ratio':>9} {'new clients':>14}")
    for count in (10, 10_000, 100_000):
        deny = networks(count, rng)
        deny = [
            n for n in deny if ipaddress.IPv4Address("203.0.113.77") not in ipaddress.ip_network(n)
        ]
        ours = IPFilter(app, deny=deny)
        naive = NaiveFilter(app, deny)

        def call_ours(ours=ours):
            ours(dict(environ), start_response)

        def call_naive(naive=naive):
            naive(dict(environ), start_response)

        clients = itertools.cycle(unlisted(deny, 100_000))

        def call_ours_new_client(ours=ours, clients=clients):
            ours(dict(environ, REMOTE_ADDR=next(clients)), start_response)

        if count <= 10:  # as cheap as ours: the two take turns, so drift falls on both
            times = per_call_interleaved({"ours": call_ours, "naive": call_naive}, calls=20_000)
            fast, slow = times["ours"], times["naive"]
        else:  # thousands of times slower: a few calls of it, after ours
            fast = per_call(call_ours, calls=20_000)
            slow = per_call(call_naive, calls=max(5, 200_000 // count), repeat=3)
        parse_address.cache_clear()
        uncached = per_call(call_ours_new_client, calls=20_000)
        results[count] = fast
        print(f"{count:>9} {fmt(fast)} {fmt(slow)} {slow / fast:8.1f}x {fmt(uncached):>14}")
    print(f"IPFilter 100,000 vs 10 networks: {results[100_000] / results[10]:.2f}x the cost")


if __name__ == "__main__":
    main()
