"""A real redis-server on a free loopback port, started and stopped by PID.

    server = RedisServer(directory)
    server.start()                 # returns once it answers PING
    redis.Redis.from_url(server.url)
    server.stop()

Used by the test fixtures (``tests/conftest.py``) and by
``benchmarks/ratelimit.py``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

from tests.processes import stop_process

__all__ = ["REDIS_SERVER", "RedisServer"]

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """A real redis-server on a free loopback port, stoppable and restartable, by PID."""

    def __init__(self, directory) -> None:
        self.directory = directory
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)  # polling a starting process
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None
