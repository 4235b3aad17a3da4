"""Fixtures shared by the middleware tests: the forwarder's real upstreams."""

from tests.middlewares.forward_parts import dying, lb, raw, upstreams  # noqa: F401
from tests.middlewares.tls_upstream import server_context, tls_upstream, trusting  # noqa: F401
