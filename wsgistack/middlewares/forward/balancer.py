"""LoadBalancer: forward requests to a pool of upstream HTTP servers.

    application = LoadBalancer(
        ["http://10.0.0.5:8000", {"url": "http://10.0.0.6:8000", "weight": 2},
         {"url": "http://10.0.0.9:8000", "backup": True}],
        strategy="least_conn", health_path="/health",
    )

Rules: the upstream is chosen only from configuration; nothing in the
request (an absolute URI, ``Host``) can make this an open proxy.  Hop-by-hop
headers never cross (RFC 9110 §7.6.1), in either direction, including those
named in ``Connection``.  Bodies stream both ways.  Retries are safe: a
connect failure moves to the next upstream for any method (nothing was
sent); after the request went out, only a bodiless idempotent request is
retried, and only on the conditions in ``next_upstream``.  ``TRACE`` is
answered 405 here and never forwarded (cross-site tracing).  No upstream
available is 503, a failed or garbled exchange 502, a timeout 504; a client
body that fails is the client's (400, or the reference server's own status)
and never counts against an upstream.  With ``request_buffering``, a body of
unknown length (chunked) is read whole before an upstream is chosen and sent
with a Content-Length.  ``X-Forwarded-*`` describe this hop unless a trusted
proxy sent them.
"""

from __future__ import annotations

import functools
import logging
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any

import webob.exc

from ..._logtext import request_from
from ..._types import StartResponse, WSGIEnvironment
from ...clientip import ProxyTrust, client_addr
from ...errors import ConfigError
from ...options import choice, count, flag, function, listed, owned, seconds
from ...refusals import refusal
from ...requestbody import (
    BodyTooLarge,
    ClientBodyError,
    body_failed,
    body_framing,
    chunked_input,
    spool_body,
)
from .attempt import Failure, attempt
from .balance import STRATEGIES
from .client import BadRequestHead, Exchange, request_head
from .health import HealthChecker, checked_host, checked_path
from .mapping import request_headers, request_target
from .methods import ALLOW, IDEMPOTENT, REFUSED
from .response import failed_answer, release, respond
from .tls import PoolTLS
from .upstream import Upstream, parse_upstream

__all__ = ["LoadBalancer"]

log = logging.getLogger("wsgistack.forward")

CONDITIONS = frozenset({"error", "timeout", "http_502", "http_503", "http_504"})


