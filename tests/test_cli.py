"""``wsgistack check``: validate a pipeline file without serving it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from wsgistack.cli import main

ROOT = Path(__file__).resolve().parent.parent

GOOD = """
[[layer]]
use = "tests.pipeline_fixtures:Tagger"
tag = "a"
[app]
use = "tests.pipeline_fixtures:tags_app"
"""


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wsgistack.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_prints_the_stack(tmp_path):
    path = tmp_path / "stack.toml"
    path.write_text(GOOD)
    result = run("check", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{path}: ok",
        "Tagger(tag='a')",
        "tests.pipeline_fixtures.tags_app",
    ]


def test_check_takes_the_file_as_serve_names_it_with_config(tmp_path):
    # `serve --config stack.toml` serves it; `check --config stack.toml` was an
    # argparse error ("unrecognized arguments").
    path = tmp_path / "stack.toml"
    path.write_text(GOOD)
    result = run("check", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"{path}: ok"
    both = run("check", str(path), "--config", str(path))
    assert both.returncode == 2
    assert "give exactly one of FILE, --config FILE or --paste FILE" in both.stderr


def test_check_fails_with_the_reason(tmp_path):
    path = tmp_path / "stack.toml"
    path.write_text(GOOD.replace('tag = "a"', 'tga = "a"'))
    result = run("check", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == (
        f"wsgistack check: error: {path}: layer 1 (tests.pipeline_fixtures:Tagger): "
        "unknown option 'tga' (did you mean 'tag'?)"
    )


def test_check_a_layer_without_its_required_option_is_one_line(tmp_path):
    # It was "cannot load the app: RateLimiter.__init__() missing 1 required
    # positional argument: 'limits'" with a traceback, as if the app had crashed.
    path = tmp_path / "stack.toml"
    path.write_text(
        GOOD.replace("tests.pipeline_fixtures:Tagger", "rate_limit").replace(
            'tag = "a"', "burst = 5"
        )
    )
    result = run("check", str(path))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.strip() == (
        f"wsgistack check: error: {path}: layer 1 (rate_limit): missing option 'limits'"
    )


def test_check_a_bad_app_spec_or_a_directory_exits_2_naming_it(tmp_path):
    path = tmp_path / "stack.toml"
    path.write_text('[app]\nuse = ":app"\n')
    result = run("check", str(path))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith(f"wsgistack check: error: {path}: app (:app): ")
    result = run("check", str(tmp_path))
    assert (result.returncode, result.stdout) == (2, "")
    assert (
        result.stderr.strip() == f"wsgistack check: error: {tmp_path}: cannot read: Is a directory"
    )


def test_the_console_script_is_installed():
    script = Path(sys.executable).with_name("wsgistack")
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "check" in result.stdout


def test_check_an_app_that_raises_while_importing_exits_2_with_its_traceback(tmp_path):
    # It was an uncaught traceback and status 1, where serve says why and exits 2.
    (tmp_path / "needsenv.py").write_text(
        "import os\n\nDATABASE = os.environ['NO_SUCH_VARIABLE_XYZ']\n"
    )
    path = tmp_path / "stack.toml"
    path.write_text('[app]\nuse = "needsenv:app"\n')
    result = subprocess.run(
        [sys.executable, "-m", "wsgistack.cli", "check", str(path)],
        cwd=tmp_path,
        env={**os.environ, "PWD": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"wsgistack check: {path}: cannot load the app: ")
    assert "KeyError: 'NO_SUCH_VARIABLE_XYZ'" in result.stderr
    assert 'needsenv.py", line 3' in result.stderr  # the line that raised


@pytest.mark.parametrize("command", [[], ["serve"], ["check"], ["demo"]], ids=" ".join)
def test_every_help_text_is_plain(command, capsys):
    # The top help printed the module docstring, ``wsgistack`` and all, and
    # serve's options read "--graceful-timeout GRACEFUL_TIMEOUT": no word of
    # what to give.
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "``" not in text and ":class:" not in text
    assert not re.search(r"--[a-z-]+ [A-Z]+_", text)
    assert "KEEPALIVE" not in text


def test_serve_help_names_every_way_to_name_the_app(capsys):
    # It named only module:attr; the loader also takes a module and a factory call.
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for form in ("module:attr", "module (its 'application'", "module:factory(...)"):
        assert form in text


@pytest.mark.parametrize(
    "stack",
    [
        pytest.param('[app]\nuse = "brokenimport:app"\n', id="app"),
        pytest.param(
            '[[layer]]\nuse = "brokenimport:Layer"\n[app]\nuse = "tests.pipeline_fixtures:tags_app"\n',
            id="layer",
        ),
    ],
)
def test_check_an_import_failing_inside_the_module_shows_where(tmp_path, stack):
    # A dependency missing in the app's own module was one line naming only the
    # dependency, in check and serve --config alike; serve module:app, and
    # gunicorn, show the traceback down to the line that imports it.
    (tmp_path / "brokenimport.py").write_text("import os\nimport no_such_dependency_xyz\n")
    path = tmp_path / "stack.toml"
    path.write_text(stack)
    result = subprocess.run(
        [sys.executable, "-m", "wsgistack.cli", "check", str(path)],
        cwd=tmp_path,
        env={**os.environ, "PWD": str(tmp_path), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr.startswith(f"wsgistack check: {path}: cannot load the app: {path}: ")
    assert (
        "importing 'brokenimport' failed: No module named 'no_such_dependency_xyz'" in result.stderr
    )
    assert 'brokenimport.py", line 2' in result.stderr  # the line that imports it


@pytest.mark.parametrize(
    ("stack", "first"),
    [
        pytest.param(
            '[app]\nuse = "raisesonimport:app"\n',
            "app (raisesonimport:app): KeyError: 'DEBUG'",
            id="app",
        ),
        pytest.param(
            '[app]\nuse = "tests.pipeline_fixtures:tags_app"\n'
            '[[layer]]\nuse = "raisesonimport:Layer"\n',
            "layer 1 (raisesonimport:Layer): KeyError: 'DEBUG'",
            id="layer",
        ),
    ],
)
def test_check_names_the_exception_and_the_app_or_layer_that_raised_it(tmp_path, stack, first):
    # The first line was "cannot load the app: 'DEBUG'": a KeyError's str,
    # naming neither the exception nor the app or layer that raised it.
    (tmp_path / "raisesonimport.py").write_text("import os\n\nDEBUG = os.environ['DEBUG']\n")
    path = tmp_path / "stack.toml"
    path.write_text(stack)
    env = {key: value for key, value in os.environ.items() if key != "DEBUG"}
    result = subprocess.run(
        [sys.executable, "-m", "wsgistack.cli", "check", str(path)],
        cwd=tmp_path,
        env={**env, "PWD": str(tmp_path), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr.startswith(
        f"wsgistack check: {path}: cannot load the app: {path}: {first}\n"
    ), result.stderr
    assert 'raisesonimport.py", line 3' in result.stderr


LOOPBACK = ("--bind", "127.0.0.1:0", "--workers", "0")


def test_serve_from_the_wrong_directory_says_where_it_looked(tmp_path):
    # A new user's first mistake: the app's module is in ./site, not here.
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "hello_site_xyz.py").write_text(
        "def app(environ, start_response):\n    return []\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "wsgistack.cli", "serve", "hello_site_xyz:app", *LOOPBACK],
        cwd=tmp_path,
        env={**os.environ, "PWD": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "wsgistack serve: error: 'hello_site_xyz:app': no module named 'hello_site_xyz'"
        f" (not in the working directory {tmp_path}, nor installed for {sys.executable})\n"
    )


#: An app that needs what a [server] table sets for it: its module in a
#: --pythonpath or --chdir directory, and a variable --env gives.
NEEDS_SETTINGS = (
    "import os\n\nSETTINGS = os.environ['CHECKED_SETTINGS_XYZ']\n\n\n"
    "def app(environ, start_response):\n"
    "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
    "    return [SETTINGS.encode()]\n"
)


@pytest.mark.parametrize("where", ["pythonpath", "chdir"])
def test_check_loads_the_app_as_serve_does_with_the_server_tables_env_and_paths(tmp_path, where):
    # check loaded the app without the table's env, pythonpath or chdir, so it
    # refused a file that serve --config serves ("no module named 'settingsapp'").
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "settingsapp_xyz.py").write_text(NEEDS_SETTINGS)
    path = tmp_path / "stack.toml"
    lib = f'"{tmp_path / "lib"}"'
    path.write_text(
        '[app]\nuse = "settingsapp_xyz:app"\n[server]\n'
        f"{where} = {f'[{lib}]' if where == 'pythonpath' else lib}\n"
        'env = {CHECKED_SETTINGS_XYZ = "prod"}\n'
    )
    result = run("check", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{path}: ok", "settingsapp_xyz.app"]


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ('error_log = "{missing}/error.log"', "error_log: cannot open '{missing}/error.log'"),
        ('log_config = "{logging}"', "log_config: {logging}: ValueError: Unable to configure"),
    ],
    ids=["error_log", "log_config"],
)
def test_check_refuses_the_logging_serve_refuses(tmp_path, server, message):
    # check read --log-config's file but never applied it, and never opened
    # --error-log's: it called ok a file that serve --config refuses at once.
    missing, logging_file = tmp_path / "no-such-dir", tmp_path / "logging.json"
    logging_file.write_text(
        '{"version": 1, "handlers": {"file": {"class": "logging.FileHandler",'
        f' "filename": "{missing}/app.log"}}}}, "root": {{"handlers": ["file"]}}}}'
    )
    path = tmp_path / "stack.toml"
    names = {"missing": missing, "logging": logging_file}
    path.write_text(f"{GOOD}[server]\n{server.format(**names)}\n")
    for command in (
        ["check", str(path)],
        ["serve", "--config", str(path), "--bind", "127.0.0.1:0"],
    ):
        result = run(*command)
        assert (result.returncode, result.stdout) == (2, ""), result.stderr
        prefix = f"wsgistack {command[0]}: error: "
        assert result.stderr.startswith(prefix + message.format(**names)), result.stderr


def test_check_reports_a_broken_app_on_standard_error_whatever_the_error_log(tmp_path):
    # The error log takes the server's lines, not check's own report.
    (tmp_path / "needsenv_xyz.py").write_text("import os\n\nX = os.environ['NO_SUCH_XYZ']\n")
    path = tmp_path / "stack.toml"
    path.write_text(
        f'[app]\nuse = "needsenv_xyz:app"\n[server]\nerror_log = "{tmp_path}/error.log"\n'
        f'pythonpath = ["{tmp_path}"]\n'
    )
    result = run("check", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"wsgistack check: {path}: cannot load the app: ")
    assert "KeyError: 'NO_SUCH_XYZ'" in result.stderr


@pytest.mark.parametrize(
    ("arguments", "hint"),
    [
        (["--keep-alive", "5"], "(gunicorn's --keep-alive is --keepalive here)"),
        (
            ["-w", "2", "--error-logfile=-"],
            "(gunicorn's -w is --workers here; gunicorn's --error-logfile is --error-log here)",
        ),
        (["-t", "60"], "(gunicorn's -t (its worker watchdog) is --worker-timeout here)"),
        (
            ["--max-requests-jitter", "50"],
            "(gunicorn's --max-requests-jitter has no counterpart:"
            " --max-requests is jittered by 10% of itself)",
        ),
    ],
)
def test_a_gunicorn_spelling_is_refused_saying_what_to_write_here(capsys, arguments, hint):
    # A command line carried over from gunicorn was refused only as
    # "unrecognized arguments", leaving the operator to search the option table.
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "tests.pipeline_fixtures:tags_app", *arguments])
    assert exit_.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error == f"wsgistack: error: unrecognized arguments: {' '.join(arguments)} {hint}"


def test_an_unknown_flag_that_is_no_gunicorn_spelling_is_refused_as_before(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "tests.pipeline_fixtures:tags_app", "--bogus"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "wsgistack: error: unrecognized arguments: --bogus"
    )
