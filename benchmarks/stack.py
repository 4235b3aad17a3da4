"""A whole stack's cost per request, against the nearest equivalent from werkzeug/webob/limits.

Ours: ErrorCatcher + IPFilter (10,000 networks) + RateLimiter (memory) +
PrefixDispatcher (3 mounts) around hello world.  Theirs, as a competent user
builds it today: werkzeug's ProxyFix and DispatcherMiddleware, webob
``wsgify`` middlewares for the error catcher and the IP filter, and
``limits``' fixed window (its cheapest strategy, Flask-Limiter's default)
for the rate limit.  Both sides trust one proxy hop.  The IP filter is
written two ways: the scan of ``ipaddress`` networks found in most snippets,
and an indexed one (``collapse_addresses``, then a bisect over the ranges),
which is what a user who cared about speed would write; the ratio that
counts is against the indexed one.  The networks are scattered, so neither
side can merge them away.  In process the three stacks are timed in
alternating turns; then our stack is served by the reference server against
the bare app, with wrk: both servers up at once, measured in alternating
turns, medians reported.  ``--app django`` serves the same stack around a
small Django project against that project alone (served part only): what
the layers cost a site whose app does some work of its own.

    python benchmarks/stack.py [--seconds 5] [--rounds 4] [--app hello|django]
"""

from __future__ import annotations

import argparse
import bisect
import ipaddress
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from statistics import median

import limits
import limits.storage
import limits.strategies
import webob.dec
import webob.exc
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.middleware.proxy_fix import ProxyFix

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _timing import fmt, per_call, per_call_interleaved
from _wrk import free_port, group_cpu_seconds, start, stop, wait_listening, wrk

from benchmarks.apps import deny_networks, hello, stack


def scanning_filter():
    """Denied if any network holds the address: the usual snippet."""
    networks = [ipaddress.ip_network(n) for n in deny_networks()]

    def denied(address: str) -> bool:
        client = ipaddress.ip_address(address)
        return any(client in network for network in networks)

    return denied


def indexed_filter():
    """Denied if the bisected range holds the address: collapsed ranges, sorted."""
    collapsed = ipaddress.collapse_addresses(ipaddress.ip_network(n) for n in deny_networks())
    ranges = sorted((int(n.network_address), int(n.broadcast_address)) for n in collapsed)
    starts = [start for start, _ in ranges]

    def denied(address: str) -> bool:
        value = int(ipaddress.ip_address(address))
        index = bisect.bisect_right(starts, value) - 1
        return index >= 0 and value <= ranges[index][1]

    return denied


def their_stack(denied):
    limiter = limits.strategies.FixedWindowRateLimiter(limits.storage.MemoryStorage())
    rate = limits.parse("1000000000/hour")

    @webob.dec.wsgify.middleware
    def catch_errors(request, app):
        try:
            return request.get_response(app)
        except Exception:
            return webob.exc.HTTPInternalServerError()

    @webob.dec.wsgify.middleware
    def ip_filter(request, app):
        if denied(request.remote_addr):
            return webob.exc.HTTPForbidden()
        return request.get_response(app)

    @webob.dec.wsgify.middleware
    def rate_limit(request, app):
        if not limiter.hit(rate, request.remote_addr):
            return webob.exc.HTTPTooManyRequests()
        return request.get_response(app)

    dispatcher = DispatcherMiddleware(hello, {"/a": hello, "/b": hello, "/c": hello})
    return catch_errors(ProxyFix(ip_filter(rate_limit(dispatcher)), x_for=1))


def start_response(status, headers, exc_info=None):
    return None


def call(app, environ):
    result = app(dict(environ), start_response)
    for _ in result:
        pass
    close = getattr(result, "close", None)
    if close:
        close()


def serve(spec: str, port: int) -> subprocess.Popen:
    return start(
        [
            *(sys.executable, "-m", "wsgistack.cli", "serve", spec),
            *("--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4"),
            *("--log-level", "warning"),
        ]
    )


