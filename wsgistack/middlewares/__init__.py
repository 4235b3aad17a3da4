"""The stackable middlewares, one module each.

from wsgistack.middlewares import ErrorCatcher
"""

from __future__ import annotations

from .buffering import RequestBuffering
from .dispatch import PrefixDispatcher
from .errors import ErrorCatcher
from .forward import LoadBalancer
from .ipfilter import IPFilter
from .ratelimit import RateLimiter

__all__ = [
    "ErrorCatcher",
    "IPFilter",
    "LoadBalancer",
    "PrefixDispatcher",
    "RateLimiter",
    "RequestBuffering",
]
