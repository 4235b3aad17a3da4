"""RateLimiter: the middleware that applies rates to requests, by client or any key."""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

import webob.exc

from ..._logtext import log_text
from ..._types import StartResponse, WSGIApplication, WSGIEnvironment
from ...clientip import CACHE_KEY, ProxyTrust, client_addr, client_ip, warn_no_address
from ...errors import ConfigError
from ...netset import NetworkSet, parse_address
from ...options import (
    choice,
    count,
    flag,
    function,
    header_name,
    log_target,
    owned,
    seconds,
)
from ...paths import folded, overlap, prefixes, resolved, under
from ...refusals import refusal
from .breaker import Breaker, StoreFailures
from .fields import policy_member, policy_names, tighter_legacy
from .rate import Rate, parse_limits
from .stores import STRATEGIES, MemoryStore, Store, StoreError, make_store
from .strategies import Decision

__all__ = ["RateLimiter", "key_digest"]

KeyFunc = Callable[[WSGIEnvironment], "str | None"]

# A limiter's name is part of every store key: short, and safe in any store.
_NAME = re.compile(r"[A-Za-z0-9_./-]{1,64}")

# Longer keys are stored as a digest (an IPv6 network is 43 characters): a path is
# the client's to choose, up to the server's limits (16 KB), and MemoryStore's
# bound is in keys, not bytes.  A key from a header or a callable always is.
_KEY_MAX = 128


