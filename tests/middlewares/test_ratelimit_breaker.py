"""RateLimiter's store breaker: a store outage costs one store call per back-off, not each request."""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
from wsgiref.validate import validator

import pytest
from webtest import TestApp

from tests.conftest import hello_app
from wsgistack import build_pipeline
from wsgistack.errors import ConfigError
from wsgistack.middlewares import RateLimiter
from wsgistack.middlewares.ratelimit import MemoryStore, RedisStore, StoreError


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Counting:
    """A store that counts the checks that reach the store it wraps."""

    def __init__(self, store):
        self.store = store
        self.calls = 0
        self._lock = threading.Lock()

    def check(self, key, rates, strategy, now):
        with self._lock:
            self.calls += 1
        return self.store.check(key, rates, strategy, now)


def limited(limits, store, **options):
    """A limiter whose back-off starts at the first failure (these tests are about the back-off)."""
    options.setdefault("store_failures", 1)
    clock = Clock()
    layer = RateLimiter(validator(hello_app), limits, store=store, clock=clock, **options)
    return layer, clock


def statuses(layer, n, peer="192.0.2.1"):
    app = TestApp(validator(layer))
    return [
        app.get("/", extra_environ={"REMOTE_ADDR": peer}, expect_errors=True).status_int
        for _ in range(n)
    ]


def messages(caplog, text):
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


@pytest.mark.parametrize(("fail", "status"), [("open", 200), ("closed", 503)])
def test_a_redis_outage_asks_the_store_once_per_backoff(own_redis, caplog, fail, status):
    # Every request waited out the store's timeout while Redis was down, before
    # the fail policy applied: a 1 s timeout was 1 s more on every request.
    caplog.set_level(logging.WARNING, "wsgistack.ratelimit")
    store = Counting(RedisStore(own_redis.url, timeout=0.5))
    layer, clock = limited("2/minute", store, fail=fail, store_backoff=2)
    assert statuses(layer, 2) == [200, 200] and store.calls == 2
    own_redis.stop()
    assert statuses(layer, 5) == [status] * 5
    assert store.calls == 3  # the failure; the four after it skipped the store
    clock.now += 1.5
    assert statuses(layer, 3) == [status] * 3 and store.calls == 3  # within the back-off
    clock.now += 0.5
    assert statuses(layer, 3) == [status] * 3 and store.calls == 4  # one probe, failed
    own_redis.start()  # a fresh server: the counts start over
    assert statuses(layer, 2) == [status] * 2 and store.calls == 4  # its back-off still runs
    clock.now += 2
    assert statuses(layer, 3) == [200, 200, 429] and store.calls == 7  # the probe, then all
    [opened] = messages(caplog, "store failed")
    assert opened.endswith(f"; failing {fail} without asking it for 2 s, then trying one request")
    assert messages(caplog, "answers again") == [
        f"RateLimiter: store answers again after 4.0 s; 13 requests failed {fail} meanwhile"
    ]
    layer.close()


def _in_threads(layer, threads=16, each=10):
    results: list[int] = []
    start = threading.Barrier(threads)

    def client():
        start.wait()
        results.extend(statuses(layer, each))

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    return results


def test_threads_share_one_breaker_and_one_probe(own_redis, caplog):
    caplog.set_level(logging.WARNING, "wsgistack.ratelimit")
    store = Counting(RedisStore(own_redis.url, timeout=0.5))
    layer, clock = limited("1000/minute", store, fail="closed")
    assert statuses(layer, 1) == [200]
    own_redis.stop()
    assert statuses(layer, 1) == [503] and store.calls == 2
    clock.now += 1
    assert _in_threads(layer) == [503] * 160
    assert store.calls == 3  # of 160 requests at once after the back-off, one probed
    own_redis.start()
    clock.now += 1
    answers = _in_threads(layer)
    asked = store.calls - 3
    # The probe answered; requests during it skipped the store, the rest were counted.
    assert sorted(answers) == [200] * asked + [503] * (160 - asked) and asked >= 1
    assert len(messages(caplog, "store failed")) == 1
    assert len(messages(caplog, "answers again")) == 1
    layer.close()


class Stalling:
    """A store that fails once, then holds its next check (the probe) until released."""

    def __init__(self):
        self.memory = MemoryStore()
        self.calls = 0
        self.probing = threading.Event()
        self.release = threading.Event()
        self.probe_error: BaseException | None = None

    def check(self, key, rates, strategy, now):
        self.calls += 1
        if self.calls == 1:
            raise StoreError("down")
        if self.calls == 2:
            self.probing.set()
            self.release.wait(60)  # (a guard against a hang, not a timing)
            if self.probe_error is not None:
                raise self.probe_error
        return self.memory.check(key, rates, strategy, now)


