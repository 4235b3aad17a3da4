"""Listening sockets for the configured binds (TCP v4/v6 and unix), made once in the master."""

from __future__ import annotations

import contextlib
import os
import socket
import stat

from ..errors import ConfigError
from .config import Bind

__all__ = ["open_listeners"]


def _open(bind: Bind, backlog: int) -> socket.socket:
    sock = socket.socket(bind.family, socket.SOCK_STREAM)
    try:
        if bind.family == socket.AF_UNIX:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.stat(bind.path).st_mode):
                    os.unlink(bind.path)  # a stale socket from a previous run
            sock.bind(bind.path)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if bind.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((bind.host, bind.port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"bind: cannot listen on {bind}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def open_listeners(binds: tuple[Bind, ...], backlog: int) -> list[socket.socket]:
    """One listening socket per bind; all or nothing (a failure closes the others)."""
    sockets: list[socket.socket] = []
    try:
        for bind in binds:
            sockets.append(_open(bind, backlog))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets
