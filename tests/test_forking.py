"""A forked child renews every lock a layer holds (``wsgistack/forking.py``).

gunicorn ``--preload``, uWSGI without ``lazy-apps`` and an app forking with
``multiprocessing`` copy each lock as it is at the fork: one another thread of
the parent held stays held in the child for ever.  Each test holds a layer's
lock in another thread, forks for real, and has the child serve a request
within a bounded wait (``tests.processes.in_a_child``).
"""

from __future__ import annotations

from wsgiref.validate import validator

import pytest
import redis
from webtest import TestApp

from tests.conftest import hello_app
from tests.processes import held, in_a_child
from wsgistack.middlewares import IPFilter, RateLimiter
from wsgistack.middlewares.ratelimit import StoreError

pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def status(layer, peer: str = "192.0.2.1") -> int:
    app = TestApp(validator(layer))
    return app.get("/", extra_environ={"REMOTE_ADDR": peer}, expect_errors=True).status_int


def test_a_memory_store_held_at_the_fork_still_counts_in_the_child():
    # The child's first check waited for ever on the copied lock.  After the
    # fork the counts are the child's own, starting from the parent's.
    limiter = RateLimiter(validator(hello_app), "2/minute", clock=Clock())
    assert status(limiter) == 200
    with held(limiter.store._lock):  # type: ignore[attr-defined]
        code = in_a_child(lambda: [status(limiter), status(limiter)] == [200, 429])
    assert code == 0
    assert status(limiter) == 200  # the parent's second of two: the child's did not count here


class Down:
    """A store that always fails."""

    def check(self, key, rates, strategy, now):
        raise StoreError("down")


def test_an_open_breaker_held_at_the_fork_still_admits_in_the_child():
    # The store is down, so the breaker is open and every request takes its lock.
    limiter = RateLimiter(validator(hello_app), "2/minute", store=Down(), clock=Clock())
    assert status(limiter) == 200  # failed open, and opened the breaker
    with held(limiter._breaker._lock):
        code = in_a_child(lambda: status(limiter) == 200)
    assert code == 0


def test_an_ip_filter_reloading_at_the_fork_still_reloads_in_the_child(tmp_path):
    # The reload lock is only tried, never waited for: copied held, the child
    # skipped every reload, so its lists stayed as they were at the fork for good.
    clock = Clock()
    deny = tmp_path / "deny.txt"
    deny.write_text("203.0.113.0/24\n")
    ipfilter = IPFilter(validator(hello_app), deny_files=[deny], reload_interval=5, clock=clock)

    def child_reloads() -> bool:
        deny.write_text("192.0.2.0/24\n")
        clock.now += 5
        return status(ipfilter, "192.0.2.1") == 403

    with held(ipfilter._lock):
        code = in_a_child(child_reloads)
    assert code == 0


def test_a_redis_store_gets_its_own_connections_in_the_child(redis_server):
    # redis-py's pool sees the PID change and connects anew: parent and child never
    # share a socket (they would read each other's replies).
    limiter = RateLimiter(validator(hello_app), "100/minute", store=redis_server.url)
    client: redis.Redis = limiter.store.client  # type: ignore[attr-defined]
    try:
        assert status(limiter) == 200
        parents = client.client_id()

        def child_connects_anew() -> bool:
            return status(limiter) == 200 and client.client_id() != parents

        assert in_a_child(child_connects_anew) == 0
        assert client.client_id() == parents and status(limiter) == 200
    finally:
        limiter.close()
