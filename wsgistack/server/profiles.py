"""What each of a worker's listeners is to it: which protocol, environ base, TLS and PROXY gate.

Worked out once, as the worker is made, from the configured binds and their
listening sockets (one per bind, in order), so nothing per connection reads
the configuration again: the loop looks up a listener's profile once per
batch of accepts, a uwsgi-only worker's threads (``direct.py``) once.

    profiles = bind_profiles(config, listeners, multiprocess=False)
    profile = profiles[listener.fileno()]
    profile.uwsgi, profile.tls       # does it speak uwsgi; its TLS context (None: plain)
"""

from __future__ import annotations

import socket
import ssl
from typing import Any, NamedTuple

from .config import ServerConfig
from .environ import environ_base
from .listener import describe_socket
from .proxyconnection import ProxyGate

__all__ = ["BindProfile", "bind_profiles"]


class BindProfile(NamedTuple):
    """How the worker serves the connections one listener accepts.

    A tuple, so the loop takes it apart in one step where it accepts.
    """

    #: The listener's address family, as an int (see ``listener.accept``).
    family: int
    #: It speaks uwsgi (nginx's ``uwsgi_pass``), not HTTP.
    uwsgi: bool
    #: The environ keys its requests share: SERVER_NAME and SERVER_PORT are the bind's own.
    base: dict[str, Any]
    #: Its TLS context (None: plain).
    tls: ssl.SSLContext | None
    #: Who may send it a PROXY protocol header (None: none expected).
    gate: ProxyGate | None


def bind_profiles(
    config: ServerConfig, listeners: list[socket.socket], *, multiprocess: bool
) -> dict[int, BindProfile]:
    """Each listener's profile, by descriptor; ``listeners`` are ``config.bind``'s, in order."""
    #: --certfile's, as the master loaded it (a key only root reads serves under --user).
    tls = config.tls_context
    #: --proxy-protocol's: who may send the header (None: off).
    gate = ProxyGate(config.proxy_allow_from) if config.proxy_protocol else None
    return {
        sock.fileno(): BindProfile(
            int(sock.family),
            bind.protocol == "uwsgi",
            environ_base(
                config,
                *describe_socket(sock),
                multiprocess=multiprocess,
                tls=config.tls_for(bind),
            ),
            tls if config.tls_for(bind) else None,
            gate if bind.protocol != "uwsgi" else None,  # nginx's uwsgi_pass sends none
        )
        for sock, bind in zip(listeners, config.bind, strict=True)  # one listener per bind
    }
