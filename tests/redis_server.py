"""A real redis-server on a free loopback port, started and stopped by PID.

    server = RedisServer(directory)
    server.start()                 # returns once it answers PING
    RedisServer(directory, cluster=True)   # a one-node cluster holding every slot
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


#: How often a first start may pick a new port because another process took
#: the one chosen (it is free when chosen, and bound only later by redis-server).
PORT_ATTEMPTS = 5


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A real redis-server on a free loopback port, stoppable and restartable, by PID.

    The port is chosen free, then bound by redis-server, so another process may
    take it in between.  A first start notices (our redis-server exits, or the
    one answering has another PID) and tries a new port; a restart keeps the
    port, since clients hold the URL.

    ``cluster=True`` starts it in cluster mode, alone, serving all 16384 hash
    slots: it refuses what a cluster refuses (a script whose keys hash to
    different slots) without needing six processes.
    """

    def __init__(self, directory, *, cluster: bool = False) -> None:
        self.directory = directory
        self.port = _free_port()
        self.cluster = cluster
        self.proc: subprocess.Popen | None = None
        self._started = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        attempts = 1 if self._started else PORT_ATTEMPTS
        for attempt in range(attempts):
            if attempt:
                self.port = _free_port()
            if self._spawn():
                self._started = True
                if self.cluster:
                    self._serve_every_slot()
                return
        raise RuntimeError(f"redis-server could not listen on port {self.port}")

    def _spawn(self) -> bool:
        """Start redis-server; True once it answers, False if it could not take the port."""
        cluster = []
        if self.cluster:  # its bus on a port of its own, not port + 10000 (maybe > 65535)
            cluster = ["--cluster-enabled", "yes", "--cluster-port", str(_free_port())]
        self.proc = proc = subprocess.Popen(
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
                *cluster,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.proc = None
                return False  # it exited: the port was taken
            answering = _server_pid(self.port)
            if answering == proc.pid:
                return True
            if answering is not None:  # another server has the port; ours will exit
                stop_process(proc)
                self.proc = None
                return False
            time.sleep(0.05)  # polling a starting process
        stop_process(proc)
        self.proc = None
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def _serve_every_slot(self) -> None:
        """Give this one node every hash slot, and return once the cluster is up."""
        import redis

        with redis.Redis(port=self.port) as client:
            if int(client.cluster("INFO")["cluster_slots_assigned"]) == 0:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
            deadline = time.monotonic() + 10
            while client.cluster("INFO")["cluster_state"] != "ok":
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the one-node cluster on port {self.port} stayed down")
                time.sleep(0.05)  # polling a forming cluster

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None


def _server_pid(port: int) -> int | None:
    """The PID of the redis-server answering on ``port``; None if none answers yet.

    Anything listening that is not Redis counts as "another server" (-1).
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"INFO server\r\n")
            reply = b""
            while b"process_id:" not in reply or not reply.endswith(b"\r\n"):
                data = sock.recv(65536)
                if not data:
                    break
                reply += data
    except OSError:
        return None
    for line in reply.split(b"\r\n"):
        if line.startswith(b"process_id:"):
            return int(line.split(b":", 1)[1])
    return -1 if reply else None
