"""wsgistack: a composable WSGI toolkit, a small fast server and stackable middleware.

from wsgistack import compose, use, describe
"""

from __future__ import annotations

from .compose import Layer, compose, describe, use
from .errors import ConfigError, ProtocolError, UpstreamError, WsgiStackError
from .pipeline import build_pipeline, load_pipeline
from .server import Server, serve

__all__ = [
    "ConfigError",
    "Layer",
    "ProtocolError",
    "Server",
    "UpstreamError",
    "WsgiStackError",
    "build_pipeline",
    "compose",
    "describe",
    "load_pipeline",
    "serve",
    "use",
]
