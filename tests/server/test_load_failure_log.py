"""What a master logs when its workers cannot load the app: the last line says it."""

from __future__ import annotations

import re

import pytest


def test_the_last_line_says_the_app_cannot_load_and_the_exit_status(serve):
    # It ended "the app cannot be loaded, stopping", "master: quick stop",
    # "master N: stopped" after "listening on ...": the last line read as a
    # normal stop, and the reason was three lines up.
    server = serve("--workers", "1", target=("no_such_module_xyz:app",), wait=False)
    assert server.proc.wait(timeout=15) == 2
    lines = server.log.read_text().splitlines()
    worker = re.search(r"ERROR worker (\d+): cannot load the app: ", lines[-2])
    assert worker is not None, lines
    assert re.search(
        rf"ERROR master \d+: stopped, exit status 2: the app cannot be loaded"
        rf" \(worker {worker[1]} says why above\)$",
        lines[-1],
    )
    assert not any("quick stop" in line for line in lines)
    assert re.search(r"INFO master \d+: starting 1 worker$", "\n".join(lines), re.MULTILINE)


BANNER = """\
class Banner:
    def __init__(self, app, *, path):
        with open(path) as handle:
            self.text = handle.read()
        self.app = app

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)
"""


@pytest.mark.parametrize("workers", ["1", "0"], ids=["master", "in-process"])
def test_a_layer_that_fails_while_built_is_named_with_its_traceback(serve, tmp_path, workers):
    # Its OSError came out as "cannot load the app: 'stack.toml': FileNotFoundError: ...",
    # naming neither the layer nor its option.
    (tmp_path / "banner.py").write_text(BANNER)
    (tmp_path / "stack.toml").write_text(
        '[[layer]]\nuse = "banner:Banner"\npath = "missing.txt"\n[app]\nuse = "slowapp:app"\n'
    )
    server = serve("--workers", workers, target=("--config", "stack.toml"), wait=False)
    assert server.proc.wait(timeout=15) == 2
    lines = server.log.read_text().splitlines()
    failed = [line for line in lines if "cannot load the app: " in line]
    assert len(failed) == 1, lines
    assert failed[0].endswith(
        "cannot load the app: stack.toml: layer 1 (banner:Banner): FileNotFoundError: "
        "[Errno 2] No such file or directory: 'missing.txt'"
    )
    assert any('banner.py", line 3' in line for line in lines)  # the cause's traceback
    if workers == "1":
        assert "stopped, exit status 2: the app cannot be loaded" in lines[-1]


QUITS = """\
import sys


class Quits:
    def __init__(self, app, *, reason):
        sys.exit(reason)


def store(url):
    sys.exit(3)
"""

QUITTING = {
    "layer": '[[layer]]\nuse = "quits:Quits"\nreason = "no config"\n',
    "option": '[[layer]]\nuse = "rate_limit"\nlimits = "5/minute"\n'
    'store = {use = "quits:store", url = "redis://h/0"}\n',
}


@pytest.mark.parametrize("workers", ["1", "0"], ids=["master", "in-process"])
@pytest.mark.parametrize(
    ("where", "said"),
    [
        ("layer", "layer 1 (quits:Quits): called sys.exit('no config')"),
        ("option", "layer 1 (rate_limit): store (quits:store): called sys.exit(3)"),
    ],
)
def test_a_layer_that_calls_sys_exit_while_built_stops_the_server(
    serve, tmp_path, workers, where, said
):
    # SystemExit is not an Exception: it went past the pipeline's builder, so
    # in process serve printed "no config" and exited 1, and a worker logged
    # "worker N failed" with a traceback and died as a crash: neither named the
    # layer nor said the app cannot be loaded.
    (tmp_path / "quits.py").write_text(QUITS)
    (tmp_path / "stack.toml").write_text(f'{QUITTING[where]}[app]\nuse = "slowapp:app"\n')
    server = serve("--workers", workers, target=("--config", "stack.toml"), wait=False)
    assert server.proc.wait(timeout=15) == 2
    lines = server.log.read_text().splitlines()
    assert any(line.endswith(f"cannot load the app: stack.toml: {said}") for line in lines), lines
    assert not any("respawning" in line for line in lines)
    if workers == "1":
        assert "stopped, exit status 2: the app cannot be loaded" in lines[-1]
