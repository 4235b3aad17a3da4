"""Apps that the tests in `tests/recipes/` serve with gunicorn, uWSGI and waitress."""

from __future__ import annotations

import io
import os
from pathlib import Path

from wsgistack.middlewares import ErrorCatcher, IPFilter, PrefixDispatcher, RequestBuffering

BLOB = Path(os.environ.get("FOREIGN_BLOB", "/nonexistent"))


class _SentByDescriptor(io.FileIO):
    """A file that fails if Python reads it: a server's sendfile() never does."""

    def __next__(self) -> bytes:
        raise RuntimeError("the file was iterated instead of sent from its descriptor")

    def read(self, size: int | None = -1) -> bytes:
        raise RuntimeError("the file was read instead of sent from its descriptor")


def download(environ, start_response):
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(BLOB.stat().st_size)),
        ],
    )
    return environ["wsgi.file_wrapper"](_SentByDescriptor(BLOB, "r"), 65536)


caught_download = ErrorCatcher(download)
#: The same through both layers that hand a file-wrapper body back as itself.
caught_buffered_download = ErrorCatcher(RequestBuffering(download))


class _Rows:
    """A body with ``read()`` that is no file wrapper; fails at once or after a part."""

    def __init__(self, parts_before_failing: int) -> None:
        self.parts = parts_before_failing

    def read(self, size: int | None = -1) -> bytes:
        return b""

    def __iter__(self):
        for _ in range(self.parts):
            yield b"row;"
        raise RuntimeError("the rows failed while iterated")


def _failing_rows(environ, start_response):
    if environ["PATH_INFO"] == "/in-the-call":
        raise RuntimeError("the view failed")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return _Rows(0 if environ["PATH_INFO"] == "/at-once" else 1)


#: ErrorCatcher around an app that fails in the call, or returns a failing body
#: that has read() and is no file wrapper.
caught_failing_rows = ErrorCatcher(_failing_rows)


def balanced():
    """A LoadBalancer over ``FOREIGN_UPSTREAM`` (gunicorn's ``module:factory()`` form)."""
    from wsgistack.middlewares import LoadBalancer

    return LoadBalancer(
        [os.environ["FOREIGN_UPSTREAM"]],
        read_timeout=float(os.environ.get("FOREIGN_READ_TIMEOUT", "30")),
        max_fails=0,
    )


def _echo(environ, start_response):
    """Says where the request was routed and what body it brought."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    text = f"{environ['SCRIPT_NAME']}|{environ['PATH_INFO']}|{len(body)}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))])
    return [text]


#: Deny one client network, believing X-Forwarded-For from a proxy on loopback.
denied_behind_proxy = IPFilter(_echo, deny=["203.0.113.0/24"], trusted_proxies=["127.0.0.1"])
#: The same, with waitress deciding who the client is.
denied = IPFilter(_echo, deny=["203.0.113.0/24"])
#: A site mounted under a prefix, inside whatever prefix the server gives.
mounted = PrefixDispatcher({"/api": _echo})
#: A body that arrives chunked reaches the app whole, with its length.
buffered = RequestBuffering(_echo)


def checked_and_limited():
    """The forwarder with active health checks (threads, pooled connections), behind a
    rate limiter with the memory store: every kind of state a worker holds."""
    from wsgistack.middlewares import LoadBalancer, RateLimiter

    balancer = LoadBalancer(
        [os.environ["FOREIGN_UPSTREAM"]], health_path="/health", health_interval=0.2
    )
    return RateLimiter(balancer, "10000/second")


def _rows_failing_first(environ, start_response):
    """Sets its head (with a length), then its body fails before its first byte."""
    start_response("200 OK", [("Content-Type", "text/csv"), ("Content-Length", "10")])

    def rows():
        raise RuntimeError("the rows failed before the first one")
        yield b"never"  # a generator: the failure comes with the first next()

    return rows()


def _streaming_flask_app():
    from flask import Flask, stream_with_context

    app = Flask("streaming")
    app.config["PROPAGATE_EXCEPTIONS"] = True  # as the README's Flask recipe sets

    @app.get("/<path:path>")
    def report(path):
        def rows():
            raise RuntimeError("the report failed before its first row")
            yield "never"

        return app.response_class(stream_with_context(rows()), mimetype="text/csv")

    return app


def _rows_empty_then_failing(environ, start_response):
    """Sets its head, yields an empty chunk (no byte), then its body fails."""
    start_response("200 OK", [("Content-Type", "text/csv")])

    def rows():
        yield b""
        raise RuntimeError("the rows failed after an empty first chunk")

    return rows()


#: ErrorCatcher over bodies that fail once their head is set, before a byte went out.
caught_failing_first = ErrorCatcher(_rows_failing_first)
caught_empty_then_failing = ErrorCatcher(_rows_empty_then_failing)
caught_flask_stream = ErrorCatcher(_streaming_flask_app().wsgi_app)


def _readme_stack(app):
    """The README's compose() stack, letting loopback in."""
    from functools import partial

    from werkzeug.middleware.proxy_fix import ProxyFix

    from wsgistack import compose, use
    from wsgistack.middlewares import RateLimiter

    return compose(
        use(ErrorCatcher),
        partial(ProxyFix, x_for=0, x_proto=1),
        use(IPFilter, allow=["127.0.0.0/8"]),
        use(RateLimiter, "100/minute"),
        app,
    )


stacked_failing_first = _readme_stack(_rows_failing_first)
stacked_flask_stream = _readme_stack(_streaming_flask_app().wsgi_app)
