"""--log-config, --error-log, --env and --pythonpath, as gunicorn users write them, on real servers."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from wsgiref.validate import validator

import pytest

from tests.conftest import logging_ini
from tests.server.served import poll
from wsgistack import Server
from wsgistack.errors import ConfigError

#: An app that logs a line through its own logger on every request, and says
#: what --env gave it at import and at the request.
LOGGING_APP = """
import logging, os
from wsgiref.validate import validator

AT_IMPORT = os.environ.get("GREETING", "-")


@validator
def app(environ, start_response):
    logging.getLogger("myapp").warning("served %s", environ["PATH_INFO"])
    body = f"{AT_IMPORT} {os.environ.get('GREETING', '-')}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""

INI = logging_ini("WARNING", "('out.log', 'a')", "{prefix} %(name)s %(levelname)s %(message)s")


def _dict_config(prefix: str, handler_class: str = "logging.FileHandler") -> str:
    return json.dumps(
        {
            "version": 1,
            "formatters": {"plain": {"format": f"{prefix} %(name)s %(levelname)s %(message)s"}},
            "handlers": {
                "file": {"class": handler_class, "filename": "out.log", "formatter": "plain"}
            },
            "root": {"level": "WARNING", "handlers": ["file"]},
        }
    )


@pytest.fixture
def logged(tmp_path, serve):
    """Start ``logapp:app`` with these options; its port is read from ``out.log``."""
    (tmp_path / "logapp.py").write_text(LOGGING_APP)

    def start(*options: str):
        served = serve(*options, target=("logapp:app",), wait=False)
        served.port = poll(lambda: _port(tmp_path / "out.log", served))
        return served

    return start


def _port(path: Path, served) -> int | None:
    if served.proc.poll() is not None:
        pytest.fail(f"server exited: {served.log.read_text()}")
    for line in _lines(path):
        if "listening on" in line:
            return int(line.rsplit(":", 1)[1])
    return None


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _all_write_to(served, log: Path, instead_of: Path) -> bool:
    """Both workers hold ``log`` open, and neither ``instead_of`` (read from /proc)."""
    workers = served.workers()
    if len(workers) != 2:
        return False
    for pid in workers:
        try:
            files = {os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}
        except FileNotFoundError:  # a descriptor closed as it was listed: look again
            return False
        if str(log) not in files or str(instead_of) in files:
            return False
    return True


@pytest.mark.parametrize(
    ("name", "text"),
    [("logging.ini", INI.format(prefix="FILE")), ("logging.json", _dict_config("FILE"))],
)
def test_a_log_config_file_sends_our_lines_and_the_apps_where_it_says(tmp_path, logged, name, text):
    (tmp_path / name).write_text(text)
    served = logged("--log-config", name, "--workers", "1")
    served.get("/hello")
    lines = poll(lambda: [line for line in _lines(tmp_path / "out.log") if "served" in line])
    assert lines == ["FILE myapp WARNING served /hello"]
    listening = [line for line in _lines(tmp_path / "out.log") if "listening on" in line]
    assert listening == [f"FILE wsgistack.server INFO listening on http://127.0.0.1:{served.port}"]
    assert "listening on" not in served.log.read_text()  # not on standard error too


