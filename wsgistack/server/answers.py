"""The server's own answers: requests it refuses, and apps that fail before or mid-response.

A request broken before the app saw it (400, 408, 431...) is refused with
``send_refusal`` (``refuse_timeout`` for a head that never ended); an app
that raises is answered by ``fail``: a 500 (or a ``ResponseCut``'s 502/504)
while no header has gone out, else ``AbortConnection``, which cuts the
connection.  Kept apart from ``connection.py``, which serves: nothing here
runs for a request that succeeds.

    except BaseException:
        fail(self, response, environ)   # "GET /x from 203.0.113.9: the application raised"
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import sys
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from .._logtext import request_from
from ..errors import ProtocolError, ResponseCut, body_error_behind
from ..iotext import body_failure, broke_while, closed_without_notice, io_failure, peer_failure
from .response import Response, error_body_size, error_response

if TYPE_CHECKING:
    from .connection import Connection
    from .request import Request
    from .worker import Worker

__all__ = [
    "AbortConnection",
    "ClientGone",
    "NoStartResponse",
    "body_cut",
    "fail",
    "peer_name",
    "ran_out",
    "refusal_bytes",
    "refuse_timeout",
    "report_broken",
    "report_head_cut",
    "send_error",
    "send_refusal",
]

log = logging.getLogger("wsgistack.server")


class AbortConnection(Exception):
    """The response cannot be completed: close the connection without more bytes."""


class ClientGone(AbortConnection):
    """The client went away (or read nothing for --timeout) as the response went out.

    Raised by the sends; ``level`` is that of the request's line (see
    ``report_broken``): DEBUG for a client that closed (over TLS too, with
    or without close_notify), INFO for one that stopped reading and held a
    thread for --timeout, or whose TLS failed.
    """

    def __init__(self, message: str, level: int = logging.DEBUG, sent: int = 0) -> None:
        super().__init__(message)
        self.level = level
        #: Of the bytes the failing send was given, how many the kernel took
        #: first (a partial send): the access log counts them, and no more.
        self.sent = sent

    @classmethod
    def from_error(cls, exc: OSError, timeout: float, sent: int = 0) -> ClientGone:
        if isinstance(exc, BlockingIOError | TimeoutError):  # SO_SNDTIMEO, or TLS's timeout
            return cls(
                f"the client read nothing for --timeout ({timeout:g} s), dropped",
                logging.INFO,
                sent,
            )
        if isinstance(exc, ssl.SSLError) and not closed_without_notice(exc):
            return cls(io_failure(exc), logging.INFO, sent)  # a real TLS failure: worth a look
        # A reset, a close (EPIPE; over TLS OpenSSL loses which one it was),
        # worded as the forwarder words an upstream's: "the client reset the connection".
        return cls(peer_failure(exc, "the client"), sent=sent)


class NoStartResponse(Exception):
    """The app sent a body, or returned, without calling ``start_response`` (PEP 3333).

    Its own mistake, not an exception it raised: ``fail`` logs what it did in
    one line, with no traceback (it would show the server's code, not the app's).
    """


def client_of(peer: object) -> str:
    """The client's address for a log line about a connection with no request yet."""
    return str(peer[0]) if isinstance(peer, tuple) and peer else "-"


def peer_name(peer: object) -> str:
    """A peer as a line's subject: its address, or ``the peer`` on a unix socket (none)."""
    address = client_of(peer)
    return "the peer" if address == "-" else address


def ran_out(worker: Worker) -> str:
    """What a request head or a TLS handshake not done in time ran out of, for its log line."""
    if worker.stopping:  # its grace (see stopping.py), not --timeout, ran out
        return "as the worker stopped"
    return f"within --timeout ({worker.config.timeout:g} s)"


