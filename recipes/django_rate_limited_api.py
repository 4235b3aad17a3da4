"""A Django project's wsgi.py with a rate-limited API, the limits shared through Redis.

What it solves: every worker process (and every host) of the site must count
against the same limit, so "100/minute" stays 100 with 4 workers, not 400.
Only the API (/api/...) is limited; each client address has its own count.
Behind load balancers, name them (TRUSTED_PROXIES=10.0.0.0/8, comma-separated):
otherwise every client counts as the balancer's address and they share one limit.

Needs: pip install django redis

Run it (a Redis on 127.0.0.1:6379, or set RATE_LIMIT_STORE):
    wsgistack serve recipes.django_rate_limited_api:application --workers 4 --bind 127.0.0.1:8000

What to expect:
    for i in $(seq 12); do curl -s -o /dev/null -w '%{http_code} ' 127.0.0.1:8000/api/items/; done
    -> 200 x10, then 429 with Retry-After, across all four workers
    curl -i 127.0.0.1:8000/api/items/   -> RateLimit-Policy and RateLimit headers
    curl 127.0.0.1:8000/                -> never limited

Settings are inline to keep the recipe one file; a real project keeps them in
settings.py and writes only the last lines below in its wsgi.py.
"""

from __future__ import annotations

import os

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY", "recipe-only-change-me"),
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
    )
    django.setup()

from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, JsonResponse
from django.urls import path

from wsgistack.middlewares import RateLimiter


def items(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"items": ["apple", "pear"]})


def home(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"api": "/api/items/"})


urlpatterns = [path("", home), path("api/items/", items)]

# -- the wsgi.py part ----------------------------------------------------------------
application = RateLimiter(
    get_wsgi_application(),
    os.environ.get("RATE_LIMIT", "10/minute"),
    store=os.environ.get("RATE_LIMIT_STORE", "redis://127.0.0.1:6379/0"),
    paths=["/api"],
    trusted_proxies=os.environ.get("TRUSTED_PROXIES", "").split(",")
    if os.environ.get("TRUSTED_PROXIES")
    else None,
)