def served(seconds: int, rounds: int, app: str) -> dict[str, tuple[float, float]]:
    """Median (req/s, server CPU us per request) of the bare ``app`` and of the stack around it.

    Both are up at once and measured in turns, so a slow spell of the machine
    falls on both.
    """
    ports = {"bare": free_port(), "stack": free_port()}
    bare = "benchmarks.apps:hello" if app == "hello" else "benchmarks.apps:django_hello()"
    procs = [serve(bare, ports["bare"])]
    procs.append(serve(f"benchmarks.apps:stack({app!r})", ports["stack"]))
    rps: dict[str, list[float]] = {"bare": [], "stack": []}
    cpu: dict[str, list[float]] = {"bare": [], "stack": []}
    try:
        for port in ports.values():
            wait_listening(port)
        for round_ in range(rounds):
            order = ["bare", "stack"] if round_ % 2 == 0 else ["stack", "bare"]
            for name in order:
                url = f"http://127.0.0.1:{ports[name]}/b/x"
                proc = procs[list(ports).index(name)]
                wrk(url, seconds=1, connections=50)
                before = group_cpu_seconds(proc)
                result = wrk(url, seconds=seconds, connections=50)
                used = group_cpu_seconds(proc) - before
                rps[name].append(result["rps"])
                cpu[name].append(used / (result["rps"] * seconds) * 1e6)
    finally:
        for proc in procs:
            stop(proc)
    return {name: (median(rps[name]), median(cpu[name])) for name in ports}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--app", choices=("hello", "django"), default="hello")
    args = parser.parse_args()
    if args.app == "hello":
        in_process()
    else:
        print(f"Django {version('django')}")
    results = served(args.seconds, args.rounds, args.app)
    (bare_rps, bare_cpu), (stack_rps, stack_cpu) = results["bare"], results["stack"]
    print(f"\nserved by wsgistack (wrk, keep-alive), medians of {args.rounds} rounds:")
    print(f"bare {args.app:6s} {bare_rps:8.0f} req/s  {bare_cpu:6.1f} us server CPU per request")
    print(f"stack       {stack_rps:8.0f} req/s  {stack_cpu:6.1f} us server CPU per request")
    print(
        f"the stack: {(1 - stack_rps / bare_rps) * 100:.1f}% fewer req/s, "
        f"{(stack_cpu / bare_cpu - 1) * 100:.1f}% more CPU per request"
    )


def in_process() -> None:
    """Our stack against the werkzeug/webob/limits equivalent, called in a loop."""
    print(f"werkzeug {version('werkzeug')}, webob {version('webob')}, limits {version('limits')}")
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/b/x",
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "REMOTE_ADDR": "203.0.113.9",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "HTTP_HOST": "localhost",
    }
    times = per_call_interleaved(
        {
            "bare": lambda: call(hello, environ),
            "ours": lambda: call(OURS, environ),
            "indexed": lambda: call(THEIRS_INDEXED, environ),
        },
        calls=20_000,
    )
    scanning = per_call(lambda: call(THEIRS_SCANNING, environ), calls=200, repeat=3)
    bare, ours, indexed = times["bare"], times["ours"], times["indexed"]
    print(f"bare app                          {fmt(bare)}")
    print(f"wsgistack stack                   {fmt(ours)}  (+{fmt(ours - bare).strip()})")
    print(f"werkzeug/webob/limits, indexed    {fmt(indexed)}  (+{fmt(indexed - bare).strip()})")
    print(f"werkzeug/webob/limits, scanning   {fmt(scanning)}  (+{fmt(scanning - bare).strip()})")
    print(f"added cost: ours is {(indexed - bare) / (ours - bare):.1f}x lighter than the indexed")
    print(f"            ({(scanning - bare) / (ours - bare):.0f}x lighter than the scanning one)")


OURS = stack()
THEIRS_INDEXED = their_stack(indexed_filter())
THEIRS_SCANNING = their_stack(scanning_filter())

if __name__ == "__main__":
    main()
