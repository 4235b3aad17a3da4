"""Reading away what a client still sends after its answer: an unread body, a lingering close.

One mechanism for both: the worker's loop reads what has arrived, without
waiting (so a client that stops sending holds no thread), and drops it.

An unread body.  An app may answer without reading the whole body (a 404 or
401 to an upload).  Closing then costs a keep-alive client its connection, so
the server reads the rest after the response and drops it, as nginx
(``ngx_http_discard_request_body``) and gunicorn do, within bounds: at most
``DISCARD_MAX`` bytes more, and within ``--timeout``.  Past either, the
connection closes, lingering, as it did before.

- A body the client was told to wait for (``Expect: 100-continue``, no 100
  sent) is not discarded: the client may send it or may not (RFC 9110
  10.1.1), so the bytes after the response could be either the body or its
  next request.  The response says ``Connection: close`` instead.
- A ``Content-Length`` body with more than ``DISCARD_MAX`` bytes still to come
  is not tried: the response says ``Connection: close`` at once.  A chunked
  body's length is unknown: it is tried, and the connection closes (without
  a word; the response was complete) should it pass the bound.

A lingering close (``linger``).  Closing a socket with unread bytes makes the
kernel send a reset, and a reset discards our response from the client's
buffer before it reads it: so a connection that closes while the client may
still send is half-closed, and what it sends is read away until it ends.

    if discardable(request, response):
        discard = Discard(request)       # drop the body's bytes from now on
        ...
        if not discard.took(len(data)):  # past the bound: close
"""

from __future__ import annotations

import collections
import socket
from typing import TYPE_CHECKING

from .request import Request
from .response import Response

if TYPE_CHECKING:
    from .connection import Connection
    from .worker import Worker

__all__ = [
    "DISCARD_MAX",
    "LINGER_IDLE",
    "LINGER_TOTAL",
    "STOP_GRACE",
    "Discard",
    "discard_more",
    "discardable",
    "drain",
    "linger",
    "read_away",
]

#: The most bytes read away after a response (Tomcat's maxSwallowSize default,
#: 2 MiB): on a slow link still well under --timeout, and cheaper than a new
#: connection (and its TLS) to the client; a larger upload to a 404 is not read
#: for minutes, its connection closes instead.
DISCARD_MAX = 2 * 1024 * 1024
#: A lingering close ends after this long without a byte from the client, or
#: this long in all (nginx's lingering_timeout and lingering_time).
LINGER_IDLE = 5.0
LINGER_TOTAL = 30.0
#: On a graceful stop, how long a connection that has sent nothing yet may take
#: to send its request (a browser's preconnect sends none; without this bound
#: a stop or a --max-requests recycle waited out --timeout for it), and how long
#: a lingering close then waits for the client's next bytes.
STOP_GRACE = 1.0


def discardable(request: Request, response: Response) -> bool:
    """Whether the rest of ``request``'s body, still arriving, may be read away after it."""
    if request.error is not None or (request.expect_continue and not response.continued):
        return False
    if request.content_length is not None:
        return request.content_length - request.body_size <= DISCARD_MAX
    return True  # chunked: tried up to DISCARD_MAX (see Discard.took)


class Discard:
    """A request whose body is being read away: its bytes are dropped as they are parsed."""

    __slots__ = ("left", "request")

    def __init__(self, request: Request) -> None:
        self.request = request
        # What the parser hands on is dropped from now on: a deque that keeps nothing.
        request.body = collections.deque(maxlen=0)
        self.left = DISCARD_MAX

    def took(self, size: int) -> bool:
        """Count ``size`` bytes read; False once more than ``DISCARD_MAX`` were."""
        self.left -= size
        return self.left >= 0


def read_away(connection: Connection) -> bool | None:
    """Read away what has arrived of the body being discarded, without waiting.

    True once it has ended (the connection goes on as any other); None
    while more is to come; False to close (``linger`` says how): the client
    left, sent a broken body, or passed ``DISCARD_MAX``.  At most 1 MiB a
    call, so one fast sender cannot keep the worker's loop to itself.
    """
    discarding = connection.discarding
    assert discarding is not None
    request = discarding.request
    for _ in range(16):
        try:
            data = connection.recv_now()
        except OSError:
            data = b""
        if data is None:
            return None
        if not data:
            return False  # the client left: nothing to linger for
        connection.feed(data)
        if request.complete:  # what follows is the next request's (its errors too)
            connection.discarding = None
            return True
        if request.error is not None or not discarding.took(len(data)):
            connection.linger = True
            return False
    return None


def discard_more(worker: Worker, connection: Connection) -> None:
    """Read away more of an unread body; once it ended, go on as after any request."""
    ended = read_away(connection)
    if ended is None:
        worker.watch(connection)  # more to come, by the same deadline
    elif not ended:
        if connection.linger:
            linger(worker, connection)
        else:
            worker.close_connection(connection)
    elif connection.parser.has_request or connection.parser.error is not None:
        worker.submit(connection)  # pipelined after the body
    else:
        worker.watch(connection, idle=True)


def linger(worker: Worker, connection: Connection) -> None:
    """Half-close, then let the loop read away what the client still sends.

    Closing a socket with unread bytes makes the kernel send a reset, and a
    reset discards our response from the client's buffer before it reads
    it: a client still uploading would never see its 413.  As nginx's
    lingering close, bounded by ``LINGER_IDLE`` per read and ``LINGER_TOTAL``.

    A stop closes keep-alive connections this way too: a client whose next
    request crossed our close then reads an orderly end before any byte of
    an answer, which it retries on a new connection, where a reset (or the
    request read and dropped) leaves it unable to tell whether it was served.
    """
    try:
        connection.half_close()
    except OSError:
        worker.close_connection(connection)
        return
    now = worker.clock()
    connection.lingering = True
    connection.linger_until = now + LINGER_TOTAL
    connection.deadline = now + _linger_idle(worker)
    worker.hand_back(connection)


def _linger_idle(worker: Worker) -> float:
    """How long a lingering close waits for the client's next bytes.

    While stopping, ``STOP_GRACE``: the client has had our close, and the
    worker's exit should not wait for one that neither sends nor closes.
    """
    return STOP_GRACE if worker.stopping else LINGER_IDLE


def drain(worker: Worker, connection: Connection) -> None:
    """Discard what a lingering connection sent; close at its end or its deadline.

    Raw bytes, also on a TLS connection: its ``half_close`` let go of TLS.
    """
    for _ in range(16):
        try:
            data = connection.sock.recv(65536, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            data = b""
        if not data:
            worker.close_connection(connection)
            return
    connection.deadline = min(worker.clock() + _linger_idle(worker), connection.linger_until)
    worker.watch(connection)
