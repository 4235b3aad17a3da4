"""RedisStore's start-up checks: a store URL and its options, and a client passed in.

Kept apart from the store's hot path: these run once, when the store is made.
"""

from __future__ import annotations

import inspect
import logging
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from ...errors import ConfigError
from ...options import count, seconds
from ...tlsclient import client_context

__all__ = [
    "check_client",
    "check_options",
    "check_tls",
    "check_url",
    "client_name",
    "warn_not_a_cluster_client",
    "without_password",
]

_log = logging.getLogger("wsgistack.ratelimit")

#: A setting neither the pool nor its connection class names: not guessed at.
_UNKNOWN = object()


def _pool(client: Any) -> Any:
    """The pool whose settings a client's connections get (None if it has none we know).

    A ``redis.Redis`` has one.  A ``redis.RedisCluster`` gives each node a pool
    made from the same keyword arguments, so its default node's stands for all.
    """
    pool = getattr(client, "connection_pool", None)
    if pool is None and _is_cluster(client):
        node = getattr(client.get_default_node(), "redis_connection", None)
        pool = getattr(node, "connection_pool", None)
    return pool


def _is_cluster(client: Any) -> bool:
    return callable(getattr(client, "get_default_node", None))


def _settings(client: Any) -> dict[str, Any] | None:
    """A client's connection settings (redis-py's keyword arguments); None if unknown."""
    settings = getattr(_pool(client), "connection_kwargs", None)
    return settings if isinstance(settings, dict) else None


def _retries(client: Any, settings: dict[str, Any]) -> int:
    """How often the client retries a failed command.

    A cluster retries itself (``RedisCluster(retry=...)``, 10 times with
    back-off by default), its nodes' pools never.
    """
    retry = getattr(client, "retry", None) if _is_cluster(client) else settings.get("retry")
    get_retries = getattr(retry, "get_retries", None)
    return get_retries() if callable(get_retries) else 0


def _setting(client: Any, settings: dict[str, Any], name: str) -> Any:
    """What the client's connections get for ``name``: the pool's, else the connection's default.

    A pool names only what its client was given (``from_url`` and a Sentinel's
    pool name no ``socket_timeout``); the connection class then applies its
    own default, which redis-py changed over time (none, then 5 seconds).
    """
    if name in settings:
        return settings[name]
    for cls in getattr(getattr(_pool(client), "connection_class", None), "__mro__", ()):
        init = vars(cls).get("__init__")
        if init is None:
            continue
        try:
            parameter = inspect.signature(init).parameters.get(name)
        except (TypeError, ValueError):
            continue
        if parameter is not None and parameter.default is not parameter.empty:
            return parameter.default
    return _UNKNOWN


def client_name(client: Any) -> str:
    """A client passed in, as warnings and ``describe()`` show it: where it connects."""
    kind = type(client).__name__
    nodes = getattr(getattr(client, "nodes_manager", None), "startup_nodes", None)
    if _is_cluster(client) and isinstance(nodes, dict) and nodes:  # the nodes it starts from
        return f"{kind}({', '.join(nodes)})"
    settings = _settings(client)
    if settings is None:
        return repr(client)
    db = settings.get("db", 0)
    service = getattr(_pool(client), "service_name", None)
    if isinstance(service, str):  # a Sentinel's: the master it finds, not a host of its own
        return f"{kind}(sentinel service {service!r}/{db})"
    if settings.get("path"):
        return f"{kind}(unix://{settings['path']}?db={db})"
    if "host" not in settings:
        return repr(client)
    return f"{kind}({settings['host']}:{settings.get('port', 6379)}/{db})"


def check_client(client: Any, name: str) -> None:
    """Check a client passed in, at start-up, as a URL's options are checked.

    TLS files it could not load fail here (:func:`check_tls`), not at every
    connection.  A client without a socket timeout waits for a reply for ever,
    and one that retries (redis-py 6 and later, and ``redis.RedisCluster``, by
    default) does so with back-off: while Redis is down or silent, every
    request waits that long before ``fail=`` applies.  Those are warned about.
    A store made from a URL has neither.
    """
    from redis.connection import SSLConnection

    settings = _settings(client)
    if settings is None:
        return
    connection_class = getattr(_pool(client), "connection_class", None)
    if isinstance(connection_class, type) and issubclass(connection_class, SSLConnection):
        check_tls(settings, f"RedisStore: the client {name}")
    if _setting(client, settings, "socket_timeout") is None:
        _log.warning(
            "RedisStore: the client %s has no socket_timeout, so a Redis that stops "
            "answering holds every request until the OS drops the connection; create it "
            "with socket_timeout= (0.25, as a redis:// store has) or pass a redis:// URL",
            name,
        )
    retries = _retries(client, settings)
    if retries:
        _log.warning(
            "RedisStore: the client %s retries each command %d times with back-off, so "
            "while Redis is down every check takes seconds, not its socket_timeout; "
            "create it with retry=Retry(NoBackoff(), 0) (the limiter's store_backoff "
            "tries the store again) or pass a redis:// URL",
            name,
            retries,
        )