def test_requests_during_a_slow_probe_do_not_wait_for_it():
    store = Stalling()
    layer, clock = limited("100/minute", store, fail="closed")
    assert statuses(layer, 1) == [503]
    clock.now += 1
    probe: list[int] = []
    thread = threading.Thread(target=lambda: probe.extend(statuses(layer, 1)))
    thread.start()
    assert store.probing.wait(60)
    assert statuses(layer, 5) == [503] * 5 and store.calls == 2  # none joined the probe
    store.release.set()
    thread.join(60)
    assert probe == [200]
    assert statuses(layer, 2) == [200, 200] and store.calls == 4


def test_a_probe_that_raises_holds_the_store_off_for_one_backoff_only():
    # A probe that never reports (a bug in a custom store) must not leave it skipped for good.
    store = Stalling()
    store.probe_error = RuntimeError("a bug in the store")
    store.release.set()
    layer, clock = limited("100/minute", store, fail="closed")
    assert statuses(layer, 1) == [503]
    clock.now += 1
    with pytest.raises(RuntimeError, match="a bug in the store"):
        statuses(layer, 1)
    assert statuses(layer, 1) == [503] and store.calls == 2
    clock.now += 1
    assert statuses(layer, 1) == [200] and store.calls == 3


def test_a_clock_stepped_back_does_not_keep_the_store_skipped():
    store = Stalling()
    store.release.set()
    layer, clock = limited("100/minute", store, fail="closed", store_backoff=5)
    assert statuses(layer, 1) == [503]
    clock.now -= 3600  # NTP corrects the clock: the back-off is not an hour and 5 s
    assert statuses(layer, 1) == [200] and store.calls == 2


def test_describe_shows_a_backoff_other_than_the_default():
    assert "store_backoff" not in repr(RateLimiter(hello_app, "1/minute"))
    assert "store_backoff=2.5" in repr(RateLimiter(hello_app, "1/minute", store_backoff=2.5))


class Down:
    """A store that always fails."""

    def __init__(self):
        self.calls = 0

    def check(self, key, rates, strategy, now):
        self.calls += 1
        raise StoreError("down")


def test_a_long_outage_is_recalled_every_30_seconds(caplog):
    caplog.set_level(logging.WARNING, "wsgistack.ratelimit")
    store = Down()
    layer, clock = limited("1/minute", store)
    assert statuses(layer, 1) == [200]
    for _ in range(60):
        clock.now += 1
        assert statuses(layer, 2) == [200, 200]
    assert store.calls == 61  # the failure, then one probe a second
    assert len(messages(caplog, "store failed")) == 1
    assert (
        messages(caplog, "still failing")
        == ["RateLimiter: store still failing (down); failing open"] * 2
    )


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (2.5, None),
        (0, "store_backoff: expected seconds > 0, got 0"),
        ("1s", "store_backoff: expected seconds > 0, got '1s'"),
    ],
    ids=["float", "zero", "text"],
)
def test_store_backoff_in_a_pipeline_file(value, error):
    spec = {
        "layer": [{"use": "rate_limit", "limits": "1/minute", "store_backoff": value}],
        "app": "tests.conftest:hello_app",
    }
    if error is None:
        assert "store_backoff=2.5" in repr(build_pipeline(spec))
    else:
        with pytest.raises(ConfigError, match=re.escape(f"RateLimiter: {error}")):
            build_pipeline(spec)


@pytest.mark.parametrize(("backoff", "retry"), [(0.2, "1"), (1.0, "1"), (2.5, "3")])
def test_fail_closed_says_to_retry_after_the_backoff(backoff, retry):
    # Retry-After said 1 s while the store would not be asked again for store_backoff.
    layer, _ = limited("1/minute", Down(), fail="closed", store_backoff=backoff)
    app = TestApp(validator(layer))
    for _ in range(2):  # the failure, then a request that skipped the store
        response = app.get("/", extra_environ={"REMOTE_ADDR": "192.0.2.1"}, status=503)
        assert response.headers["Retry-After"] == retry


@pytest.fixture
def paused_redis(own_redis):
    """``own_redis`` and a context that stops its process (SIGSTOP by PID) until the block ends."""
    import contextlib

    @contextlib.contextmanager
    def paused():
        pid = own_redis.proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)

    return own_redis, paused


