"""A gateway: /legacy goes to a pool of old servers, everything else is served here.

What it solves: moving a site off a legacy backend one path at a time. The new
Flask app answers most URLs; /legacy/... is forwarded (streamed, pooled,
health-checked) to the old servers, which still see the paths they expect.

Needs: pip install flask

Run it:
    LEGACY_UPSTREAMS=http://10.0.0.5:8080,http://10.0.0.6:8080 \\
        wsgistack serve recipes.gateway_legacy:app --bind 127.0.0.1:8000

What to expect:
    curl 127.0.0.1:8000/              -> the new app
    curl 127.0.0.1:8000/legacy/report -> the legacy pool's answer for /report
                                         (X-Forwarded-Prefix: /legacy tells it where it lives)
"""

from __future__ import annotations

import os

from flask import Flask

from wsgistack import compose, use
from wsgistack.middlewares import ErrorCatcher, LoadBalancer, PrefixDispatcher

new_site = Flask(__name__)


@new_site.get("/")
def home() -> str:
    return "the new site"


LEGACY = [u for u in os.environ.get("LEGACY_UPSTREAMS", "http://127.0.0.1:8080").split(",") if u]
legacy_pool = LoadBalancer(LEGACY, strategy="least_conn", health_path="/", read_timeout=30)

app = compose(
    use(ErrorCatcher),
    PrefixDispatcher({"/legacy": legacy_pool}, default=new_site.wsgi_app),
)
