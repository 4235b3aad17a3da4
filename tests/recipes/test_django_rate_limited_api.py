"""The Django + Redis recipe: two separate interpreters share one limit through Redis."""

from __future__ import annotations

import math
import os
import time

import redis

DRIVER = """
import json, warnings
warnings.simplefilter("error")
warnings.filterwarnings("ignore", "'cgi' is deprecated", DeprecationWarning)
from wsgiref.validate import validator
from webtest import TestApp
from recipes.django_rate_limited_api import application
site = TestApp(validator(application))
api = [site.get("/api/items/", extra_environ={"REMOTE_ADDR": "192.0.2.1"}, expect_errors=True) for _ in range(3)]
print(json.dumps({
    "statuses": [r.status_int for r in api],
    "items": api[0].json if api[0].status_int == 200 else None,
    "policy": api[0].headers.get("RateLimit-Policy"),
    "retry": api[-1].headers.get("Retry-After"),
    "home": [site.get("/", extra_environ={"REMOTE_ADDR": "192.0.2.1"}).status_int for _ in range(6)],
}))
"""


def test_two_processes_share_the_limit(in_subprocess, redis_server):
    env = {
        **os.environ,
        "RATE_LIMIT": "5/minute",
        "RATE_LIMIT_STORE": redis_server.url.replace("/0", "/7"),  # a database of its own
    }
    started = time.monotonic()
    first = in_subprocess(DRIVER, env=env)
    second = in_subprocess(DRIVER, env=env)
    elapsed = time.monotonic() - started
    assert first["statuses"] == [200, 200, 200]
    assert first["items"] == {"items": ["apple", "pear"]}
    assert first["policy"] == '"5-per-60s";q=5;w=60'
    assert second["statuses"] == [200, 200, 429]  # the other process already used three
    # 5/minute is one request per 12 s: the quota's first slot comes back 12 s
    # after the first request, less the whole seconds the two processes took.
    assert 12 - math.ceil(elapsed) <= int(second["retry"]) <= 12
    assert first["home"] == [200] * 6  # only /api is limited


BEHIND_BALANCERS = """
import json
from webtest import TestApp
from recipes.django_rate_limited_api import application
site = TestApp(application)
def statuses(client):
    via = {"REMOTE_ADDR": "10.0.0.2"}  # every request arrives from the balancer
    return [
        site.get("/api/items/", headers={"X-Forwarded-For": client}, extra_environ=via,
                 expect_errors=True).status_int
        for _ in range(3)
    ]
print(json.dumps({"a": statuses("198.51.100.1"), "b": statuses("198.51.100.2")}))
"""


def test_behind_balancers_each_client_has_its_own_count(in_subprocess, redis_server):
    env = {
        **os.environ,
        "RATE_LIMIT": "2/minute",
        "RATE_LIMIT_STORE": redis_server.url.replace("/0", "/9"),
        "TRUSTED_PROXIES": "10.0.0.0/8,192.168.0.0/16",
    }
    redis.Redis.from_url(env["RATE_LIMIT_STORE"]).flushdb()
    result = in_subprocess(BEHIND_BALANCERS, env=env)
    assert result == {"a": [200, 200, 429], "b": [200, 200, 429]}
