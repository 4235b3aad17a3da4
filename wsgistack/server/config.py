"""ServerConfig: every server option, validated in one place.

The same table of (name, converter) pairs serves keyword arguments, the CLI
and pipeline files, so an option means the same thing wherever it is given
and a bad one fails at start-up with a message naming it.

    config = ServerConfig(binds=("127.0.0.1:8000",), workers=2, threads=8)
    config = ServerConfig.from_strings({"workers": "2", "bind": "[::1]:8000"})
"""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

__all__ = ["Bind", "ServerConfig", "parse_bind"]

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True)
class Bind:
    """Where to listen: a TCP host and port, or a unix socket path."""

    family: int
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.family == socket.AF_UNIX:
            return f"unix:{self.path}"
        if self.family == socket.AF_INET6:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def parse_bind(text: str) -> Bind:
    """``HOST:PORT``, ``[V6]:PORT``, ``:PORT`` (all IPv4) or ``unix:/path``."""
    if not isinstance(text, str) or not text:
        raise ConfigError(f"bind: expected HOST:PORT or unix:PATH, got {text!r}")
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise ConfigError(f"bind: {text!r} has no socket path")
        return Bind(socket.AF_UNIX, path=path)
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        family = socket.AF_INET6
        if not sep:
            raise ConfigError(f"bind: {text!r}: expected [IPV6]:PORT")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ConfigError(f"bind: {text!r}: expected HOST:PORT")
        family = socket.AF_INET
        host = host or "0.0.0.0"
    if not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"bind: {text!r}: {port!r} is not a port number")
    return Bind(family, host=host, port=int(port))


def _positive_int(name: str, minimum: int = 1) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{name}: expected a whole number >= {minimum}, got {value!r}")
        return value

    return convert


def _seconds(name: str) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = -1.0
        if isinstance(value, bool) or not seconds > 0 or seconds == float("inf"):
            raise ConfigError(f"{name}: expected a number of seconds > 0, got {value!r}")
        return seconds

    return convert


def _size(name: str) -> Callable[[Any], int]:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}

    def convert(value: Any) -> int:
        if isinstance(value, str):
            text = value.strip().lower().removesuffix("b")
            factor = units.get(text[-1:], 1)
            digits = text[:-1] if text[-1:] in units else text
            if digits.isdigit():
                return int(digits) * factor
        elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        raise ConfigError(f"{name}: expected a size in bytes (e.g. 10m), got {value!r}")

    return convert


def _binds(value: Any) -> tuple[Bind, ...]:
    items = [value] if isinstance(value, str | Bind) else list(value)
    if not items:
        raise ConfigError("bind: give at least one address")
    return tuple(item if isinstance(item, Bind) else parse_bind(item) for item in items)


def _choice(name: str, choices: tuple[str, ...]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if value not in choices:
            raise ConfigError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")
        return value

    return convert


def _optional_text(name: str) -> Callable[[Any], str | None]:
    def convert(value: Any) -> str | None:
        if value is None or (isinstance(value, str) and value):
            return value
        raise ConfigError(f"{name}: expected '-' or a file path, got {value!r}")

    return convert


def _root_path(value: Any) -> str:
    if not isinstance(value, str) or (value and not value.startswith("/")):
        raise ConfigError(f"root_path: expected '' or a path starting with '/', got {value!r}")
    return value.rstrip("/")


@dataclass(frozen=True)
class ServerConfig:
    """The reference server's options (defaults suit a small production box).

    ``workers=0`` serves in this process (tests, embedding); N >= 1 preforks N.
    """

    binds: tuple[Bind, ...] = (Bind(socket.AF_INET, "127.0.0.1", 8000),)
    workers: int = 0
    threads: int = 8
    #: Seconds a client may take to send a request's head or the next body bytes.
    timeout: float = 30.0
    #: Seconds an idle keep-alive connection is kept.
    keepalive: float = 5.0
    #: Seconds in-flight requests get to finish on SIGTERM or reload.
    graceful_timeout: float = 30.0
    #: Requests after which a worker is replaced (0: never), plus up to this jitter.
    max_requests: int = 0
    max_requests_jitter: int = 0
    max_body_size: int = 1024**3
    #: Limits on the request head, with the statuses users expect (414, 431).
    max_request_line: int = 8190
    max_header_count: int = 100
    max_header_size: int = 65536
    root_path: str = ""
    access_log: str | None = None
    log_level: str = "info"
    backlog: int = 2048

    def __post_init__(self) -> None:
        for name, convert in _CONVERTERS.items():
            object.__setattr__(self, name, convert(getattr(self, name)))

    @classmethod
    def from_strings(cls, values: Mapping[str, Any]) -> ServerConfig:
        """Build from CLI-style names and strings (``bind`` may repeat as a list)."""
        options: dict[str, Any] = {}
        known = {f.name for f in dataclasses.fields(cls)}
        for name, value in values.items():
            key = {"bind": "binds"}.get(name, name).replace("-", "_")
            if key not in known:
                raise ConfigError(f"unknown server option {name!r}")
            options[key] = value
        return cls(**options)

    def replace(self, **changes: Any) -> ServerConfig:
        return dataclasses.replace(self, **changes)

    @property
    def level(self) -> int:
        return int(getattr(logging, self.log_level.upper()))


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "binds": _binds,
    "workers": _positive_int("workers", 0),
    "threads": _positive_int("threads"),
    "timeout": _seconds("timeout"),
    "keepalive": _seconds("keepalive"),
    "graceful_timeout": _seconds("graceful_timeout"),
    "max_requests": _positive_int("max_requests", 0),
    "max_requests_jitter": _positive_int("max_requests_jitter", 0),
    "max_body_size": _size("max_body_size"),
    "max_request_line": _positive_int("max_request_line", 64),
    "max_header_count": _positive_int("max_header_count"),
    "max_header_size": _positive_int("max_header_size", 256),
    "root_path": _root_path,
    "access_log": _optional_text("access_log"),
    "log_level": _choice("log_level", LOG_LEVELS),
    "backlog": _positive_int("backlog"),
}
