"""Metrics to a StatsD daemon, as gunicorn's ``--statsd-host`` sends them, under its names.

A dashboard built on gunicorn's metrics (Datadog's gunicorn integration,
Grafana through statsd_exporter) reads ours unchanged, so the names are
gunicorn's, after ``--statsd-prefix``:

- ``gunicorn.requests`` (counter) and ``gunicorn.request.status.NNN`` (counter):
  one per answered request, the server's own refusals (400, 408, 413, 431...) too;
- ``gunicorn.request.duration`` (timer, ms): from the complete request head to
  the end of the response, as the access log's ``%(D)s``; none for a refusal;
- ``gunicorn.workers`` (gauge): from the master, as the count changes;
- ``gunicorn.log.critical``, ``.error``, ``.warning``, ``.exception`` (counters):
  one per line the ``wsgistack`` loggers write at that level.

Each worker sends its own requests' lines, one non-blocking datagram per
request.  The daemon is told nothing it must answer: one that is down (or a
unix socket nobody reads) loses the metrics, is logged once per process, and
never slows or fails a request.

    worker.access_log = request_log(config)       # AccessLog, RequestMetrics or None
    worker.access_log(environ, response, started)  # a request answered: a line, metrics
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .access import AccessLog

if TYPE_CHECKING:  # options.py takes the converters below, and config.py options.py's table
    from .config import ServerConfig
    from .notify import Notify

__all__ = [
    "RequestMetrics",
    "Statsd",
    "check_statsd",
    "dogstatsd_tags",
    "master_metrics",
    "request_log",
    "statsd_host",
    "statsd_prefix",
]

log = logging.getLogger("wsgistack.server")

#: StatsD's port when ``--statsd-host`` gives none, as gunicorn's default.
DEFAULT_PORT = 8125


# -- the options -----------------------------------------------------------------------
def statsd_host(value: Any) -> str | None:
    """``HOST[:PORT]``, ``[IPv6][:PORT]`` or ``unix:/path`` (gunicorn's ``unix:///path`` too).

    Written back as ``host:port`` or ``unix:/path``; the name is resolved at
    start-up (``check_statsd``), not here.
    """
    if value is None:
        return None
    problem = f"statsd_host: {value!r} is not HOST:PORT or unix:/path, e.g. '127.0.0.1:8125'"
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(problem)
    if value.startswith("unix:"):
        path = value[5:].removeprefix("//")
        if not path.startswith("/"):
            raise ConfigError(f"statsd_host: {value!r}: the socket path must be absolute")
        return f"unix:{path}"
    host, port = _host_port(value, problem)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _host_port(value: str, problem: str) -> tuple[str, int]:
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"statsd_host: {value!r}: {host!r} is not an IPv6 address") from None
        if not bracket or (rest and not rest.startswith(":")):
            raise ConfigError(problem)
        port_text = rest[1:] if rest else str(DEFAULT_PORT)
    else:
        host, sep, port_text = value.partition(":")
        if ":" in port_text:
            raise ConfigError(f"statsd_host: {value!r}: write an IPv6 address in brackets")
        port_text = port_text if sep else str(DEFAULT_PORT)
    if not (host and port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536):
        raise ConfigError(problem)
    return host, int(port_text)


def statsd_prefix(value: Any) -> str:
    """Put before every metric's name; a dot is added where it lacks one, as gunicorn does."""
    if not isinstance(value, str) or any(c in value for c in ":|@#\n\r "):
        raise ConfigError(
            f"statsd_prefix: {value!r} must be a metric name part such as 'myapp'"
            " (no ':', '|', '@', '#' or whitespace: StatsD's separators)"
        )
    return value.rstrip(".") + "." if value.strip(".") else ""


def dogstatsd_tags(value: Any) -> str:
    """``key:value,...`` added to every metric as Datadog's agent reads them (``|#...``)."""
    if not isinstance(value, str) or any(c in value for c in "|@#\n\r "):
        raise ConfigError(
            f"dogstatsd_tags: {value!r} must be comma-separated tags such as"
            " 'env:prod,service:shop' (no '|', '@', '#' or whitespace)"
        )
    if value and not all(value.split(",")):
        raise ConfigError(f"dogstatsd_tags: {value!r} has an empty tag")
    return value


def check_statsd(config: ServerConfig) -> None:
    """Resolve ``--statsd-host`` once at start-up: a name that does not resolve fails here.

    As gunicorn resolves it as it starts; a worker started later whose look-up
    fails sends nothing and logs why (``Statsd.open``), serving on.
    """
    if config.statsd_host is not None:
        _address(config.statsd_host).close()


def _address(target: str) -> socket.socket:
    """A non-blocking datagram socket for ``target``, a UDP one connected to it."""
    if target.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        return sock  # sendto each time: nobody listening yet is no error at start
    host, _, port = target.rpartition(":")
    try:
        found = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise ConfigError(
            f"statsd_host: {target!r}: cannot resolve {host!r} ({exc.strerror})"
        ) from None
    family, kind, proto, _, address = found[0]
    sock = socket.socket(family, kind | socket.SOCK_CLOEXEC, proto)
    sock.setblocking(False)
    # Connected: each send names no address, and a daemon that is down shows
    # as ECONNREFUSED on a later send (an ICMP port unreachable), logged once.
    sock.connect(address)
    return sock


# -- the client ------------------------------------------------------------------------
class Statsd:
    """Send StatsD lines (``name:value|type``) to one daemon; failures logged once, never raised."""

    def __init__(self, target: str, sock: socket.socket, prefix: str = "", tags: str = "") -> None:
        self.target = target
        self.prefix = prefix
        self._sock = sock
        self._unix = target[5:] if target.startswith("unix:") else None
        self._suffix = f"|#{tags}" if tags else ""
        self._warned = False
        self._last_gauge: int | None = None
        self._counter: _LogCounter | None = None

    @classmethod
    def open(cls, config: ServerConfig) -> Statsd | None:
        """The client ``config`` asks for (None: no ``--statsd-host``), counting log lines.

        A name that no longer resolves (a worker started after a DNS failure)
        gives None, logged: metrics are never a reason not to serve.
        """
        if config.statsd_host is None:
            return None
        try:
            sock = _address(config.statsd_host)
        except (ConfigError, OSError) as exc:
            log.warning("%s; this process sends no metrics", exc)
            return None
        client = cls(config.statsd_host, sock, config.statsd_prefix, config.dogstatsd_tags)
        client._counter = _LogCounter(client)
        logging.getLogger("wsgistack").addHandler(client._counter)
        return client

    def line(self, name: str, value: object, kind: str) -> str:
        """One metric's line, with the prefix and the tags."""
        return f"{self.prefix}{name}:{value}|{kind}{self._suffix}"

    def send(self, *lines: str) -> None:
        """The lines in one datagram (StatsD reads several, one a line)."""
        data = "\n".join(lines).encode()
        try:
            if self._unix is None:
                self._sock.send(data)
            else:
                self._sock.sendto(data, self._unix)
        except OSError as exc:  # down, refusing, or its queue full: the lines are lost
            if not self._warned:
                self._warned = True  # first: the warning below is counted, so sent, too
                log.warning(
                    "statsd_host %s: cannot send metrics (%s); they are lost while it"
                    " does not take them (said once)",
                    self.target,
                    exc.strerror or exc,
                )

    def workers(self, count: int) -> None:
        """The master's ``gunicorn.workers`` gauge, sent when the count changes."""
        if count != self._last_gauge:
            self._last_gauge = count
            self.send(self.line("gunicorn.workers", count, "g"))

    def close(self) -> None:
        if self._counter is not None:
            logging.getLogger("wsgistack").removeHandler(self._counter)
        self._sock.close()


class _LogCounter(logging.Handler):
    """Counts the ``wsgistack`` loggers' warnings and errors as gunicorn's ``gunicorn.log.*``.

    A forked worker inherits its master's counter and sends through its own:
    the counter counts only in the process that made it.
    """

    def __init__(self, client: Statsd) -> None:
        super().__init__(logging.WARNING)
        self._client = client
        self._pid = os.getpid()

    def emit(self, record: logging.LogRecord) -> None:
        if os.getpid() != self._pid:
            return
        if record.exc_info and record.levelno == logging.ERROR:
            level = "exception"  # log.exception(), as gunicorn counts it apart from error
        else:
            level = record.levelname.lower()
        self._client.send(self._client.line(f"gunicorn.log.{level}", 1, "c"))


# -- a worker's requests -------------------------------------------------------------------
class RequestMetrics:
    """A worker's request log with metrics: the access log's calls, each sent to StatsD too.

    Takes the access log's place (``worker.access_log``), so a request is
    looked at once, where the access log already is, and a server without
    ``--statsd-host`` pays nothing for it.
    """

    def __init__(self, client: Statsd, access_log: AccessLog | None) -> None:
        self.client = client
        self.access_log = access_log
        self._requests = client.line("gunicorn.requests", 1, "c")

    def __call__(
        self, environ: dict[str, Any], response: Any, started: float | None = None
    ) -> None:
        if self.access_log is not None:
            self.access_log(environ, response, started)
        client, status = self.client, (response.status or "500")[:3]
        lines = [self._requests, client.line(f"gunicorn.request.status.{status}", 1, "c")]
        if started is not None:
            ms = (time.monotonic() - started) * 1000.0
            lines.append(client.line("gunicorn.request.duration", f"{ms:.3f}", "ms"))
        client.send(*lines)

    def refused(self, peer: Any, status: int, request: str = "", *, size: int = 0) -> None:
        """A request refused before it had an environ: counted with its status, not timed."""
        if self.access_log is not None:
            self.access_log.refused(peer, status, request, size=size)
        self.client.send(
            self._requests, self.client.line(f"gunicorn.request.status.{status}", 1, "c")
        )

    def reopen(self) -> None:
        if self.access_log is not None:
            self.access_log.reopen()

    def close(self) -> None:
        if self.access_log is not None:
            self.access_log.close()
        self.client.close()


def request_log(config: ServerConfig) -> AccessLog | RequestMetrics | None:
    """What a worker tells of each request: the access log, with metrics if asked, or None."""
    access_log = AccessLog.open(config.access_log, config.access_log_format)
    client = Statsd.open(config)
    return access_log if client is None else RequestMetrics(client, access_log)


def master_metrics(config: ServerConfig, notify: Notify) -> Statsd | None:
    """The master's client: its log lines counted, the worker gauge sent as ``notify`` hears it."""
    client = Statsd.open(config)
    if client is not None:
        notify.on_workers = client.workers
    return client
