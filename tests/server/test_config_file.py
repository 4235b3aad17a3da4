"""A pipeline file's ``[server]`` table: the server's options, read by ``serve --config``."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from wsgistack.cli import main
from wsgistack.errors import ConfigError
from wsgistack.pipeline import build_pipeline, load_pipeline
from wsgistack.server.cli import pipeline_options

from .conftest import CHECKED_APP
from .live import RawClient
from .served import poll

#: The app the files serve, checked by wsgiref's validator: it answers its worker's pid.


def request_with(fields: int) -> bytes:
    """A GET with `fields` header fields (Host and Connection among them)."""
    extra = "".join(f"X-Field-{n}: {n}\r\n" for n in range(fields - 2))
    return f"GET / HTTP/1.1\r\nHost: a\r\n{extra}Connection: close\r\n\r\n".encode()


def test_the_file_binds_and_starts_its_workers(serve, stack):
    stack('bind = ["127.0.0.1:0"]\nworkers = 2\n')
    server = serve(target=("--config", "stack.toml"), bind=())
    assert len(poll(lambda: server.count_workers(2))) == 2
    pids = {int(server.get()) for _ in range(20)}
    assert pids <= server.workers()


def test_a_header_limit_from_the_file_is_applied(serve, stack):
    stack("max_headers = 3\nworkers = 0\n")
    server = serve(target=("--config", "stack.toml"))
    with RawClient(("127.0.0.1", server.port)) as client:
        assert client.request(request_with(3))[0] == 200
    with RawClient(("127.0.0.1", server.port)) as client:
        assert client.request(request_with(4))[0] == 431


def test_the_command_line_wins_over_the_file(serve, stack, tmp_path):
    # The file's bind (a unix socket) and header limit are both overridden.
    stack(f'bind = "unix:{tmp_path}/site.sock"\nmax_headers = 3\nworkers = 0\n')
    server = serve("--max-headers", "10", target=("--config", "stack.toml"))
    with RawClient(("127.0.0.1", server.port)) as client:
        assert client.request(request_with(4))[0] == 200
    assert not (tmp_path / "site.sock").exists()


def test_the_command_line_help_says_which_wins(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "its [server] table sets the options below by their names" in text
    assert "a flag given here wins over the file" in text


@pytest.mark.parametrize(
    ("server", "flags", "message"),
    [
        pytest.param(
            "worker = 2",
            (),
            "stack.toml: [server]: worker: unknown server option (did you mean 'workers'?)",
            id="unknown-name",
        ),
        pytest.param(
            "max-headers = 3",
            (),
            "stack.toml: [server]: max-headers: unknown server option"
            " (did you mean 'max_headers'?)",
            id="flag-spelling",
        ),
        pytest.param(
            "port = 8000",
            (),
            "stack.toml: [server]: port: unknown server option; the address is bind,"
            " e.g. bind = '127.0.0.1:8000' (a list for several)",
            id="another-servers-address",
        ),
        pytest.param(
            "workers = -1",
            (),
            "stack.toml: [server]: workers: -1 must be an integer >= 0",
            id="bad-value",
        ),
        pytest.param(
            "bind = 8000",
            (),
            "stack.toml: [server]: bind: 8000 is not HOST:PORT or unix:/path",
            id="bind-number",
        ),
        pytest.param(
            "timeout = [30]",
            (),
            "stack.toml: [server]: timeout: [30] is not a number of seconds",
            id="seconds-list",
        ),
        pytest.param(
            "max_requests = 5\nworkers = 0",
            (),
            "stack.toml: [server]: max_requests: a recycled worker is replaced by the master",
            id="options-that-conflict",
        ),
        pytest.param(
            "max_requests = 5",
            ("--workers", "0"),
            "stack.toml: [server] with the command line: max_requests: a recycled worker",
            id="conflict-with-a-flag",
        ),
        pytest.param(
            "workers = 2",
            ("--threads", "0"),
            "threads: '0' must be an integer >= 1",
            id="a-flag-is-named-as-a-flag",
        ),
    ],
)
def test_a_bad_server_option_is_named_before_anything_binds(
    stack, tmp_path, monkeypatch, capsys, server, flags, message
):
    monkeypatch.chdir(tmp_path)
    stack(server)
    sock = tmp_path / "never.sock"
    assert main(["serve", "--config", "stack.toml", "--bind", f"unix:{sock}", *flags]) == 2
    assert capsys.readouterr().err.startswith(f"wsgistack serve: error: {message}")
    assert not sock.exists()


def test_a_server_key_that_is_not_a_table_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "stack.toml").write_text('server = "fast"\n[app]\nuse = "checkedapp:app"\n')
    assert main(["serve", "--config", "stack.toml"]) == 2
    expected = "stack.toml: [server]: expected a table of server options, got 'fast'"
    assert capsys.readouterr().err == f"wsgistack serve: error: {expected}\n"


def test_check_checks_the_server_table(stack, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    stack("threads = 0")
    assert main(["check", "stack.toml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wsgistack check: error: stack.toml: [server]: threads: 0 must be")


def test_load_pipeline_leaves_the_server_table_to_the_server(stack, tmp_path, monkeypatch):
    # Under gunicorn or uWSGI the options are theirs: a pid directory that only
    # the production host has must not stop the app from loading elsewhere.
    monkeypatch.syspath_prepend(str(tmp_path))
    stack('pid = "/no/such/dir/app.pid"\nworkers = 2')
    app = load_pipeline(tmp_path / "stack.toml")
    assert callable(app)


def test_a_server_table_inside_a_mount_is_refused():
    config = {"app": {"server": {"workers": 2}, "app": "tests.pipeline_fixtures:tags_app"}}
    with pytest.raises(ConfigError, match=r"app: unknown key 'server'; a pipeline has"):
        build_pipeline(config, source="stack.toml")


def test_a_misspelt_server_table_gets_a_hint():
    config = {"sever": {"workers": 2}, "app": "tests.pipeline_fixtures:tags_app"}
    with pytest.raises(ConfigError, match=r"unknown key 'sever' \(did you mean 'server'\?\)"):
        build_pipeline(config, source="stack.toml")


def test_the_served_socket_is_the_files(serve, stack, tmp_path):
    # A unix bind from the file alone: nothing on the command line names it.
    path = tmp_path / "site.sock"
    stack(f'bind = "unix:{path}"\nworkers = 0\n')
    server = serve(target=("--config", "stack.toml"), bind=(), wait=False)
    poll(lambda: "listening on http://unix:" in server.log.read_text())
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(request_with(1))
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "[sever]\nworkers = 2\n[app]\nuse = 'checkedapp:app'\n",
            "stack.toml: unknown key 'sever' (did you mean 'server'?)",
            id="server-misspelt",
        ),
        pytest.param(
            "[[layers]]\nuse = 'error_catcher'\n[app]\nuse = 'checkedapp:app'\n",
            "stack.toml: unknown key 'layers' (did you mean 'layer'?)",
            id="layer-misspelt",
        ),
        pytest.param(
            "[[layer]]\nuse = 'error_catcher'\n",
            "stack.toml: no [app]: a pipeline needs an app to serve",
            id="no-app",
        ),
    ],
)
def test_a_misspelt_top_level_key_is_one_line_before_the_workers_bind(tmp_path, text, message):
    # With workers the pipeline is built in each worker, after the sockets are
    # bound: the mistake was reported there, once per worker, after a
    # "listening on" line, though nothing of it needs the app.
    (tmp_path / "checkedapp.py").write_text(CHECKED_APP)
    (tmp_path / "stack.toml").write_text(text)
    sock = tmp_path / "never.sock"
    command = ["serve", "--config", "stack.toml", "--workers", "2", "--bind", f"unix:{sock}"]
    result = subprocess.run(
        [sys.executable, "-m", "wsgistack.cli", *command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"wsgistack serve: error: {message}")
    assert result.stderr.count("\n") == 1


def test_a_decimal_socket_mode_names_the_spellings_a_toml_file_takes(stack, tmp_path):
    # It said "(in code, write 0o660)", which a TOML file's writer could not use.
    stack('bind = "unix:/tmp/s.sock"\nsocket_mode = 660')
    with pytest.raises(ConfigError) as caught:
        pipeline_options(str(tmp_path / "stack.toml"), {})
    message = str(caught.value)
    assert message.endswith(
        "[server]: socket_mode: 660 is not a mode of 000-777"
        ' (read as a decimal number: write 0o660 or "660")'
    )
    for spelling in ("0o660", '"660"'):  # each spelling it names works in the file
        stack(f'bind = "unix:/tmp/s.sock"\nsocket_mode = {spelling}')
        assert pipeline_options(str(tmp_path / "stack.toml"), {})["socket_mode"] == 0o660
