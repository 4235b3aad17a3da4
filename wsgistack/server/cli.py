"""``wsgistack serve``: serve ``module:app`` or a pipeline file with the reference server.

wsgistack serve myproject.wsgi:application --bind 0.0.0.0:8000 --workers 4
wsgistack serve --config stack.toml --bind 127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from ..loader import load_app
from ..pipeline import load_pipeline
from .config import ServerConfig

__all__ = ["add_serve"]

#: CLI flag -> (config name, help). Values are validated by ServerConfig's converters.
OPTIONS: dict[str, tuple[str, str]] = {
    "--workers": ("workers", "worker processes; 0 serves in this process (default)"),
    "--threads": ("threads", "request threads per worker (default 8)"),
    "--timeout": ("timeout", "seconds a client may take to send a request (default 30)"),
    "--keepalive": ("keepalive", "seconds an idle keep-alive connection is kept (default 5)"),
    "--graceful-timeout": ("graceful_timeout", "seconds to finish requests on stop (default 30)"),
    "--max-requests": ("max_requests", "replace a worker after this many requests (0: never)"),
    "--max-requests-jitter": ("max_requests_jitter", "random extra requests before replacing"),
    "--max-body-size": ("max_body_size", "largest request body, e.g. 10m (default 1g)"),
    "--root-path": ("root_path", "SCRIPT_NAME for a site served under a prefix"),
    "--access-log": ("access_log", "'-' for stdout, or a file: combined log format"),
    "--log-level": ("log_level", "debug, info, warning, error or critical (default info)"),
    "--backlog": ("backlog", "listen backlog (default 2048)"),
}


def _setup_logging(config: ServerConfig) -> None:
    logging.basicConfig(
        level=config.level, format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"
    )
    access = logging.getLogger("wsgistack.access")
    access.propagate = False
    if config.access_log is None:
        access.setLevel(logging.WARNING)
        return
    handler: logging.Handler = (
        logging.StreamHandler(sys.stdout)
        if config.access_log == "-"
        else logging.FileHandler(config.access_log)
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.addHandler(handler)
    access.setLevel(logging.INFO)


def _serve(args: argparse.Namespace) -> int:
    from . import serve

    if bool(args.app) == bool(args.config):
        raise ConfigError("give an app (module:app) or --config FILE, not both or neither")
    values: dict[str, Any] = {
        name: getattr(args, name)
        for _, (name, _) in OPTIONS.items()
        if getattr(args, name) is not None
    }
    values["binds"] = args.bind or ["127.0.0.1:8000"]
    config = ServerConfig.from_strings(values)
    loader: Callable[[], Any]
    if args.config:
        path = args.config
        load_pipeline(path)  # validate the file now: a bad pipeline fails before serving
        loader = lambda: load_pipeline(path)  # noqa: E731
    else:
        spec = args.app
        loader = lambda: load_app(spec)  # noqa: E731
        if config.workers == 0:
            load_app(spec)
    _setup_logging(config)
    options = {f.name: getattr(config, f.name) for f in config.__dataclass_fields__.values()}
    return serve(
        None, loader=loader, **{k: v for k, v in options.items() if k != "binds"}, bind=config.binds
    )  # type: ignore[arg-type]


def add_serve(commands: argparse._SubParsersAction) -> Callable[[argparse.Namespace], int]:
    parser = commands.add_parser("serve", help="serve a WSGI app with the reference server")
    parser.add_argument("app", nargs="?", help="module:app, module:factory() or module")
    parser.add_argument("--config", help="a TOML pipeline file to serve instead of an app")
    parser.add_argument(
        "--bind", action="append", help="HOST:PORT, [V6]:PORT or unix:PATH; repeatable"
    )
    for flag, (name, text) in OPTIONS.items():
        parser.add_argument(flag, dest=name, help=text)
    return _serve
