"""An address a reload dropped, listed again while the old workers still drain it.

The master holds a dropped listener until the workers that had it leave; a
reload that lists the address again takes that socket back rather than bind
it a second time (which the held socket would refuse: "Address already in
use"); if that reload fails or is replaced, the socket is held again, not
closed under the workers still draining it.  The CLI in a subprocess, its
``--config`` file edited in ``tmp_path``; the old worker is kept draining by
a request it is still serving, then killed by PID; every wait a bounded poll.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from .served import APP, HELD_IMPORT, Served, launched, poll
from .test_activation import LAUNCHER, listening
from .test_reload_config import refused, request_line, status_of
from .test_reload_env import hang_up
from .test_reload_rollback import free_port
from .test_reload_states import HELD


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


def master_listeners(server: Served, *addresses: int | Path) -> int:
    """How many listeners the master has open on ``addresses`` and on its first port."""
    return sum(held_by_master(server, address) for address in {server.port, *addresses})


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


@dataclasses.dataclass(frozen=True)
class Second:
    """The address the reloads drop and list again: its bind, where to ask it, how to count it."""

    bind: str
    address: int | Path  # a loopback port, or a unix socket's path (``listening_inodes``)
    passed: socket.socket | None  # the listener given as descriptor 3, for fd://3

    @property
    def asked(self) -> tuple[str, int] | str:
        return ("127.0.0.1", self.address) if isinstance(self.address, int) else str(self.address)


def second(kind: str, tmp_path: Path, stack: contextlib.ExitStack) -> Second:
    """A second address of ``kind``: a free loopback port, a unix path, or a socket passed as fd 3."""
    if kind == "fd":
        passed = stack.enter_context(listening())
        return Second("fd://3", passed.getsockname()[1], passed)
    if kind == "tcp":
        port = free_port()
        return Second(f"127.0.0.1:{port}", port, None)
    path = tmp_path / "b.sock"
    return Second(f"unix:{path}", path, None)


def write(tmp_path: Path, app: str, *binds: str) -> None:
    """``stack.toml``: one worker with a minute of grace, on ``binds``, serving ``app``."""
    listed = ", ".join(f'"{bind}"' for bind in binds)
    text = f"[server]\nbind = [{listed}]\nworkers = 1\ngraceful_timeout = 60\n"
    (tmp_path / "stack.toml").write_text(text + f"[app]\nuse = '{app}'\n")


def dropped_while_draining(
    launch, tmp_path: Path, b: Second, app: str, stack: contextlib.ExitStack
) -> tuple[Served, int, int]:
    """Served on A and ``b``, then a reload drops ``b`` while the old worker drains a request.

    Returns the server, the old worker (holding ``b``) and the reload's worker.
    """
    write(tmp_path, app, "127.0.0.1:0", b.bind)
    server = launch(b.passed.fileno() if b.passed is not None else None)
    (old,) = poll(lambda: server.count_workers(1))
    assert status_of(b.asked, request_line(20)) == 200
    assert held_by_master(server, b.address) == 1
    # A request the old worker is still serving keeps it draining (60 s of grace).
    slow = stack.enter_context(socket.create_connection(("127.0.0.1", server.port), 10))
    slow.sendall(b"GET /slow?60 HTTP/1.1\r\nHost: a\r\n\r\n")
    poll(server.marker.exists)
    write(tmp_path, app, "127.0.0.1:0")
    hang_up(server, "reload done")
    (new,) = poll(lambda: (pids := server.workers() - {old}) and pids)
    assert old in server.workers()  # still draining, and holding B
    return server, old, new


def listed_again(server: Served, tmp_path: Path, b: Second, app: str) -> None:
    """A reload that lists ``b`` again, and succeeds: no "Address already in use"."""
    write(tmp_path, app, "127.0.0.1:0", b.bind)
    done = server.log.read_text().count("reload done")
    log = hang_up(server, "master: reload")  # read again, or refused
    assert "reload refused" not in log
    poll(lambda: server.log.read_text().count("reload done") > done)
    assert held_by_master(server, b.address) == 1  # B's socket again, not a second one
    if isinstance(b.address, Path):
        assert b.address.exists()


@pytest.mark.parametrize("kind", ["tcp", "unix", "fd"])
def test_an_address_listed_again_while_its_old_workers_drain_is_taken_back(launch, tmp_path, kind):
    with contextlib.ExitStack() as stack:
        b = second(kind, tmp_path, stack)
        server, old, new = dropped_while_draining(launch, tmp_path, b, "slowapp:app", stack)
        listed_again(server, tmp_path, b, "slowapp:app")
        # The old worker leaves (killed by PID): the master keeps B, the new workers serve it.
        os.kill(old, signal.SIGKILL)
        poll(lambda: old not in server.workers())
        poll(lambda: new not in server.workers())  # the first reload's worker drained
        assert status_of(b.asked, request_line(20)) == 200
        assert held_by_master(server, b.address) == 1
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0
    if isinstance(b.address, Path):
        assert not b.address.exists()


def undo(server: Served, tmp_path: Path, b: Second, how: str) -> None:
    """A reload lists ``b`` again (taking its held socket back), then is undone, ``how``.

    ``failed``: its new worker cannot load the app; ``replaced``: a SIGHUP
    that drops ``b`` again comes while its worker is still loading.
    """
    write(tmp_path, "heldapp:app", "127.0.0.1:0", b.bind)
    if how == "failed":
        (tmp_path / "broken").touch()
        hang_up(server, "master: reload failed")
        (tmp_path / "broken").unlink()
        return
    (tmp_path / "hold").touch()
    done = server.log.read_text().count("reload done")
    hang_up(server, "reload, starting new workers")
    poll(lambda: list(tmp_path.glob("held-*")))  # its worker loads, with B among its listeners
    write(tmp_path, "heldapp:app", "127.0.0.1:0")
    hang_up(server, "reload again")
    (tmp_path / "hold").unlink()
    poll(lambda: server.log.read_text().count("reload done") > done)


@pytest.mark.parametrize("how", ["failed", "replaced"])
@pytest.mark.parametrize("kind", ["tcp", "unix", "fd"])
def test_a_socket_taken_back_by_a_reload_undone_is_held_again_for_its_old_worker(
    launch, tmp_path, kind, how
):
    # The undone reload closed B as if it had opened it, while the old worker
    # still listened on its copy: the next reload listing B could not bind it
    # ("Address already in use", a unix socket "in use by a running server").
    (tmp_path / "heldapp.py").write_text(HELD)
    with contextlib.ExitStack() as stack:
        b = second(kind, tmp_path, stack)
        server, old, _ = dropped_while_draining(launch, tmp_path, b, "heldapp:app", stack)
        undo(server, tmp_path, b, how)
        assert old in poll(lambda: server.count_workers(2))  # draining; one new worker serves
        assert held_by_master(server, b.address) == 1  # held again, not closed
        assert master_listeners(server, b.address) == 2
        listed_again(server, tmp_path, b, "heldapp:app")
        assert master_listeners(server, b.address) == 2
        os.kill(old, signal.SIGKILL)
        poll(lambda: old not in server.workers())
        assert status_of(b.asked, request_line(20)) == 200
        assert master_listeners(server, b.address) == 2
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0


@pytest.mark.parametrize("how", ["failed", "replaced"])
@pytest.mark.parametrize("kind", ["tcp", "fd"])
def test_a_socket_held_again_is_closed_once_its_old_worker_leaves(launch, tmp_path, kind, how):
    # An inherited one was let go of, not closed: it listened on in the master for good.
    (tmp_path / "heldapp.py").write_text(HELD)
    with contextlib.ExitStack() as stack:
        b = second(kind, tmp_path, stack)
        server, old, _ = dropped_while_draining(launch, tmp_path, b, "heldapp:app", stack)
        undo(server, tmp_path, b, how)
        assert held_by_master(server, b.address) == 1
        os.kill(old, signal.SIGKILL)
        # No worker holds B any more: the master lets go of it.
        poll(lambda: held_by_master(server, b.address) == 0)
        assert master_listeners(server) == 1
        if b.passed is None:  # an inherited socket's first copy is this test's
            assert isinstance(b.address, int) and refused(b.address)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0


def test_an_inherited_socket_a_replaced_reload_adopted_is_adopted_again(launch, tmp_path):
    # The replaced reload closed fd 3 (where a failed one lets go of it), so the
    # number named no socket any more and the next reload listing it was refused.
    (tmp_path / "slowimport.py").write_text(HELD_IMPORT)
    with listening() as passed:
        port = passed.getsockname()[1]
        write(tmp_path, "slowapp:app", "127.0.0.1:0")
        server = launch(passed.fileno())
        poll(lambda: server.count_workers(1))
        write(tmp_path, "slowimport:app", "127.0.0.1:0", "fd://3")
        hang_up(server, "reload, starting new workers")
        poll((tmp_path / "loading").exists)  # its worker loads, fd 3 among its listeners
        write(tmp_path, "slowapp:app", "127.0.0.1:0")
        hang_up(server, "reload done")  # the second SIGHUP releases the held import
        write(tmp_path, "slowapp:app", "127.0.0.1:0", "fd://3")
        done = server.log.read_text().count("reload done")
        log = hang_up(server, "master: reload")  # read again, or refused
        assert "reload refused" not in log
        log = poll(lambda: (text := server.log.read_text()).count("reload done") > done and text)
        assert f"listening on http://127.0.0.1:{port}\n" in log
        assert status_of(("127.0.0.1", port), request_line(20)) == 200
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0


def test_a_dropped_socket_is_closed_once_the_workers_forked_with_it_leave(launch, tmp_path):
    # Every live worker counted as a holder: B stayed open in the master until
    # the first worker, forked before B was opened, had drained its request.
    with contextlib.ExitStack() as stack:
        b = second("tcp", tmp_path, stack)
        write(tmp_path, "slowapp:app", "127.0.0.1:0")
        server = launch(None)
        (first,) = poll(lambda: server.count_workers(1))
        slow = stack.enter_context(socket.create_connection(("127.0.0.1", server.port), 10))
        slow.sendall(b"GET /slow?60 HTTP/1.1\r\nHost: a\r\n\r\n")
        poll(server.marker.exists)  # the first worker drains this for a minute
        write(tmp_path, "slowapp:app", "127.0.0.1:0", b.bind)
        hang_up(server, "reload done")
        (opened_b,) = poll(lambda: server.count_workers(2)) - {first}
        assert status_of(b.asked, request_line(20)) == 200
        write(tmp_path, "slowapp:app", "127.0.0.1:0")
        hang_up(server, "reload done")
        poll(lambda: opened_b not in server.workers())
        poll(lambda: held_by_master(server, b.address) == 0)
        assert first in server.workers()  # still draining, and never had B
        assert isinstance(b.address, int) and refused(b.address)
        os.kill(first, signal.SIGKILL)
        poll(lambda: first not in server.workers())
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0
