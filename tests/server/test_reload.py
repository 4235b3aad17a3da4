"""``--reload``: a saved change to the app's files is served by new workers.

The CLI in a subprocess (``serve``), the files rewritten in ``tmp_path``, each
wait a bounded poll of the socket.  Every rewrite moves the mtime on by
seconds (``save``): two saves within one second would otherwise look alike to
Python's bytecode cache, which would load the old code.
"""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path

import pytest

from wsgistack.cli import main
from wsgistack.errors import ConfigError
from wsgistack.paste import ini_server_options
from wsgistack.server import Server
from wsgistack.server.config import ServerConfig
from wsgistack.server.reloader import ReloadRequests, Watcher

from .served import Served, poll

#: An app module answering ``WORD`` and the names of its worker's threads.
APP = """
import threading
from wsgiref.validate import validator

{imports}

@validator
def app(environ, start_response):
    names = sorted(thread.name for thread in threading.enumerate())
    body = ({word} + " " + ",".join(names)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def app_text(word: str, imports: str = "") -> str:
    """The app answering ``word``; with ``imports``, ``word`` is an expression they define."""
    return APP.replace("{word}", word if imports else repr(word)).replace("{imports}", imports)


def save(path: Path, text: str) -> None:
    """Write ``text`` with an mtime two seconds past the file's last one."""
    last = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    mtime = max(last + 2_000_000_000, path.stat().st_mtime_ns)
    os.utime(path, ns=(mtime, mtime))


def answer(server: Served) -> str:
    """The app's word, or the status of an error."""
    try:
        return server.get().split(" ")[0]
    except urllib.error.HTTPError as exc:
        return str(exc.code)


def test_a_saved_change_is_served_by_new_workers(serve, tmp_path):
    save(tmp_path / "devapp.py", app_text("one"))
    server = serve("--reload", "--workers", "2", target=("devapp:app",))
    assert answer(server) == "one"
    old = server.workers()
    save(tmp_path / "devapp.py", app_text("two"))
    poll(lambda: answer(server) == "two")
    poll(lambda: (pids := server.count_workers(2)) is not None and not pids & old)
    log = server.log.read_text()
    assert log.count(f"master: {tmp_path / 'devapp.py'} changed (--reload)") == 1, log
    assert log.count("master: reload, starting new workers") == 1, log
    assert "--reload: the workers are replaced when the app's files change" in log


def test_a_syntax_error_is_logged_answered_500_and_the_fix_brings_the_app_back(serve, tmp_path):
    app = tmp_path / "devapp.py"
    save(app, app_text("one"))
    server = serve("--reload", "--workers", "1", target=("devapp:app",))
    save(app, "def app(:\n")
    poll(lambda: answer(server) == "500")
    log = server.log.read_text()
    assert "cannot load the app: 'devapp:app': SyntaxError" in log
    assert 'devapp.py", line 1' in log  # the traceback
    save(app, app_text("fixed"))
    poll(lambda: answer(server) == "fixed")
    assert server.proc.poll() is None


def test_a_broken_edit_s_traceback_is_logged_once_however_many_workers(serve, tmp_path):
    app = tmp_path / "devapp.py"
    save(app, app_text("PID", "import os\nPID = str(os.getpid())"))
    server = serve("--reload", "--workers", "3", target=("devapp:app",))
    # Each worker has loaded the app (and looks at its file) before the edit.
    answered: set[str] = set()
    poll(lambda: answered.add(answer(server)) or answered == {str(pid) for pid in server.workers()})
    failed = "cannot load the app: 'devapp:app': SyntaxError"
    for edit in (1, 2):  # each failed edit: once
        save(app, "def app(:\n")
        # Every worker of the reload says it cannot load the app; one of them, why.
        count = 3 * edit
        log = poll(lambda: (text := server.log.read_text()).count(failed) >= count and text)  # noqa: B023
        assert log.count(failed) == count, log
        assert log.count("Traceback (most recent call last)") == edit, log
        assert log.count('devapp.py", line 1') == edit, log
        assert log.count("answering 500 until a file changes (--reload)") == count, log
        # The others' lines point to it truly, whichever of the lines came first.
        assert log.count("its traceback is logged once, by the first worker that failed") == (
            count - edit
        ), log
        poll(lambda: answer(server) == "500")  # once the old workers have drained
        save(app, app_text(f"fixed{edit}"))
        poll(lambda: answer(server) == f"fixed{edit}")  # noqa: B023
    assert server.proc.poll() is None


def test_a_new_module_that_breaks_is_watched_until_fixed(serve, tmp_path):
    # The edit imports a module no worker had imported, and it does not
    # compile: only the failure's traceback names it.
    save(tmp_path / "devapp.py", app_text("one"))
    server = serve("--reload", "--workers", "1", target=("devapp:app",))
    save(tmp_path / "words.py", "WORD = (\n")
    save(tmp_path / "devapp.py", app_text("WORD", "from words import WORD"))
    poll(lambda: answer(server) == "500")
    save(tmp_path / "words.py", "WORD = 'helped'\n")
    poll(lambda: answer(server) == "helped")


