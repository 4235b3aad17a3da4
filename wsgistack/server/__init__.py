"""The reference server: strict HTTP/1.1, a selector and a thread pool per worker, prefork.

from wsgistack.server import Server
with Server(app, bind="127.0.0.1:0") as server:     # in-process, for tests
    urlopen(server.url)

serve(app, bind="0.0.0.0:8000", workers=4)            # blocks; signals as gunicorn
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .._types import WSGIApplication
from .config import ServerConfig
from .listener import open_listeners
from .worker import Worker

__all__ = ["Server", "ServerConfig", "serve"]


def _config(bind: Any, options: dict[str, Any]) -> ServerConfig:
    if bind is not None:
        options["binds"] = bind
    return ServerConfig(**options)


class Server:
    """One worker in a background thread of this process: tests and embedding.

    The sockets are bound when the server is made, so ``address`` and ``url``
    are known before it starts (bind port 0 to get a free one).
    """

    def __init__(self, app: WSGIApplication, bind: Any = "127.0.0.1:0", **options: Any) -> None:
        self.config = _config(bind, options)
        self.app = app
        self.listeners = open_listeners(self.config.binds, self.config.backlog)
        self.worker = Worker(app, self.config, self.listeners)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> Any:
        """The first listener's address: (host, port) for TCP, a path for unix."""
        return self.listeners[0].getsockname()

    @property
    def url(self) -> str:
        host, port = self.address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"

    def start(self) -> Server:
        self._thread = threading.Thread(
            target=self.worker.run, name="wsgistack-worker", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, graceful: bool = True, timeout: float = 10.0) -> None:
        self.worker.stop(graceful)
        if self._thread is not None:
            self._thread.join(timeout)
        for sock in self.listeners:
            sock.close()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    app: WSGIApplication | Callable[[], WSGIApplication],
    bind: Any = None,
    *,
    loader: Callable[[], WSGIApplication] | None = None,
    **options: Any,
) -> int:
    """Serve until stopped by a signal; returns the exit status.

    With ``workers=0`` (the default) this process serves; with N >= 1 a master
    preforks N workers.  ``loader`` (instead of an app) is called in each
    worker, so a SIGHUP reload imports the app afresh.
    """
    from .arbiter import Arbiter, run_single

    config = _config(bind, options)
    load = loader if loader is not None else (lambda: app)
    if config.workers == 0:
        return run_single(load, config)
    return Arbiter(load, config).run()
