"""The reference server: strict HTTP/1.1 on httptools, threads per worker, prefork master.

from wsgistack.server import Server, serve
with Server(app, bind="127.0.0.1:0", workers=0) as server:
    print(server.url)
"""

from __future__ import annotations

from .bind import Bind
from .config import ServerConfig
from .server import Server, serve

__all__ = ["Bind", "Server", "ServerConfig", "serve"]
