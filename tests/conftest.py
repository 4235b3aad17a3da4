"""Shared test helpers: every app checked by wsgiref's PEP 3333 validator."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from wsgiref.validate import validator

import pytest

from tests.redis_server import OPENSSL, REDIS_SERVER, RedisServer, join, make_certificates
from wsgistack._types import StartResponse, WSGIApplication, WSGIEnvironment


def hello_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The plainest app: 200, text/plain, a body naming the path it saw."""
    body = f"hello {environ.get('SCRIPT_NAME', '')}|{environ.get('PATH_INFO', '')}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def logging_ini(level: str, args: str, fmt: str) -> str:
    """The ``[loggers]``..``[formatters]`` sections of a logging.fileConfig ini.

    The root logger at ``level`` writes to one FileHandler made with ``args``
    (its Python tuple, as the ini spells it) in the format ``fmt``.
    """
    return f"""
[loggers]
keys = root

[handlers]
keys = file

[formatters]
keys = plain

[logger_root]
level = {level}
handlers = file

[handler_file]
class = FileHandler
args = {args}
formatter = plain

[formatter_plain]
format = {fmt}
"""


@pytest.fixture
def checked() -> Callable[[WSGIApplication], WSGIApplication]:
    """Wrap an app in wsgiref's validator, so PEP 3333 is checked, not assumed."""
    return validator


@pytest.fixture
def sendfile_spy(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The bytes each ``os.sendfile`` call sent during the test (the calls still send)."""
    sent: list[int] = []
    real = os.sendfile

    def spy(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        done = real(out_fd, in_fd, offset, count)
        sent.append(done)
        return done

    monkeypatch.setattr(os, "sendfile", spy)
    return sent


@pytest.fixture(scope="session")
def ipv6_loopback() -> None:
    """Skip where ::1 cannot be bound; in CI, fail: its machines have an IPv6 loopback."""
    if socket.has_ipv6:
        try:
            with socket.socket(socket.AF_INET6) as sock:
                sock.bind(("::1", 0))
        except OSError:
            pass
        else:
            return
    if os.environ.get("CI"):
        pytest.fail("::1 cannot be bound here, and CI's machines have an IPv6 loopback")
    pytest.skip("this machine has no IPv6 loopback (::1)")


def _need_redis() -> None:
    if not os.path.exists(REDIS_SERVER):
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; .ci/run installs it")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One real redis-server for the session."""
    _need_redis()
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own, which the test may stop and restart."""
    _need_redis()
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_cluster(tmp_path):
    """A one-node Redis Cluster of this test's own (every slot), stoppable and restartable."""
    _need_redis()
    server = RedisServer(tmp_path, cluster=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_two_node_cluster(tmp_path):
    """A Redis Cluster of two nodes of this test's own, each holding half of the slots."""
    _need_redis()
    halves = [(0, 8191), (8192, 16383)]
    nodes = [
        RedisServer(tmp_path / f"node{i}", cluster=True, slots=s) for i, s in enumerate(halves)
    ]
    try:
        for node in nodes:
            node.directory.mkdir()
            node.start()
        join(nodes)
        yield nodes
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """A CA, a server and a client certificate (openssl), for the TLS Redis fixtures."""
    if not os.path.exists(OPENSSL):
        if os.environ.get("CI"):
            pytest.fail("openssl is not installed; .ci/run installs it")
        pytest.skip("openssl is not installed (apt-get install openssl)")
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def tls_redis(tmp_path_factory, tls_files):
    """A redis-server on TLS only (rediss://), as managed Redis is; no client certificate."""
    _need_redis()
    server = RedisServer(tmp_path_factory.mktemp("redis-tls"), tls=tls_files)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tls_redis_client_certificates(tmp_path_factory, tls_files):
    """A redis-server on TLS only that refuses a client without a certificate from the CA."""
    _need_redis()
    server = RedisServer(
        tmp_path_factory.mktemp("redis-mtls"), tls=tls_files, client_certificates=True
    )
    server.start()
    yield server
    server.stop()