@pytest.mark.parametrize("name", ["logging.ini", "logging.json"])
def test_sighup_applies_an_edited_log_config_and_refuses_a_broken_one(tmp_path, logged, name):
    ini = name.endswith(".ini")
    path = tmp_path / name
    path.write_text(INI.format(prefix="OLD") if ini else _dict_config("OLD"))
    served = logged("--log-config", name, "--workers", "1")
    out = tmp_path / "out.log"

    path.write_text(INI.format(prefix="NEW") if ini else _dict_config("NEW"))
    served.proc.send_signal(signal.SIGHUP)
    poll(lambda: any(line.startswith("NEW ") and "read again" in line for line in _lines(out)))
    # The old worker, with the old logging, serves until the new one is up.
    poll(lambda: any(line.startswith("NEW ") and "reload done" in line for line in _lines(out)))
    served.get("/after-edit")
    poll(lambda: "NEW myapp WARNING served /after-edit" in _lines(out))

    # The root names a handler that is not there: the new file handler is made
    # and given to the root before that fails, and must not stay.
    if ini:
        path.write_text(
            INI.replace("handlers = file", "handlers = file,ghost").format(prefix="BAD")
        )
    else:
        path.write_text(
            _dict_config("BAD").replace('"handlers": ["file"]', '"handlers": ["file", "ghost"]')
        )
    served.proc.send_signal(signal.SIGHUP)
    refused = poll(lambda: [line for line in _lines(out) if "reload refused" in line])
    assert refused[0].startswith("NEW wsgistack.server ERROR master: reload refused")
    assert f"log_config: {name}: " in refused[0]
    served.get("/after-broken")
    poll(lambda: "NEW myapp WARNING served /after-broken" in _lines(out))
    assert not any(line.startswith("BAD") for line in _lines(out))


def _start_error(tmp_path: Path, *options: str) -> str:
    (tmp_path / "logapp.py").write_text(LOGGING_APP)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "wsgistack.cli",
            "serve",
            "logapp:app",
            "--bind",
            "127.0.0.1:0",
            *options,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("files", "options", "message"),
    [
        pytest.param(
            {}, ["--log-config", "none.ini"], "log_config: none.ini: no such file", id="missing"
        ),
        pytest.param(
            {"bad.ini": "[loggers\nkeys = root\n"},
            ["--log-config", "bad.ini"],
            "log_config: bad.ini: not a valid ini file: ",
            id="ini-syntax",
        ),
        pytest.param(
            {"bad.json": '{"version": 1,'},
            ["--log-config", "bad.json"],
            "log_config: bad.json: not valid JSON: ",
            id="json-syntax",
        ),
        pytest.param(
            {"bad.toml": "version = \n"},
            ["--log-config", "bad.toml"],
            "log_config: bad.toml: not valid TOML: ",
            id="toml-syntax",
        ),
        pytest.param(
            {"class.ini": INI.replace("FileHandler", "NoSuchHandler")},
            ["--log-config", "class.ini"],
            "log_config: class.ini: ModuleNotFoundError: No module named 'NoSuchHandler'",
            id="unknown-class",
        ),
        pytest.param(
            {"class.json": _dict_config("X", "nope.Handler")},
            ["--log-config", "class.json"],
            "log_config: class.json: ValueError: Unable to configure handler 'file':"
            " ValueError: Cannot resolve 'nope.Handler': No module named 'nope'",
            id="unknown-class-json",
        ),
        pytest.param(
            {"where.ini": INI.replace("'out.log'", "'missing/out.log'")},
            ["--log-config", "where.ini"],
            "log_config: where.ini: FileNotFoundError: ",
            id="handler-file",
        ),
        pytest.param(
            {"ok.json": _dict_config("X")},
            ["--log-config", "ok.json", "--error-log", "error.log"],
            "error_log: 'error.log' with log_config: the file 'ok.json' says where lines go",
            id="both",
        ),
        pytest.param(
            {},
            ["--error-log", "missing/error.log"],
            "error_log: cannot open 'missing/error.log'",
            id="error-log",
        ),
        pytest.param({}, ["-e", "NOEQUALS"], "env: 'NOEQUALS' is not KEY=VALUE", id="env"),
        pytest.param({}, ["--env", "=x"], "env: '': a variable's name", id="env-empty-name"),
        pytest.param(
            {},
            ["--env", 'A = "1"'],
            "env: 'A ': a variable's name has no spaces (KEY=VALUE; in an ini, one per line)",
            id="env-spaced-name",
        ),
        pytest.param(
            {},
            ["--pythonpath", "nowhere"],
            "pythonpath: 'nowhere' is not a directory",
            id="pythonpath",
        ),
    ],
)
def test_a_bad_logging_env_or_path_option_fails_at_start_naming_it(
    tmp_path, files, options, message
):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert message in _start_error(tmp_path, *options)


