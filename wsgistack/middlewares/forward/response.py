"""The response side of the forwarder: the upstream's answer passed on to the client.

The head goes out through ``start_response``; a body already in hand is a
list and its connection goes back to the pool at once; a body still arriving
streams, and its connection is pooled only once it ended whole.  An upstream
that breaks mid-body is logged here, once, and raises ``ResponseCut``; one
that breaks before the first byte of its body is answered 502 or 504 instead.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import webob.exc

from ..._logtext import request_from
from ..._types import StartResponse, WSGIEnvironment
from ...errors import ResponseCut
from ...refusals import refusal
from ...wsgi import ClosingIterator
from .client import Exchange, ReadTimeout, UpstreamClosed
from .mapping import response_headers
from .upstream import Upstream

if TYPE_CHECKING:
    from .balancer import LoadBalancer

__all__ = ["failed_answer", "release", "respond"]

log = logging.getLogger("wsgistack.forward")


def failed_answer(timeout: bool) -> webob.exc.WSGIHTTPException:
    """The 504 (the upstream timed out) or 502 (it failed) a client hears."""
    if timeout:
        return refusal(webob.exc.HTTPGatewayTimeout, "The upstream did not answer in time.")
    return refusal(webob.exc.HTTPBadGateway, "The upstream failed.")


def respond(
    balancer: LoadBalancer,
    upstream: Upstream,
    exchange: Exchange,
    sock: socket.socket,
    environ: WSGIEnvironment,
    start_response: StartResponse,
) -> Iterable[bytes]:
    """Pass the upstream's answer on: its head with the first byte of its body."""
    if exchange.complete:
        # The whole response is in hand (the usual small one): the connection
        # goes back to the pool now and the body is a plain list.
        try:
            start_response(exchange.status, _headers(balancer, upstream, exchange, environ))
        except BaseException:
            # An outer layer refused the answer: the exchange ends here, unpooled,
            # or least_conn and p2c would count it in flight for good.
            release(balancer, upstream, exchange, sock, delivered=False)
            raise
        release(balancer, upstream, exchange, sock)
        return exchange.take_body()
    delivered = False

    def stream() -> Iterator[bytes]:
        nonlocal delivered
        chunks = exchange.body()
        try:
            # A server sends the head with the first byte of the body (PEP 3333),
            # so start_response waits for that byte: an upstream that breaks
            # before it is answered 502 or 504 under any server.  (Replacing the
            # head instead, with exc_info, gunicorn would send both heads' fields.)
            first = next(chunks, b"")
        except (ReadTimeout, UpstreamClosed) as exc:
            timeout = _log_cut(balancer, upstream, environ, exc, answering=True)
            yield from failed_answer(timeout)(environ, start_response)
            return
        start_response(exchange.status, _headers(balancer, upstream, exchange, environ))
        try:
            yield first
            yield from chunks
        except (ReadTimeout, UpstreamClosed) as exc:
            # ResponseCut tells the server and ErrorCatcher it is logged.
            timeout = _log_cut(balancer, upstream, environ, exc, answering=False)
            raise ResponseCut(
                f"upstream {upstream.url} {'stalled' if timeout else 'closed'} mid-response",
                504 if timeout else 502,
            ) from None
        delivered = True

    def finish() -> None:
        # Not delivered: the client left early or the upstream misbehaved.
        release(balancer, upstream, exchange, sock, delivered)

    return ClosingIterator(stream(), finish)


def _headers(
    balancer: LoadBalancer, upstream: Upstream, exchange: Exchange, environ: WSGIEnvironment
) -> list[tuple[str, str]]:
    return response_headers(
        upstream, exchange.headers, environ, balancer.preserve_host, balancer.cookie_paths
    )


def _log_cut(
    balancer: LoadBalancer,
    upstream: Upstream,
    environ: WSGIEnvironment,
    exc: ReadTimeout | UpstreamClosed,
    answering: bool,
) -> bool:
    """Log an upstream that broke after its head, once; True if it stalled (else it ended).

    Not counted against it, as nginx: the answer had started.  One ERROR line
    with no traceback, as nginx's "upstream prematurely closed connection".
    """
    timeout = isinstance(exc, ReadTimeout)
    if isinstance(exc, UpstreamClosed):  # closed it, or sent what cannot be passed on
        what = f"{'closed' if exc.closed else 'failed'} mid-response ({exc})"
    else:
        what = f"stalled mid-response (read_timeout {balancer.read_timeout:g} s)"
    log.error(
        "upstream %s %s to %s; %s",
        upstream.url,
        what,
        request_from(environ, balancer.trust),
        f"answering {504 if timeout else 502}" if answering else "aborting the response",
    )
    return timeout


def release(
    balancer: LoadBalancer,
    upstream: Upstream,
    exchange: Exchange,
    sock: socket.socket,
    delivered: bool = True,
) -> None:
    """The exchange ended: pool the connection if it is clean and both sides allow.

    A response read whole leaves its TLS session resumable: the upstream keeps it.
    """
    upstream.ended()
    if exchange.complete:
        upstream.keep_session(sock)
    if delivered and exchange.complete and exchange.keep_alive:
        upstream.give_back(sock, balancer.clock())
    else:
        sock.close()
