"""A SIGHUP reload whose new workers cannot load the app leaves the master as it was.

The old workers serve on, and what the master does next (respawn one, count
them, listen, write its pid file, diff the next reload) follows the
configuration they run with, not the failed one.  The CLI in a subprocess,
its ``--config`` file edited in ``tmp_path``; the new app fails at import when
the file's ``env`` says ``GREETING = "broken"``.  Signals by PID, every wait a
bounded poll.
"""

from __future__ import annotations

import os
import signal
import socket
import textwrap

import pytest

from .served import Served, poll
from .test_reload_config import refused, request_line, status_of
from .test_reload_env import ENV_APP, answers, hang_up
from .test_reload_states import HELD


@pytest.fixture
def site(tmp_path):
    """``write(server)``: ``stack.toml`` with those ``[server]`` lines, serving ``ENV_APP``."""
    (tmp_path / "envapp.py").write_text(ENV_APP)

    def write(server: str) -> None:
        text = f"[server]\n{textwrap.dedent(server)}\n[app]\nuse = 'envapp:app'\n"
        (tmp_path / "stack.toml").write_text(text)

    return write


def free_port() -> int:
    """A loopback port nothing listens on now (the kernel's pick, let go at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fail_a_reload(server: Served, old: set[int]) -> str:
    """SIGHUP, wait until the new workers are gone and only ``old`` serve; the log."""
    hang_up(server, "master: reload failed")
    poll(lambda: server.workers() == old)
    return server.log.read_text()


def respawn_one(server: Served, old: set[int], count: int) -> int:
    """Kill one of ``old`` by PID; the pid of the worker the master starts for it."""
    victim = min(old)
    os.kill(victim, signal.SIGKILL)
    now = poll(lambda: (pids := server.count_workers(count)) and victim not in pids and pids)
    (respawned,) = now - old
    return respawned


def asked_until(server: Served, pid: int, request: bytes) -> int:
    """The status worker ``pid`` answers ``request`` with (asking until it is the one)."""

    def answer() -> int | None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(request)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        status = int(data.split(b" ", 2)[1])
        if status != 200:
            return status  # a limit refused it: no pid to tell, every worker counts
        return status if data.rsplit(b"\r\n\r\n", 1)[1].split()[0] == str(pid).encode() else None

    return poll(answer)


def test_a_respawned_old_worker_runs_with_the_old_options_and_count(serve, site):
    site('bind = "127.0.0.1:0"\nworkers = 2\nenv = { GREETING = "one" }\n')
    server = serve(target=("--config", "stack.toml"), bind=())
    old = poll(lambda: server.count_workers(2))
    answers(server, old)  # loaded: one still loading would read the edited file
    added = free_port()
    site(
        f"""\
        bind = ["127.0.0.1:0", "127.0.0.1:{added}"]
        workers = 3
        max_request_line = 100
        env = {{ GREETING = "broken" }}
        """
    )
    log = fail_a_reload(server, old)
    assert f"listening on http://127.0.0.1:{added}" in log  # it was bound for the new workers
    assert (
        "master: the old workers' configuration is back:"
        f" bind 127.0.0.1:0,127.0.0.1:{added} -> 127.0.0.1:0; workers 3 -> 2;" in log
    )
    # The address opened for the reload is let go of with the workers that had it.
    poll(lambda: refused(added))
    # A worker of the old set dies: the master keeps two, and the new one has
    # the old limit (a 200-byte request line is served, not refused with 414).
    respawned = respawn_one(server, old, 2)
    assert asked_until(server, respawned, request_line(200)) == 200
    assert len(server.workers()) == 2
    # Mended, the next SIGHUP says what changes from what serves: the env only.
    site('bind = "127.0.0.1:0"\nworkers = 2\nenv = { GREETING = "two" }\n')
    log = hang_up(server, "reload done")
    line = [each for each in log.splitlines() if "read again:" in each][-1]
    assert line.endswith("read again: env GREETING changed"), line


def test_an_address_the_failed_reload_dropped_is_served_again(serve, site):
    site('bind = "127.0.0.1:0"\nworkers = 1\nenv = { GREETING = "one" }\n')
    server = serve(target=("--config", "stack.toml"), bind=())
    old = poll(lambda: server.count_workers(1))
    answers(server, old)
    moved = free_port()
    site(f'bind = "127.0.0.1:{moved}"\nworkers = 1\nenv = {{ GREETING = "broken" }}\n')
    fail_a_reload(server, old)
    poll(lambda: refused(moved))
    # The only old worker dies: the one started for it serves the old address.
    respawned = respawn_one(server, old, 1)
    assert server.get().split()[0] == str(respawned)
    assert status_of(("127.0.0.1", server.port), request_line(20)) == 200


def test_the_pid_file_moves_back(serve, site, tmp_path):
    site('bind = "127.0.0.1:0"\npid = "one.pid"\nenv = { GREETING = "one" }\n')
    server = serve(target=("--config", "stack.toml"), bind=())
    old = poll(lambda: server.count_workers(1))
    answers(server, old)
    site('bind = "127.0.0.1:0"\npid = "two.pid"\nenv = { GREETING = "broken" }\n')
    log = fail_a_reload(server, old)
    assert "pid one.pid -> two.pid" in log  # the reload had moved it
    assert (tmp_path / "one.pid").read_text().strip() == str(server.proc.pid)
    assert not (tmp_path / "two.pid").exists()


def test_an_address_a_replaced_reload_opened_is_closed_when_the_last_one_fails(serve, tmp_path):
    # Two deploys in a row: the first adds an address and its workers are
    # still loading when the second drops it again, then cannot load the app.
    (tmp_path / "heldapp.py").write_text(HELD)

    def write(bind: str) -> None:
        text = f"[server]\nbind = {bind}\nworkers = 1\n[app]\nuse = 'heldapp:app'\n"
        (tmp_path / "stack.toml").write_text(text)

    write('"127.0.0.1:0"')
    server = serve(target=("--config", "stack.toml"), bind=())
    old = poll(lambda: server.count_workers(1))
    poll(lambda: list(tmp_path.glob("loaded-*")))
    added = free_port()
    (tmp_path / "hold").touch()
    write(f'["127.0.0.1:0", "127.0.0.1:{added}"]')
    hang_up(server, f"listening on http://127.0.0.1:{added}")
    poll(lambda: list(tmp_path.glob("held-*")))  # the first reload's worker loads
    for held in tmp_path.glob("held-*"):
        held.unlink()
    write('"127.0.0.1:0"')
    hang_up(server, "reload again")
    poll(lambda: list(tmp_path.glob("held-*")))  # the second reload's worker loads
    (tmp_path / "broken").touch()
    (tmp_path / "hold").unlink()
    poll(lambda: "master: reload failed" in server.log.read_text())
    poll(lambda: server.workers() == old)
    poll(lambda: refused(added))
    assert int(server.get()) in old


def test_a_unix_socket_s_mode_goes_back(serve, site, tmp_path):
    # No socket_mode at start: the file has the mode the umask leaves (777 less 027).
    path = tmp_path / "site.sock"
    binds = f'bind = ["127.0.0.1:0", "unix:{path}"]\numask = "027"\n'
    site(f'{binds}env = {{ GREETING = "one" }}\n')
    server = serve(target=("--config", "stack.toml"), bind=())
    old = poll(lambda: server.count_workers(1))
    answers(server, old)
    assert os.stat(path).st_mode & 0o777 == 0o750
    site(f'{binds}socket_mode = "600"\nenv = {{ GREETING = "broken" }}\n')
    log = fail_a_reload(server, old)
    assert "socket_mode None -> 600" in log  # the reload had set it
    assert os.stat(path).st_mode & 0o777 == 0o750
    assert status_of(str(path), request_line(20)) == 200


def test_a_pid_file_that_cannot_move_back_is_named_where_it_is(serve, tmp_path):
    # The new workers are held in their import (HELD) while one.pid is taken.
    (tmp_path / "heldapp.py").write_text(HELD)

    def write(pid: str) -> None:
        text = f'[server]\nbind = "127.0.0.1:0"\nworkers = 1\npid = "{pid}"\n'
        (tmp_path / "stack.toml").write_text(text + "[app]\nuse = 'heldapp:app'\n")

    def held_reload() -> None:
        for held in tmp_path.glob("held-*"):
            held.unlink()
        (tmp_path / "hold").touch()
        hang_up(server, "reload, starting new workers")
        poll(lambda: list(tmp_path.glob("held-*")))

    def fail_it(count: int) -> str:
        (tmp_path / "hold").unlink()
        poll(lambda: server.log.read_text().count("master: reload failed") == count)
        poll(lambda: server.workers() == old)
        return server.log.read_text()

    write("one.pid")
    server = serve(target=("--config", "stack.toml"), bind=())
    old = poll(lambda: server.count_workers(1))
    poll(lambda: list(tmp_path.glob("loaded-*")))
    write("two.pid")
    held_reload()  # the pid file moved to two.pid
    # one.pid now names a live process (this test's): the rollback cannot move it back.
    (tmp_path / "one.pid").write_text(f"{os.getpid()}\n")
    (tmp_path / "broken").touch()
    log = fail_it(1)
    assert "master: the pid file stays where the reload moved it" in log
    assert "pid two.pid -> one.pid" not in log  # not said to be back: it is not
    assert (tmp_path / "two.pid").read_text().strip() == str(server.proc.pid)
    # The next reload (the file names two.pid) fails too: it goes back to where
    # the file is, not to one.pid, which no configuration names any more.
    (tmp_path / "one.pid").unlink()
    held_reload()
    log = fail_it(2)
    assert (tmp_path / "two.pid").read_text().strip() == str(server.proc.pid)
    assert not (tmp_path / "one.pid").exists()
