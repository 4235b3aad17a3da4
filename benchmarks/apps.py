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


def _office_networks(count: int = 10_000) -> list[str]:
    return [f"10.{(n >> 8) & 255}.{n & 255}.0/24" for n in range(count)]


def stack():
    """The issue's stack around hello: errors, IP filter (10,000 networks), limiter, dispatcher."""
    from wsgistack import compose, use
    from wsgistack.middlewares import ErrorCatcher, IPFilter, PrefixDispatcher, RateLimiter

    return compose(
        use(ErrorCatcher),
        use(IPFilter, deny=_office_networks()),
        use(RateLimiter, "1000000000/hour"),
        PrefixDispatcher({"/a": hello, "/b": hello, "/c": hello}, default=hello),
    )
