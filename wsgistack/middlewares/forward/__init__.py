"""The load-balancing forwarder: a reverse proxy to a pool of upstreams.

    from wsgistack.middlewares import LoadBalancer
    app = LoadBalancer(["http://127.0.0.1:8001", "http://127.0.0.1:8002"])

The parts: ``upstream`` (addresses, health, idle connections), ``balance``
(strategies, pure), ``health`` (the active checker), ``client`` (HTTP/1.1 on
raw sockets), ``mapping`` (headers, paths and redirects across the hop),
``attempt`` (one try at one upstream), ``balancer`` (the app and its retry rules).
"""

from __future__ import annotations

from .balancer import LoadBalancer
from .upstream import Upstream

__all__ = ["LoadBalancer", "Upstream"]
