"""Spread requests over a pool of upstream HTTP servers, and survive one going away.

What it solves: two (or more) copies of a backend behind one address, with
connections kept alive and reused, a dead copy taken out by itself and
brought back by a health check, and a POST never sent twice.

Run it against your own upstreams:
    UPSTREAMS=http://10.0.0.5:8000,http://10.0.0.6:8000 \\
        wsgistack serve recipes.load_balance_pool:app --bind 127.0.0.1:8000

Or try it alone: this starts two small upstreams of its own (on free
loopback ports) and serves the pool on 127.0.0.1:8000 (a port as argument
changes it) until Ctrl-C:
    python recipes/load_balance_pool.py

What to expect:
    curl 127.0.0.1:8000/  (repeatedly) -> "served by upstream A", then B, A, B, ...
    stop one of your upstreams: every request still answers, from the other
    curl 127.0.0.1:8000/status -> the pool's health as JSON (a small status app below)
"""

from __future__ import annotations

import json
import os
import sys

from wsgistack.errors import ConfigError
from wsgistack.middlewares import LoadBalancer, PrefixDispatcher

UPSTREAMS = [
    u
    for u in os.environ.get("UPSTREAMS", "http://127.0.0.1:8001,http://127.0.0.1:8002").split(",")
    if u
]


def build(upstreams: list[str]) -> tuple[LoadBalancer, PrefixDispatcher]:
    """The pool over ``upstreams``, and the site: /status shows its health, the rest goes on."""
    pool = LoadBalancer(upstreams, strategy="round_robin", health_path="/", health_interval=2.0)

    def status(environ, start_response):
        body = json.dumps(pool.status(), indent=2).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]

    return pool, PrefixDispatcher({"/status": status}, default=pool, redirect_slash=False)


pool, app = build(UPSTREAMS)  # what wsgistack serve recipes.load_balance_pool:app serves


def upstream(name: str):
    def answer(environ, start_response):
        body = f"served by upstream {name}\n".encode()
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]

    return answer


def main(port: int = 8000) -> int:
    from wsgistack import Server

    with (
        Server(upstream("A"), bind="127.0.0.1:0", workers=0) as a,
        Server(upstream("B"), bind="127.0.0.1:0", workers=0) as b,
    ):
        local_pool, local_app = build([a.url, b.url])
        server = Server(local_app, bind=f"127.0.0.1:{port}", workers=0)
        server.bind()
        print(f"upstreams A ({a.url}) and B ({b.url}); the pool listening on {server.url}")
        sys.stdout.flush()
        try:
            return server.serve_forever()  # Ctrl-C stops it
        finally:
            local_pool.close()


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if len(arguments) > 1 or not all(argument.isdigit() for argument in arguments):
        sys.exit(f"usage: python {sys.argv[0]} [PORT]")
    try:
        sys.exit(main(int(arguments[0]) if arguments else 8000))
    except ConfigError as exc:  # the port is taken (another demo?) or out of range
        sys.exit(f"{sys.argv[0]}: {exc}")
