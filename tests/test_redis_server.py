"""The test suite's redis-server helper survives another process taking its port."""

from __future__ import annotations

import socket

import redis

from tests.redis_server import RedisServer


def test_a_port_taken_by_a_listener_moves_the_server(redis_server, tmp_path):
    server = RedisServer(tmp_path)
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", server.port))
        squatter.listen()  # accepts, never answers: not a Redis
        taken = server.port
        server.start()
        try:
            assert server.port != taken
            assert redis.Redis.from_url(server.url).info("server")["process_id"] == server.proc.pid
        finally:
            server.stop()


def test_a_port_taken_by_another_redis_is_not_mistaken_for_ours(redis_server, tmp_path):
    server = RedisServer(tmp_path)
    server.port = redis_server.port  # as if the session's server took it first
    server.start()
    try:
        assert server.port != redis_server.port
        assert redis.Redis.from_url(server.url).info("server")["process_id"] == server.proc.pid
    finally:
        server.stop()


def test_a_restart_keeps_the_port(redis_server, tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    try:
        port, first = server.port, server.proc.pid
        server.stop()
        server.start()
        assert server.port == port
        assert server.proc.pid != first
        assert redis.Redis.from_url(server.url).ping()
    finally:
        server.stop()
