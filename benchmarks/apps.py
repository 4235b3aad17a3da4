"""The apps the benchmarks serve: the same hello world for every server."""

from __future__ import annotations


def hello(environ, start_response):
    body = b"Hello, world!"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
