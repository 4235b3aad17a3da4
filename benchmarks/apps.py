"""The apps the benchmarks serve: the same hello world for every server."""

from __future__ import annotations


def hello(environ, start_response):
    body = b"Hello, world!"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _upstream() -> str:
    import os

    return os.environ["BENCH_UPSTREAM"]


def forwarder():
    """wsgistack's LoadBalancer to $BENCH_UPSTREAM."""
    from wsgistack.middlewares import LoadBalancer

    return LoadBalancer([_upstream()])


def werkzeug_proxy():
    """werkzeug's ProxyMiddleware forwarding everything to $BENCH_UPSTREAM."""
    from werkzeug.middleware.http_proxy import ProxyMiddleware

    # werkzeug normalises a "/" key to "//", which matches nothing: proxy a real prefix.
    return ProxyMiddleware(hello, {"/x/": {"target": _upstream() + "/x/"}})


def wsgiproxy2():
    """WSGIProxy2's HostProxy to $BENCH_UPSTREAM."""
    from wsgiproxy import HostProxy

    return HostProxy(_upstream())


def deny_networks(count: int = 10_000) -> list[str]:
    """``count`` scattered IPv4 networks (/16 to /32), the same every run.

    Scattered, so neither side can merge them into a few ranges; none covers
    the benchmark clients (127.0.0.1 for wrk, 203.0.113.9 in process).
    """
    import ipaddress
    import random

    rng = random.Random(7)
    clients = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("203.0.113.9")]
    networks: set[str] = set()
    while len(networks) < count:
        prefix = rng.randint(16, 32)
        start = rng.randint(0, 2**32 - 1) >> (32 - prefix) << (32 - prefix)
        network = ipaddress.ip_network((start, prefix))
        if not any(client in network for client in clients):
            networks.add(str(network))
    return sorted(networks)


def django_hello():
    """A small Django project answering hello world at ``/b/x`` and, mounted, at ``/x``.

    Django's usual middleware from ``startproject``, less the ones that need a
    database (sessions, auth, messages): what a site pays before its own view.
    """
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="benchmark-only-not-secret",
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF="benchmarks.django_urls",
            MIDDLEWARE=[
                "django.middleware.security.SecurityMiddleware",
                "django.middleware.common.CommonMiddleware",
                "django.middleware.csrf.CsrfViewMiddleware",
                "django.middleware.clickjacking.XFrameOptionsMiddleware",
            ],
            USE_TZ=True,
        )
        django.setup()
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def stack(app: str = "hello"):
    """The issue's stack around hello: errors, IP filter (10,000 networks), limiter, dispatcher.

    Both layers that need the client trust one proxy hop, as the werkzeug
    equivalent's ``ProxyFix(x_for=1)`` does.  ``app="django"`` puts the same
    stack around :func:`django_hello` instead.
    """
    from wsgistack import compose, use
    from wsgistack.middlewares import ErrorCatcher, IPFilter, PrefixDispatcher, RateLimiter

    inner = {"hello": lambda: hello, "django": django_hello}[app]()
    return compose(
        use(ErrorCatcher),
        use(IPFilter, deny=deny_networks(), trusted_proxies=1),
        use(RateLimiter, "1000000000/hour", trusted_proxies=1),
        PrefixDispatcher({"/a": inner, "/b": inner, "/c": inner}, default=inner),
    )
