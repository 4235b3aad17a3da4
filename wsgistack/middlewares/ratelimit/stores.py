"""Where the counts live: in this process (``MemoryStore``) or shared (``RedisStore``).

A store checks every rate of one key atomically: a request is admitted only
if all rates admit it, and a refused request consumes nothing.

    store = make_store("memory")                          # the embedded default
    store = make_store("redis://127.0.0.1:6379/0")        # shared by every worker and host

``MemoryStore`` is one dict behind a lock, in least-recently-used order:
only a new key grows it, so each new key evicts a few expired ones from its
front in O(1), and when it is full, every expired key goes before any live
one (an amortized sweep).  ``max_keys`` bounds its memory (a live key evicted
starts afresh: with more live clients than ``max_keys`` the limit errs towards
admitting).  ``RedisStore`` runs one Lua script per check: one round trip
(``EVALSHA``), keys that expire by themselves.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

from ...errors import ConfigError, WsgiStackError
from ...forking import forget_on_fork
from ...options import count, seconds
from .rate import SKEW, Rate
from .redisclient import (
    check_client,
    check_options,
    check_url,
    client_name,
    warn_not_a_cluster_client,
    without_password,
)
from .strategies import Decision, gcra, microseconds, sliding_window

__all__ = ["MemoryStore", "RedisStore", "Store", "StoreError", "make_store"]

Strategy = Literal["gcra", "sliding_window"]
STRATEGIES: dict[str, Callable[..., Any]] = {"gcra": gcra, "sliding_window": sliding_window}


class StoreError(WsgiStackError):
    """The store could not answer (down, slow, an error reply); the limiter fails open/closed."""


class Store(Protocol):
    def check(
        self, key: str, rates: Sequence[Rate], strategy: Strategy, now: float
    ) -> list[Decision]:
        """Decide one request for ``key`` under every rate, atomically."""
        ...


def _expiry(strategy: str, rate: Rate, state: Any, now: float) -> float:
    if strategy == "gcra":  # at the TAT: (whole microseconds, a fraction of one)
        return (state[0] + 1) / 1_000_000 if state is not None else now
    return (state[0] + 2 * rate.period_us) / 1_000_000 if state is not None else now


class MemoryStore:
    """Counts in this process: thread-safe, O(1) per check, at most ``max_keys`` keys."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = count(max_keys, "MemoryStore: max_keys")
        self._lock = threading.Lock()
        self._data: OrderedDict[str, tuple[float, tuple[Any, ...]]] = OrderedDict()
        # For _overflow: the size after the last sweep, and live keys dropped since.
        self._swept_size = 0
        self._dropped = 0
        forget_on_fork(self)

    def _forked(self) -> None:
        """In a new child: a new lock, in case a thread of the parent held the old one.

        The counts stay, and are this process's own from then on.
        """
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def check(
        self, key: str, rates: Sequence[Rate], strategy: Strategy, now: float
    ) -> list[Decision]:
        decide = STRATEGIES[strategy]
        data = self._data
        with self._lock:
            entry = data.get(key)
            if len(rates) == 1:  # the common case, without the loops below
                rate = rates[0]
                decision, state = decide(rate, entry[1][0] if entry is not None else None, now)
                if decision.allowed:
                    data[key] = (_expiry(strategy, rate, state, now), (state,))
                    data.move_to_end(key)
                    if entry is None:  # a new key: the store grew, so it may shed
                        self._evict(now)
                return [decision]
            states = entry[1] if entry is not None else (None,) * len(rates)
            decisions = []
            new_states = []
            for rate, state in zip(rates, states, strict=True):
                decision, new_state = decide(rate, state, now)
                decisions.append(decision)
                new_states.append(new_state)
            if all(d.allowed for d in decisions):
                expires = max(
                    _expiry(strategy, rate, state, now)
                    for rate, state in zip(rates, new_states, strict=True)
                )
                data[key] = (expires, tuple(new_states))
                data.move_to_end(key)
                if entry is None:
                    self._evict(now)
        return decisions

    def _evict(self, now: float) -> None:
        data = self._data
        for _ in range(4):  # a few expired keys per check keeps eviction O(1)
            if not data:
                break
            oldest = next(iter(data))
            if data[oldest][0] > now:
                break
            del data[oldest]
        if len(data) > self.max_keys:
            self._overflow(now)

    def _overflow(self, now: float) -> None:
        """Full: drop every expired key, and only then the least recently admitted ones.

        The front is the least recently admitted key, not the first to expire (a
        GCRA key that spent its burst expires long after one-request keys that
        came later), so expired keys can wait behind a live one; dropping that
        live one instead would hand its client a fresh quota.  A sweep costs
        O(max_keys), so it runs once per max_keys / 2 new keys at most: O(1) per
        check, amortized, even under a flood of new clients.
        """
        data = self._data
        if len(data) - self._swept_size + self._dropped >= max(1, self.max_keys // 2):
            for key in [key for key, (expires, _) in data.items() if expires <= now]:
                del data[key]
            self._swept_size = len(data)
            self._dropped = 0
        while len(data) > self.max_keys:
            data.popitem(last=False)
            self._dropped += 1

    def __repr__(self) -> str:
        return f"MemoryStore(max_keys={self.max_keys})"


# GCRA over N rates in one call, in the integers of strategies.gcra. KEYS[i]: rate i's
# key, holding "tat_us ticks" (anything else there, even a key of another type, which
# would fail every check of that client and never expire, reads as no state and is
# replaced); ARGV[1]: now in whole microseconds; then interval_ticks,
# ticks_per_us, burst per rate. Returns "allowed remaining_1 reset_1 retry_1 ...", one
# space-separated string: Redis would truncate Lua numbers to integers, and one string
# parses faster in redis-py than an array. '%.17g' keeps every bit of a float, so both
# stores answer alike. Integers below 2**53 are exact in Lua's doubles, and so are
# floor(a / b) and fmod(a, b) for them.
GCRA_LUA = """
local now = tonumber(ARGV[1])
local allowed = 1
local out = {}
local new_tats = {}
for i = 1, #KEYS do
  local step = tonumber(ARGV[3 * i - 1])
  local per_us = tonumber(ARGV[3 * i])
  local burst = tonumber(ARGV[3 * i + 1])
  local per_second = per_us * 1000000
  local ahead = 0
  local raw = redis.pcall('GET', KEYS[i])
  if type(raw) == 'string' then
    local tat, ticks = string.match(raw, '^(%d+) (%d+)$')
    if tat then
      ahead = (tonumber(tat) - now) * per_us + tonumber(ticks)
      -- past the horizon (a full burst's wait and rate.SKEW): a clock stepped back
      if ahead < 0 or ahead > burst * step + SKEW_S * per_second then ahead = 0 end
    end
  end
  local room = (burst - 1) * step - ahead
  if room < 0 then
    allowed = 0
    out[#out + 1] = '0'
    out[#out + 1] = string.format('%.17g', ahead / per_second)
    out[#out + 1] = string.format('%.17g', -room / per_second)
  else
    ahead = ahead + step
    local ticks = math.fmod(ahead, per_us)
    out[#out + 1] = string.format('%d', math.floor(room / step))
    out[#out + 1] = string.format('%.17g', ahead / per_second)
    out[#out + 1] = '0'
    new_tats[i] = {now + (ahead - ticks) / per_us, ticks, ahead / per_second}
  end
end
if allowed == 1 then
  for i = 1, #KEYS do
    local tat = new_tats[i]
    local ttl = math.ceil(tat[3] * 1000) + 1000
    redis.call('SET', KEYS[i], string.format('%d %d', tat[1], tat[2]), 'PX', ttl)
  end
end
table.insert(out, 1, tostring(allowed))
return table.concat(out, ' ')
""".replace("SKEW_S", str(SKEW))  # rate.SKEW: one allowance for clocks, Lua and Python

# The sliding-window counter over N rates, as strategies.sliding_window: the same
# integers and the same float operations in the same order. State per key:
# "start_us previous current" (anything else is no state, as in GCRA_LUA).
# ARGV[1]: now in whole microseconds; then period_us,
# amount per rate; the same one-string reply as GCRA_LUA.
SLIDING_LUA = """
local now = tonumber(ARGV[1])
local allowed = 1
local out = {}
local updates = {}
for i = 1, #KEYS do
  local period = tonumber(ARGV[2 * i])
  local amount = tonumber(ARGV[2 * i + 1])
  local start = now - math.fmod(now, period)
  local previous, current = 0, 0
  local raw = redis.pcall('GET', KEYS[i])
  if type(raw) == 'string' then
    local s, p, c = string.match(raw, '^(%d+) (%d+) (%d+)$')
    if s then
      s, p, c = tonumber(s), tonumber(p), tonumber(c)
      -- a window ahead of this clock is kept: a window never moves backwards;
      -- further than one and rate.SKEW ahead, a clock stepped back: it is dropped
      if s >= start then
        if s - start <= period + SKEW_US then start, previous, current = s, p, c end
      elseif s == start - period then previous = c end
    end
  end
  local elapsed = now - start
  local weight = (period - math.max(elapsed, 0)) / period
  local estimate = previous * weight + current
  if estimate + 1 > amount + 1e-9 then
    allowed = 0
    local retry
    if current + 1 > amount then
      local need = math.max(0, 1 - (amount - 1) / current)
      retry = (period - elapsed) + need * period
    else
      retry = period * (1 - (amount - 1 - current) / previous) - elapsed
    end
    retry = math.max(retry, 1000)
    out[#out + 1] = '0'
    out[#out + 1] = string.format('%.17g', math.max(period - elapsed, retry) / 1000000)
    out[#out + 1] = string.format('%.17g', retry / 1000000)
  else
    local remaining = math.max(math.floor(amount - (estimate + 1)), 0)
    out[#out + 1] = string.format('%d', remaining)
    out[#out + 1] = string.format('%.17g', (period - elapsed) / 1000000)
    out[#out + 1] = '0'
    local ttl = math.ceil((start + 2 * period - now) / 1000)
    updates[i] = {string.format('%d %d %d', start, previous, current + 1), ttl}
  end
end
if allowed == 1 then
  for i = 1, #KEYS do
    redis.call('SET', KEYS[i], updates[i][1], 'PX', updates[i][2])
  end
end
table.insert(out, 1, tostring(allowed))
return table.concat(out, ' ')
""".replace("SKEW_US", str(SKEW * 1_000_000))  # (as in GCRA_LUA)


class RedisStore:
    """Counts in Redis, shared by every process and host using the same server.

    :param target: a ``redis://`` URL, or a ``redis.Redis`` or ``redis.RedisCluster`` client.
    :param prefix: prepended to every key, so limiters can share a database.  Each
        key is ``prefix{limiter:client}:rate``; the braces are a Redis Cluster hash
        tag, so the rates of one client live in one slot.
    :param timeout: seconds a check may take before it counts as a store failure
        (connecting, waiting for a free connection in the pool, the reply: each);
        default 0.25.
    :param max_connections: size of the connection pool (per process); more
        threads than this wait their turn; default 50.

    ``timeout`` and ``max_connections`` apply to a URL: a client passed in keeps
    its own settings (giving them with one fails), and a start-up warning says
    when those would hold requests through an outage (no socket timeout, retries).
    """

    def __init__(
        self,
        target: Any,
        *,
        prefix: str = "wsgistack:rl:",
        timeout: float | None = None,
        max_connections: int | None = None,
    ) -> None:
        try:
            import redis
        except ImportError:  # pragma: no cover - the extra is installed for tests
            raise ConfigError(
                "RedisStore needs the redis package: pip install 'wsgistack[redis]'"
            ) from None
        if not isinstance(prefix, str):
            raise ConfigError(f"RedisStore: prefix: expected a str, got {prefix!r}")
        # Every failure of the store, not only a lost connection: an error reply
        # (OOM under maxmemory, READONLY after a failover, MISCONF, NOPERM) is the
        # store failing too, for fail="open"/"closed" to handle, never a 500.  A
        # redis.RedisCluster client says "no node answers" with an exception of
        # its own, outside RedisError.
        self._errors = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException)
        # MOVED/ASK (MovedError is an AskError): a node of a cluster of several
        # sends a plain client to the node that holds a key's slot; said once.
        self._redirected = redis.exceptions.AskError
        self._said_redirected = threading.Lock()
        if isinstance(target, str):
            if not target.startswith(("redis://", "rediss://", "unix://")):
                raise ConfigError(f"store: expected 'memory' or a redis:// URL, got {target!r}")
            # Checked here: redis-py takes timeout=0 or max_connections=0 and then
            # fails every check, which fail="open" turns into no limit at all.
            timeout = seconds(0.25 if timeout is None else timeout, "RedisStore: timeout")
            max_connections = count(
                50 if max_connections is None else max_connections, "RedisStore: max_connections"
            )
            # A blocking pool: a thread past max_connections waits (within the
            # timeout) for a connection; the default pool refused it at once, so
            # under load the excess was admitted uncounted, or refused with 503.
            self.url = without_password(target)  # shown in repr(), describe() and warnings
            check_url(target, self.url)
            try:
                pool = redis.BlockingConnectionPool.from_url(
                    target,
                    socket_timeout=timeout,
                    socket_connect_timeout=timeout,
                    max_connections=max_connections,
                    timeout=timeout,
                )
            except ValueError as exc:  # redis-py's words (a port, a query value): name the URL
                raise ConfigError(f"store: {self.url!r}: {exc}") from None
            check_options(pool, target, self.url)
            self.client = redis.Redis.from_pool(pool)
            self._owns_client = True
        else:
            for name, value in (("timeout", timeout), ("max_connections", max_connections)):
                if value is not None:  # else taken and ignored: the client's own apply
                    raise ConfigError(
                        f"RedisStore: {name}: applies to a redis:// URL; a client passed "
                        f"in keeps its own settings (socket_timeout=, max_connections=)"
                    )
            if not all(
                callable(getattr(target, method, None))
                for method in ("execute_command", "script_load")
            ):  # else every check failed (AttributeError), which fail="open" makes no limit
                raise ConfigError(
                    f"store: expected 'memory', a redis:// URL or a Redis client, got {target!r}"
                )
            self.client = target
            self.url = client_name(target)  # its repr is a page of pool settings
            self._owns_client = False  # the caller's client: the caller closes it
            check_client(target, self.url)
        self.prefix = prefix
        self._noscript = redis.exceptions.NoScriptError
        self._sources = {"gcra": GCRA_LUA, "sliding_window": SLIDING_LUA}
        self._shas = {
            name: hashlib.sha1(source.encode()).hexdigest()
            for name, source in self._sources.items()
        }

    def check(
        self, key: str, rates: Sequence[Rate], strategy: Strategy, now: float
    ) -> list[Decision]:
        # One hash tag, {key}, for all of a check's keys: a cluster runs a script
        # only on keys of one slot (else CROSSSLOT), and the tag puts them there.
        keys = [f"{self.prefix}{{{key}}}:{rate.name}" for rate in rates]
        args: list[Any] = [microseconds(now)]
        for rate in rates:
            if strategy == "gcra":
                args += [rate.interval_ticks, rate.ticks_per_us, rate.burst]
            else:
                args += [rate.period_us, rate.amount]
        sha = self._shas[strategy]
        try:
            try:  # one round trip; the script is loaded once per Redis server
                reply = self.client.execute_command("EVALSHA", sha, len(keys), *keys, *args)
            except self._noscript:
                self.client.script_load(self._sources[strategy])
                reply = self.client.execute_command("EVALSHA", sha, len(keys), *keys, *args)
        except self._errors as exc:
            if isinstance(exc, self._redirected) and self._said_redirected.acquire(blocking=False):
                warn_not_a_cluster_client(self.url, exc)  # the lock is kept: once per store
            # The type too: redis-py's text alone says "10396 127.0.0.1:7001" for a
            # MOVED, or "Timeout reading from socket" without which timeout it was.
            raise StoreError(f"Redis at {self.url}: {type(exc).__name__}: {exc}") from exc
        # One string, "allowed remaining reset retry ...": a reply that redis-py
        # parses in one step, not an array of elements.
        if isinstance(reply, bytes):
            reply = reply.decode("ascii")  # a client may also decode replies itself
        reply = reply.split()
        allowed_all = reply[0] == "1"
        decisions = []
        for index, rate in enumerate(rates):
            remaining, reset, retry = reply[1 + 3 * index : 4 + 3 * index]
            retry_after = float(retry)
            decisions.append(
                Decision(
                    rate,
                    retry_after == 0.0,
                    int(float(remaining)),
                    float(reset),
                    retry_after,
                )
            )
        if not allowed_all and all(d.allowed for d in decisions):  # pragma: no cover - defensive
            raise StoreError("inconsistent reply from the rate-limit script")
        return decisions

    def close(self) -> None:
        """Close the connections this store opened (a client passed in is left open)."""
        if self._owns_client:
            self.client.close()

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r}, prefix={self.prefix!r})"


def make_store(value: Any) -> Store:
    """``"memory"``, a ``redis://`` URL, or a store object (anything with ``check``)."""
    if value is None or value == "memory":
        return MemoryStore()
    if isinstance(value, str):
        return RedisStore(value)
    if callable(getattr(value, "check", None)):
        return value
    raise ConfigError(f"store: expected 'memory', a redis:// URL or a store, got {value!r}")