def refuse_timeout(connection: Connection) -> None:
    """Answer a request head that did not arrive within --timeout: a 408, logged.

    Also a line at INFO, as nginx's "client timed out ... while reading client
    request headers": a slow or stuck client (or a slowloris) shows in the log.
    An idle keep-alive connection (no byte of a head) closes without either.
    """
    if connection.parser.mid_request:
        client = client_of(connection.peer)
        waited = ran_out(connection.worker)
        log.info("request head from %s: not complete %s, answered 408", client, waited)
        data, sent = refusal_bytes(connection, 408), 0
        with contextlib.suppress(OSError):
            sent = connection.send_now(data)
        if connection.worker.access_log is not None:  # logged, as send_refusal logs the others
            body = max(0, sent - (len(data) - error_body_size(408)))  # of the body, sent
            connection.worker.access_log.refused(connection.peer, 408, size=body)


def report_broken(
    worker: Worker, environ: dict[str, Any], response: Response, exc: Exception
) -> None:
    """Say why a request the app saw broke off on the client's side.

    Its body stopped coming (cut off: 400, too slow: 408, too large: 413),
    at INFO; or the client stopped reading for --timeout, at INFO too, as
    nginx's "client timed out".  A client that left as the response went out
    (a cancelled download, a phone that lost its network) is no fault of
    the server's and, on a busy site, a line a second: DEBUG, where gunicorn
    puts it ("Ignoring EPIPE"); nginx logs it at info, below its default
    error_log level.  (waitress says "Client disconnected" at INFO.)  The
    access log line shows only a status.  Not while the worker stops: its
    cut of the requests it ends says so itself.
    """
    if worker.stopping:
        return
    if isinstance(exc, ClientGone):
        log.log(exc.level, "%s: %s before the response ended", request_from(environ), exc)
    elif isinstance(exc, ProtocolError):
        answer = "the response had begun: cut" if response.sent else exc.status_hint
        log.info("%s: %s (%s)", request_from(environ), exc, answer)


def report_head_cut(connection: Connection, exc: OSError | None = None) -> None:
    """Say why a connection broke in the middle of a request head, and log it a 400.

    ``exc``: the read failed (a reset, a TLS error) rather than ending in a
    close, as nginx's "recv() failed (104: Connection reset by peer) while
    reading client request headers"; a reset is said in ``peer_failure``'s
    words, as the forwarder says an upstream's ("... reset the connection"),
    a TLS error as one mid-body reads.  Over TLS a close or reset without
    close_notify loses its errno in OpenSSL, and reads as a close.  Behind
    nginx (uwsgi) a warning: nginx never sends half a packet.  From an HTTP
    client, INFO, as nginx's "client prematurely closed connection".  The
    access log has its line, ``"-" 400`` with no byte sent, as nginx writes
    one, and as a head that stalls has its 408: a request begun is never left
    out.  A connection that closes or resets before any byte of a head (an
    idle keep-alive, a preconnect) is no request, and has no line.
    """
    if exc is not None and closed_without_notice(exc):
        exc = None
    if connection.uwsgi:
        log.warning("uwsgi: %s", _cut(peer_name(connection.peer), exc, "in the middle of a packet"))
    elif isinstance(exc, ssl.SSLError):  # no close of the client's: TLS failed, we close
        client = client_of(connection.peer)
        log.info("%s: reading the request head failed: %s, closed", client, io_failure(exc))
    else:
        log.info("%s", _cut(client_of(connection.peer), exc, "in the middle of a request head"))
    if connection.worker.access_log is not None:
        connection.worker.access_log.refused(connection.peer, 400)


def body_cut(exc: OSError | None = None) -> ProtocolError:
    """The 400 of a body the client broke off while the app read it: closed (no ``exc``) or reset.

    Worded as the client's other lines (``body_failure``): "the client reset
    the connection before the body ended", or what failed ("reading the
    request body failed: TLS error: bad record mac").
    """
    if exc is None:
        return ProtocolError("the client closed the connection before the body ended", 400)
    return ProtocolError(body_failure(exc), 400)