class RateLimiter(StoreFailures):
    """Refuse requests over the limit with 429; tell every client where it stands.

    :param app: the WSGI app to protect.
    :param limits: ``"100/minute"``, ``"10/second; 1000/hour"``, ``"5 per 10 seconds"``
        or a list; every rate must hold, the tightest answers.
    :param key: ``"ip"`` (the client address via :mod:`wsgistack.clientip`, the
        default), ``"header:X-Api-Key"``, ``"path"`` (per path), or a callable of
        environ returning a str key or None (None: not limited; any other type
        raises a TypeError naming this option).
    :param store: ``"memory"`` (this process), a ``redis://`` URL (shared), or a store.
    :param strategy: ``"gcra"`` (default, exact) or ``"sliding_window"``.
    :param burst: how many requests may come at once (default: each rate's amount);
        GCRA only, the sliding window has none.
    :param trusted_proxies: networks (or a hop count) whose forwarded headers are believed.
    :param ipv6_prefix: IPv6 clients share a limit per network of this size (/64).
    :param exempt: networks, or a callable of environ, that are never limited.
    :param paths: limit only requests under these path prefixes (whole segments).
    :param ignore_case: match ``paths``, and read a ``"path"`` key, ignoring letter
        case (``/LOGIN`` is ``/login``), for an app that routes so: IIS behind a
        forwarder, files on a macOS or Windows disk (nginx's ``location ~*``).
    :param name: what tells this limiter's counts apart in a shared store (1-64
        letters, digits, ``_.-/``). Default: the key and the paths, so limiters on
        different paths never share; limiters with the same name, strategy and
        rates share their counts (for two callable keys, name them apart).  Also
        the policy name in the RateLimit fields (``"login"``; with several rates
        ``"login:10-per-1s"``), so stacked limiters stay apart; unnamed, a policy
        is named by its rate (``"100-per-60s"``).
    :param fail: ``"open"`` (admit, log a warning) or ``"closed"`` (503) when the store fails.
    :param store_backoff: seconds after ``store_failures`` failures in a row during
        which ``fail`` applies at once, without asking the store (else each request
        waits out the store's timeout while it is down); then one request tries it again.
    :param store_failures: store failures in a row (no answer between them) that
        start the back-off (default 3); fewer cost only the requests they struck.
    :param dry_run: count, log and send headers, but never refuse.
    :param legacy_headers: also send ``X-RateLimit-Limit/Remaining/Reset``.
    :param clock: seconds since the epoch; injectable for tests.
    :param logger: where refusals (INFO) and store failures (WARNING) are logged.  A
        key from a header or a callable may be a secret (an API key): log lines show
        its :func:`key_digest` and the client's address, never the key.
    """

    def __init__(
        self,
        app: WSGIApplication,
        limits: str | Rate | list[str | Rate],
        *,
        key: str | KeyFunc = "ip",
        store: Any = "memory",
        strategy: Literal["gcra", "sliding_window"] = "gcra",
        burst: int | None = None,
        trusted_proxies: ProxyTrust | Iterable[str] | int | None = None,
        ipv6_prefix: int = 64,
        exempt: Iterable[str] | Callable[[WSGIEnvironment], bool] | None = None,
        paths: Iterable[str] | None = None,
        ignore_case: bool = False,
        name: str | None = None,
        fail: Literal["open", "closed"] = "open",
        store_backoff: float = 1.0,
        store_failures: int = 3,
        dry_run: bool = False,
        legacy_headers: bool = False,
        clock: Callable[[], float] = time.time,
        logger: logging.Logger | None = None,
    ) -> None:
        self.app = app
        with owned("RateLimiter"):  # limits, burst: worded where they are parsed
            self.rates = parse_limits(limits, burst)
        self.burst = burst
        choice(strategy, "RateLimiter: strategy", STRATEGIES)
        if strategy == "sliding_window" and any(r.burst != r.amount for r in self.rates):
            # It counts each rate's amount per window; a burst would be ignored unseen.
            raise ConfigError(
                "RateLimiter: burst: the sliding window admits each rate's amount per "
                "window and has no burst of its own; leave burst out or use strategy='gcra'"
            )
        self.strategy = strategy
        self.fail = choice(fail, "RateLimiter: fail", ("open", "closed"))
        # 1 s: a probe's timeout is paid once a second per worker while the store
        # is down, and once it is back, at most a second passes under the fail policy.
        self.store_backoff = seconds(store_backoff, "RateLimiter: store_backoff")
        # 3: a lone slow reply (Redis forking to save, a failover's first second)
        # costs only its request; a store that is down is skipped after three.
        self.store_failures = count(store_failures, "RateLimiter: store_failures")
        self._breaker = Breaker(self.store_backoff, self.store_failures)
        if (
            isinstance(ipv6_prefix, bool)
            or not isinstance(ipv6_prefix, int)
            or not 1 <= ipv6_prefix <= 128
        ):
            raise ConfigError(f"RateLimiter: ipv6_prefix: expected 1..128, got {ipv6_prefix!r}")
        self.ipv6_prefix = ipv6_prefix
        with owned("RateLimiter"):
            self.store: Store = make_store(store)
            self.trust = ProxyTrust.coerce(trusted_proxies)
        self.ignore_case = flag(ignore_case, "RateLimiter: ignore_case")
        if self.ignore_case and paths is None and key != "path":
            raise ConfigError(
                "RateLimiter: ignore_case: it applies to paths and key='path'; "
                "give one of them, or drop it"
            )
        self.key_name, self._key = self._key_function(key)
        # A header's or a callable's value may be a secret (an API key, a session):
        # log lines show its digest instead; an address or a path is shown as is.
        self._key_secret = self.key_name not in ("ip", "path")
        self._exempt_nets, self._exempt_call = self._exemptions(exempt)
        self.paths = prefixes(paths, "RateLimiter: paths", ignore_case=self.ignore_case)
        self.name = name
        identity = self._identity(name, key)
        self.dry_run = flag(dry_run, "RateLimiter: dry_run")
        self.legacy_headers = flag(legacy_headers, "RateLimiter: legacy_headers")
        self.clock = function(clock, "RateLimiter: clock")
        self.logger = log_target(logger, "RateLimiter: logger", "wsgistack.ratelimit")
        self._told_no_address = False  # warned, once, that a client had no address
        # To say, once, that a memory store counts per process when the server runs
        # several (PEP 3333's wsgi.multiprocess): N workers admit N times each limit.
        self._watch_processes = isinstance(self.store, MemoryStore)
        self._scope = f"{strategy}:{','.join(rate.name for rate in self.rates)}:{identity}:"
        #: What RateLimit-Policy and RateLimit call each rate: limiters stacked in one
        #: pipeline each add their policies to the same lists, so a name= shows.
        self.policies = policy_names(name, self.rates)
        self._policy = ", ".join(policy_member(self.policies[rate], rate) for rate in self.rates)
        self._last_warning = -math.inf
        self._names = {rate: f'"{self.policies[rate]}";r=' for rate in self.rates}
        self._same_policy_inside()

    # -- configuration helpers ------------------------------------------------------
    def _key_function(self, key: str | KeyFunc) -> tuple[str, KeyFunc]:
        if callable(key):
            return getattr(key, "__name__", "custom"), key
        if key == "ip":
            return "ip", self._client_key
        if key == "path":
            # As a router reads it: "//search", "/./search" and "/search/" are /search,
            # else each spelling would get a quota of its own; so are /SEARCH and
            # /Search to a case-blind one.
            def path_key(environ: WSGIEnvironment) -> str:
                return resolved(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))

            if self.ignore_case:
                return "path", lambda environ: folded(path_key(environ))
            return "path", path_key
        if isinstance(key, str) and key.lower().startswith("header:") and len(key) > 7:
            # A name no request can carry would leave everyone unlimited, silently.
            header = header_name(key[7:].strip(), "RateLimiter: key")
            environ_key = "HTTP_" + header.upper().replace("-", "_")
            return key.lower(), lambda environ: environ.get(environ_key) or None
        raise ConfigError(
            f"RateLimiter: key: expected 'ip', 'path', 'header:NAME' or a callable, got {key!r}"
        )

    def _identity(self, name: str | None, key: str | KeyFunc) -> str:
        """The part of the store keys that tells this limiter apart; stable across processes."""
        if name is not None:
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise ConfigError(
                    f"RateLimiter: name: expected 1-64 letters, digits or '_.-/', got {name!r}"
                )
            return name
        identity = self.key_name
        if callable(key) and hasattr(key, "__qualname__"):
            identity = f"{getattr(key, '__module__', '')}.{key.__qualname__}"
        if self.paths:
            identity += "@" + ",".join(self.paths)
        if len(identity) > 64:  # a stable digest (not hash(): that is salted per process)
            identity = hashlib.blake2b(identity.encode(), digest_size=8).hexdigest()
        return identity

    def _same_policy_inside(self) -> None:
        """Warn when a limiter inside this one can send a policy of the same name.

        Both add to the same RateLimit lists, and a client cannot tell whose
        count it reads; ``name=`` tells them apart.  Only the chain of ``.app``
        is followed (wrappers without one end it): a hint, not a guarantee.
        """
        inner: Any = self.app
        depth = 0
        while inner is not None and depth < 100:
            if isinstance(inner, RateLimiter) and overlap(
                self.paths, inner.paths, ignore_case=self.ignore_case or inner.ignore_case
            ):
                shared = sorted(set(self.policies.values()) & set(inner.policies.values()))
                if shared:
                    self.logger.warning(
                        "RateLimiter: %r inside %r sends the same RateLimit policy %s, so "
                        "clients cannot tell the two counts apart; give each a name=",
                        inner,
                        self,
                        ", ".join(repr(policy) for policy in shared),
                    )
            inner, depth = getattr(inner, "app", None), depth + 1

    @staticmethod
    def _exemptions(exempt: Any) -> tuple[NetworkSet | None, Callable[..., bool] | None]:
        if exempt is None:
            return None, None
        if callable(exempt):
            return None, exempt
        return NetworkSet(exempt, option="RateLimiter: exempt"), None

    def _client_key(self, environ: WSGIEnvironment) -> str | None:
        if self.trust is None and "wsgistack.client_ip" not in environ:
            peer = environ.get("REMOTE_ADDR", "")
            # Plain IPv4 from the server: the hot path skips clientip's environ cache
            # (parse_address is memoised).  Anything else goes the whole way, so a
            # peer that is no address (waitress says "localhost" on a unix socket)
            # is a client with no address here too, not one count for everyone.
            if ":" not in peer and parse_address(peer) is not None:
                return peer
        address = client_ip(environ, self.trust)
        if address is None:
            return None
        if self.ipv6_prefix < 128 and isinstance(address, ipaddress.IPv6Address):
            network = ipaddress.IPv6Network(
                (
                    int(address) >> (128 - self.ipv6_prefix) << (128 - self.ipv6_prefix),
                    self.ipv6_prefix,
                )
            )
            return str(network)
        return environ[CACHE_KEY]  # the address as text, as client_ip left it

    def _unknown_client(self, environ: WSGIEnvironment) -> None:
        """Say once that a client without an address went unlimited: likely a setup gap."""
        self._told_no_address = True
        warn_no_address(self.logger, "RateLimiter", "was not limited, nor will others be", environ)

    def _per_process(self) -> None:
        """Say once that with several worker processes, each memory store counts alone."""
        self._watch_processes = False
        self.logger.warning(
            "RateLimiter: the server runs several worker processes and each counts in its "
            "own memory store, so a client may get each limit once per worker; give "
            "store='redis://...' to share the counts"
        )

    # -- per request ------------------------------------------------------------------
    def _limited(self, environ: WSGIEnvironment) -> bool:
        if self.paths and not under(environ, self.paths, ignore_case=self.ignore_case):
            return False
        if self._exempt_nets is not None and client_ip(environ, self.trust) in self._exempt_nets:
            return False
        return not (self._exempt_call is not None and self._exempt_call(environ))

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if (
            self.paths or self._exempt_nets is not None or self._exempt_call is not None
        ) and not self._limited(environ):
            return self.app(environ, start_response)
        key = self._key(environ)
        if key is None:
            if self.key_name == "ip" and not self._told_no_address:
                self._unknown_client(environ)
            return self.app(environ, start_response)
        if not isinstance(key, str):
            # A programming error in the key function, not a client's: say which
            # option and what came back, rather than a TypeError deep in the store.
            # The type only: the value may be a secret (an API key as bytes).
            raise TypeError(
                f"RateLimiter: key: the key function {self.key_name!r} must return a str "
                f"or None, got {type(key).__name__}"
            )
        # A secret key is stored as its digest too: Redis writes its keys into
        # SLOWLOG, MONITOR, dumps and `redis-cli --scan`, all read by other people.
        if self._key_secret or len(key) > _KEY_MAX or key.startswith("#"):
            stored = _digest(key)
        else:
            stored = key
        if self._watch_processes and environ.get("wsgi.multiprocess"):
            self._per_process()
        now = self.clock()
        breaker = self._breaker
        if breaker.opened_at is not None and not breaker.admit(now):
            return self._without_store(environ, start_response)
        try:
            decisions = self.store.check(self._scope + stored, self.rates, self.strategy, now)
        except StoreError as error:
            return self._store_failed(error, now, environ, start_response)
        if breaker.failures:
            self._store_answered(now)
        answer = decisions[0] if len(decisions) == 1 else _tightest(decisions)
        headers = self._headers(answer)
        if not answer.allowed:
            retry = str(_retry_after(answer))
            self.logger.info(
                "RateLimiter %s %s: %s over %s (retry in %ss)",
                "would refuse" if self.dry_run else "refused",
                self._shown(key, environ),
                log_text(environ.get("PATH_INFO", "")),
                self.policies[answer.rate],
                retry,
            )
            if not self.dry_run:
                too_many = refusal(
                    webob.exc.HTTPTooManyRequests, headers=[*headers, ("Retry-After", retry)]
                )
                return too_many(environ, start_response)

        if self.legacy_headers:

            def add_legacy(
                status: str, response_headers: list[tuple[str, str]], exc_info: Any = None
            ) -> Any:
                fields = tighter_legacy(response_headers, headers, answer.remaining)
                return start_response(status, fields, exc_info)

            return self.app(environ, add_legacy)

        def add_headers(
            status: str, response_headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            return start_response(status, response_headers + headers, exc_info)

        return self.app(environ, add_headers)

    def _shown(self, key: str, environ: WSGIEnvironment) -> str:
        """The key as a log line shows it: a secret one as a digest, with the client's address.

        The digest is stable (every process and restart shows the same one), so
        an operator can follow one client, and find a known key's lines with
        :func:`key_digest`; the address says where the requests came from.
        """
        if not self._key_secret:
            return log_text(key)
        return f"key {key_digest(key)} (client {client_addr(environ, self.trust)})"

    def _headers(self, answer: Decision) -> list[tuple[str, str]]:
        reset = max(0, _seconds(answer.reset))
        if not answer.allowed:  # a reset sooner than Retry-After would say "come back now"
            reset = max(reset, _retry_after(answer))
        headers = [
            ("RateLimit-Policy", self._policy),
            ("RateLimit", f"{self._names[answer.rate]}{answer.remaining};t={reset}"),
        ]
        if self.legacy_headers:
            headers += [
                ("X-RateLimit-Limit", str(answer.rate.burst)),  # as q: never below Remaining
                ("X-RateLimit-Remaining", str(answer.remaining)),
                ("X-RateLimit-Reset", str(reset)),
            ]
        return headers

    def close(self) -> None:
        """Release the store's connections (a Redis pool); for shutdowns, reloads and tests."""
        close = getattr(self.store, "close", None)
        if close is not None:
            close()

    def __repr__(self) -> str:
        limits = "; ".join(
            # A Rate's own burst shows with it; burst= shows as the option it is.
            f"{r.amount}/{r.seconds}s"
            + (f" burst {r.burst}" if self.burst is None and r.burst != r.amount else "")
            for r in self.rates
        )
        options = [repr(limits), f"key={self.key_name!r}", f"store={self.store!r}"]
        # Everything that decides who is limited, so describe() tells the whole story.
        if self.burst is not None:
            options.append(f"burst={self.burst}")
        if self.paths:
            options.append(f"paths={list(self.paths)!r}")
        if self.ignore_case:
            options.append("ignore_case=True")
        if self.trust is not None:
            options.append(f"trusted_proxies={self.trust!r}")
        if self._exempt_nets is not None:
            options.append(f"exempt={len(self._exempt_nets)} networks")
        if self._exempt_call is not None:
            exempt = self._exempt_call
            options.append(f"exempt={getattr(exempt, '__qualname__', repr(exempt))}")
        if self.name is not None:
            options.append(f"name={self.name!r}")
        if self.strategy != "gcra":
            options.append(f"strategy={self.strategy!r}")
        if self.fail != "open":
            options.append("fail='closed'")
        if self.store_backoff != 1.0:
            options.append(f"store_backoff={self.store_backoff:g}")
        if self.store_failures != 3:
            options.append(f"store_failures={self.store_failures}")
        if self.dry_run:
            options.append("dry_run=True")
        if self.legacy_headers:
            options.append("legacy_headers=True")
        return f"RateLimiter({', '.join(options)})"


def key_digest(key: str) -> str:
    """How log lines show a key from a header or a callable: ``#`` and 12 hex digits.

    A short BLAKE2b digest: stable, so the lines of one client can be followed
    and a known key's lines found (``grep "$(python -c ...key_digest('KEY'))"``),
    but not the key itself.  It hides a key with real entropy (an API key); a
    guessable one (a user id) can be found by trying candidates.
    """
    data = key.encode("utf-8", "surrogatepass")
    return "#" + hashlib.blake2b(data, digest_size=6, person=b"wsgistack-log").hexdigest()


def _digest(key: str) -> str:
    """A long key's stand-in: 33 characters, '#' first (so short keys starting so go too)."""
    data = key.encode("utf-8", "surrogatepass")  # a callable's str may hold anything
    return "#" + hashlib.blake2b(data, digest_size=16).hexdigest()


def _seconds(value: float) -> int:
    """Whole seconds for a header, rounding up but not float noise (1.0000000001 is 1)."""
    return math.ceil(value - 1e-6)


def _retry_after(answer: Decision) -> int:
    """Retry-After for a refusal: whole seconds, at least 1 (0 would invite a retry loop)."""
    return max(1, _seconds(answer.retry_after))


def _tightest(decisions: list[Decision]) -> Decision:
    """The answer the client hears: the refusal that lasts longest, else the least room left."""
    refused = [d for d in decisions if not d.allowed]
    if refused:
        return max(refused, key=lambda d: d.retry_after)
    return min(decisions, key=lambda d: (d.remaining, -d.reset))
