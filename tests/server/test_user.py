"""--user, --group, --umask and --chdir: bound as root, the app served as ``nobody``.

These run the CLI as root (this sandbox and CI do) and switch for real: a
view reports who its process is, and the files the workers need are checked
from the outside.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import in_a_child
from tests.server.served import Served, launched, poll
from wsgistack.errors import ConfigError
from wsgistack.server.config import ServerConfig

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")

NOBODY, NOGROUP, DAEMON = 65534, 65534, 1

WHOAMI = """
import json, os
from wsgiref.validate import validator

IMPORTED_AS = os.getuid()  # the import itself: never as root


@validator
def app(environ, start_response):
    mask = os.umask(0)
    os.umask(mask)
    body = json.dumps({
        "imported_as": IMPORTED_AS, "uid": os.getuid(), "gid": os.getgid(),
        "groups": sorted(os.getgroups()), "umask": mask, "cwd": os.getcwd(),
        "pid": os.getpid(),
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
"""


#: The server's command.  The interpreter here lives in root's home (mode 700):
#: a worker, once ``nobody``, could import no module of it the master has not
#: imported already, so those the app needs are imported first.  Installed
#: for every user (a system Python, a venv in /srv), nothing of this is needed.
SERVE = [
    sys.executable,
    "-c",
    "import json, runpy, wsgiref.validate; runpy.run_module('wsgistack.cli', run_name='__main__')",
    "serve",
]


@pytest.fixture
def site() -> Iterator[Path]:
    """A directory ``nobody`` can read (pytest's tmp_path is root's alone), with the app."""
    directory = Path(tempfile.mkdtemp(prefix="wsgistack-user-"))
    try:
        directory.chmod(0o755)
        (directory / "whoami.py").write_text(WHOAMI)
        (directory / "app").mkdir(mode=0o755)  # for --chdir: the app is loaded from there
        (directory / "app" / "whoami.py").write_text(WHOAMI)
        yield directory
    finally:
        shutil.rmtree(directory)


@pytest.fixture
def serve_as(site: Path) -> Iterator:
    with launched(site) as launch:

        def start(*options: str, bind: str = "127.0.0.1:0") -> Served:
            argv = [*SERVE, "whoami:app", "--bind", bind, *options]
            return launch(argv, cwd=site, env={**os.environ, "PWD": str(site)})

        yield start


def _who(server: Served) -> dict:
    return json.loads(server.get("/"))


def _ids(pid: int) -> tuple[int, int]:
    """A process's real UID and GID, from /proc."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0])


@pytest.mark.parametrize(
    ("options", "gid", "groups"),
    [
        pytest.param(("--user", "nobody"), NOGROUP, [NOGROUP], id="primary-group"),
        pytest.param(("--user", "nobody", "--group", "daemon"), DAEMON, [DAEMON], id="group"),
        pytest.param(("--user", str(NOBODY)), NOGROUP, [NOGROUP], id="uid"),
    ],
)
@pytest.mark.parametrize("workers", ["1", "0"], ids=["master", "in-process"])
def test_the_app_is_imported_and_served_as_the_user(serve_as, site, options, gid, groups, workers):
    server = serve_as(*options, "--umask", "027", "--chdir", "app", "--workers", workers)
    who = _who(server)
    assert who["imported_as"] == who["uid"] == NOBODY
    assert (who["gid"], who["groups"]) == (gid, groups)  # root's groups do not carry over
    assert who["umask"] == 0o027
    assert who["cwd"] == str(site / "app")
    if workers == "1":
        assert who["pid"] != server.proc.pid
        assert _ids(server.proc.pid) == (0, 0)  # the master stays root: a SIGHUP can bind
    else:
        assert who["pid"] == server.proc.pid  # bound as root, then it switched


def test_a_sighup_reload_serves_as_the_user_again(serve_as):
    server = serve_as("--user", "nobody", "--workers", "1")
    first = _who(server)["pid"]
    server.proc.send_signal(signal.SIGHUP)
    poll(lambda: server.workers() - {first} and first not in server.workers())
    who = _who(server)
    assert who["pid"] != first
    assert (who["imported_as"], who["uid"], who["gid"]) == (NOBODY, NOBODY, NOGROUP)
    assert _ids(server.proc.pid) == (0, 0)


def test_the_unix_socket_file_is_the_users_and_its_group_can_connect(serve_as, site):
    path = site / "app.sock"
    server = serve_as("--bind", f"unix:{path}", "--user", "nobody", "--socket-mode", "660")
    info = path.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (NOBODY, NOGROUP, 0o660)

    def as_a_member_of_nogroup() -> bool:  # nginx, say: another user, in the group
        os.setgroups([NOGROUP])
        os.setgid(DAEMON)
        os.setuid(DAEMON)
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(10)
            client.connect(str(path))
            client.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            return client.recv(65536).startswith(b"HTTP/1.1 200")

    assert in_a_child(as_a_member_of_nogroup) == 0
    assert server.proc.poll() is None


def test_the_workers_write_the_access_log_and_reopen_it_on_sigusr1(serve_as, site):
    # The directory is root's: the workers, as nobody, could not create the
    # new file after logrotate moved the old one away; the master does.
    log = site / "logs" / "access.log"
    log.parent.mkdir(mode=0o755)
    server = serve_as("--user", "nobody", "--access-log", str(log))
    server.get("/before")
    poll(lambda: "/before" in log.read_text())
    log.rename(site / "logs" / "access.log.1")
    server.proc.send_signal(signal.SIGUSR1)
    poll(log.exists)
    server.get("/after")
    poll(lambda: "/after" in log.read_text())
    assert (log.stat().st_uid, log.stat().st_gid) == (NOBODY, NOGROUP)
    assert "/after" not in (site / "logs" / "access.log.1").read_text()


def test_a_pipeline_files_server_table_sets_user_and_chdir(site):
    # The file is named from where the command runs, and the workers read it
    # as the user; the app loads from chdir.
    conf = site / "conf"
    conf.mkdir(mode=0o755)
    (conf / "stack.toml").write_text(
        f'[server]\nuser = "nobody"\nchdir = "{site / "app"}"\nbind = "127.0.0.1:0"\n'
        '[app]\nuse = "whoami:app"\n'
    )
    with launched(site) as launch:
        server = launch(
            [*SERVE, "--config", "stack.toml"], cwd=conf, env={**os.environ, "PWD": str(conf)}
        )
        who = _who(server)
    assert (who["uid"], who["gid"], who["cwd"]) == (NOBODY, NOGROUP, str(site / "app"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            ("--user", "no-such-user"),
            "user: 'no-such-user' is not a user of this system",
            id="user",
        ),
        pytest.param(
            ("--user", "nobody", "--group", "no-such-group"),
            "group: 'no-such-group' is not a group of this system",
            id="group",
        ),
        pytest.param(
            ("--user", "424242"),
            "user: 424242 is not in the user database, so it has no primary group: give group too",
            id="uid-without-entry",
        ),
        pytest.param(("--chdir", "missing"), "chdir: '", id="chdir"),
        pytest.param(("--umask", "999"), "umask: '999' is not an octal mode", id="umask"),
    ],
)
def test_a_bad_option_fails_at_start_naming_it(site, options, message):
    result = subprocess.run(
        [sys.executable, "-m", "wsgistack.cli", "serve", "whoami:app", *options],
        cwd=site,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"wsgistack serve: error: {message}"), result.stderr
    if options[0] == "--chdir":
        assert f"{site / 'missing'}' is not a directory" in result.stderr


def test_a_uid_without_an_entry_is_taken_with_a_group(serve_as):
    server = serve_as("--user", "424242", "--group", "nogroup")
    who = _who(server)
    assert (who["uid"], who["gid"], who["groups"]) == (424242, NOGROUP, [NOGROUP])


def test_a_user_given_to_a_server_not_started_as_root_is_refused_at_once():
    def as_daemon() -> bool:
        os.setgid(DAEMON)
        os.setuid(DAEMON)
        try:
            ServerConfig.from_options(user="nobody")
        except ConfigError as exc:
            return str(exc).startswith("user: switching the workers to 'nobody' needs root")
        return False

    assert in_a_child(as_daemon) == 0


def test_a_reload_cannot_change_the_user(tmp_path):
    from wsgistack.server.reconfig import check_reload

    old = ServerConfig.from_options(user="nobody")
    with pytest.raises(ConfigError, match=r"stack\.toml: user: .* takes a restart"):
        check_reload(old, ServerConfig.from_options(user="daemon"), "stack.toml")


@pytest.mark.parametrize("workers", ["1", "0"], ids=["master", "in-process"])
def test_a_key_only_root_can_read_serves_https_as_the_user(serve_as, tls_files, workers):
    # As certbot leaves them: the key and its directory root's alone (pytest's
    # tmp dirs are 0700).  The master reads it; the workers, nobody, never do.
    assert stat.S_IMODE(tls_files.server_key.parent.stat().st_mode) & 0o007 == 0
    server = serve_as(
        "--user", "nobody", "--workers", workers,
        "--certfile", str(tls_files.server_cert), "--keyfile", str(tls_files.server_key),
    )  # fmt: skip
    context = ssl.create_default_context(cafile=str(tls_files.ca))
    request = urllib.request.Request(f"https://127.0.0.1:{server.port}/")
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        who = json.loads(response.read())
    assert who["uid"] == who["imported_as"] == NOBODY


def test_in_process_a_pid_file_the_user_could_not_remove_is_refused(site, tmp_path):
    # With --workers 0 the process is nobody once it has bound, and nobody
    # cannot remove a file from a directory of root's (pytest's tmp_path, 0700):
    # the file would outlive the server, naming a PID the kernel hands out again
    # to a process a `kill -USR1 $(cat app.pid)` would then end.
    pid_file = str(tmp_path / "app.pid")
    options = ("--workers", "0", "--user", "nobody", "--pid", pid_file)
    result = subprocess.run(
        [*SERVE, "whoami:app", "--bind", "127.0.0.1:0", *options],
        cwd=site,
        capture_output=True,
        text=True,
        timeout=30,  # (before the check, it served until killed here)
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"wsgistack serve: error: pid: {pid_file}: "), result.stderr
    assert "workers 0" in result.stderr
    assert not (tmp_path / "app.pid").exists()


def test_in_process_a_pid_file_in_the_user_s_directory_is_removed_at_exit(serve_as, site):
    run = site / "run"
    run.mkdir()
    os.chown(run, NOBODY, NOGROUP)  # as systemd's RuntimeDirectory= with User=
    pid_file = run / "app.pid"
    server = serve_as("--workers", "0", "--user", "nobody", "--pid", str(pid_file))
    poll(pid_file.exists)  # written once bound, after the `listening on` line
    assert pid_file.read_text() == f"{server.proc.pid}\n"
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0
    assert not pid_file.exists()


@pytest.mark.parametrize("workers", ["1", "0"], ids=["master", "in-process"])
def test_the_error_log_is_the_users_so_a_sigusr1_reopens_it(site, workers):
    # The server created it as root (0644) and left it root's: with --workers 0
    # the process, once nobody, could not reopen it on SIGUSR1 ("cannot reopen
    # the log file ...: Permission denied"), as gunicorn gives its error log.
    log = site / "logs" / "error.log"
    log.parent.mkdir(mode=0o755)
    argv = [*SERVE, "whoami:app", "--bind", "127.0.0.1:0", "--user", "nobody"]
    argv += ["--workers", workers, "--error-log", str(log)]
    with launched(site) as launch:
        server = launch(argv, cwd=site, env={**os.environ, "PWD": str(site)}, wait=False)
        listening = poll(lambda: log.exists() and "listening on" in log.read_text())
        assert listening and (log.stat().st_uid, log.stat().st_gid) == (NOBODY, NOGROUP)
        server.port = int(log.read_text().split("listening on", 1)[1].split()[0].rsplit(":", 1)[1])
        server.proc.send_signal(signal.SIGUSR1)
        assert _who(server)["uid"] == NOBODY
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0
    assert "cannot reopen" not in log.read_text()
