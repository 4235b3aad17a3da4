"""SIGHUP reads the configuration again: a ``--config`` file's ``[server]`` table and a
``--paste`` ini's ``[server:main]`` and ``[loggers]``, as gunicorn's HUP does.  The CLI in
a subprocess, signals sent by PID, every wait a bounded poll on the log or a socket.
"""

from __future__ import annotations

import os
import re
import signal
import socket
from pathlib import Path

import pytest

from tests.conftest import logging_ini

from .live import RawClient
from .served import Served, poll


def request_line(length: int) -> bytes:
    """A GET whose request line is ``length`` bytes long (CRLF excluded)."""
    target = "/" + "a" * (length - len("GET / HTTP/1.1"))
    return f"GET {target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode()


def status_of(address: tuple[str, int] | str, request: bytes) -> int:
    """The status the server answers ``request`` with, on a TCP address or a unix path."""
    with RawClient(address) as client:
        return client.request(request)[0]


def refused(port: int) -> bool:
    """Whether nothing listens on the loopback ``port`` any more."""
    with socket.socket() as sock:
        sock.settimeout(5)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def hang_up(server: Served, line: str) -> str:
    """SIGHUP the master and wait for ``line`` in its log; the log."""
    server.proc.send_signal(signal.SIGHUP)
    return poll(lambda: line in (text := server.log.read_text()) and text)


def test_a_sighup_applies_the_files_new_workers_limit_and_access_log(serve, stack, tmp_path):
    stack('bind = "127.0.0.1:0"\nworkers = 1\n')
    server = serve(target=("--config", "stack.toml"), bind=())
    old = poll(lambda: server.count_workers(1))
    assert status_of(("127.0.0.1", server.port), request_line(200)) == 200
    stack('bind = "127.0.0.1:0"\nworkers = 2\nmax_request_line = 100\naccess_log = "access.log"\n')
    log = hang_up(server, "reload done")
    assert (
        "/stack.toml read again: workers 1 -> 2; access_log None -> access.log;"
        " max_request_line 8190 -> 100" in log
    )
    new = poll(lambda: (pids := server.count_workers(2)) and not (pids & old) and pids)
    assert len(new) == 2
    # The same socket (port 0 kept its port), the new limit and log.
    assert status_of(("127.0.0.1", server.port), request_line(200)) == 414
    assert status_of(("127.0.0.1", server.port), request_line(50)) == 200
    assert poll(
        lambda: (
            (tmp_path / "access.log").exists() and " 200 " in (tmp_path / "access.log").read_text()
        )
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        pytest.param(
            "workers = 2\nmax_request_line = \n",
            "stack.toml: not valid TOML",
            id="not-toml",
        ),
        pytest.param(
            "workers = 2\nmax_request_lin = 100\n",
            "stack.toml: [server]: max_request_lin: unknown server option"
            " (did you mean 'max_request_line'?)",
            id="unknown-option",
        ),
        pytest.param(
            'env = { GREETING = "a\\u0000b" }\nmax_request_line = 100\n',
            "stack.toml: [server]: env: 'GREETING': its value holds a NUL, which no variable"
            " can carry",
            id="env-value-nul",
        ),
        pytest.param(
            "workers = -2\nmax_request_line = 100\n",
            "stack.toml: [server]: workers: -2 must be an integer >= 0",
            id="bad-value",
        ),
        pytest.param(
            "workers = 0\nmax_request_line = 100\n",
            "stack.toml: workers: 0 serves without a master",
            id="no-master",
        ),
        pytest.param(
            "reload = true\nmax_request_line = 100\n",
            "stack.toml: reload: turning --reload on takes a restart of the server",
            id="reload-toggled",
        ),
    ],
)
def test_a_broken_edit_keeps_the_old_configuration_and_workers(serve, stack, edit, message):
    stack('bind = "127.0.0.1:0"\n')
    server = serve(target=("--config", "stack.toml"), bind=())
    old = poll(lambda: server.count_workers(1))
    # Served once: the worker has loaded the app from the file before it is broken.
    assert status_of(("127.0.0.1", server.port), request_line(200)) == 200
    stack('bind = "127.0.0.1:0"\n' + edit)
    log = hang_up(server, "master: reload refused")
    line = next(each for each in log.splitlines() if "master: reload refused" in each)
    # The file by its path (a relative one is read where the workers load the app).
    assert "the old configuration and workers serve on: " in line
    assert f"/stack.toml: {message.removeprefix('stack.toml: ')}" in line
    assert "reload, starting new workers" not in log
    assert server.workers() == old
    assert status_of(("127.0.0.1", server.port), request_line(200)) == 200
    # Mended: the next SIGHUP applies it.
    stack('bind = "127.0.0.1:0"\nmax_request_line = 100\n')
    hang_up(server, "reload done")
    poll(lambda: (pids := server.count_workers(1)) and not (pids & old))
    assert status_of(("127.0.0.1", server.port), request_line(200)) == 414


