"""``wsgistack serve --paste site.ini`` and ``check --paste``: a PasteDeploy ini, as gunicorn's."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import logging_ini
from wsgistack.cli import main

from .server.live import RawClient
from .server.served import Served, launched, poll

#: A paste.app_factory whose app, checked by wsgiref's validator, answers its
#: ``text`` setting and its worker's pid.
APP = """
import os
from wsgiref.validate import validator

VERSION = "{version}"


def make_app(global_conf, **settings):
    @validator
    def app(environ, start_response):
        body = f"{{VERSION}} {{settings.get('text', '-')}} {{os.getpid()}}".encode()
        headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        start_response("200 OK", headers)
        return [body]

    return app
"""

APPS = """
[app:main]
use = call:pasteapp:make_app
text = main

[app:admin]
use = call:pasteapp:make_app
text = admin
"""

#: ``[server:main]`` lines of ours, with a port of 0 to listen on.
OURS = "[server:main]\nuse = egg:wsgistack#main\nhost = 127.0.0.1\nport = 0\n"


def write_site(tmp_path, server: str = "", version: str = "one", extra: str = "") -> None:
    (tmp_path / "pasteapp.py").write_text(APP.format(version=version))
    (tmp_path / "site.ini").write_text(APPS + textwrap.dedent(server) + extra)


@pytest.fixture
def paste_serve(tmp_path):
    """``wsgistack serve --paste ...`` in a subprocess; every one started is killed by PID."""
    with launched(tmp_path) as launch:

        def start(*args: str, wait: bool = True) -> Served:
            return launch(
                [sys.executable, "-m", "wsgistack.cli", "serve", *args],
                # A rewritten module is read again, whatever its mtime says.
                env={**os.environ, "PWD": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"},
                wait=wait,
            )

        yield start


def run_cli(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI to its end, bounded: for the errors that must come before anything binds."""
    return subprocess.run(
        [sys.executable, "-m", "wsgistack.cli", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_ini_app_is_served_by_the_workers_its_server_section_asks_for(paste_serve, tmp_path):
    write_site(tmp_path, OURS + "workers = 2\nthreads = 2\n")
    served = paste_serve("--paste", "site.ini")
    workers = poll(lambda: served.count_workers(2))
    answers = [served.get().split() for _ in range(10)]
    assert {(version, text) for version, text, _ in answers} == {("one", "main")}
    assert {int(pid) for *_, pid in answers} <= workers
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=30) == 0


def test_a_name_after_the_hash_serves_that_app(paste_serve, tmp_path):
    write_site(tmp_path, OURS + "workers = 1\n")
    served = paste_serve("--paste", "site.ini#admin")
    assert served.get().split()[1] == "admin"


def test_the_ini_listens_on_a_unix_socket(paste_serve, tmp_path):
    path = tmp_path / "site.sock"
    write_site(tmp_path, f"[server:main]\nuse = egg:wsgistack#main\nlisten = unix:{path}\n")
    served = paste_serve("--paste", "site.ini", wait=False)
    poll(lambda: "listening on http://unix:" in served.log.read_text())
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")


def test_flags_win_over_the_server_section(paste_serve, tmp_path):
    path = tmp_path / "site.sock"
    server = f"[server:main]\nuse = egg:wsgistack#main\nlisten = unix:{path}\nmax_headers = 3\n"
    write_site(tmp_path, server + "workers = 0\n")
    served = paste_serve("--paste", "site.ini", "--max-headers", "10", "--bind", "127.0.0.1:0")
    request = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nX-B: 2\r\nConnection: close\r\n\r\n"
    with RawClient(("127.0.0.1", served.port), timeout=10) as client:
        assert client.request(request)[0] == 200  # 4 fields: the file's 3 would refuse it
    assert not path.exists()  # the flag's bind replaced the file's listen


@pytest.mark.parametrize("use", ["egg:waitress#main", "egg:no_such_server#main"])
def test_another_servers_section_is_ignored_and_said_so(paste_serve, tmp_path, use):
    # Its port and its options are not ours: served where the flag says, in process.
    write_site(tmp_path, f"[server:main]\nuse = {use}\nhost = 127.0.0.1\nport = 1\nthreads = 2\n")
    served = paste_serve("--paste", "site.ini", "--bind", "127.0.0.1:0", "--workers", "0")
    assert served.get().split()[1] == "main"
    expected = f"site.ini: [server:main] uses {use}, not wsgistack's server: its options are"
    assert expected in served.log.read_text()


def test_sighup_loads_the_changed_code(paste_serve, tmp_path):
    write_site(tmp_path, OURS + "workers = 2\n")
    served = paste_serve("--paste", "site.ini")
    old = poll(lambda: served.count_workers(2))
    assert served.get().split()[0] == "one"
    write_site(tmp_path, OURS + "workers = 2\n", version="two, rewritten")
    served.proc.send_signal(signal.SIGHUP)
    poll(lambda: (pids := served.workers()) and len(pids) == 2 and not (pids & old), timeout=20)
    assert served.get().startswith("two, rewritten main ")


def test_the_ini_loggers_set_up_logging(paste_serve, tmp_path):
    logging_sections = logging_ini(
        "INFO", "('%(here)s/from-ini.log',)", "from the ini: %(message)s"
    )
    write_site(tmp_path, OURS + "workers = 1\n", extra=logging_sections)
    log = tmp_path / "from-ini.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsgistack.cli", "serve", "--paste", "site.ini"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        poll(lambda: log.exists() and "from the ini: listening on http://" in log.read_text())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_an_app_that_raises_while_loading_is_status_2_with_its_traceback(tmp_path):
    write_site(tmp_path, OURS + "workers = 2\n")
    (tmp_path / "pasteapp.py").write_text(
        "def make_app(global_conf, **settings):\n    return {}['SECRET_KEY']\n"
    )
    result = run_cli(tmp_path, "serve", "--paste", "site.ini")
    assert result.returncode == 2
    assert "cannot load the app: 'site.ini': KeyError: 'SECRET_KEY'" in result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    assert "return {}['SECRET_KEY']" in result.stderr


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        pytest.param(
            ("pasteapp:make_app", "--paste", "site.ini"),
            OURS,
            "give exactly one of APP, --config FILE or --paste FILE",
            id="app-and-paste",
        ),
        pytest.param(
            ("--config", "stack.toml", "--paste", "site.ini"),
            OURS,
            "give exactly one of APP, --config FILE or --paste FILE",
            id="config-and-paste",
        ),
        pytest.param(("--paste", "nothere.ini"), OURS, "nothere.ini: no such file", id="missing"),
        pytest.param(("--paste", "."), OURS, ".: cannot read: Is a directory", id="directory"),
        pytest.param(
            ("--paste", "site.ini"),
            "[server:main]\nthis line has no value\n",
            "site.ini: not a valid ini file: Source contains parsing errors:",
            id="not-an-ini",
        ),
        pytest.param(
            ("--paste", "site.ini#other"),
            OURS,
            "site.ini: no app named 'other' (no [app:other], [pipeline:other],"
            " [composite:other] or [filter-app:other] section)",
            id="no-such-app",
        ),
        pytest.param(
            ("--paste", "site.ini#"),
            OURS,
            "site.ini#: no app name after '#'",
            id="empty-name",
        ),
        pytest.param(
            ("--paste", "#main"),
            OURS,
            "#main: no ini file before '#' (site.ini#NAME)",
            id="no-file",
        ),
        pytest.param(
            ("--paste", "site.ini"),
            OURS + "threds = 2\n",
            "site.ini: [server:main]: threds: unknown server option (did you mean 'threads'?)",
            id="bad-server-option",
        ),
        pytest.param(
            ("--paste", "site.ini", "--workers", "0"),
            OURS + "max_requests = 5\n",
            "site.ini: [server:main] with the command line: max_requests:",
            id="conflict-with-a-flag",
        ),
        pytest.param(
            ("--paste", "site.ini"),
            "[server:main]\nuse = egg:wsgistack#mian\n",
            "site.ini: [server:main]: use = egg:wsgistack#mian: LookupError: Entry point 'mian'",
            id="our-entry-point-misspelt",
        ),
        pytest.param(
            ("--paste", "site.ini"),
            OURS + "[loggers]\nkeys = root\n",
            "site.ini: [loggers]: KeyError: 'formatters'",
            id="broken-loggers",
        ),
    ],
)
def test_a_bad_command_or_file_is_one_line_before_anything_binds(tmp_path, args, ini, message):
    write_site(tmp_path, ini)
    (tmp_path / "stack.toml").write_text("[app]\nuse = 'pasteapp:make_app'\n")
    sock = tmp_path / "never.sock"
    result = run_cli(tmp_path, "serve", *args, "--bind", f"unix:{sock}")
    assert result.returncode == 2
    assert result.stderr.startswith(f"wsgistack serve: error: {message}")
    assert result.stderr.count("\n") == 1
    assert not sock.exists()