def warn_not_a_cluster_client(name: str, error: Exception) -> None:
    """Say, once per store, that ``name`` is a node of a Redis Cluster of several nodes.

    Such a node answers a plain client ``MOVED``/``ASK`` for a key whose slot
    another node holds: a store failure for those clients only (about two
    thirds of them on three nodes), which ``fail=`` then admits uncounted or
    refuses, for as long as the store is used.  A ``redis.RedisCluster``
    client follows the redirections.
    """
    _log.warning(
        "RedisStore: %s is a node of a Redis Cluster of several nodes (it answered %s), so "
        "the checks of every client whose key another node holds fail, and fail= applies "
        "to them; pass a cluster client: RedisStore(redis.RedisCluster.from_url(url))",
        name,
        f"{type(error).__name__}: {error}",
    )


def check_url(url: str, shown: str) -> None:
    """Refuse at start-up what redis-py would take and then fail on, or quietly misread.

    redis-py reads a database that is no whole number (``/one``, ``/-1``) as none,
    so counts went to database 0 beside other data, or every check failed ("DB index
    is out of range"), which fail="open" turns into no limit; ``unix://`` without a
    path failed every check.  ``shown`` is the URL without its password.
    """
    parts = urlsplit(url)
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigError(f"store: {shown!r}: a unix:// URL needs the socket's path")
        return
    database = parts.path.strip("/")
    if database and not (database.isascii() and database.isdigit()):
        raise ConfigError(
            f"store: {shown!r}: the database after the host must be a whole number "
            f"(/0, /1, ...), got {database!r}"
        )
    for database in parse_qs(parts.query).get("db", []):  # ?db= wins over the path
        if not (database.isascii() and database.isdigit()):
            raise ConfigError(
                f"store: {shown!r}: db: the database must be a whole number (0, 1, ...), "
                f"got {database!r}"
            )


_PASSWORD_PARAMETER = re.compile(r"(?<=[?&]password=)[^&]*", re.IGNORECASE)


def without_password(url: str) -> str:
    """``url`` with its password (as user info or ``?password=``) written ``***``."""
    parts = urlsplit(url)
    if parts.password is not None:  # (urlunsplit would drop the empty host of unix:///)
        userinfo, _, host = parts.netloc.rpartition("@")
        url = urlunsplit(parts._replace(netloc=f"{userinfo.partition(':')[0]}:***@{host}"))
    return _PASSWORD_PARAMETER.sub("***", url)


def check_options(pool: Any, url: str, shown: str) -> None:
    """Refuse at start-up the query options redis-py checks only when it first connects.

    redis-py converts a URL's query values (``parse_url``) but checks them, and
    their names, only when the pool builds its first connection, at the first
    request: an unknown name (``ssl_ca_cert``, or a TLS option on ``redis://``)
    raised TypeError there, a 500 on every request; a bad value
    (``ssl_cert_reqs=bogus``, ``protocol=9``) or a missing certificate file
    failed every check, which ``fail="open"`` turns into no limit at all.
    Building a connection object opens no socket (it connects on its first
    command), so each option is tried alone in one, then all of them together:
    redis-py's own rules, with the option named; a ``rediss://`` URL's TLS files
    are then loaded (:func:`check_tls`).  ``pool`` is the store's
    connection pool, ``shown`` the URL without its password.
    """
    from redis.exceptions import RedisError

    parts = urlsplit(url)
    settings = pool.connection_kwargs
    # The store's timeout and pool size, unless the query set them otherwise
    # (``?socket_timeout=0`` would fail every check): the same bounds either way.
    for name, value in (
        ("socket_timeout", settings.get("socket_timeout")),
        ("socket_connect_timeout", settings.get("socket_connect_timeout")),
        ("timeout", getattr(pool, "timeout", None)),
    ):
        seconds(value, f"store: {shown!r}: {name}")
    count(getattr(pool, "max_connections", None), f"store: {shown!r}: max_connections")
    for name in parse_qs(parts.query):
        if name not in settings:  # taken by the pool itself (max_connections, timeout)
            continue
        try:
            pool.connection_class(**{name: settings[name]})
        except TypeError:
            if name.startswith("ssl_") and parts.scheme != "rediss":
                raise ConfigError(
                    f"store: {shown!r}: {name}: a TLS option: use a rediss:// URL"
                ) from None
            raise ConfigError(
                f"store: {shown!r}: unknown option {name!r} in the query "
                f"(the names are redis-py's: ssl_ca_certs, ssl_cert_reqs, protocol, ...)"
            ) from None
        except (ValueError, RedisError) as exc:
            raise ConfigError(f"store: {shown!r}: {name}: {exc}") from None
    try:
        pool.connection_class(**settings)
    except (TypeError, ValueError, RedisError) as exc:
        raise ConfigError(f"store: {shown!r}: {exc}") from None
    if parts.scheme == "rediss":
        check_tls(settings, f"store: {shown!r}")


def check_tls(settings: dict[str, Any], where: str) -> None:
    """Refuse at start-up the TLS files and settings redis-py loads only when it connects.

    A CA file, client certificate or key that exists but holds no PEM (or a key
    that does not match its certificate, or an encrypted one without its
    password) was taken, and then every connection failed before its handshake:
    at the first request, after the deploy.  Loaded here as redis-py's
    ``SSLConnection`` loads them (:func:`wsgistack.tlsclient.client_context`,
    with redis-py's ``ssl_`` names).  ``settings`` are redis-py's connection
    keyword arguments; ``where`` names the store or client in the message.
    """
    client_context(settings, where, "ssl_")