def test_one_store_timeout_costs_its_request_not_the_whole_back_off(paused_redis, caplog):
    # One timeout (Redis paused: a slow fork for a save, a failover) opened the
    # breaker: with fail="closed" every request of the next second was a 503.
    caplog.set_level(logging.WARNING, "wsgistack.ratelimit")
    own_redis, paused = paused_redis
    store = Counting(RedisStore(own_redis.url, timeout=0.25))
    clock = Clock()
    layer = RateLimiter(
        validator(hello_app), "1000/minute", store=store, fail="closed", clock=clock
    )
    assert statuses(layer, 1) == [200]
    with paused():
        assert statuses(layer, 1) == [503]  # the request the timeout struck
    assert statuses(layer, 3) == [200, 200, 200] and store.calls == 5  # asked, at the same instant
    [failed] = messages(caplog, "store failed")
    assert failed.endswith("; failing closed for this request"), failed
    assert not messages(caplog, "without asking") and not messages(caplog, "answers again")
    layer.close()


def test_failures_in_a_row_start_the_back_off_and_the_probe_ends_it(paused_redis, caplog):
    caplog.set_level(logging.WARNING, "wsgistack.ratelimit")
    own_redis, paused = paused_redis
    store = Counting(RedisStore(own_redis.url, timeout=0.25))
    clock = Clock()
    layer = RateLimiter(
        validator(hello_app), "1000/minute", store=store, fail="closed", clock=clock
    )
    assert statuses(layer, 1) == [200]
    with paused():
        assert statuses(layer, 5) == [503] * 5
        assert store.calls == 4  # three failures in a row, then the store is skipped
    assert statuses(layer, 2) == [503, 503] and store.calls == 4  # within the back-off
    clock.now += 1
    assert statuses(layer, 2) == [200, 200] and store.calls == 6  # the probe, then all
    [opened] = messages(caplog, "without asking")
    assert opened.startswith("RateLimiter: store failed 3 times in a row (Redis at ")
    assert opened.endswith("; failing closed without asking it for 1 s, then trying one request")
    assert messages(caplog, "answers again") == [
        "RateLimiter: store answers again after 1.0 s; 7 requests failed closed meanwhile"
    ]
    layer.close()


class Ticking:
    """A clock that moves on a microsecond at every reading (thread-safe)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self.now += 0.000001
            return self.now


class Together:
    """Holds each check until ``parties`` requests are in the store at once, then asks it."""

    def __init__(self, store, parties):
        self.store = store
        self.barrier: threading.Barrier | None = threading.Barrier(parties)
        self.calls = 0
        self._lock = threading.Lock()

    def check(self, key, rates, strategy, now):
        if self.barrier is not None:
            self.barrier.wait(60)  # (a guard against a hang, not a timing)
        with self._lock:
            self.calls += 1
        return self.store.check(key, rates, strategy, now)


def test_one_stall_striking_many_requests_at_once_is_one_failure(paused_redis, caplog):
    # Eight requests in flight when Redis paused once all failed, and counted as
    # eight failures in a row: store_failures=3 opened the breaker on a single
    # stall, and with fail="closed" every request of the next second was a 503.
    caplog.set_level(logging.WARNING, "wsgistack.ratelimit")
    own_redis, paused = paused_redis
    store = Together(RedisStore(own_redis.url, timeout=0.25), 8)
    layer = RateLimiter(
        validator(hello_app), "1000/minute", store=store, fail="closed", clock=Ticking()
    )
    answers: list[int] = []
    with paused():
        workers = [
            threading.Thread(target=lambda: answers.extend(statuses(layer, 1))) for _ in range(8)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
    assert answers == [503] * 8  # the requests the stall struck
    store.barrier = None
    assert statuses(layer, 3) == [200, 200, 200] and store.calls == 11  # the store asked again
    assert not messages(caplog, "without asking") and not messages(caplog, "answers again")
    # Failures one after another still open it: each asked after the last had failed.
    with paused():
        assert statuses(layer, 5) == [503] * 5 and store.calls == 14
    layer.close()


def test_an_answer_between_failures_starts_the_count_again():
    class Flaky:
        """Fails every other check."""

        def __init__(self):
            self.calls = 0
            self.memory = MemoryStore()

        def check(self, key, rates, strategy, now):
            self.calls += 1
            if self.calls % 2:
                raise StoreError("flaky")
            return self.memory.check(key, rates, strategy, now)

    store = Flaky()
    layer, _ = limited("1000/minute", store, fail="closed", store_failures=2)
    assert statuses(layer, 8) == [503, 200] * 4 and store.calls == 8  # never skipped


@pytest.mark.parametrize("value", [0, -1, 1.5, "3", True])
def test_store_failures_is_checked_at_start_up(value):
    with pytest.raises(ConfigError, match=r"RateLimiter: store_failures: expected a whole number"):
        RateLimiter(hello_app, "1/minute", store_failures=value)


def test_describe_shows_store_failures_other_than_the_default():
    assert "store_failures" not in repr(RateLimiter(hello_app, "1/minute"))
    assert "store_failures=1" in repr(RateLimiter(hello_app, "1/minute", store_failures=1))
