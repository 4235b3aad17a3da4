"""Active health checks: a thread that GETs a path on each upstream, every so often.

Rules: the checker starts on first use (a request, or a status page that asks),
so a preforking server runs one per worker, each judging for itself; ``stop()``
ends it for good (a check in progress cut short), and no request starts another.
Each upstream is checked in a thread of its own, as nginx and HAProxy check
each server on its own: one that takes the connection and never answers (a
gunicorn sync worker busy with a long request) holds up only its own checks,
for up to the read timeout; ``check_now()`` checks them all at once too.  A
check is one GET with ``Connection: close`` under the upstream's base path: a 2xx or 3xx answer read
whole is a success, anything else (no connection, a timeout, a 5xx, a garbled
answer) a failure, which the upstream counts (``Upstream.check_result``).

    checker = HealthChecker(upstreams, checked_path("/health"), interval=5.0, rise=2,
                            connect_timeout=3.0, read_timeout=60.0)
    checker.ensure_running()
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import threading
from collections.abc import Sequence

from ...errors import ConfigError
from ...forking import forget_on_fork
from ...paths import escaped_spelling
from .client import Exchange, ReadTimeout, UpstreamClosed, request_head, send_request
from .upstream import Upstream

__all__ = ["HealthChecker", "checked_host", "checked_path"]

#: A Host value: a name or IPv4 address (a fully qualified name may end in a dot,
#: as Django and nginx accept it), or an IPv6 one in brackets; a port if any.
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.?|\[(?P<ipv6>[0-9A-Fa-f:.]+)\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)


def checked_path(value: object) -> str:
    """``value`` if it is a path (and query) spelled as in a URL; else a ConfigError.

    Sent as written: a space would make every check a 400 (every upstream
    down), a letter outside latin-1 would stop the checker for good.
    """
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(f"LoadBalancer: health_path: must start with '/', got {value!r}")
    path, mark, query = value.partition("?")
    spelled = (escaped_spelling(path) or path) + mark + (escaped_spelling(query) or query)
    if spelled != value:
        raise ConfigError(
            f"LoadBalancer: health_path: {value!r} is not spelled as in a URL; write {spelled!r}"
        )
    return value


def checked_host(value: object) -> str:
    """``value`` if it is a ``host[:port]`` to send as Host; else a ConfigError."""
    if (
        not isinstance(value, str)
        or (found := _HOST.fullmatch(value)) is None
        or not _valid_parts(found["ipv6"], found["port"])
    ):
        raise ConfigError(
            f"LoadBalancer: health_host: expected a host name or address, with a port "
            f"if any (site.example, site.example:8080), got {value!r}"
        )
    return value


def _valid_parts(ipv6: str | None, port: str | None) -> bool:
    """Whether a bracketed address is an IPv6 one and a port is one (1-65535)."""
    if port is not None and not 0 < int(port) < 65536:
        return False
    if ipv6 is not None:
        try:
            ipaddress.IPv6Address(ipv6)
        except ValueError:
            return False
    return True


class HealthChecker:
    """Checks each of ``upstreams`` at ``path`` every ``interval`` seconds, each in its thread.

    :param rise: successes in a row that bring a checked-down upstream back.
    :param connect_timeout: seconds to connect; ``read_timeout``: seconds between reads.
    :param host: the Host to send; ``None``: each upstream's own ``host:port``.
    """

    def __init__(
        self,
        upstreams: Sequence[Upstream],
        path: str,
        *,
        interval: float,
        rise: int,
        connect_timeout: float,
        read_timeout: float,
        host: str | None = None,
    ) -> None:
        self.upstreams = upstreams
        self.host = host
        self.path = path
        self.interval = interval
        self.rise = rise
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._started = False
        self._lost: list[Upstream] = []  # upstreams whose checker thread died
        self._probing: set[socket.socket] = set()  # connections of the checks in progress
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        forget_on_fork(self)

    def _forked(self) -> None:
        """In a new child: the parent's threads did not come along, and its lock may be held."""
        self._lock = threading.Lock()
        self._started = False
        self._lost = []
        self._probing = set()
        stopped, self._stopped = self._stopped.is_set(), threading.Event()
        if stopped:
            self._stopped.set()

    def ensure_running(self) -> None:
        """Start the checks in this process unless they run (or were stopped)."""
        if self._started and not self._lost:
            return  # the usual case: two reads, no lock
        with self._lock:
            if self._stopped.is_set():
                return  # stopped for good: no thread per request from then on
            # Started on first use, so a preforking server starts them in each worker;
            # a checker that died (an error it did not expect) is started again.
            if not self._started:
                self._started = True
                self._lost = list(self.upstreams)
            for upstream in self._lost:
                self._start(upstream)
            self._lost = []

    def _start(self, upstream: Upstream) -> None:
        threading.Thread(
            # Named after its upstream, so a stack dump says which check hangs.
            target=self._loop,
            args=(upstream,),
            name=f"wsgistack-health {upstream.url}",
            daemon=True,
        ).start()

    def check_now(self) -> None:
        """Run one round of checks, every upstream at once; return when all have answered.

        Each upstream in a thread of its own, as the checker's: one that never
        answers holds the round up for its own timeouts, not once per such upstream.
        """
        failures: list[BaseException] = []
        whole = self._stopped.is_set()  # on a closed pool: nothing will cut it

        def check(upstream: Upstream) -> None:
            try:
                self._check(upstream, whole)
            except BaseException as exc:  # raised in the caller, as if checked there
                failures.append(exc)

        threads = [
            threading.Thread(
                target=check, args=(upstream,), name=f"wsgistack-health {upstream.url}", daemon=True
            )
            for upstream in self.upstreams[1:]
        ]
        for thread in threads:
            thread.start()
        try:
            self._check(self.upstreams[0], whole)
        finally:
            for thread in threads:
                thread.join()
        if failures:
            raise failures[0]

    def stop(self) -> None:
        """End the checks for good: each thread leaves at once, a check in progress cut short.

        A check waiting on an upstream that never answers would otherwise hold
        its thread and connection for up to the read timeout after the pool was
        closed.  A check cut short counts neither way.
        """
        with self._lock:
            self._stopped.set()
            for sock in self._probing:
                with contextlib.suppress(OSError):  # (the upstream closed it already)
                    sock.shutdown(socket.SHUT_RDWR)  # its recv() returns at once

    def _check(self, upstream: Upstream, whole: bool = False) -> None:
        """Check ``upstream`` once; the answer counts unless stop() cut the check short."""
        ok = self._probe(upstream, whole)
        if ok is not None:
            upstream.check_result(ok, self.rise)

    def _probe(self, upstream: Upstream, whole: bool) -> bool | None:
        """True if ``upstream`` answered 2xx or 3xx, False if not; None if stop() cut it.

        ``whole``: a check begun on a closed pool (``check_now()`` after ``stop()``)
        runs to its end; any other is cut by a stop, even one that came while it
        was connecting.
        """
        try:
            sock = upstream.connect(self.connect_timeout)
        except OSError:
            return False
        with self._lock:
            if not whole:
                if self._stopped.is_set():  # stopped while it connected
                    sock.close()
                    return None
                self._probing.add(sock)
        try:
            sock.settimeout(self.read_timeout)
            host = self.host or upstream.host_header
            headers = [("Host", host), ("Connection", "close")]
            head = request_head("GET", upstream.base + self.path, headers, None, False)
            send_request(sock, head, None, None, False)
            exchange = Exchange(sock, head_only=False)
            exchange.read_head()
            for _ in exchange.body():
                pass
            upstream.keep_session(sock)  # checks resume sessions too, as requests do
            return exchange.status[:1] in ("2", "3")
        except (OSError, UpstreamClosed, ReadTimeout):
            return None if not whole and self._stopped.is_set() else False
        finally:
            with self._lock:
                self._probing.discard(sock)  # never shut down once closed (its number reused)
            sock.close()

    def _loop(self, upstream: Upstream) -> None:
        try:
            while not self._stopped.wait(self.interval):
                self._check(upstream)
        finally:
            if not self._stopped.is_set():
                with self._lock:
                    self._lost.append(upstream)  # the next request starts it again