def test_a_new_bind_serves_and_the_dropped_one_stops(serve, stack, tmp_path):
    path = tmp_path / "site.sock"
    stack('bind = "127.0.0.1:0"\n')
    server = serve(target=("--config", "stack.toml"), bind=())
    old = poll(lambda: server.count_workers(1))
    stack(f'bind = ["unix:{path}"]\nsocket_mode = "600"\n')
    log = hang_up(server, "reload done")
    assert f"listening on http://unix:{path}" in log
    poll(lambda: (pids := server.count_workers(1)) and not (pids & old))
    assert status_of(str(path), request_line(20)) == 200
    assert os.stat(path).st_mode & 0o777 == 0o600
    poll(lambda: refused(server.port))  # closed once the old worker has left
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0
    assert not path.exists()


def test_a_new_socket_mode_applies_to_a_kept_unix_socket(serve, stack, tmp_path):
    path = tmp_path / "site.sock"
    stack(f'bind = "unix:{path}"\nsocket_mode = "600"\n')
    server = serve(target=("--config", "stack.toml"), bind=(), wait=False)
    poll(lambda: "listening on" in server.log.read_text())
    assert os.stat(path).st_mode & 0o777 == 0o600
    inode = os.stat(path).st_ino
    stack(f'bind = "unix:{path}"\nsocket_mode = "660"\n')
    hang_up(server, "reload done")
    assert os.stat(path).st_ino == inode  # the same socket, its mode changed
    assert os.stat(path).st_mode & 0o777 == 0o660
    assert status_of(str(path), request_line(20)) == 200


def test_a_socket_mode_turned_off_leaves_a_kept_unix_socket_to_the_umask(serve, stack, tmp_path):
    path = tmp_path / "site.sock"
    stack(f'bind = "unix:{path}"\numask = "027"\nsocket_mode = "600"\n')
    server = serve(target=("--config", "stack.toml"), bind=(), wait=False)
    poll(lambda: "listening on" in server.log.read_text())
    assert os.stat(path).st_mode & 0o777 == 0o600
    stack(f'bind = "unix:{path}"\numask = "027"\n')
    hang_up(server, "reload done")
    assert os.stat(path).st_mode & 0o777 == 0o750  # as a fresh bind under umask 027 gives


def test_an_address_that_cannot_be_bound_keeps_everything(serve, stack, tmp_path):
    path = tmp_path / "new.sock"
    stack('bind = "127.0.0.1:0"\n')
    server = serve(target=("--config", "stack.toml"), bind=())
    old = poll(lambda: server.count_workers(1))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        # The unix socket binds first, then the taken port fails: it is closed again.
        stack(f'bind = ["unix:{path}", "127.0.0.1:{busy}"]\nmax_request_line = 100\n')
        log = hang_up(server, "master: reload refused")
    assert f"stack.toml: bind: cannot listen on 127.0.0.1:{busy}" in log
    assert not path.exists()
    assert server.workers() == old
    assert status_of(("127.0.0.1", server.port), request_line(200)) == 200


def test_a_changed_pid_file_moves(serve, stack, tmp_path):
    stack('bind = "127.0.0.1:0"\npid = "one.pid"\n')
    server = serve(target=("--config", "stack.toml"), bind=())
    assert poll(lambda: (tmp_path / "one.pid").exists())
    stack('bind = "127.0.0.1:0"\npid = "two.pid"\n')
    hang_up(server, "reload done")
    assert (tmp_path / "two.pid").read_text().strip() == str(server.proc.pid)
    assert not (tmp_path / "one.pid").exists()


PASTE_APP = """
from wsgiref.validate import validator


def make_app(global_conf, **settings):
    @validator
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    return app
"""

INI = """
[app:main]
use = call:pasteapp:make_app

[server:main]
use = egg:wsgistack#main
host = 127.0.0.1
port = 0
{server}
""" + logging_ini("INFO", "('{log}',)", "%(levelname)s %(message)s")


def listening_port(log: Path) -> int | None:
    """The port of the first ``listening on http://127.0.0.1:PORT`` line in ``log``."""
    if log.exists() and (
        found := re.search(r"listening on http://127.0.0.1:(\d+)", log.read_text())
    ):
        return int(found[1])
    return None


def test_a_paste_ini_s_server_and_loggers_are_read_again(serve, tmp_path):
    (tmp_path / "pasteapp.py").write_text(PASTE_APP)
    ini = tmp_path / "site.ini"
    ini.write_text(INI.format(server="", log=tmp_path / "first.log"))
    server = serve(target=("--paste", "site.ini"), bind=(), wait=False)
    port = poll(lambda: listening_port(tmp_path / "first.log"))
    old = poll(lambda: server.count_workers(1))
    assert status_of(("127.0.0.1", port), request_line(200)) == 200
    ini.write_text(INI.format(server="max_request_line = 100", log=tmp_path / "second.log"))
    server.proc.send_signal(signal.SIGHUP)
    poll(
        lambda: (
            (tmp_path / "second.log").exists()
            and "reload done" in (tmp_path / "second.log").read_text()
        )
    )
    assert (
        "site.ini read again: max_request_line 8190 -> 100" in (tmp_path / "second.log").read_text()
    )
    poll(lambda: (pids := server.count_workers(1)) and not (pids & old))
    assert status_of(("127.0.0.1", port), request_line(200)) == 414
    ini.write_text(INI.format(server="threds = 8", log=tmp_path / "second.log"))
    server.proc.send_signal(signal.SIGHUP)
    poll(
        lambda: (
            "site.ini: [server:main]: threds: unknown server option"
            in (tmp_path / "second.log").read_text()
        )
    )
