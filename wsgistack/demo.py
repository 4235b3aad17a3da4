"""``wsgistack demo``: every part of the toolkit in one running site, on embedded defaults.

No Redis, no network: everything listens on 127.0.0.1.  The demo starts two
small upstream servers and the reference server with this pipeline:

    ErrorCatcher -> IPFilter (/private refused to this machine)
                 -> RateLimiter (/api: 5 per 10 seconds, memory store: a burst of 5,
                    then one every 2 s)
                 -> PrefixDispatcher: /api (a JSON API), /pool (LoadBalancer over the
                    two upstreams), /boom (an app that fails), the site (default)

Ctrl-C, SIGTERM or closing its terminal (SIGHUP) stops everything it started.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
from collections.abc import Iterable
from typing import TextIO

from ._types import StartResponse, WSGIApplication, WSGIEnvironment
from .compose import compose, describe, use
from .errors import ConfigError
from .middlewares import ErrorCatcher, IPFilter, LoadBalancer, PrefixDispatcher, RateLimiter
from .server import Server

__all__ = ["build_demo", "run_demo"]


def _text(body: str, content_type: str = "text/plain; charset=utf-8") -> list[tuple[str, str]]:
    return [("Content-Type", content_type), ("Content-Length", str(len(body.encode())))]


def site(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The default mount: a page linking everything there is to try."""
    links = "".join(f'<li><a href="{path}">{path}</a> {what}</li>' for path, what in TRIES)
    body = f"<!DOCTYPE html><title>wsgistack demo</title><h1>wsgistack demo</h1><ul>{links}</ul>"
    start_response("200 OK", _text(body, "text/html; charset=utf-8"))
    return [body.encode()]


def api(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """A tiny JSON API under /api, rate limited."""
    body = json.dumps({"hello": "world", "path": environ["SCRIPT_NAME"] + environ["PATH_INFO"]})
    start_response("200 OK", _text(body, "application/json"))
    return [body.encode()]


def boom(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Fails on purpose: the error catcher answers with a 500 and an error id."""
    raise RuntimeError("the demo's deliberate failure (secret details stay in the log)")


def upstream(name: str) -> WSGIApplication:
    def answer(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        body = f"served by upstream {name}\n"
        start_response("200 OK", _text(body))
        return [body.encode()]

    return answer


TRIES = [
    ("/", "this page"),
    ("/api/hello", "JSON; RateLimit headers; 5 at once, then one every 2 s (429 when faster)"),
    ("/pool/", "forwarded to upstream A, then B, then A... (the load balancer)"),
    ("/private/", "403: the IP filter refuses this machine here"),
    ("/boom", "500 with an error id: the error catcher (details only in the log)"),
]


def build_demo(upstream_urls: list[str]) -> WSGIApplication:
    """The demo's pipeline around its apps, forwarding /pool to ``upstream_urls``."""
    return compose(
        use(ErrorCatcher),
        use(IPFilter, deny=["127.0.0.0/8", "::1"], paths=["/private"]),
        use(RateLimiter, "5 per 10 seconds", paths=["/api"]),
        PrefixDispatcher(
            {"/api": api, "/pool": LoadBalancer(upstream_urls), "/boom": boom},
            default=site,
            redirect_slash=False,
        ),
    )


#: What ends the demo: Ctrl-C, ``kill``, and its terminal going away.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run_demo(port: int = 8000, out: TextIO = sys.stdout) -> int:
    """Serve the demo in the foreground until Ctrl-C, SIGTERM or SIGHUP.

    Ctrl-C stops at once; SIGTERM lets in-flight requests finish.  SIGHUP stops
    it too, as it stops ``wsgistack serve --workers 0``: a demo left running
    after its terminal closed would hold its port with nobody to stop it.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # SIGHUP ignored at start stays ignored: `nohup wsgistack demo &` outlives its
    # terminal (Linux keeps a blocked signal pending even when it is ignored).  Ctrl-C
    # and SIGTERM always stop it, as they stop the server, even from a shell that
    # started it in the background with SIGINT ignored.
    hangup_ignored = signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    awaited = [sig for sig in STOP_SIGNALS if not (sig == signal.SIGHUP and hangup_ignored)]
    # Blocked before any server thread starts, so every thread inherits the mask
    # and only sigwait() below receives them, in this thread.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, awaited)
    try:
        with contextlib.ExitStack() as stack:
            upstreams = []
            for name in "AB":
                server = Server(upstream(name), bind="127.0.0.1:0", workers=0, threads=2)
                upstreams.append(stack.enter_context(server))
                # On the way out the main server has drained first; then only its
                # idle pooled connections are left here, which a graceful stop
                # would wait on (a lingering close) for a second each.
                stack.callback(server.stop, graceful=False)
            app = build_demo([server.url for server in upstreams])
            main = Server(app, bind=f"127.0.0.1:{port}", workers=0, threads=8)
            try:
                main.bind()
            except ConfigError as exc:
                reason = str(exc).removeprefix("bind: ")
                raise ConfigError(
                    f"--port {port}: {reason}; choose another port (--port 0: any free one)"
                ) from None
            stack.enter_context(main)
            print(f"wsgistack demo on {main.url}  (Ctrl-C to stop)\n", file=out)
            print(describe(app), file=out)
            print("\nTry:", file=out)
            for path, what in TRIES:
                print(f"  curl -i {main.url}{path}    # {what}", file=out)
            out.flush()
            received = signal.sigwait(awaited)
            main.stop(graceful=received == signal.SIGTERM)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    if received != signal.SIGHUP:  # after a hangup there is no terminal to tell
        print("demo stopped", file=out)
    return 0
