"""A request method llhttp refused: 501 if it is a method we do not know, 400 if malformed.

RFC 9110 15.6.2: a server that does not recognise a request method answers
501.  llhttp (through httptools) knows a fixed list of methods and refuses
every other with one error and no position: ``BREW``, lowercase ``get``
(RFC 9110 9.1: methods are case-sensitive tokens, so ``get`` is a well-formed
method nobody defines, not garbage), ``GE T`` and ``G\\x01T`` alike.  So the
parser hands us the failing message's bytes from its first one, and we read
its request line ourselves: a token method (RFC 9110 5.6.2) in a line that
is otherwise well-formed is 501; anything else is 400.  Whether the rest of
the line is well-formed is llhttp's to say: the same line with ``GET`` in
place of the method must parse.  Nothing here runs for a request llhttp takes.
"""

from __future__ import annotations

import contextlib
import re

import httptools

from ..errors import ProtocolError
from ..options import TCHAR
from .requestline import line_too_long

__all__ = ["failing_message", "method_refusal", "unimplemented"]

_TOKEN = re.compile(TCHAR.encode("ascii") + b"+")


class _Begins:
    """httptools callbacks that only count the messages begun."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def on_message_begin(self) -> None:
        self.count += 1


def _begun(data: bytes) -> int:
    """How many messages llhttp begins in ``data``, fed from between messages."""
    begins = _Begins()
    with contextlib.suppress(httptools.HttpParserError):
        httptools.HttpRequestParser(begins).feed_data(data)
    return begins.count


def failing_message(data: bytes) -> bytes:
    """The bytes of the last message llhttp begins in ``data``, from its first byte.

    ``data`` must start where the parser was between messages, so a fresh
    parser reads it exactly as the connection's did.  llhttp begins a message
    at its first byte, after the empty lines RFC 9112 2.2 lets it skip; with
    requests before it (pipelining), the shortest prefix of ``data`` that
    begins as many messages as the whole ends at that byte.
    """
    total = _begun(data)
    if total <= 1:
        return data.lstrip(b"\r\n")
    low, high = 1, len(data)
    while low < high:
        middle = (low + high) // 2
        if _begun(data[:middle]) < total:
            low = middle + 1
        else:
            high = middle
    return data[low - 1 :]


def method_refusal(message: bytes, limit: int) -> ProtocolError | None:
    """The refusal of a message whose method llhttp refused, or None: wait for more bytes.

    ``message`` holds its bytes so far from the first; ``limit`` is the
    longest request line, CRLF aside (a longer one gets 414, as for a known method).
    """
    method, space, _ = message.partition(b" ")
    if (method or space) and not _TOKEN.fullmatch(method):
        # A byte no method may hold (a control byte, CR/LF, ...), or no method at all.
        name = method[:40].decode("latin-1")
        return ProtocolError(f"malformed request method {name!r}", 400)
    end = message.find(b"\n")
    line = message if end < 0 else message[:end]
    if len(line.rstrip(b"\r")) > limit:  # the whole line, CRLF aside, as for a known method
        return ProtocolError(line_too_long(limit), 414)
    if end < 0:
        return None  # the request line is still arriving
    try:
        httptools.HttpRequestParser(_Begins()).feed_data(b"GET" + message[len(method) : end + 1])
    except httptools.HttpParserError:
        return ProtocolError("malformed request line", 400)
    return unimplemented(method)


def unimplemented(method: bytes) -> ProtocolError:
    """The 501 for a well-formed method we do not implement (RFC 9110 15.6.2)."""
    name = method[:40].decode("ascii")
    return ProtocolError(f"request method {name!r} is not implemented", 501)
