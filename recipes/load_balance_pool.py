"""Spread requests over a pool of upstream HTTP servers, and survive one going away.

What it solves: two (or more) copies of a backend behind one address, with
connections kept alive and reused, a dead copy taken out by itself and
brought back by a health check, and a POST never sent twice.

Run it against your own upstreams:
    UPSTREAMS=http://10.0.0.5:8000,http://10.0.0.6:8000 \\
        wsgistack serve recipes.load_balance_pool:app --bind 127.0.0.1:8000

Or try it alone: this starts two small upstreams on loopback and the pool:
    python recipes/load_balance_pool.py

What to expect:
    curl 127.0.0.1:8000/  (repeatedly) -> "served by upstream A", then B, A, B, ...
    stop one upstream: every request still answers, from the other
    curl 127.0.0.1:8000/status -> the pool's health as JSON (a small status app below)
"""

from __future__ import annotations

import json
import os

from wsgistack.middlewares import LoadBalancer, PrefixDispatcher

UPSTREAMS = [
    u
    for u in os.environ.get("UPSTREAMS", "http://127.0.0.1:8001,http://127.0.0.1:8002").split(",")
    if u
]

pool = LoadBalancer(UPSTREAMS, strategy="round_robin", health_path="/", health_interval=2.0)


def status(environ, start_response):
    body = json.dumps(pool.status(), indent=2).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


app = PrefixDispatcher({"/status": status}, default=pool, redirect_slash=False)


def upstream(name: str):
    def answer(environ, start_response):
        body = f"served by upstream {name}\n".encode()
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]

    return answer


if __name__ == "__main__":
    from wsgistack.server import Server, serve

    with (
        Server(upstream("A"), bind="127.0.0.1:8001", workers=0),
        Server(upstream("B"), bind="127.0.0.1:8002", workers=0),
    ):
        print("upstreams A and B on 127.0.0.1:8001 and :8002; the pool on http://127.0.0.1:8000")
        serve(app, bind="127.0.0.1:8000", workers=0)
