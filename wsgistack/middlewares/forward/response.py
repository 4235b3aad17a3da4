"""The response side of the forwarder: the upstream's answer passed on to the client.

The head goes out through ``start_response``; a body already in hand is a
list and its connection goes back to the pool at once; a body still arriving
streams, and its connection is pooled only once it ended whole.  An upstream
that breaks mid-body is logged here, once, and raises ``ResponseCut``.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from ..._logtext import request_text
from ..._types import StartResponse, WSGIEnvironment
from ...clientip import client_addr
from ...errors import ResponseCut
from ...wsgi import ClosingIterator
from .client import Exchange, ReadTimeout, UpstreamClosed
from .mapping import response_headers
from .upstream import Upstream

if TYPE_CHECKING:
    from .balancer import LoadBalancer

__all__ = ["release", "respond"]

log = logging.getLogger("wsgistack.forward")


def respond(
    balancer: LoadBalancer,
    upstream: Upstream,
    exchange: Exchange,
    sock: socket.socket,
    environ: WSGIEnvironment,
    start_response: StartResponse,
) -> Iterable[bytes]:
    """Pass the upstream's answer on: its head now, its body as the client reads it."""
    try:
        headers = response_headers(upstream, exchange.headers, environ, balancer.preserve_host)
        start_response(exchange.status, headers)
    except BaseException:
        # An outer layer refused the answer: the exchange ends here, unpooled,
        # or least_conn and p2c would count it in flight for good.
        release(balancer, upstream, exchange, sock, delivered=False)
        raise
    if exchange.complete:
        # The whole response is in hand (the usual small one): the connection
        # goes back to the pool now and the body is a plain list.
        release(balancer, upstream, exchange, sock)
        return exchange.take_body()
    delivered = False

    def stream() -> Iterator[bytes]:
        nonlocal delivered
        try:
            yield from exchange.body()
        except (ReadTimeout, UpstreamClosed) as exc:
            # Not counted against it, as nginx: the answer had started.  One
            # ERROR line, as nginx's "upstream prematurely closed connection";
            # ResponseCut tells the server and ErrorCatcher it is logged.
            timeout = isinstance(exc, ReadTimeout)
            what = f"stalled mid-response (read_timeout {balancer.read_timeout:g} s)"
            log.error(
                "upstream %s %s to %s from %s; aborting the response",
                upstream.url,
                what if timeout else f"closed mid-response ({exc})",
                request_text(environ),
                client_addr(environ, balancer.trust),
            )
            raise ResponseCut(
                f"upstream {upstream.url} {'stalled' if timeout else 'closed'} mid-response",
                504 if timeout else 502,
            ) from None
        delivered = True

    def finish() -> None:
        # Not delivered: the client left early or the upstream misbehaved.
        release(balancer, upstream, exchange, sock, delivered)

    return ClosingIterator(stream(), finish)


def release(
    balancer: LoadBalancer,
    upstream: Upstream,
    exchange: Exchange,
    sock: socket.socket,
    delivered: bool = True,
) -> None:
    """The exchange ended: pool the connection if it is clean and both sides allow."""
    upstream.ended()
    if delivered and exchange.complete and exchange.keep_alive:
        upstream.give_back(sock, balancer.clock())
    else:
        sock.close()