def test_without_pastedeploy_the_option_says_what_to_install(tmp_path, monkeypatch, capsys):
    # PasteDeploy is not among our dependencies: an import of it that fails.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "paste.deploy", None)
    write_site(tmp_path, OURS)
    assert main(["serve", "--paste", "site.ini"]) == 2
    expected = "--paste needs PasteDeploy: pip install pastedeploy"
    assert capsys.readouterr().err == f"wsgistack serve: error: {expected}\n"


def test_check_builds_the_named_app_and_checks_the_server_section(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    write_site(tmp_path, OURS)
    assert main(["check", "--paste", "site.ini#admin"]) == 0
    assert capsys.readouterr().out.startswith("site.ini#admin: ok\n")
    write_site(tmp_path, OURS + "threads = 0\n")
    assert main(["check", "--paste", "site.ini"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wsgistack check: error: site.ini: [server:main]: threads: '0' must be")


def test_check_says_another_servers_section_is_ignored(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    write_site(tmp_path, "[server:main]\nuse = egg:waitress#main\nport = 6543\n")
    assert main(["check", "--paste", "site.ini"]) == 0
    out = capsys.readouterr().out
    assert "site.ini: [server:main] uses egg:waitress#main: ignored by wsgistack serve" in out


def test_check_refuses_the_loggers_serve_refuses(tmp_path):
    # serve --paste applies [loggers] before it binds and stops on a broken
    # section: check must not call the same file ok.
    write_site(tmp_path, OURS, extra="[loggers]\nkeys = root\n")
    for command in ("check", "serve"):
        result = run_cli(tmp_path, command, "--paste", "site.ini")
        assert result.returncode == 2, result
        expected = f"wsgistack {command}: error: site.ini: [loggers]: KeyError: 'formatters'\n"
        assert result.stderr == expected


def test_check_takes_one_file(capsys):
    assert main(["check", "stack.toml", "--paste", "site.ini"]) == 2
    assert "give exactly one of FILE, --config FILE or --paste FILE" in capsys.readouterr().err
