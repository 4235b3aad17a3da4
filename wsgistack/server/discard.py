"""Reading away a request body the app left unread, so the connection can stay open.

An app may answer without reading the whole body (a 404 or 401 to an
upload).  Closing then costs a keep-alive client its connection, so the
server reads the rest after the response and drops it, as nginx
(``ngx_http_discard_request_body``) and gunicorn do, within bounds: at most
``DISCARD_MAX`` bytes more, and within ``--timeout`` (the worker's loop does
the waiting, so a client that stops sending holds no thread).  Past either,
the connection closes, lingering, as it did before.

Rules:

- A body the client was told to wait for (``Expect: 100-continue``, no 100
  sent) is not discarded: the client may send it or may not (RFC 9110
  10.1.1), so the bytes after the response could be either the body or its
  next request.  The response says ``Connection: close`` instead.
- A ``Content-Length`` body with more than ``DISCARD_MAX`` bytes still to come
  is not tried: the response says ``Connection: close`` at once.  A chunked
  body's length is unknown: it is tried, and the connection closes (without
  a word; the response was complete) should it pass the bound.

    if discardable(request, response):
        discard = Discard(request)       # drop the body's bytes from now on
        ...
        if not discard.took(len(data)):  # past the bound: close
"""

from __future__ import annotations

import collections

from .http import Request
from .response import Response

__all__ = ["DISCARD_MAX", "Discard", "discardable"]

#: The most bytes read away after a response (Tomcat's maxSwallowSize default,
#: 2 MiB): on a slow link still well under --timeout, and cheaper than a new
#: connection (and its TLS) to the client; a larger upload to a 404 is not read
#: for minutes, its connection closes instead.
DISCARD_MAX = 2 * 1024 * 1024


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