class LoadBalancer:
    """A WSGI app that forwards every request to one of ``upstreams``.

    :param upstreams: URLs (``http://host:port[/base]``, ``https://``) or tables with
        ``url``, ``weight`` and ``backup``; backups serve only when all others are down.
    :param strategy: ``round_robin`` (smooth, weighted), ``least_conn``, ``p2c``
        (power of two choices) or ``hash`` (consistent hashing on ``hash_key``).
    :param hash_key: for ``hash``: a callable of environ returning a str (None: all such
        requests share one place on the ring); the client address by default.
    :param max_fails: failures within ``fail_timeout`` seconds that take an upstream out
        for ``fail_timeout`` seconds (passive health, as nginx).  As in nginx, a
        pool of one upstream and no backup is never taken out this way: there
        is nowhere else to go, so its next request tries it again; and 0 turns
        the accounting off (only the active checks take an upstream out).
    :param health_path: if set, a background thread GETs it on each upstream every
        ``health_interval`` seconds; a failure takes it out, ``health_rise`` successes
        bring it back.  ``health_host``: the Host the checks send (by default each
        upstream's own ``host:port``); name the site when the upstreams check Host,
        as Django's ``ALLOWED_HOSTS`` does, or they answer 400 and are taken out.
    :param next_upstream: when to try another upstream: ``error``, ``timeout``,
        ``http_502``, ``http_503``, ``http_504`` (as nginx's ``proxy_next_upstream``).
    :param tries: upstreams tried at most per request; ``retry_timeout``: seconds at most.
    :param connect_timeout: seconds to connect; ``read_timeout``: seconds between reads.
    :param preserve_host: send the client's Host (default) or the upstream's.
    :param cookie_paths: map the ``Path`` of each ``Set-Cookie`` under the upstream's
        base path as a ``Location`` is mapped (``/app`` under the mount ``/legacy``
        is ``/legacy``), so the browser sends the cookie back (default); false
        passes every cookie on as the upstream set it.
    :param trusted_proxies: whose X-Forwarded-For/Proto and Forwarded chains are
        kept and extended, whose X-Forwarded-Host is kept as it came (one host, as
        Django reads it), and whose X-Forwarded-Prefix goes before SCRIPT_NAME;
        anyone else's are replaced.
    :param max_idle: idle keep-alive connections kept per upstream (0: none);
        ``idle_timeout``: seconds one may wait in the pool.  Each is checked before reuse.
    :param request_buffering: read a chunked request body whole (in memory up to
        1 MiB, then in a temporary file) before choosing an upstream, and send it
        with a Content-Length, as nginx's ``proxy_request_buffering on``: Django
        reads no body without one.  Off by default: the body streams as it came.
    :param max_body_size: the largest request body in bytes, else 413 (nginx's
        ``client_max_body_size``; 0: no limit).  A Content-Length over it is refused
        unread; a chunked body when it passes it (a buffered one before any upstream
        sees it, its temporary file removed; a streamed one cut short).  1 GiB by default.
    :param tls_verify: and ``tls_ca_certs``, ``tls_certfile``, ``tls_keyfile``,
        ``tls_password``, ``tls_server_name``, ``tls_session_reuse``,
        ``tls_min_version``, ``tls_ciphers``: how the pool speaks TLS to its
        ``https://`` upstreams (each described on ``tls.PoolTLS``, which checks them).
    """

    def __init__(
        self,
        upstreams: Sequence[Any],
        *,
        strategy: str = "round_robin",
        hash_key: Callable[[WSGIEnvironment], str] | None = None,
        max_fails: int = 1,
        fail_timeout: float = 10.0,
        health_path: str | None = None,
        health_interval: float = 5.0,
        health_rise: int = 2,
        health_host: str | None = None,
        next_upstream: Iterable[str] = ("error", "timeout"),
        tries: int = 3,
        retry_timeout: float = 10.0,
        connect_timeout: float = 3.0,
        read_timeout: float = 60.0,
        preserve_host: bool = True,
        cookie_paths: bool = True,
        trusted_proxies: ProxyTrust | Iterable[str] | int | None = None,
        max_idle: int = 32,
        idle_timeout: float = 30.0,
        request_buffering: bool = False,
        max_body_size: int = 1024**3,
        tls_verify: bool = True,
        tls_ca_certs: str | None = None,
        tls_certfile: str | None = None,
        tls_keyfile: str | None = None,
        tls_password: str | None = None,
        tls_server_name: str | None = None,
        tls_session_reuse: bool = True,
        tls_min_version: str | None = None,
        tls_ciphers: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        upstreams = listed(upstreams, "LoadBalancer: upstreams", "http:// or https:// URLs")
        if not upstreams:
            raise ConfigError("LoadBalancer: upstreams: give a list of at least one http:// URL")
        tls = PoolTLS(
            verify=tls_verify,
            ca_certs=tls_ca_certs,
            certfile=tls_certfile,
            keyfile=tls_keyfile,
            password=tls_password,
            server_name=tls_server_name,
            session_reuse=tls_session_reuse,
            min_version=tls_min_version,
            ciphers=tls_ciphers,
        )
        self.tls_verify = tls.verify
        count(max_idle, "LoadBalancer: max_idle", least=0)
        count(max_fails, "LoadBalancer: max_fails", least=0)  # 0: no passive accounting
        self.max_body_size = count(max_body_size, "LoadBalancer: max_body_size", least=0)
        defaults = {"max_fails": max_fails, "fail_timeout": fail_timeout, "max_idle": max_idle}
        pool_tls = functools.cache(tls.upstream_options)  # made once, if at all
        self.upstreams = [parse_upstream(spec, defaults, pool_tls) for spec in upstreams]
        if tls.given() and not any(u.scheme == "https" for u in self.upstreams):
            raise ConfigError(f"LoadBalancer: {tls.given()[0]}: no upstream is https://")
        self.primaries = [u for u in self.upstreams if not u.backup]
        #: Passive health needs somewhere else to send requests (nginx's "single").
        self._passive = len(self.upstreams) > 1
        self.backups = [u for u in self.upstreams if u.backup]
        if not self.primaries:
            raise ConfigError("LoadBalancer: upstreams: at least one must not be a backup")
        self.strategy = choice(strategy, "LoadBalancer: strategy", STRATEGIES)
        self._pick_primary = STRATEGIES[strategy](self.primaries)
        self._pick_backup = STRATEGIES[strategy](self.backups) if self.backups else None
        self.hash_key = None if hash_key is None else function(hash_key, "LoadBalancer: hash_key")
        conditions = listed(next_upstream, "LoadBalancer: next_upstream", "conditions")
        unknown = [c for c in conditions if not isinstance(c, str) or c not in CONDITIONS]
        if unknown:
            raise ConfigError(
                f"LoadBalancer: next_upstream: unknown {unknown}; "
                f"expected any of {', '.join(sorted(CONDITIONS))}"
            )
        self.next_upstream = frozenset(conditions)
        self._retry_statuses = {int(c[5:]) for c in conditions if c.startswith("http_")}
        for name, value in (("tries", tries), ("health_rise", health_rise)):
            count(value, f"LoadBalancer: {name}")
        for name, timeout in (
            ("connect_timeout", connect_timeout),
            ("read_timeout", read_timeout),
            ("fail_timeout", fail_timeout),
            ("retry_timeout", retry_timeout),
            ("health_interval", health_interval),
            ("idle_timeout", idle_timeout),
        ):
            seconds(timeout, f"LoadBalancer: {name}")
        if health_path is not None:
            checked_path(health_path)
        if health_host is not None:
            checked_host(health_host)
        self.tries = tries
        self.retry_timeout = float(retry_timeout)
        self.connect_timeout = float(connect_timeout)
        self.read_timeout = float(read_timeout)
        self.idle_timeout = float(idle_timeout)
        self.preserve_host = flag(preserve_host, "LoadBalancer: preserve_host")
        self.cookie_paths = flag(cookie_paths, "LoadBalancer: cookie_paths")
        self.request_buffering = flag(request_buffering, "LoadBalancer: request_buffering")
        with owned("LoadBalancer"):
            self.trust = ProxyTrust.coerce(trusted_proxies)
        self.health_path = health_path
        self.clock = function(clock, "LoadBalancer: clock")
        # Also for check_now() without a health_path (then it checks "/"), never started.
        self._health = HealthChecker(
            self.upstreams,
            health_path or "/",
            interval=float(health_interval),
            rise=health_rise,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            host=health_host,
        )

    # -- status ---------------------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        """Each upstream's state, for status pages.

        With ``health_path``, asking starts the checks in this process: a
        worker that has forwarded nothing yet would otherwise report as up
        upstreams it never checked, for as long as it forwards nothing.
        """
        if self.health_path is not None:
            self._health.ensure_running()
        now = self.clock()
        return [u.status(now) for u in self.upstreams]

    def __repr__(self) -> str:
        now = self.clock()
        parts = [
            f"{u.url}{'*' + str(u.weight) if u.weight != 1 else ''}"
            f"{' (backup)' if u.backup else ''}{'' if u.available(now) else ' DOWN'}"
            for u in self.upstreams
        ]
        unverified = "" if self.tls_verify else ", tls_verify=False"
        return f"LoadBalancer([{', '.join(parts)}], strategy={self.strategy!r}{unverified})"

    def check_now(self) -> None:
        """Run one round of active health checks, every upstream at once; return when all answered.

        A round lasts as long as its slowest check (up to ``connect_timeout`` +
        ``read_timeout``), however many upstreams never answer.
        """
        self._health.check_now()

    def close(self) -> None:
        """Stop the health checker (a check in progress is cut short) and close idle connections."""
        self._health.stop()
        for upstream in self.upstreams:
            upstream.close_idle()

    # -- forwarding ------------------------------------------------------------------------
    def _choose(self, environ: WSGIEnvironment, tried: set[int]) -> Upstream | None:
        now = self.clock()
        key = None
        if self.strategy == "hash":
            key = self.hash_key(environ) if self.hash_key else client_addr(environ, self.trust)
            if key is not None and not isinstance(key, str):
                # A bug in the callable, not the client's: name the option and the value,
                # rather than an AttributeError from deep in the hashing.
                raise TypeError(
                    f"LoadBalancer: hash_key must return a str or None, got {type(key).__name__}"
                    f" {key!r}"
                )
        for group, picker in (
            (self.primaries, self._pick_primary),
            (self.backups, self._pick_backup),
        ):
            candidates = [u for u in group if id(u) not in tried and u.available(now)]
            if candidates and picker is not None:
                return picker.pick(candidates, key)
        return None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self.health_path is not None:
            self._health.ensure_running()
        if environ["REQUEST_METHOD"] in REFUSED:
            # Never forwarded (TRACE: see methods.REFUSED).  The body, if any, is
            # left unread; no upstream is chosen.
            answer = refusal(
                webob.exc.HTTPMethodNotAllowed,
                f"{environ['REQUEST_METHOD']} is not forwarded.",
                headers=[("Allow", ALLOW)],
            )
            return answer(environ, start_response)
        try:
            length, chunked = body_framing(environ)
        except ClientBodyError as error:
            return body_failed(error, environ, start_response, log)
        body = environ["wsgi.input"]
        if chunked:
            # Only a body the server ends, with no coding left on it, can go on
            # re-chunked: else 501 or 411 before any upstream is chosen.
            try:
                body = chunked_input(environ, self.max_body_size)  # cut at the limit
            except ClientBodyError as error:
                return body_failed(error, environ, start_response, log)
        elif self.max_body_size and length is not None and length > self.max_body_size:
            # Refused before any of it is read or an upstream chosen.
            return body_failed(BodyTooLarge(self.max_body_size), environ, start_response, log)
        if not (chunked and self.request_buffering):
            return self._exchange(environ, start_response, body, length, chunked)
        # Read whole before an upstream is chosen: a client body that fails is
        # answered as when streamed, and no upstream sees any of the request.
        try:
            spool, length = spool_body(body)
        except ClientBodyError as error:
            return body_failed(error, environ, start_response, log)
        with spool:  # the body is sent by the time an answer comes back
            return self._exchange(environ, start_response, spool, length, False)

    def _exchange(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        body: IO[bytes],
        length: int | None,
        chunked: bool,
    ) -> Iterable[bytes]:
        """Forward ``body`` (``length`` bytes, or chunked), retrying as the rules allow."""
        method = environ["REQUEST_METHOD"]
        has_body = chunked or bool(length)  # (a buffered empty body is none: nothing to repeat)
        headers = request_headers(environ, self.trust)
        host = environ.get("HTTP_HOST") if self.preserve_host else None
        # Built and checked before any upstream is chosen: a malformed head is the
        # client's 400 even with every upstream down, and moves no strategy on.
        # It differs by upstream only where their base paths or (without the
        # client's Host) host names do; then it is built again for the one chosen.
        made_for = self.primaries[0]
        try:
            head = self._head(made_for, environ, method, host, headers, length, chunked)
        except BadRequestHead as error:
            return _bad_head(error, environ, start_response)
        deadline = self.clock() + self.retry_timeout
        tried: set[int] = set()
        failure: Failure | None = None
        # The latest answer with a status in next_upstream, held while another
        # upstream is tried: if none does better, the client gets it (as with tries=1).
        kept: tuple[Upstream, Exchange, socket.socket] | None = None
        for _ in range(self.tries):
            upstream = self._choose(environ, tried)
            if upstream is None:
                break
            tried.add(id(upstream))
            if upstream.base != made_for.base or (
                host is None and upstream.host_header != made_for.host_header
            ):
                made_for = upstream
                try:
                    head = self._head(upstream, environ, method, host, headers, length, chunked)
                except BadRequestHead as error:
                    return _bad_head(error, environ, start_response)
            try:
                exchange, sock = attempt(self, upstream, head, method, body, length, chunked)
            except ClientBodyError as error:
                return body_failed(error, environ, start_response, log)
            except Failure as error:
                failure = error
                if self._passive and not error.stale:
                    upstream.failed(self.clock())
                log.warning(
                    "upstream %s failed (%s) for %s: %s",
                    upstream.url,
                    error.kind,
                    request_from(environ, self.trust),
                    error,
                )
                # Nothing sent: any method may go elsewhere. Sent: only a bodiless
                # idempotent request (a streamed body cannot be sent twice).
                safe = not error.sent or (method in IDEMPOTENT and not has_body)
                if error.kind in self.next_upstream and safe and self.clock() < deadline:
                    continue
                break
            if kept is not None:
                release(self, *kept)  # superseded: pooled if it was whole
                kept = None
            code = int(exchange.status[:3])
            retry = code in self._retry_statuses and not has_body and method in IDEMPOTENT
            if retry and self.clock() < deadline and len(tried) < self.tries:
                # Passed on to the next upstream: an unsuccessful attempt, as nginx
                # counts one, or a 503ing upstream keeps the first try of half the requests.
                if self._passive:
                    upstream.failed(self.clock())
                kept = (upstream, exchange, sock)
                log.warning("upstream %s answered %s; trying the next", upstream.url, code)
                continue
            upstream.succeeded()
            return respond(self, upstream, exchange, sock, environ, start_response)
        if kept is not None:  # (counted as failed when it was kept: no success)
            return respond(self, *kept, environ, start_response)
        if failure is None:
            # As nginx's "no live upstreams": every one is marked failed or down.
            count = len(self.primaries) + len(self.backups)
            log.error(
                "no upstream available for %s (%d upstream%s, none up); answering 503",
                request_from(environ, self.trust),
                count,
                "" if count == 1 else "s",
            )
            answer = refusal(webob.exc.HTTPServiceUnavailable, "No upstream is available.")
        else:
            answer = failed_answer(failure.kind == "timeout")
        return answer(environ, start_response)

    @staticmethod
    def _head(
        upstream: Upstream,
        environ: WSGIEnvironment,
        method: str,
        host: str | None,
        headers: list[tuple[str, str]],
        length: int | None,
        chunked: bool,
    ) -> bytes:
        """The request head for ``upstream`` (``host``: the client's, else the upstream's)."""
        target = request_target(upstream, environ)
        host_line = ("Host", upstream.host_header if host is None else host)
        return request_head(method, target, [host_line, *headers], length, chunked)


def _bad_head(
    error: BadRequestHead, environ: WSGIEnvironment, start_response: StartResponse
) -> Iterable[bytes]:
    """Nothing was sent: the head would not go out as one message (400)."""
    log.info("request refused: %s", error)
    answer = refusal(webob.exc.HTTPBadRequest, "The request head is malformed.")
    return answer(environ, start_response)
