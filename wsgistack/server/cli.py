"""``wsgistack serve``: serve a ``module:app`` or a pipeline file.

$ wsgistack serve myapp:app --bind 127.0.0.1:8000 --workers 2 --threads 8
$ wsgistack serve --config stack.toml
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from ..loader import load_app, log_load_failure, working_directory
from ..pipeline import load_pipeline, read_pipeline
from .config import ServerConfig
from .listener import describe_socket
from .server import Server

__all__ = ["add_serve"]

#: (option, help) in the order --help shows them; values go through config.OPTIONS.
_HELP = (
    ("bind", "HOST:PORT, [IPv6]:PORT, unix:/path, uwsgi://...; repeatable (127.0.0.1:8000)"),
    ("protocol", "http, or uwsgi for nginx's uwsgi_pass; a uwsgi:// bind overrides (default http)"),
    ("workers", "worker processes; 0 serves in this process (default 1)"),
    ("threads", "request threads per worker (default 4)"),
    ("timeout", "seconds a client has to send a request, or to take a response (default 30)"),
    ("keepalive", "seconds an idle keep-alive connection is kept (default 5)"),
    ("graceful_timeout", "seconds in-flight requests get on stop or reload (default 30)"),
    (
        "worker_timeout",
        "seconds a worker may hang (no heartbeat from its loop) before the master"
        " kills and replaces it; 0 off (default 60)",
    ),
    ("max_requests", "recycle a worker after about this many requests; 0 never (default 0)"),
    ("max_body_size", "largest request body in bytes, else 413; 0 for no limit (default 100 MiB)"),
    ("root_path", "SCRIPT_NAME the app is mounted at, e.g. /api (default '')"),
    ("access_log", "'-' for stdout or a file: combined log format (default off)"),
    ("log_level", "debug, info, warning, error or critical (default info)"),
    ("pid", "write the server's PID to this file, removed at exit (default none)"),
    ("backlog", "listen() backlog (default 2048)"),
    ("socket_mode", "octal permissions of unix:/path sockets, e.g. 660 (default: the umask's)"),
)


class _ZonedFormatter(logging.Formatter):
    """Local time with its UTC offset (``2026-03-01 12:00:00,123 +0100``), as gunicorn's.

    An app may move its worker to another zone as it loads (Django sets ``TZ``
    from ``TIME_ZONE``): without the offset, its lines and the master's disagree
    by hours and nothing says so.
    """

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        zone = time.strftime("%z", self.converter(record.created))
        return f"{super().formatTime(record, datefmt)} {zone}"


def _serve(args: argparse.Namespace) -> int:
    options = {name: getattr(args, name) for name, _ in _HELP if getattr(args, name) is not None}
    config = ServerConfig.from_options(**options)  # validate before loading the app
    if (args.app is None) == (args.config is None):
        raise ConfigError("give exactly one of APP (module:attr) or --config FILE")
    handler = logging.StreamHandler()
    handler.setFormatter(_ZonedFormatter("%(asctime)s [%(process)d] %(levelname)s %(message)s"))
    logging.basicConfig(level=config.log_level.upper(), handlers=[handler])
    if args.app is not None:
        load = functools.partial(load_app, args.app)
    else:
        read_pipeline(args.config)  # a missing or broken file: one line, before binding
        load = functools.partial(load_pipeline, args.config)
    loader = functools.partial(_load_in, working_directory(), load)
    if config.workers == 0:
        try:
            app = loader()  # errors show here, before binding
        except Exception as exc:
            if isinstance(exc, ConfigError) and exc.__cause__ is None:
                raise  # a bad spec: one line from main(), as for any bad option
            # The app's own code failed: with its traceback and status 2, as a
            # master reports a worker's.
            log_load_failure(logging.getLogger("wsgistack.server"), "wsgistack serve", exc)
            return 2
        server = Server(app, **options)
    else:
        server = Server(loader=loader, **options)  # workers load it: SIGHUP reloads code
    server.bind()
    for sock, bind in zip(server.listeners, server.config.bind, strict=True):
        host, port = describe_socket(sock)
        scheme = "uwsgi://" if bind.protocol == "uwsgi" else "http://"
        if sock.family == socket.AF_UNIX:
            where = f"{scheme}unix:{host}"
        else:
            where = f"{scheme}[{host}]:{port}" if ":" in host else f"{scheme}{host}:{port}"
        logging.getLogger("wsgistack.server").info("listening on %s", where)
    return server.serve_forever()


def _load_in(workdir: str, load: Callable[[], Any]) -> Any:
    """Load the app from ``workdir`` (in each worker, after the fork).

    Through a symlink, that is the release it points to at this load: after a
    deploy switched it, SIGHUP's new workers run in the new release.
    """
    os.chdir(workdir)
    return load()


def add_serve(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> Callable[[argparse.Namespace], int]:
    """Add the ``serve`` subcommand; returns its handler."""
    parser = commands.add_parser("serve", help="serve a WSGI app or a pipeline file")
    parser.add_argument("app", nargs="?", help="module:attr of a WSGI app, e.g. myapp:app")
    parser.add_argument("--config", metavar="FILE", help="a TOML pipeline file to serve")
    for name, text in _HELP:
        flag = "--" + name.replace("_", "-")
        if name == "bind":
            parser.add_argument(flag, action="append", help=text)
        else:
            parser.add_argument(flag, help=text)
    return _serve
