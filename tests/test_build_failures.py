"""A layer, an app or an option's object whose making fails: the error names where.

Its own exception (an ``OSError`` from a missing file, a ``RuntimeError`` from
a server that is down) stays the cause, so its traceback still shows the line
that raised, under ``build_pipeline``, ``wsgistack check`` and PasteDeploy.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from paste.deploy import loadapp

from wsgistack import build_pipeline
from wsgistack.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
APP = "tests.pipeline_fixtures:tags_app"
STORE = 'store = {use = "tests.pipeline_fixtures:unreachable_store", url = "redis://h/0"}'

CASES = [
    pytest.param(
        {
            "layer": [{"use": "tests.pipeline_fixtures:Banner", "path": "/no/such/banner"}],
            "app": APP,
        },
        "stack.toml: layer 1 (tests.pipeline_fixtures:Banner): FileNotFoundError: "
        "[Errno 2] No such file or directory: '/no/such/banner'",
        FileNotFoundError,
        id="layer-oserror",
    ),
    pytest.param(
        {
            "layer": [
                {
                    "use": "rate_limit",
                    "limits": "10/minute",
                    "store": {
                        "use": "tests.pipeline_fixtures:unreachable_store",
                        "url": "redis://h/0",
                    },
                }
            ],
            "app": APP,
        },
        "stack.toml: layer 1 (rate_limit): store (tests.pipeline_fixtures:unreachable_store): "
        "RuntimeError: cannot connect to redis://h/0",
        RuntimeError,
        id="option-object",
    ),
    pytest.param(
        {"app": {"use": "tests.pipeline_fixtures:unready_app", "url": "postgres://db/site"}},
        "stack.toml: app (tests.pipeline_fixtures:unready_app): "
        "RuntimeError: cannot connect to postgres://db/site",
        RuntimeError,
        id="app-factory",
    ),
]


@pytest.mark.parametrize(("config", "message", "kind"), CASES)
def test_a_failure_while_building_names_the_layer_or_option(config, message, kind):
    # It came out raw: "RuntimeError: cannot connect ...", naming no file, layer or option.
    with pytest.raises(ConfigError) as raised:
        build_pipeline(config, source="stack.toml")
    assert str(raised.value) == message
    assert isinstance(raised.value.__cause__, kind)  # its traceback still shows


def test_check_names_the_layer_and_shows_the_traceback(tmp_path):
    path = tmp_path / "stack.toml"
    path.write_text(
        '[[layer]]\nuse = "tests.pipeline_fixtures:Banner"\npath = "/no/such/banner"\n'
        f'[app]\nuse = "{APP}"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "wsgistack.cli", "check", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    first = result.stderr.splitlines()[0]
    assert first == (
        f"wsgistack check: {path}: cannot load the app: {path}: layer 1 "
        "(tests.pipeline_fixtures:Banner): FileNotFoundError: [Errno 2] No such file or "
        "directory: '/no/such/banner'"
    )
    assert "Traceback" in result.stderr
    assert 'pipeline_fixtures.py", line' in result.stderr  # the line that opened it


INI = """
[pipeline:main]
pipeline = layer app

[filter:layer]
{filter}

[app:app]
use = call:tests.pipeline_fixtures:tags_app_factory
"""


@pytest.mark.parametrize(
    ("section", "message", "kind"),
    [
        pytest.param(
            "use = call:tests.pipeline_fixtures:banner_filter_factory\npath = /no/such/banner",
            "filter tests.pipeline_fixtures:Banner: FileNotFoundError: [Errno 2] No such file "
            "or directory: '/no/such/banner'",
            FileNotFoundError,
            id="filter",
        ),
        pytest.param(
            f"use = egg:wsgistack#rate_limit\nlimits = 10/minute\n{STORE}",
            "filter rate_limit: store (tests.pipeline_fixtures:unreachable_store): "
            "RuntimeError: cannot connect to redis://h/0",
            RuntimeError,
            id="option-object",
        ),
    ],
)
def test_paste_names_the_ini_and_the_filter(tmp_path, section, message, kind):
    ini = tmp_path / "site.ini"
    ini.write_text(INI.format(filter=section))
    with pytest.raises(ConfigError) as raised:
        loadapp(f"config:{ini}")
    assert str(raised.value) == f"{ini}: {message}"
    assert isinstance(raised.value.__cause__, kind)


def test_sys_exit_while_built_is_a_load_failure_under_paste(tmp_path, monkeypatch):
    # SystemExit went through loadapp and ended the process that loaded the ini.
    (tmp_path / "quits.py").write_text("import sys\n\n\ndef store(url):\n    sys.exit(url)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    store = 'store = {use = "quits:store", url = "no config"}'
    ini = tmp_path / "site.ini"
    ini.write_text(
        INI.format(filter=f"use = egg:wsgistack#rate_limit\nlimits = 10/minute\n{store}")
    )
    with pytest.raises(ConfigError) as raised:
        loadapp(f"config:{ini}")
    assert str(raised.value) == (
        f"{ini}: filter rate_limit: store (quits:store): called sys.exit('no config')"
    )
    assert isinstance(raised.value.__cause__, SystemExit)
