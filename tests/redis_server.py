"""A real redis-server on a free loopback port, started and stopped by PID.

    server = RedisServer(directory)
    server.start()                 # returns once it answers PING
    RedisServer(directory, cluster=True)   # a one-node cluster holding every slot
    join(RedisServer(a, cluster=True, slots=(0, 8191)), ...)   # one cluster of several nodes
    RedisServer(directory, tls=make_certificates(directory))   # TLS only (rediss://)
    redis.Redis.from_url(server.url)
    server.stop()

Used by the test fixtures (``tests/conftest.py``) and by
``benchmarks/ratelimit.py``.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.processes import stop_process

__all__ = [
    "OPENSSL",
    "REDIS_SERVER",
    "RedisServer",
    "TLSFiles",
    "encrypt_key",
    "join",
    "make_certificates",
]

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


#: How often a first start may pick a new port because another process took
#: the one chosen (it is free when chosen, and bound only later by redis-server).
PORT_ATTEMPTS = 5


@dataclass(frozen=True)
class TLSFiles:
    """PEM files for a TLS Redis: a CA, the server's and a client's certificate and key.

    The server's certificate names only the address 127.0.0.1 (so ``localhost``
    is a wrong host name for it); ``other_ca`` signed nothing here (a CA the
    server's certificate does not chain to).
    """

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _openssl(directory: Path, *args: str) -> None:
    subprocess.run([OPENSSL, *args], cwd=directory, check=True, capture_output=True)


def _new_ca(directory: Path, name: str) -> None:
    _openssl(
        directory,
        *("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
        *("-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2"),
        *("-subj", f"/CN=wsgistack test {name}"),
        *("-addext", "basicConstraints=critical,CA:TRUE"),
        *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
    )


def _signed(directory: Path, name: str, extensions: str) -> None:
    """``name``.pem and ``name``.key, signed by ca.pem, with these X.509v3 extensions."""
    (directory / f"{name}.ext").write_text(
        "basicConstraints=CA:FALSE\nauthorityKeyIdentifier=keyid\n"
        "keyUsage=critical,digitalSignature\n" + extensions
    )
    _openssl(
        directory,
        *("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
        *("-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr"),
        *("-subj", f"/CN=wsgistack test {name}"),
    )
    _openssl(
        directory,
        *("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key"),
        *("-CAcreateserial", "-out", f"{name}.pem", "-days", "2"),
        *("-extfile", f"{name}.ext"),
    )


def make_certificates(directory) -> TLSFiles:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made by openssl."""
    directory = Path(directory)
    _new_ca(directory, "ca")
    _new_ca(directory, "other_ca")
    _signed(directory, "server", "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n")
    _signed(directory, "client", "extendedKeyUsage=clientAuth\n")
    return TLSFiles(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        other_ca=directory / "other_ca.pem",
    )


def encrypt_key(key: Path, out: Path, password: str) -> Path:
    """``key`` encrypted with ``password`` (AES-256), written to ``out``, by openssl."""
    _openssl(
        out.parent,
        "pkey",
        "-in",
        str(key),
        "-aes256",
        "-passout",
        f"pass:{password}",
        "-out",
        str(out),
    )
    return out


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
    different slots) without needing six processes.  With ``slots=(first,
    last)`` it serves those only, and :func:`join` makes one cluster of
    several such nodes (each in a directory of its own: ``nodes.conf``).

    ``tls=`` (files from :func:`make_certificates`) makes it listen on TLS
    only, as managed Redis does; ``client_certificates=True`` makes it refuse
    a client without a certificate signed by the CA.
    """

    def __init__(
        self,
        directory,
        *,
        cluster: bool = False,
        slots: tuple[int, int] = (0, 16383),
        tls: TLSFiles | None = None,
        client_certificates: bool = False,
    ) -> None:
        self.directory = directory
        self.port = _free_port()
        self.cluster = cluster
        self.slots = slots
        self.bus_port = 0  # the cluster bus's, once started
        self.tls = tls
        self.client_certificates = client_certificates
        self.proc: subprocess.Popen | None = None
        self._started = False

    @property
    def url(self) -> str:
        """A URL redis-py connects with (over TLS: trusting the CA, with the client's cert)."""
        if self.tls is None:
            return f"redis://127.0.0.1:{self.port}/0"
        url = f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls.ca}"
        if self.client_certificates:
            url += f"&ssl_certfile={self.tls.client_cert}&ssl_keyfile={self.tls.client_key}"
        return url

    def _listen(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        tls = self.tls
        return [
            *("--port", "0", "--tls-port", str(self.port)),
            *("--tls-cert-file", str(tls.server_cert), "--tls-key-file", str(tls.server_key)),
            *("--tls-ca-cert-file", str(tls.ca)),
            *("--tls-auth-clients", "yes" if self.client_certificates else "no"),
        ]

    def _context(self) -> ssl.SSLContext | None:
        """How the readiness probe speaks to it: None for plain TCP."""
        if self.tls is None:
            return None
        context = ssl.create_default_context(cafile=str(self.tls.ca))
        context.load_cert_chain(self.tls.client_cert, self.tls.client_key)
        return context

    def start(self) -> None:
        attempts = 1 if self._started else PORT_ATTEMPTS
        for attempt in range(attempts):
            if attempt:
                self.port = _free_port()
            if self._spawn():
                self._started = True
                if self.cluster:
                    self._serve_slots()
                return
        raise RuntimeError(f"redis-server could not listen on port {self.port}")

    def _spawn(self) -> bool:
        """Start redis-server; True once it answers, False if it could not take the port."""
        cluster = []
        if self.cluster:  # its bus on a port of its own, not port + 10000 (maybe > 65535)
            self.bus_port = _free_port()
            cluster = ["--cluster-enabled", "yes", "--cluster-port", str(self.bus_port)]
        self.proc = proc = subprocess.Popen(
            [
                REDIS_SERVER,
                *self._listen(),
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
            answering = _server_pid(self.port, self._context())
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

    def _serve_slots(self) -> None:
        """Give this node its hash slots; with every slot, return once the cluster is up."""
        import redis

        with redis.Redis(port=self.port) as client:
            if int(client.cluster("INFO")["cluster_slots_assigned"]) == 0:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", *self.slots)
        if self.slots == (0, 16383):
            _wait_until_up([self])

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None


def join(nodes: list[RedisServer]) -> None:
    """Make the started cluster ``nodes`` one cluster (CLUSTER MEET); return once it is up."""
    import redis

    first = nodes[0]
    with redis.Redis(port=first.port) as client:
        for other in nodes[1:]:
            client.execute_command("CLUSTER", "MEET", "127.0.0.1", other.port, other.bus_port)
    _wait_until_up(nodes)


def _wait_until_up(nodes: list[RedisServer]) -> None:
    """Wait (10 s at most) until each node knows them all and calls the cluster "ok"."""
    import redis

    deadline = time.monotonic() + 10
    for node in nodes:
        with redis.Redis(port=node.port) as client:
            while True:
                info = client.cluster("INFO")
                if info["cluster_state"] == "ok" and int(info["cluster_known_nodes"]) == len(nodes):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the cluster node on port {node.port} stayed down: {info}")
                time.sleep(0.05)  # polling a forming cluster


def _server_pid(port: int, context: ssl.SSLContext | None = None) -> int | None:
    """The PID of the redis-server answering on ``port``; None if none answers yet.

    Anything listening that is not Redis (or not TLS, given a ``context``)
    counts as "another server" (-1).
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as plain:
            if context is None:
                reply = _info(plain)
            else:
                try:
                    sock = context.wrap_socket(plain, server_hostname="127.0.0.1")
                except ssl.SSLError:
                    return -1
                with sock:
                    reply = _info(sock)
    except OSError:
        return None
    for line in reply.split(b"\r\n"):
        if line.startswith(b"process_id:"):
            return int(line.split(b":", 1)[1])
    return -1 if reply else None


def _info(sock: socket.socket) -> bytes:
    """The reply to INFO server, as far as its process_id line (less if it stops)."""
    sock.sendall(b"INFO server\r\n")
    reply = b""
    while b"process_id:" not in reply or not reply.endswith(b"\r\n"):
        data = sock.recv(65536)
        if not data:
            break
        reply += data
    return reply
