"""One attempt at one upstream: a connection, the request sent, the response's head read.

The balancer decides where to go and whether to try again; this module does
one try and says how it failed, in the terms those rules need: a
``Failure``'s ``kind`` (``error`` or ``timeout``, as in ``next_upstream``),
whether any of the request was ``sent``, and whether it was ``stale`` (a
pooled connection the upstream had closed, which does not count against it).

    exchange, sock = attempt(balancer, upstream, head, "GET", body, None, False)
"""

from __future__ import annotations

import logging
import socket
from typing import IO, TYPE_CHECKING

from ...iotext import broke_while
from ...requestbody import ClientBodyError
from ...sockets import set_io_timeout
from .client import UPSTREAM, Exchange, ReadTimeout, UpstreamClosed, send_request
from .methods import IDEMPOTENT
from .upstream import Upstream

if TYPE_CHECKING:
    from .balancer import LoadBalancer

__all__ = ["Failure", "attempt"]

log = logging.getLogger("wsgistack.forward")


class Failure(Exception):
    """An attempt that got no response head; what the retry rules need to know of it."""

    def __init__(self, kind: str, message: str, sent: bool, stale: bool = False) -> None:
        super().__init__(message)
        self.kind = kind  # "error" or "timeout", as in next_upstream
        self.sent = sent  # did any of the request reach the upstream?
        self.stale = stale  # a pooled connection closed or reset unanswered


def attempt(
    balancer: LoadBalancer,
    upstream: Upstream,
    head: bytes,
    method: str,
    body: IO[bytes],
    length: int | None,
    chunked: bool,
    fresh: bool = False,
) -> tuple[Exchange, socket.socket]:
    """Send the request and read the response head; raises Failure.

    ``fresh``: on a new connection, never a pooled one.
    """
    sock = None if fresh else upstream.take_idle(balancer.clock(), balancer.idle_timeout)
    reused = sock is not None
    if sock is None:
        try:
            sock = upstream.connect(balancer.connect_timeout)
        except TimeoutError as exc:  # (worded by connect: which step, which timeout)
            raise Failure("timeout", str(exc), False) from None
        except OSError as exc:
            raise Failure("error", str(exc), False) from None
        set_io_timeout(sock, balancer.read_timeout)
    upstream.started()
    exchange = Exchange(sock, head_only=method == "HEAD")
    try:
        try:
            send_request(sock, head, body, length, chunked)
        except OSError:
            if not exchange.read_early_head():
                raise
            log.info("upstream %s answered before it had the whole request", upstream.url)
        exchange.read_head()  # (a no-op if it answered early)
        return exchange, sock
    except ClientBodyError:
        upstream.ended()
        sock.close()  # the upstream sees a request cut short, and drops it
        raise
    except (UpstreamClosed, OSError, ReadTimeout) as exc:
        upstream.ended()
        sock.close()
        # BlockingIOError: a send or receive waited past SO_SNDTIMEO/SO_RCVTIMEO.
        timeout = isinstance(exc, ReadTimeout | TimeoutError | BlockingIOError)
        # A pooled connection closed or reset with no byte of an answer: most
        # likely the upstream's keep-alive timeout crossing the request (the race
        # no check before reuse can close), so the upstream is not blamed for it.
        stale = reused and not timeout and not exchange.received
        if stale and not (chunked or length) and method in IDEMPOTENT:
            # The upstream may have read the request and died on it, so only a
            # bodiless idempotent one goes out again (RFC 9110 §9.2.2), and once:
            # on a new connection, not on each pooled one in turn (a request that
            # kills a worker would kill max_idle of them).
            return attempt(balancer, upstream, head, method, body, length, chunked, fresh=True)
        kind = "timeout" if timeout else "error"
        why = _worded(exc, balancer.read_timeout)
        what = f"a pooled connection closed unanswered ({why})" if stale else why
        raise Failure(kind, what, True, stale) from None
    except BaseException:
        # Anything else (a header that is not latin-1, an interrupt): still not
        # in flight, or least_conn and p2c would shun this upstream for good.
        upstream.ended()
        sock.close()
        raise


def _worded(exc: UpstreamClosed | OSError | ReadTimeout, read_timeout: float) -> str:
    """Why an exchange failed, saying what was being done, as nginx's upstream errors do.

    Read failures come worded by the reader (which knows head from body); an
    OSError here is a send's, as the request went out.
    """
    if isinstance(exc, UpstreamClosed):
        return str(exc)
    if isinstance(exc, ReadTimeout):
        return f"{UPSTREAM} timed out (read_timeout {read_timeout:g} s) {exc.doing}"
    if isinstance(exc, TimeoutError | BlockingIOError):  # SO_SNDTIMEO: read_timeout's too
        return f"{UPSTREAM} timed out (read_timeout {read_timeout:g} s) while sending the request"
    return broke_while(exc, UPSTREAM, "while sending the request")