def _cut(peer: str, exc: OSError | None, where: str) -> str:
    """``127.0.0.1 closed the connection <where>``, or reset it (``exc``), or what failed."""
    if exc is None:
        return f"{peer} closed the connection {where}"
    return broke_while(exc, peer, where)


def send_refusal(
    connection: Connection,
    error: ProtocolError,
    head_only: bool = False,
    request: Request | None = None,
) -> None:
    """Answer a request refused before the app saw it (logged, as nginx logs its 400s).

    ``head_only``: the request is known to be a HEAD, so no body goes out.
    ``request``: the refused request, when it was queued (its line is logged).
    A request over a limit (413, 414, 431) is also one INFO line naming the
    client and the limit, the same from both binds, as nginx's "client sent
    too long URI" is at info: an operator who lowered a limit sees what it
    turns away, and a client cannot fill the log with warnings (gunicorn's
    "Invalid request from ip=..." is one).  Other refusals are the access
    log's alone; the uwsgi parser warns of a malformed packet itself.
    """
    # Behind uwsgi_pass the client nginx served, not nginx; its request line once known.
    peer, line = connection.parser.refused_line(connection.peer, request)
    if error.over_limit:
        log.info("request from %s: %s, answered %d", client_of(peer), error, error.status_hint)
    else:
        log.debug("refused %s: %s", client_of(connection.peer), error)
    connection.linger = True  # the connection then closes, lingering (see worker)
    size = 0
    try:
        size = send_error(connection, error.status_hint, head_only)
    finally:  # also when the client has gone: its line, with nothing sent
        if connection.worker.access_log is not None:
            connection.worker.access_log.refused(peer, error.status_hint, line, size=size)


def send_error(connection: Connection, status: int, head_only: bool = False) -> int:
    """Send an error response; returns the size of its body, for the access log."""
    connection.sendall(refusal_bytes(connection, status, head_only))
    return 0 if head_only else error_body_size(status)


def refusal_bytes(connection: Connection, status: int, head_only: bool = False) -> bytes:
    """The bytes of a refusal with ``status`` for this connection's peer.

    Behind uwsgi_pass, as every response there, it has no Date or Server of
    ours: nginx would pass them on to the client in place of its own.
    """
    return error_response(status, stamped=not connection.uwsgi, head_only=head_only)


def fail(
    connection: Connection, response: Response, environ: dict[str, Any], doing: str = ""
) -> None:
    """Answer the exception being handled: a 500 (or its status), or cut the connection.

    Logged, unless a layer has said why: ``GET /x from CLIENT: the application
    raised`` and ``doing`` (`` while iterating``), with the traceback.
    """
    error = sys.exc_info()[1]
    fault = body_error_behind(error) if error is not None else None
    if fault is not None:
        # The app raised because its body broke (Django's UnreadablePostError):
        # the client's fault, not the app's.  It hears why (408, 400), as when
        # the app answers anyway (writing._head), or, once the response began, is cut off.
        if response.sent:
            raise AbortConnection
        raise ProtocolError(str(fault), fault.status_hint) from None
    if isinstance(error, ResponseCut):
        # A layer's body broke mid-response and that layer logged why: cut the
        # connection, or answer its status while no header has gone out.
        if response.sent:
            raise AbortConnection
        status = error.status_hint
    elif response.sent and error is not None and error is response.reported:
        # Handed back through start_response(exc_info): the app (an error
        # catcher, say) has logged it with its traceback already.
        log.warning(
            "the application reported %s after its response began; cut off",
            type(error).__name__,
        )
        raise AbortConnection
    elif isinstance(error, NoStartResponse):  # nothing was sent: no status to send
        log.error("%s: %s, answered 500", request_from(environ), error)
        status = 500
    else:
        log.error("%s: the application raised%s", request_from(environ), doing, exc_info=True)
        if response.sent:
            raise AbortConnection
        status = 500
    response.close = True
    response.written = send_error(connection, status, response.head_only)
    response.status = f"{status} {HTTPStatus(status).phrase}"
    response.sent = True
