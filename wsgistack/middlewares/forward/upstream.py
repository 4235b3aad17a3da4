"""Upstreams: where requests go, how healthy each one is, and its pool of connections.

Health is passive (``max_fails`` failures within ``fail_timeout`` seconds take
an upstream out for ``fail_timeout``, as nginx does; 0 turns it off) and, when configured,
active (a checker marks an upstream down at once and up again after
``rise`` good answers).  Time comes from the balancer's clock.

An ``https://`` upstream's connections are TLS, made with the pool's
``ssl.SSLContext`` (verified against the system's CAs unless it says
otherwise) and the name it checks; the handshake is part of connecting, so
its failure is a connect failure, and its connections are pooled and
checked before reuse as plain ones are.  A new one resumes the upstream's last
TLS session (kept per upstream: a session belongs to one server and name);
a server that no longer knows it does a full handshake instead, and a
handshake that fails drops it.  ``status()`` counts an https:// upstream's
full and resumed handshakes.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ...errors import ConfigError
from ...forking import forget_on_fork
from ...iotext import os_reason, peer_failure, tls_failure
from ...options import did_you_mean, flag
from ...paths import escaped_spelling
from .client import UPSTREAM, readable

__all__ = ["DEFAULT_PORTS", "Upstream", "parse_upstream"]

#: The schemes an upstream URL may have, and the port each means when it names none.
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass
class _Idle:
    sock: socket.socket
    since: float


def _clean(sock: socket.socket) -> bool:
    """True if an idle connection is open with nothing waiting to be read.

    An upstream closes idle connections on its own schedule (the reference
    server after 5 s, nginx after 60 s); a close or bytes it sent after its
    response (a body too long, a body for a HEAD) would otherwise meet the next
    request, which would fail and count against a healthy upstream.  One
    poll(2) with no wait sees both: readable means end of stream or unasked-for
    bytes, and a reset or hang-up is always reported.  (A recv(MSG_PEEK) says
    the same but raises BlockingIOError on every clean reuse, which measured
    dearer on the forwarder's hot path.)
    """
    if isinstance(sock, ssl.SSLSocket):
        return _tls_clean(sock)
    return not readable(sock)


def _tls_clean(sock: ssl.SSLSocket) -> bool:
    """``_clean`` for TLS, where the socket's readiness and the stream's differ.

    Bytes OpenSSL already decrypted wait in it, unseen by poll(2), and a TLS
    record that carries no data (a session ticket, a key update) makes the
    socket readable with nothing for the next response's reader.  So when poll
    says readable, one record is read without waiting: no data in it is a
    live connection; data (unasked for) or the end (a close_notify, a hang-up)
    is not, and the connection is closed anyway.
    """
    if sock.pending():
        return False
    if not readable(sock):
        return True
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        sock.recv(1)
    except ssl.SSLWantReadError:
        return True  # only records without data: still clean
    except OSError:
        return False
    finally:
        sock.settimeout(timeout)
    return False


class Upstream:
    """One backend server: address, weight, health, idle keep-alive connections."""

    def __init__(
        self,
        url: str,
        *,
        weight: int = 1,
        backup: bool = False,
        max_fails: int = 1,
        fail_timeout: float = 10.0,
        max_idle: int = 32,
        tls: ssl.SSLContext | None = None,
        server_name: str | None = None,
        session_reuse: bool = True,
    ) -> None:
        """``tls``: the context for an ``https://`` URL (None: the system's CAs);
        ``server_name``: the name sent in SNI and checked (None: the URL's host);
        ``session_reuse``: resume the last TLS session on a new connection."""
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ConfigError(
                f"LoadBalancer: upstreams: {url!r} is not an http:// or https:// URL"
                " (http://host:port)"
            )
        if parts.query or parts.fragment:
            raise ConfigError(f"LoadBalancer: upstreams: {url!r} must not have a query or fragment")
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
            raise ConfigError(
                f"LoadBalancer: upstreams: {url!r}: weight must be >= 1, got {weight!r}"
            )
        if "@" in parts.netloc:  # it would reach the upstream in Host; say where, not what
            shown = parts._replace(netloc="...@" + parts.netloc.rpartition("@")[2]).geturl()
            raise ConfigError(
                f"LoadBalancer: upstreams: {shown!r} must not carry a user or password"
            )
        try:
            port = DEFAULT_PORTS[parts.scheme] if parts.port is None else parts.port
        except ValueError:
            port = 0
        if not port:
            raise ConfigError(f"LoadBalancer: upstreams: {url!r} has a bad port")
        base = parts.path.rstrip("/")
        if (spelled := escaped_spelling(base)) is not None:
            # Sent as written before each request's path: it must be a URL's path.
            raise ConfigError(
                f"LoadBalancer: upstreams: {url!r}: the base path {base!r} is not"
                f" spelled as in a URL; write {spelled!r}"
            )
        self.url = url.rstrip("/")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = port
        self.host_header = parts.netloc
        self.base = base
        self.weight = weight
        self.backup = flag(backup, f"LoadBalancer: upstreams: {url!r}: backup")
        self.max_fails = max_fails
        self.fail_timeout = fail_timeout
        self.max_idle = max_idle
        self.tls: ssl.SSLContext | None = None
        self.server_name = server_name or parts.hostname
        if parts.scheme == "https":
            self.tls = tls or ssl.create_default_context()
        self.session_reuse = flag(session_reuse, f"LoadBalancer: upstreams: {url!r}: session_reuse")
        #: The session a new connection resumes (one attribute, read and set whole).
        self._session: ssl.SSLSession | None = None
        # Health and load, guarded by the lock.
        self._lock = threading.Lock()
        self.active = 0
        self.fails = 0
        self.first_fail = 0.0
        self.down_until = 0.0
        self.tripped = False  # taken out by max_fails, and no success since
        self.checked_down = False  # the active checker says down
        self.rises = 0
        self._idle: deque[_Idle] = deque()
        self.connections_made = 0
        #: https://: the good handshakes, full and resumed (nginx users look for
        #: these when they turn proxy_ssl_session_reuse on).
        self.tls_full = 0
        self.tls_resumed = 0
        forget_on_fork(self)

    def _forked(self) -> None:
        """In a new child process: forget what belongs to the parent.

        A server that builds the app before forking (gunicorn ``--preload``)
        hands every worker the parent's idle connections: two workers would
        read each other's responses on one socket.  The child closes its copies
        (the parent's stay open, so the upstream sees no close), and takes a
        new lock, in case another thread of the parent held the old one.  The
        TLS session is kept: it is data, not a connection, and the upstream
        resumes it for any number of clients (as for the parent's threads), so
        each worker's first connection skips the full handshake too.
        """
        self._lock = threading.Lock()
        self.active = 0
        while self._idle:
            self._idle.pop().sock.close()

    # -- load --------------------------------------------------------------------
    def started(self) -> None:
        """One more exchange in flight (what least connections and p2c compare).

        Under the lock: ``active += 1`` is a read and a write, and a thread
        switch between them would lose a count for good.
        """
        with self._lock:
            self.active += 1

    def ended(self) -> None:
        with self._lock:
            self.active -= 1

    # -- health ------------------------------------------------------------------
    def available(self, now: float) -> bool:
        return not self.checked_down and now >= self.down_until

    def failed(self, now: float) -> None:
        if not self.max_fails:
            return  # max_fails=0: no passive accounting (nginx), only active checks
        with self._lock:
            if self.tripped:
                # Back from its time out and failing again with no success between:
                # out again at once, as nginx, not after max_fails more failures
                # (each a client's wait on a connect or read timeout).
                self.down_until = now + self.fail_timeout
                return
            # The window opens at the first failure of a count (none yet, or the
            # last one ended by a success), not at one a success already forgave.
            if not self.fails or now - self.first_fail > self.fail_timeout:
                self.fails = 0
                self.first_fail = now
            self.fails += 1
            if self.fails >= self.max_fails:
                self.down_until = now + self.fail_timeout
                self.fails = 0
                self.tripped = True

    def succeeded(self) -> None:
        if self.fails or self.tripped:
            with self._lock:
                self.fails = 0
                self.tripped = False

    def check_result(self, ok: bool, rise: int) -> None:
        """An active health check's answer."""
        with self._lock:
            if ok:
                self.rises += 1
                if self.checked_down and self.rises >= rise:
                    self.checked_down = False
                    self.down_until = 0.0
                    self.tripped = False
            else:
                self.rises = 0
                self.checked_down = True

    # -- connections ------------------------------------------------------------------
    def connect(self, timeout: float) -> socket.socket:
        """A new connection, its TLS handshake done for https:// (each step within ``timeout``).

        A step that fails raises ConnectionError, or TimeoutError if it stalled,
        saying which step and why, as nginx's "connect() failed ... while
        connecting to upstream": ``connect to 10.0.0.5:8000 failed: connection
        refused``, ``TLS handshake with api.internal failed: certificate verify
        failed: ...``, ``... timed out (connect_timeout 3 s)``.
        """
        stalled = f"timed out (connect_timeout {timeout:g} s)"
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except TimeoutError:
            raise TimeoutError(f"connect to {address} {stalled}") from None
        except OSError as exc:  # refused, unreachable, a name that does not resolve
            raise ConnectionError(f"connect to {address} failed: {os_reason(exc)}") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:  # reset already (a crashed upstream's backlog)
            sock.close()
            why = peer_failure(exc, UPSTREAM)
            raise ConnectionError(f"connect to {address} failed: {why}") from None
        if self.tls is not None:
            # A session the server no longer knows (restarted, expired) is no
            # error: the server answers with a full handshake instead.
            offered = self._session
            try:
                sock = self.tls.wrap_socket(sock, server_hostname=self.server_name, session=offered)
            except BaseException as exc:
                sock.close()
                self._forget_session(offered)
                handshake = f"TLS handshake with {self.server_name}"
                if isinstance(exc, TimeoutError):
                    raise TimeoutError(f"{handshake} {stalled}") from None
                if isinstance(exc, ssl.SSLError):
                    raise ConnectionError(f"{handshake} failed: {tls_failure(exc)}") from None
                if isinstance(exc, OSError):  # a reset mid-handshake
                    raise ConnectionError(
                        f"{handshake} failed: {peer_failure(exc, UPSTREAM)}"
                    ) from None
                raise
        with self._lock:
            self.connections_made += 1
            if isinstance(sock, ssl.SSLSocket) and sock.session_reused:
                self.tls_resumed += 1
            elif self.tls is not None:
                self.tls_full += 1
        return sock

    def _forget_session(self, offered: ssl.SSLSession | None) -> None:
        """A handshake that offered ``offered`` failed: offer it no more.

        Whatever broke the handshake (a certificate no longer trusted, a
        server that aborts on the session, a stall), the next one starts
        afresh rather than offer the same session again and again.  Only that
        session: one another thread kept meanwhile came from a good handshake.
        """
        if offered is not None and self._session is offered:
            self._session = None

    def keep_session(self, sock: socket.socket) -> None:
        """Keep ``sock``'s TLS session for the next new connection to resume.

        Called once a response was read whole on it, not right after the
        handshake: a TLS 1.3 server sends the tickets that make a session
        resumable after its handshake, and the response's reads take them in.
        """
        if self.session_reuse and isinstance(sock, ssl.SSLSocket):
            session = sock.session
            if session is not None:
                self._session = session

    def take_idle(self, now: float, max_age: float) -> socket.socket | None:
        """The most recent idle connection that is younger than ``max_age`` and still clean."""
        while True:
            with self._lock:
                if not self._idle:
                    return None
                idle = self._idle.pop()  # the most recent: least likely closed by the peer
            if now - idle.since < max_age and _clean(idle.sock):
                return idle.sock
            idle.sock.close()

    def give_back(self, sock: socket.socket, now: float) -> None:
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append(_Idle(sock, now))
                return
        sock.close()

    def close_idle(self) -> None:
        with self._lock:
            while self._idle:
                self._idle.pop().sock.close()

    def status(self, now: float) -> dict[str, Any]:
        """The upstream's row for a status page; an https:// one's counts its TLS handshakes."""
        row = {
            "url": self.url,
            "weight": self.weight,
            "backup": self.backup,
            "up": self.available(now),
            "active": self.active,
            "idle": len(self._idle),
            "connections_made": self.connections_made,
        }
        if self.tls is not None:
            row["tls_full_handshakes"] = self.tls_full
            row["tls_resumed_handshakes"] = self.tls_resumed
        return row

    def __repr__(self) -> str:
        extra = f", weight={self.weight}" if self.weight != 1 else ""
        return f"Upstream({self.url!r}{extra}{', backup' if self.backup else ''})"


_UPSTREAM_KEYS = ("url", "weight", "backup")


def parse_upstream(
    spec: Any,
    defaults: dict[str, Any],
    tls: Callable[[], dict[str, Any]] | None = None,
) -> Upstream:
    """``"http://host:port"``, ``{"url": ..., "weight": 2, "backup": true}`` or an Upstream.

    ``tls()``: the pool's TLS options for ``Upstream``, asked only for an ``https://`` URL.
    """
    if isinstance(spec, Upstream):
        return spec
    if isinstance(spec, str):
        return Upstream(spec, **defaults, **_tls_options(spec, tls))
    if isinstance(spec, dict):
        options = dict(spec)
        url = options.pop("url", None)
        unknown = sorted(str(key) for key in set(options) - {"weight", "backup"})
        if url is None or unknown:
            hint = ""
            if unknown:
                hint = f" unknown key {unknown[0]!r}{did_you_mean(unknown[0], _UPSTREAM_KEYS)};"
            raise ConfigError(
                f"LoadBalancer: upstreams: {spec!r}:{hint} expected url and optional weight, backup"
            )
        return Upstream(url, **options, **defaults, **_tls_options(url, tls))
    raise ConfigError(f"LoadBalancer: upstreams: {spec!r} is not a URL or a table")


def _tls_options(url: Any, tls: Callable[[], dict[str, Any]] | None) -> dict[str, Any]:
    if tls is None or not isinstance(url, str) or url[:6].lower() != "https:":
        return {}
    return tls()
