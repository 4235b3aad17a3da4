"""Socket timeouts enforced by the kernel, shared by the server and the forwarder.

A Python socket timeout (``sock.settimeout(30)``) polls before every send and
receive: one more system call and one more release of the GIL per call, which
threads then contend to take back.  ``set_io_timeout`` leaves the socket in
blocking mode and asks the kernel for the same bound (``SO_RCVTIMEO``,
``SO_SNDTIMEO``); a call that waits past it fails with EAGAIN, which Python
raises as ``BlockingIOError``.  A cooperative socket (gevent's, eventlet's,
under monkey-patching) keeps its descriptor non-blocking and waits in its own
loop, where the kernel's bound never applies: it gets the Python timeout, and
a wait past it raises ``TimeoutError``.  So does a TLS socket: OpenSSL takes
the kernel's EAGAIN on a blocking socket for "try again" and waits anew, for ever.

    set_io_timeout(sock, 30.0)
    try:
        data = sock.recv(65536)
    except BlockingIOError:
        ...  # nothing for 30 seconds
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import struct

__all__ = ["reset_on_close", "set_io_timeout"]


def set_io_timeout(sock: socket.socket, seconds: float) -> None:
    """Bound each blocking send and receive on ``sock`` by ``seconds``.

    Catch both ``BlockingIOError`` (the kernel's bound) and ``TimeoutError`` (a green socket's).
    """
    if isinstance(sock, ssl.SSLSocket):
        sock.settimeout(seconds)  # SSL_read would retry past SO_RCVTIMEO, never return
        return
    if sock.gettimeout() is not None:
        sock.settimeout(None)  # an accepted socket already blocks: no system call then
    if not os.get_blocking(sock.fileno()):
        # Still non-blocking underneath: a green socket, which would wait forever.
        sock.settimeout(seconds)
        return
    whole = int(seconds)
    micro = max(int((seconds - whole) * 1_000_000), 0 if whole else 1)  # 0 would mean never
    timeval = struct.pack("ll", whole, micro)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


def reset_on_close(sock: socket.socket) -> None:
    """Make closing ``sock`` send a reset (RST) rather than an orderly end (FIN).

    For a response cut off half way: one without a length ends with the
    connection, so an orderly close would tell the peer (nginx behind
    ``uwsgi_pass``, an HTTP/1.0 client or proxy) that it was whole; a reset
    tells it the response broke.  Unsent bytes are dropped: they were a fragment.
    """
    # OSError: the peer reset first; there is no orderly end left to avoid.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
