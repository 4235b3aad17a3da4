"""SIGHUP applies a changed ``env`` (a ``[server] env`` table) to the new workers, as gunicorn's.

The CLI in a subprocess, its file edited in ``tmp_path``, signals sent by PID,
every wait a bounded poll.  The master starts with ``PRESET=original`` in its
environment, so a key the file stops setting is seen to come back.
"""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

import pytest

from .served import Served, poll

#: Answers its worker's pid, GREETING as the app read it at import, then
#: GREETING, PRESET and DROPPED as they are now (``-``: unset).  It cannot be
#: imported with ``GREETING=broken`` (a setting the new code refuses).
ENV_APP = """
import os
from wsgiref.validate import validator

AT_IMPORT = os.environ.get("GREETING", "-")
if AT_IMPORT == "broken":
    raise RuntimeError("GREETING=broken: this app cannot start")


@validator
def app(environ, start_response):
    now = [os.environ.get(key, "-") for key in ("GREETING", "PRESET", "DROPPED")]
    body = " ".join([str(os.getpid()), AT_IMPORT, *now]).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""

FIRST = 'GREETING = "secret-one", PRESET = "overridden", DROPPED = "here"'


@pytest.fixture
def envstack(tmp_path, monkeypatch):
    """``write(env, extra)``: ``stack.toml`` serving ``ENV_APP`` with 2 workers, that env table."""
    (tmp_path / "envapp.py").write_text(ENV_APP)
    monkeypatch.setenv("PRESET", "original")  # the master's own, before the server starts
    monkeypatch.delenv("GREETING", raising=False)
    monkeypatch.delenv("DROPPED", raising=False)

    def write(env: str, extra: str = "") -> None:
        server = f'bind = "127.0.0.1:0"\nworkers = 2\nenv = {{ {env} }}\n{textwrap.dedent(extra)}'
        (tmp_path / "stack.toml").write_text(f"[server]\n{server}\n[app]\nuse = 'envapp:app'\n")

    return write


def answers(server: Served, workers: set[int]) -> dict[int, str]:
    """Each of ``workers``' answer (its words after the pid), asking until each has answered."""
    seen: dict[int, str] = {}

    def all_answered() -> bool:
        pid, rest = server.get().split(" ", 1)
        if int(pid) in workers:
            seen[int(pid)] = rest
        return seen.keys() == workers

    poll(all_answered)
    return seen


def replaced(server: Served, old: set[int]) -> set[int]:
    """The 2 workers once none of ``old`` is left (the reload done, the old ones gone)."""
    return poll(lambda: (pids := server.count_workers(2)) and not (pids & old) and pids)


def hang_up(server: Served, line: str) -> str:
    """SIGHUP the master, wait for its ``line``-th mention of ``line``; the log."""
    count = server.log.read_text().count(line)
    server.proc.send_signal(signal.SIGHUP)
    return poll(lambda: (text := server.log.read_text()).count(line) > count and text)


def test_a_sighup_applies_the_file_s_new_env_to_every_new_worker(serve, envstack):
    envstack(FIRST)
    server = serve(target=("--config", "stack.toml"), bind=())
    old = poll(lambda: server.count_workers(2))
    assert set(answers(server, old).values()) == {"secret-one secret-one overridden here"}
    envstack('GREETING = "secret-two"')
    log = hang_up(server, "reload done")
    new = replaced(server, old)
    # Each new worker imported the app with the new env; PRESET is back to the
    # master's own value, DROPPED (set by the old file only) is gone.
    assert set(answers(server, new).values()) == {"secret-two secret-two original -"}
    line = next(each for each in log.splitlines() if "read again:" in each)
    assert "env GREETING changed, PRESET dropped, DROPPED dropped" in line
    assert "secret" not in log  # the keys, never the values


def failing_logging(tmp_path: Path) -> str:
    """A --log-config file that parses but fails to apply (a handler class nowhere)."""
    (tmp_path / "logging.json").write_text(
        '{"version": 1, "handlers": {"h": {"class": "nowhere.Handler"}},'
        ' "root": {"handlers": ["h"]}}'
    )
    return 'log_config = "logging.json"\n'


def working_logging(tmp_path: Path) -> str:
    (tmp_path / "logging.json").write_text(
        '{"version": 1, "handlers": {"h": {"class": "logging.StreamHandler"}},'
        ' "root": {"handlers": ["h"], "level": "INFO"}}'
    )
    return 'log_config = "logging.json"\n'


@pytest.mark.parametrize("why", ["logging", "user"])
def test_a_refused_reload_leaves_the_env_for_the_old_workers_respawns(
    serve, envstack, tmp_path, why
):
    logging = working_logging(tmp_path)
    envstack(FIRST, logging)
    server = serve(target=("--config", "stack.toml"), bind=())
    old = poll(lambda: server.count_workers(2))
    answers(server, old)  # both have loaded the app from the file before it is edited
    if why == "logging":  # refused last, after the env was changed: it is put back
        envstack('GREETING = "secret-two"', failing_logging(tmp_path))
    else:  # refused first, before anything applies
        envstack('GREETING = "secret-two"', logging + 'user = "nobody"\n')
    hang_up(server, "master: reload refused")
    assert server.workers() == old
    # A worker of the old set dies: its replacement still gets the old env.
    victim = min(old)
    os.kill(victim, signal.SIGKILL)
    respawned = poll(lambda: (pids := server.count_workers(2)) and victim not in pids and pids)
    assert set(answers(server, respawned).values()) == {"secret-one secret-one overridden here"}
    # Mended, the next SIGHUP applies the new env.
    envstack('GREETING = "secret-two"', working_logging(tmp_path))
    hang_up(server, "reload done")
    new = replaced(server, respawned)
    assert set(answers(server, new).values()) == {"secret-two secret-two original -"}


def test_a_failed_reload_puts_the_env_back_for_the_old_workers_respawns(serve, envstack):
    envstack(FIRST)
    server = serve(target=("--config", "stack.toml"), bind=())
    old = poll(lambda: server.count_workers(2))
    answers(server, old)
    envstack('GREETING = "broken", PRESET = "overridden-too"')  # the new workers cannot load
    hang_up(server, "master: reload failed")
    poll(lambda: server.workers() == old)  # the new ones are gone, the old ones serve
    # A worker of the old set dies: its replacement gets the env the old set
    # runs with (the new one would not even load the app).
    victim = min(old)
    os.kill(victim, signal.SIGKILL)
    respawned = poll(lambda: (pids := server.count_workers(2)) and victim not in pids and pids)
    assert set(answers(server, respawned).values()) == {"secret-one secret-one overridden here"}
    # Mended, the next SIGHUP goes from the env that serves to the file's.
    envstack('GREETING = "secret-two"')
    hang_up(server, "reload done")
    new = replaced(server, respawned)
    assert set(answers(server, new).values()) == {"secret-two secret-two original -"}


def test_with_preload_the_new_env_reaches_os_environ_not_what_the_app_read_at_import(
    serve, envstack
):
    envstack(FIRST, "preload = true\n")
    server = serve(target=("--config", "stack.toml"), bind=())
    old = poll(lambda: server.count_workers(2))
    envstack('GREETING = "secret-two"', "preload = true\n")
    log = hang_up(server, "reload done")
    new = replaced(server, old)
    # The app imported in the master (old env) is kept, as gunicorn's --preload.
    assert set(answers(server, new).values()) == {"secret-one secret-two original -"}
    assert "--preload: the new env is in the new workers' os.environ" in log