def test_code_broken_at_start_is_answered_500_until_fixed(serve, tmp_path):
    save(tmp_path / "devapp.py", "import nowhere_to_be_found\n" + app_text("one"))
    server = serve("--reload", "--workers", "1", target=("devapp:app",))
    assert answer(server) == "500"
    save(tmp_path / "devapp.py", app_text("fixed"))
    poll(lambda: answer(server) == "fixed")


def test_the_config_file_s_change_reloads(serve, tmp_path):
    save(tmp_path / "appone.py", app_text("one"))
    save(tmp_path / "apptwo.py", app_text("two"))
    stack = tmp_path / "stack.toml"
    save(stack, "[server]\nreload = true\nworkers = 1\n[app]\nuse = 'appone:app'\n")
    server = serve(target=("--config", "stack.toml"))
    assert answer(server) == "one"
    save(stack, "[server]\nreload = true\nworkers = 1\n[app]\nuse = 'apptwo:app'\n")
    poll(lambda: answer(server) == "two")
    # The reload read the file's [server] again (SIGHUP's way): still watched after it.
    save(stack, "[server]\nreload = true\nworkers = 1\n[app]\nuse = 'appone:app'\n")
    poll(lambda: answer(server) == "one")


def test_an_extra_file_s_change_reloads(serve, tmp_path):
    words = tmp_path / "words.txt"
    save(words, "one")
    imports = "from pathlib import Path\nWORD = Path('words.txt').read_text()"
    save(tmp_path / "devapp.py", app_text("WORD", imports))
    server = serve("--reload", "--reload-extra-file", "words.txt", target=("devapp:app",))
    assert answer(server) == "one"
    save(words, "two")
    poll(lambda: answer(server) == "two")


@pytest.mark.parametrize("flags", [(), ("--reload",)], ids=["off", "on"])
def test_the_watcher_thread_runs_with_reload_only(serve, tmp_path, flags):
    save(tmp_path / "devapp.py", app_text("one"))
    server = serve(*flags, "--workers", "1", target=("devapp:app",))
    threads = server.get().split(" ", 1)[1].split(",")
    assert ("wsgistack-reloader" in threads) == bool(flags)


def test_reload_without_a_master_is_refused_naming_the_option(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    sock = tmp_path / "never.sock"
    assert main(["serve", "x:app", "--reload", "--workers", "0", "--bind", f"unix:{sock}"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("wsgistack serve: error: reload: ")
    assert "--workers 1" in error
    assert not sock.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"reload_extra_file": "pyproject.toml"}, "reload_extra_file: 'pyproject.toml' is"),
        ({"reload": True, "reload_extra_file": "no-such-file"}, "'no-such-file' is not a file"),
        ({"reload": "maybe"}, "reload: expected true/yes/on/1"),
    ],
    ids=["extra-without-reload", "missing-extra-file", "not-a-flag"],
)
def test_a_bad_reload_option_is_named(options, message):
    with pytest.raises(ConfigError, match=message):
        ServerConfig.from_options(**options)


def test_an_ini_s_reload_is_read_as_a_flag():
    options = ini_server_options({"reload": "true", "workers": "1"}, "ini")
    assert ServerConfig.from_options(**options).reload is True


def test_reload_with_an_app_loaded_here_is_refused(echo):
    # Forked workers would carry the code loaded in this process, never the new.
    with pytest.raises(ConfigError, match=r"reload: needs Server\(loader=\.\.\.\)"):
        Server(echo, reload=True, workers=1)


def test_the_watcher_reports_a_change_once_and_a_file_back_from_missing(tmp_path):
    path = tmp_path / "module.py"
    save(path, "one")
    watcher = Watcher(lambda: [str(path)], on_change=lambda changes: None)
    assert watcher.scan() == []
    save(path, "two")
    assert watcher.scan() == [(str(path), path.stat().st_mtime_ns)]
    assert watcher.scan() == []
    path.unlink()  # an editor saving by rename
    assert watcher.scan() == []
    save(path, "three")
    assert watcher.scan() == [(str(path), path.stat().st_mtime_ns)]


def test_stopping_the_watcher_ends_its_thread_at_once(tmp_path):
    watcher = Watcher(lambda: [], on_change=lambda changes: None, interval=3600)
    watcher.start()
    watcher.stop()
    thread = watcher._thread
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_the_master_acts_once_on_a_change_every_worker_saw():
    requests = ReloadRequests()
    try:
        requests.send([("/app/views.py", 1)])
        requests.send([("/app/views.py", 1)])  # the second worker's look
        assert requests.read() == ["/app/views.py"]
        requests.send([("/app/views.py", 1), ("/app/models.py", 1)])
        assert requests.read() == ["/app/models.py"]
        requests.send([("/app/views.py", 2)])  # the next save
        assert requests.read() == ["/app/views.py"]
    finally:
        requests.close()


def test_a_file_saved_while_the_app_loaded_is_reported_at_the_first_look(tmp_path):
    # The app may have read it before the save: the watcher's first look at
    # the files comes after the load.
    path = tmp_path / "module.py"
    save(path, "one")
    mtime = path.stat().st_mtime_ns
    watcher = Watcher(lambda: [str(path)], on_change=lambda changes: None, since=mtime - 1)
    assert watcher.scan() == [(str(path), mtime)]
    assert watcher.scan() == []
