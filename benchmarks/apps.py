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
