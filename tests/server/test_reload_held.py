"""An address a reload dropped, listed again while the old workers still drain it.

The master holds a dropped listener until the workers that had it leave; a
reload that lists the address again takes that socket back rather than bind
it a second time (which the held socket would refuse: "Address already in
use").  The CLI in a subprocess, its ``--config`` file edited in
``tmp_path``; the old worker is kept draining by a request it is still
serving, then killed by PID; every wait a bounded poll.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from .served import APP, Served, launched, poll
from .test_activation import LAUNCHER, listening
from .test_reload_config import request_line, status_of
from .test_reload_env import hang_up
from .test_reload_rollback import free_port


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets process ``pid`` has open (its /proc/PID/fd links)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed since the listing
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def listening_inodes(address: int | Path) -> set[int]:
    """The inodes of the sockets listening on loopback port ``address``, or unix path ``address``."""
    if isinstance(address, Path):
        lines = Path("/proc/net/unix").read_text().splitlines()[1:]
        # Num RefCount Protocol Flags Type St Inode Path; flag 0x10000: listening
        return {
            int(fields[6])
            for fields in (line.split() for line in lines)
            if len(fields) == 8 and fields[7] == str(address) and int(fields[3], 16) & 0x10000
        }
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    # sl local_address rem_address st ... inode (the tenth); st 0A: LISTEN
    return {
        int(fields[9])
        for fields in (line.split() for line in lines)
        if fields[1] == f"0100007F:{address:04X}" and fields[3] == "0A"
    }


def held_by_master(server: Served, address: int | Path) -> int:
    """How many listeners on ``address`` the master has open."""
    return len(socket_inodes(server.proc.pid) & listening_inodes(address))


@pytest.fixture
def launch(tmp_path):
    """``launch(fd)``: the CLI on ``stack.toml``, given descriptor ``fd`` (if any) as 3."""
    (tmp_path / "slowapp.py").write_text(APP)
    (tmp_path / "launcher.py").write_text(LAUNCHER)
    env = {**os.environ, "MARKER": str(tmp_path / "marker"), "ACTIVATE": ""}
    serve = ["-m", "wsgistack.cli", "serve", "--config", "stack.toml"]
    with launched(tmp_path) as start:

        def launch(fd: int | None) -> Served:
            argv = [sys.executable, *(["launcher.py", str(fd)] if fd is not None else []), *serve]
            return start(argv, env=env, pass_fds=() if fd is None else (fd,))

        yield launch


@pytest.mark.parametrize("kind", ["tcp", "unix", "fd"])
def test_an_address_listed_again_while_its_old_workers_drain_is_taken_back(launch, tmp_path, kind):
    with contextlib.ExitStack() as stack:
        passed = stack.enter_context(listening()) if kind == "fd" else None
        if passed is not None:
            address: int | Path = passed.getsockname()[1]
            bind_b = "fd://3"
        elif kind == "tcp":
            address = free_port()
            bind_b = f"127.0.0.1:{address}"
        else:
            address = tmp_path / "b.sock"
            bind_b = f"unix:{address}"
        b = ("127.0.0.1", address) if isinstance(address, int) else str(address)

        def write(*binds: str) -> None:
            listed = ", ".join(f'"{bind}"' for bind in binds)
            text = f"[server]\nbind = [{listed}]\nworkers = 1\ngraceful_timeout = 60\n"
            (tmp_path / "stack.toml").write_text(text + "[app]\nuse = 'slowapp:app'\n")

        write("127.0.0.1:0", bind_b)
        server = launch(passed.fileno() if passed is not None else None)
        (old,) = poll(lambda: server.count_workers(1))
        assert status_of(b, request_line(20)) == 200
        assert held_by_master(server, address) == 1
        # A request the old worker is still serving keeps it draining (60 s of grace).
        slow = stack.enter_context(socket.create_connection(("127.0.0.1", server.port), 10))
        slow.sendall(b"GET /slow?60 HTTP/1.1\r\nHost: a\r\n\r\n")
        poll(server.marker.exists)
        write("127.0.0.1:0")
        hang_up(server, "reload done")
        (new,) = poll(lambda: (pids := server.workers() - {old}) and pids)
        assert old in server.workers()  # still draining, and holding B
        write("127.0.0.1:0", bind_b)
        done = server.log.read_text().count("reload done")
        log = hang_up(server, "master: reload")  # read again, or refused
        assert "reload refused" not in log
        poll(lambda: server.log.read_text().count("reload done") > done)
        assert held_by_master(server, address) == 1  # B's socket again, not a second one
        if isinstance(address, Path):
            assert address.exists()
        # The old worker leaves (killed by PID): the master keeps B, the new workers serve it.
        os.kill(old, signal.SIGKILL)
        poll(lambda: old not in server.workers())
        poll(lambda: new not in server.workers())  # the first reload's worker drained
        assert status_of(b, request_line(20)) == 200
        assert held_by_master(server, address) == 1
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0
    if isinstance(address, Path):
        assert not address.exists()
