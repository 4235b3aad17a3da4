"""A live reference server on port 0 and a raw-socket client, for the server's tests."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from wsgiref.validate import validator

import pytest

from wsgistack.server import Server


def echo_app(environ, start_response):
    """Answers ``METHOD PATH?QUERY|body`` (all latin-1), to check what the app saw."""
    body = b""
    while chunk := environ["wsgi.input"].read(65536):  # the validator wants a size
        body += chunk
    text = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}?{environ['QUERY_STRING']}|"
    data = text.encode("latin-1") + body
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]


@contextmanager
def live(app, **options) -> Iterator[Server]:
    """The server in a thread of this process, bound to a free loopback port."""
    server = Server(app, bind=options.pop("bind", "127.0.0.1:0"), **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    """serve(app, **options) -> a started Server, stopped after the test."""
    with_servers = []

    def start(app, *, validate: bool = True, **options) -> Server:
        server = Server(validator(app) if validate else app, **{"bind": "127.0.0.1:0", **options})
        server.start()
        with_servers.append(server)
        return server

    yield start
    for server in with_servers:
        server.stop()


def connect(server: Server, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(server.address[:2], timeout=timeout)
    return sock


def read_until_close(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def exchange(server: Server, *pieces: bytes, timeout: float = 5.0) -> bytes:
    """Send ``pieces`` one send() each, then read until the server closes."""
    with connect(server, timeout) as sock:
        for piece in pieces:
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server refused and stopped reading: read its answer
        return read_until_close(sock)


def split_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body
