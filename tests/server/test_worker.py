"""A pool thread taking its listener's next connection itself, after one closed.

Under load the loop thread rarely gets to these connections first, so the
cases are driven step by step on a worker whose loop is not running.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator
from wsgiref.validate import validator

import pytest

from wsgistack.server.config import ServerConfig
from wsgistack.server.listener import close_listeners, open_listeners
from wsgistack.server.worker import Worker

from .conftest import echo_app
from .live import read_until_close

REQUEST = b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


@pytest.fixture
def worker() -> Iterator[Worker]:
    config = ServerConfig.from_options(bind="127.0.0.1:0", threads=1, timeout=5)
    listeners = open_listeners(config.bind, config.backlog)
    worker = Worker(validator(echo_app), config, listeners)
    try:
        yield worker
    finally:
        for connection in list(worker._connections.values()):
            worker._close(connection)
        worker._poller.close()
        close_listeners(listeners)


def connect(worker: Worker, data: bytes) -> tuple[socket.socket, int]:
    """A client that sent ``data``, waiting in the backlog; and the listener's fd."""
    [listener] = worker.listeners
    client = socket.create_connection(listener.getsockname()[:2], timeout=5)
    client.sendall(data)
    assert select.select([listener], [], [], 5)[0]  # in the backlog, its bytes with it
    return client, listener.fileno()


def test_a_connection_that_came_with_its_request_is_served_by_the_free_thread(worker):
    client, fd = connect(worker, REQUEST)
    with client:
        connection = worker._accept_here(fd)
        assert connection is not None and connection.busy and worker._busy == 1
        assert worker._run(connection) is True  # answered and closed (Connection: close)
        answer = read_until_close(client)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"GET /next  ")
    assert worker.requests == 1 and worker._busy == 0 and not worker._connections


def test_a_connection_with_half_a_head_goes_to_the_loop_to_wait(worker):
    client, fd = connect(worker, REQUEST[:10])
    with client:
        assert worker._accept_here(fd) is None
        [connection] = worker._connections.values()
        assert not connection.busy and worker._busy == 0  # the loop's, under --timeout
        client.sendall(REQUEST[10:])
        assert worker._poller.poll(5) == [connection.fd]
        worker._readable(connection)
        assert worker._jobs.get_nowait() is connection  # complete now: handed to the pool


@pytest.mark.parametrize("state", ["stopping", "jobs waiting", "max requests"])
def test_a_thread_takes_nothing_when_it_should_not(worker, state):
    client, fd = connect(worker, REQUEST)
    with client:
        if state == "stopping":
            worker.stopping = True
        elif state == "jobs waiting":
            worker._jobs.put(None)  # the loop's hand-overs are served first
        else:
            worker.max_requests = worker.requests = 10
        assert worker._accept_here(fd) is None
        assert not worker._connections
        assert select.select(worker.listeners, [], [], 0)[0]  # still in the backlog
