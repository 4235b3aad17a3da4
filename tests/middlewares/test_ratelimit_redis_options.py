"""RedisStore's connection options: URLs (db, password, unix sockets) and clients passed in."""

from __future__ import annotations

import os
import re
import subprocess
import time
from wsgiref.validate import validator

import pytest
from webtest import TestApp

from tests.conftest import hello_app
from tests.processes import stop_process
from tests.redis_server import REDIS_SERVER
from wsgistack.errors import ConfigError
from wsgistack.middlewares import RateLimiter
from wsgistack.middlewares.ratelimit import RedisStore


def hit(app: TestApp) -> int:
    return app.get("/", extra_environ={"REMOTE_ADDR": "192.0.2.1"}, expect_errors=True).status_int


@pytest.mark.parametrize(
    ("url", "message"),
    [
        # Read by redis-py as no database at all: the limiter counted in database 0,
        # beside whatever lives there, and nothing said so.
        pytest.param(
            "redis://127.0.0.1:6379/one",
            "store: 'redis://127.0.0.1:6379/one': the database after the host must be a "
            "whole number (/0, /1, ...), got 'one'",
            id="db-word",
        ),
        # Taken, then every check failed ("DB index is out of range"): fail="open"
        # meant no limit at all, for good.
        pytest.param(
            "redis://127.0.0.1:6379/-1",
            "store: 'redis://127.0.0.1:6379/-1': the database after the host must be a "
            "whole number (/0, /1, ...), got '-1'",
            id="db-negative",
        ),
        # These failed at start-up in redis-py's words, naming no option (and no URL).
        pytest.param(
            "redis://127.0.0.1:six/0",
            "store: 'redis://127.0.0.1:six/0': Port could not be cast to integer value",
            id="port",
        ),
        pytest.param(
            "redis://:s3cret@127.0.0.1:6379/0?db=x",
            "store: 'redis://:***@127.0.0.1:6379/0?db=x': db: the database must be a whole "
            "number (0, 1, ...), got 'x'",
            id="query-password-hidden",
        ),
        # No socket path: every check failed at the first request.
        pytest.param(
            "unix://", "store: 'unix://': a unix:// URL needs the socket's path", id="unix"
        ),
        # The query's db wins over the path's: -1 failed every check, as /-1 did.
        pytest.param(
            "redis://127.0.0.1:6379/0?db=-1",
            "store: 'redis://127.0.0.1:6379/0?db=-1': db: the database must be a whole "
            "number (0, 1, ...), got '-1'",
            id="query-db-negative",
        ),
        # A timeout in the query replaces the store's: 0 made every check fail at
        # once (never wait), which fail="open" turns into no limit at all.
        pytest.param(
            "redis://127.0.0.1:6379/0?socket_timeout=0",
            "store: 'redis://127.0.0.1:6379/0?socket_timeout=0': socket_timeout: "
            "expected seconds > 0, got 0.0",
            id="query-socket-timeout",
        ),
        pytest.param(
            "redis://127.0.0.1:6379/0?socket_connect_timeout=0",
            "store: 'redis://127.0.0.1:6379/0?socket_connect_timeout=0': "
            "socket_connect_timeout: expected seconds > 0, got 0.0",
            id="query-connect-timeout",
        ),
        # redis-py checks these only on connecting: each was taken, then failed
        # every check at the first request (fail="open": no limit, for good).
        pytest.param(
            "rediss://127.0.0.1:6379/0?ssl_cert_reqs=bogus",
            "store: 'rediss://127.0.0.1:6379/0?ssl_cert_reqs=bogus': ssl_cert_reqs: "
            "Invalid SSL Certificate Requirements Flag: bogus",
            id="cert-reqs",
        ),
        pytest.param(
            "rediss://127.0.0.1:6379/0?protocol=9",
            "store: 'rediss://127.0.0.1:6379/0?protocol=9': protocol: "
            "protocol must be either 2 or 3",
            id="protocol",
        ),
        pytest.param(
            "rediss://:s3cret@127.0.0.1:6379/0?ssl_ca_certs=/nonexistent/ca.pem",
            "store: 'rediss://:***@127.0.0.1:6379/0?ssl_ca_certs=/nonexistent/ca.pem': "
            "ssl_ca_certs: no such file: '/nonexistent/ca.pem'",
            id="ca-file-missing",
        ),
        pytest.param(
            "rediss://127.0.0.1:6379/0?ssl_certfile=/nonexistent/c.pem&ssl_keyfile=/x.key",
            "store: 'rediss://127.0.0.1:6379/0?ssl_certfile=/nonexistent/c.pem&"
            "ssl_keyfile=/x.key': ssl_certfile: no such file: '/nonexistent/c.pem'",
            id="client-cert-missing",
        ),
        pytest.param(
            "rediss://127.0.0.1:6379/0?ssl_ca_path=/nonexistent/certs",
            "store: 'rediss://127.0.0.1:6379/0?ssl_ca_path=/nonexistent/certs': "
            "ssl_ca_path: no such directory: '/nonexistent/certs'",
            id="ca-directory-missing",
        ),
        # A misspelt option raised TypeError at the first request: a 500 for every one.
        pytest.param(
            "rediss://127.0.0.1:6379/0?ssl_ca_cert=/etc/ca.pem",
            "store: 'rediss://127.0.0.1:6379/0?ssl_ca_cert=/etc/ca.pem': unknown option "
            "'ssl_ca_cert' in the query",
            id="misspelt",
        ),
        # A TLS option on a plain URL: the same TypeError, and no TLS either way.
        pytest.param(
            "redis://127.0.0.1:6379/0?ssl_ca_certs=/etc/ca.pem",
            "store: 'redis://127.0.0.1:6379/0?ssl_ca_certs=/etc/ca.pem': ssl_ca_certs: "
            "a TLS option: use a rediss:// URL",
            id="tls-option-on-redis",
        ),
    ],
)
def test_a_bad_store_url_fails_at_start_up_naming_the_store(url, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        RateLimiter(hello_app, "1/minute", store=url)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("target", [5, object(), b"redis://127.0.0.1:6379/0"])
def test_a_store_that_is_neither_a_url_nor_a_client_fails_at_start_up(target):
    # Taken as a client: every check then failed (no execute_command), and
    # fail="open" made that no limit at all, with a warning per request burst.
    with pytest.raises(ConfigError, match="store: expected 'memory', a redis:// URL or a Redis"):
        RedisStore(target)


@pytest.fixture
def unix_redis(tmp_path):
    """A redis-server listening only on a unix socket, with a password."""
    if not os.path.exists(REDIS_SERVER):
        pytest.skip("redis-server is not installed")
    path = tmp_path / "redis.sock"
    proc = subprocess.Popen(
        [
            REDIS_SERVER,
            "--port",
            "0",
            "--unixsocket",
            str(path),
            "--save",
            "",
            "--dir",
            str(tmp_path),
            "--requirepass",
            "s3cret",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # polling a starting process for its socket file
        assert path.exists(), "redis-server did not create its unix socket"
        yield path
    finally:
        stop_process(proc)


def test_a_unix_socket_url_with_a_password_and_a_database(unix_redis, caplog):
    import redis

    layer = RateLimiter(validator(hello_app), "2/minute", store=f"unix://:s3cret@{unix_redis}?db=3")
    app = TestApp(validator(layer))
    assert [hit(app) for _ in range(3)] == [200, 200, 429]
    assert not [r for r in caplog.records if "store failed" in r.getMessage()]
    with redis.Redis(unix_socket_path=str(unix_redis), password="s3cret", db=3) as admin:
        assert admin.dbsize() == 1  # counted in database 3
    layer.close()


def test_a_wrong_password_fails_open_with_a_warning_naming_the_store(unix_redis, caplog):
    layer = RateLimiter(validator(hello_app), "1/minute", store=f"unix://:n0tit@{unix_redis}")
    app = TestApp(validator(layer))
    assert [hit(app) for _ in range(2)] == [200, 200]  # the fail policy, never a 500
    [warning] = [r.getMessage() for r in caplog.records if "store failed" in r.getMessage()]
    assert f"Redis at unix://:***@{unix_redis}:" in warning and "n0tit" not in warning
    layer.close()


@pytest.mark.parametrize("option", [{"timeout": 0.5}, {"max_connections": 10}])
def test_a_url_only_option_with_a_client_fails_at_start_up(redis_server, option):
    # Taken and ignored: the client's own socket_timeout and pool applied, unseen.
    import redis

    [name] = option
    message = f"RedisStore: {name}: applies to a redis:// URL"
    with (
        redis.Redis.from_url(redis_server.url) as client,
        pytest.raises(ConfigError, match=message),
    ):
        RedisStore(client, **option)


def test_a_client_that_could_hold_requests_is_named_at_start_up(redis_server, caplog):
    # redis.Redis(socket_timeout=None) waits for a reply for ever, and redis.Redis() retries
    # each command with back-off (redis-py 6 and later): during an outage, every request of the site waited
    # seconds (or for ever) before fail="open"/"closed" applied, and nothing said why.
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    port = int(redis_server.url.rsplit(":", 1)[1].split("/")[0])
    warnings = []
    for index, client in enumerate(
        [
            redis.Redis(host="127.0.0.1", port=port, socket_timeout=None),
            redis.Redis(port=port, socket_timeout=0.25),
            redis.Redis(port=port, socket_timeout=0.25, retry=Retry(NoBackoff(), 0)),
        ]
    ):
        caplog.clear()
        layer = RateLimiter(
            validator(hello_app), "2/minute", store=RedisStore(client, prefix=f"held{index}:")
        )
        assert [hit(TestApp(validator(layer))) for _ in range(3)] == [200, 200, 429]
        warnings.append([r.getMessage() for r in caplog.records if r.levelname == "WARNING"])
        client.close()
    no_timeout, retrying, fine = warnings
    assert any("has no socket_timeout" in w for w in no_timeout)
    assert any(f"RedisStore: the client Redis(127.0.0.1:{port}/0) has" in w for w in no_timeout)
    assert not any("has no socket_timeout" in w for w in retrying)
    assert any("retries each command" in w and "Retry(NoBackoff(), 0)" in w for w in retrying)
    assert fine == []


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def test_a_client_with_the_connections_own_timeout_is_not_said_to_have_none(redis_server, caplog):
    # redis-py 8 gives each connection a 5 s socket_timeout unless told otherwise,
    # so Redis.from_url(url) has one without naming it: the start-up warning
    # "has no socket_timeout ... until the OS drops the connection" was false.
    import redis

    client = redis.Redis.from_url(redis_server.url)
    connection = client.connection_pool.make_connection()
    try:
        caplog.clear()
        RedisStore(client)
        said = any("has no socket_timeout" in w for w in _warnings(caplog))
        assert said == (connection.socket_timeout is None)
    finally:
        connection.disconnect()
        client.close()


def test_a_client_made_with_no_timeout_at_all_is_still_named(redis_server, caplog):
    import redis

    port = int(redis_server.url.rsplit(":", 1)[1].split("/")[0])
    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=None) as client:
        caplog.clear()
        RedisStore(client)
    assert any(
        f"RedisStore: the client Redis(127.0.0.1:{port}/0) has no socket_timeout" in w
        for w in _warnings(caplog)
    )


def test_a_sentinel_client_is_named_by_its_service_not_localhost(caplog):
    # A Sentinel-made client finds its master through the sentinels: it was
    # shown (in describe() and warnings) as Redis(localhost:6379/0), a server it
    # never uses, and said to have no socket_timeout though it had one.
    from redis.sentinel import Sentinel

    sentinel = Sentinel([("127.0.0.1", 1)], socket_timeout=0.25)
    client = sentinel.master_for("mymaster", socket_timeout=0.25, db=2)
    caplog.clear()
    store = RedisStore(client)
    assert "localhost" not in store.url
    assert store.url == "Redis(sentinel service 'mymaster'/2)"
    assert "sentinel service 'mymaster'" in repr(store)
    assert not any("has no socket_timeout" in w for w in _warnings(caplog))


def test_a_cluster_client_that_could_hold_requests_is_named_at_start_up(redis_cluster, caplog):
    # A redis.RedisCluster was not checked at all, and was shown as
    # <redis.cluster.RedisCluster object at 0x...>.  Without a socket_timeout a
    # silent node held every request; its default retry (10 times, with
    # back-off, the cluster's own: its nodes never retry) made one silent node
    # cost every request seconds instead of the socket_timeout.
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    port = redis_cluster.port
    warnings = []
    for index, options in enumerate(
        [
            {"socket_timeout": None, "retry": Retry(NoBackoff(), 0)},
            {"socket_timeout": 0.25},
            {"socket_timeout": 0.25, "retry": Retry(NoBackoff(), 0)},
        ]
    ):
        client = redis.RedisCluster(host="127.0.0.1", port=port, **options)
        caplog.clear()
        store = RedisStore(client, prefix=f"cluster{index}:")
        assert store.url == f"RedisCluster(127.0.0.1:{port})"
        layer = RateLimiter(validator(hello_app), "2/minute", store=store, fail="closed")
        assert [hit(TestApp(validator(layer))) for _ in range(3)] == [200, 200, 429]
        warnings.append(_warnings(caplog))
        client.close()
    no_timeout, retrying, fine = warnings
    assert not any("retries each command" in w for w in no_timeout)
    assert any(
        f"RedisStore: the client RedisCluster(127.0.0.1:{port}) has no socket_timeout" in w
        for w in no_timeout
    )
    assert any("retries each command 10 times" in w for w in retrying)
    assert not any("has no socket_timeout" in w for w in retrying)
    assert fine == []