@pytest.mark.parametrize(
    ("server_table", "message"),
    [
        ('log_config = "none.json"', "stack.toml: [server]: log_config: none.json: no such file"),
        (
            # The value's fault, not the name's: said so, naming the key.
            'env = { GREETING = "a\\u0000b" }',
            "stack.toml: [server]: env: 'GREETING': its value holds a NUL,"
            " which no variable can carry",
        ),
    ],
    ids=["log-config", "env-value-nul"],
)
def test_a_bad_option_in_a_toml_server_table_names_the_file_and_the_option(
    tmp_path, server_table, message
):
    (tmp_path / "stack.toml").write_text(f'[server]\n{server_table}\n[app]\nuse = "logapp:app"\n')
    (tmp_path / "logapp.py").write_text(LOGGING_APP)
    result = subprocess.run(
        [sys.executable, "-m", "wsgistack.cli", "serve", "--config", "stack.toml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert "a variable's name" not in result.stderr


def test_the_error_log_is_reopened_on_sigusr1_and_no_line_is_lost(tmp_path, serve):
    (tmp_path / "logapp.py").write_text(LOGGING_APP)
    served = serve("--error-log", "error.log", "--workers", "2", target=("logapp:app",), wait=False)
    log, rotated = tmp_path / "error.log", tmp_path / "error.log.1"
    served.port = poll(lambda: _port(log, served))
    served.get("/before")
    poll(lambda: any("served /before" in line for line in _lines(log)))
    log.rename(rotated)
    served.proc.send_signal(signal.SIGUSR1)
    poll(lambda: any("master: log files reopened" in line for line in _lines(log)))
    # The workers reopen in turn, each when the master's signal reaches it: wait
    # until neither writes to the rotated file (until then a line goes there, as
    # under nginx or gunicorn), then every line is in the new one.
    poll(lambda: _all_write_to(served, log, instead_of=rotated))
    for number in range(1, 6):
        served.get(f"/{number}")
    poll(lambda: len([line for line in _lines(log) if "served" in line]) >= 5)
    old = [line.rsplit(" ", 1)[1] for line in _lines(rotated) if "served" in line]
    new = [line.rsplit(" ", 1)[1] for line in _lines(log) if "served" in line]
    assert old == ["/before"]
    assert new == [f"/{n}" for n in range(1, 6)]
    line = next(line for line in _lines(log) if "served" in line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d [\d:,]+ [+-]\d{4} \[\d+\] WARNING served /\d+", line)
    assert "listening on" not in served.log.read_text()


#: An app whose import waits for the test's word (the file ``go``), as a large
#: Django project's takes seconds: logrotate may come meanwhile.
SLOW_IMPORT_APP = """
import logging, os, pathlib, time
from wsgiref.validate import validator

pathlib.Path("importing").write_text(str(os.getpid()))
deadline = time.monotonic() + 30
while not pathlib.Path("go").exists() and time.monotonic() < deadline:
    time.sleep(0.01)


@validator
def app(environ, start_response):
    logging.getLogger("myapp").warning("served %s", environ["PATH_INFO"])
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
"""


def test_a_sigusr1_while_a_worker_loads_the_app_is_not_lost(tmp_path, serve):
    # The worker was forked before the master reopened the file: it writes to
    # the rotated one until it reopens too, so the signal must wait for it.
    (tmp_path / "slowlog.py").write_text(SLOW_IMPORT_APP)
    served = serve(
        "--error-log", "error.log", "--workers", "1", target=("slowlog:app",), wait=False
    )
    log, rotated = tmp_path / "error.log", tmp_path / "error.log.1"
    served.port = poll(lambda: _port(log, served))
    poll(lambda: (tmp_path / "importing").exists())
    log.rename(rotated)
    served.proc.send_signal(signal.SIGUSR1)
    poll(lambda: any("master: log files reopened" in line for line in _lines(log)))
    (tmp_path / "go").touch()
    assert served.get("/after") == "ok"
    poll(lambda: any("served /after" in line for line in _lines(log)))
    assert not any("served" in line for line in _lines(rotated))


def test_env_is_set_before_the_app_is_imported_and_seen_in_the_request(tmp_path, serve):
    (tmp_path / "logapp.py").write_text(LOGGING_APP)
    served = serve("--env", "GREETING=hello=there", "--workers", "1", target=("logapp:app",))
    assert served.get() == "hello=there hello=there"


def test_a_toml_env_table_is_set_too(tmp_path, serve):
    (tmp_path / "logapp.py").write_text(LOGGING_APP)
    (tmp_path / "stack.toml").write_text(
        '[server]\nenv = {GREETING = "from-toml"}\n[app]\nuse = "logapp:app"\n'
    )
    served = serve("--workers", "0", target=("--config", "stack.toml"))
    assert served.get() == "from-toml from-toml"


DJANGO_SETTINGS = """
SECRET_KEY = "tests-only-not-secret"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "djurls"
INSTALLED_APPS = []
MIDDLEWARE = []
"""

DJANGO_URLS = """
from django.conf import settings
from django.http import HttpResponse
from django.urls import path

urlpatterns = [path("", lambda request: HttpResponse(settings.SETTINGS_MODULE))]
"""


def test_env_gives_django_its_settings_module(tmp_path, serve):
    (tmp_path / "djsettings.py").write_text(DJANGO_SETTINGS)
    (tmp_path / "djurls.py").write_text(DJANGO_URLS)
    served = serve(
        "-e",
        "DJANGO_SETTINGS_MODULE=djsettings",
        "--workers",
        "1",
        target=("django.core.wsgi:get_wsgi_application()",),
    )
    assert served.get() == "djsettings"


def test_pythonpath_lets_the_app_be_imported_from_a_directory_not_on_the_path(tmp_path, serve):
    (tmp_path / "code" / "more").mkdir(parents=True)
    (tmp_path / "code" / "more" / "mymod.py").write_text(LOGGING_APP)
    (tmp_path / "code" / "elsewhere").mkdir()
    served = serve(
        "--pythonpath",
        "elsewhere,more",
        "--chdir",
        "code",
        "--workers",
        "1",
        target=("mymod:app",),
    )
    assert served.get() == "- -"


def test_a_server_made_in_code_applies_env_and_pythonpath_as_it_binds(tmp_path, monkeypatch):
    # As the CLI does: set before the loader imports the app, not validated and dropped.
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "fromcode.py").write_text(
        "import os\nVALUE = os.environ['WSGISTACK_FROM_CODE']\n"
    )
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv("WSGISTACK_FROM_CODE", raising=False)

    def load():
        import fromcode

        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [fromcode.VALUE.encode()]

        return validator(app)

    options = {"env": {"WSGISTACK_FROM_CODE": "set"}, "pythonpath": [str(tmp_path / "code")]}
    try:
        with (
            Server(loader=load, bind="127.0.0.1:0", **options) as server,
            urllib.request.urlopen(server.url, timeout=10) as response,
        ):
            assert response.read() == b"set"
    finally:
        sys.modules.pop("fromcode", None)


def test_an_error_log_where_logging_is_set_up_already_is_refused_not_lost(tmp_path):
    # pserve's [loggers], or a program's own logging (pytest's, here): the file
    # would never get a line.
    assert logging.root.handlers
    with pytest.raises(ConfigError, match=r"error_log: .*logging is set up already"):
        Server(lambda e, s: [], bind="127.0.0.1:0", error_log=str(tmp_path / "e.log")).start()
    assert not (tmp_path / "e.log").exists()


def test_a_second_server_in_the_process_writes_the_same_error_log(tmp_path):
    # A program (or a test suite) that serves twice in one process with the same
    # --error-log: the second server finds our own handler and writes there too.
    log_file = tmp_path / "e.log"
    code = f"""
import logging, urllib.request
from wsgiref.validate import validator
from wsgistack import Server

@validator
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]

for turn in ("first", "second"):
    with Server(app, bind="127.0.0.1:0", error_log={str(log_file)!r}) as server:
        urllib.request.urlopen(server.url, timeout=10).read()
        logging.getLogger("wsgistack.server").warning("%s server served", turn)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = log_file.read_text()
    assert "first server served" in lines and "second server served" in lines
