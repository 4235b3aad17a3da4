"""A redis:// URL naming one node of a Redis Cluster of several: said once, with what to do."""

from __future__ import annotations

import logging
from wsgiref.validate import validator

import redis
from webtest import TestApp

from tests.conftest import hello_app
from wsgistack.middlewares import RateLimiter
from wsgistack.middlewares.ratelimit import RedisStore

PEERS = [f"192.0.2.{n}" for n in range(1, 9)]


def test_a_plain_url_to_one_node_of_a_cluster_is_named_once_with_the_fix(
    redis_two_node_cluster, caplog
):
    # The node answers MOVED for a key whose slot the other node holds: those
    # clients got fail= for ever (here: refused), with a generic "store failed"
    # warning every 30 s and nothing saying why only some clients.
    node = redis_two_node_cluster[0]
    store = RedisStore(node.url)
    layer = RateLimiter(
        validator(hello_app),
        "1/minute",
        store=store,
        fail="closed",
        store_failures=100,  # every check asks the store: no breaker in between
        clock=lambda: 1000.0,
    )
    app = TestApp(validator(layer))
    with caplog.at_level(logging.WARNING, logger="wsgistack"):
        first = {
            peer: app.get("/", extra_environ={"REMOTE_ADDR": peer}, expect_errors=True).status_int
            for peer in PEERS
        }
        second = [
            app.get("/", extra_environ={"REMOTE_ADDR": peer}, expect_errors=True).status_int
            for peer in PEERS
        ]
    moved = [peer for peer, status in first.items() if status == 503]
    counted = [peer for peer, status in first.items() if status == 200]
    assert moved and counted, first  # both halves of the slots were asked
    assert second == [429 if peer in counted else 503 for peer in PEERS]
    said = [r for r in caplog.records if "a node of a Redis Cluster of several" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    message = said[0].getMessage()
    assert f"RedisStore: {node.url} is a node of a Redis Cluster of several nodes" in message
    assert "MovedError" in message
    assert "pass a cluster client: RedisStore(redis.RedisCluster.from_url(url))" in message
    # The failure's own line names the reply's kind, which redis-py's text leaves out.
    failed = [r.getMessage() for r in caplog.records if "store failed" in r.getMessage()]
    assert failed and all(f"(Redis at {node.url}: MovedError: " in line for line in failed), failed
    store.close()


def test_a_cluster_client_on_the_same_node_counts_every_client(redis_two_node_cluster, caplog):
    # What the warning says to do works: every client is counted, nothing is said.
    client = redis.RedisCluster.from_url(redis_two_node_cluster[0].url, socket_timeout=0.5)
    layer = RateLimiter(
        validator(hello_app), "1/minute", store=RedisStore(client), clock=lambda: 1000.0
    )
    app = TestApp(validator(layer))
    with caplog.at_level(logging.WARNING, logger="wsgistack"):
        for expected in (200, 429):
            for peer in PEERS:
                response = app.get("/", extra_environ={"REMOTE_ADDR": peer}, expect_errors=True)
                assert response.status_int == expected, (peer, response)
    failures = ("store failed", "a node of a Redis Cluster")
    assert not [r for r in caplog.records if any(f in r.getMessage() for f in failures)]
    client.close()


def _node_id(node) -> str:
    with redis.Redis(port=node.port) as client:
        return client.execute_command("CLUSTER", "MYID").decode()


def test_a_slot_moving_between_nodes_keeps_each_clients_count(redis_two_node_cluster, caplog):
    # A reshard (redis-cli --cluster reshard) moves a slot's keys one by one:
    # while it runs, the old node answers ASK for a key already moved, and a
    # cluster client must follow it to the new node, where the count went.  Had
    # the store lost the count or failed, the client would be admitted again.
    source, target = redis_two_node_cluster
    client = redis.RedisCluster.from_url(source.url, socket_timeout=0.5)
    layer = RateLimiter(
        validator(hello_app), "2/minute", store=RedisStore(client), clock=lambda: 1000.0
    )
    app = TestApp(validator(layer))

    def status(peer: str) -> int:
        return app.get("/", extra_environ={"REMOTE_ADDR": peer}, expect_errors=True).status_int

    with caplog.at_level(logging.WARNING, logger="wsgistack"):
        assert {status(peer) for peer in PEERS} == {200}
        with (
            redis.Redis(port=source.port) as on_source,
            redis.Redis(port=target.port) as on_target,
        ):
            key = on_source.keys("*")[0]  # some clients' keys are on the source node
            slot = on_source.execute_command("CLUSTER", "KEYSLOT", key)
            source_id, target_id = _node_id(source), _node_id(target)
            on_target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
            on_source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
            on_source.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", key)
            in_slot = ("CLUSTER", "COUNTKEYSINSLOT", slot)
            assert on_source.execute_command(*in_slot) == 0
            assert on_target.execute_command(*in_slot) == 1
            # The key names the client in a hash tag: {gcra:2-per-60s:ip:192.0.2.5}.
            peer = key.decode().partition("}")[0].rpartition(":")[2]
            assert peer in PEERS, key
            # Mid-migration the source answers ASK for this key: followed.
            assert status(peer) == 200  # the second of two, counted on the target
            assert status(peer) == 429
            assert on_target.info("commandstats")["cmdstat_asking"]["calls"] >= 2
            # The migration ends: the target owns the slot (MOVED from now on).
            for node in (on_target, on_source):
                node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
            assert status(peer) == 429
    failures = ("store failed", "a node of a Redis Cluster")
    assert not [r for r in caplog.records if any(f in r.getMessage() for f in failures)]
    client.close()
