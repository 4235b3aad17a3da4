"""What the options set for the whole process (``settle``), and ``--env`` changed by a SIGHUP.

Rules: ``settle`` applies --umask, --chdir, --env, --pythonpath and the
logging before anything binds or loads.  As in gunicorn's reload, the first
time the server sets a key, the value it had before (or its absence) is
remembered.  A reload puts each key the old configuration set
back to that value (or removes it), then sets the new configuration's keys,
so a key dropped from the file is gone and one that was there before the
server started comes back.  The workers forked next inherit the result.  The
record is the process's, as the environment is: the CLI sets ``--env`` before
it makes its ``Server``, which sets it again as it binds (changing nothing).

    settle(config)                               # at start: set_env(config.env) among others
    undo = change_env(old.env, new.env)          # a reload, not committed yet
    undo()                                       # it failed after all
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable

from .config import ServerConfig
from .logsetup import start_logging

__all__ = ["change_env", "env_changes", "set_env", "settle"]

Env = Iterable[tuple[str, str]]

#: Each key the server has set in this process, and its value before (None: unset).
_before: dict[str, str | None] = {}


def settle(config: ServerConfig) -> None:
    """What the options set for the whole process, before it binds or loads the app.

    --umask, --chdir, --env and --pythonpath, then the logging a --log-config
    or --error-log gives.  The CLI calls it first of all; a Server made in
    code (or by pserve) as it binds; again, it changes nothing.
    """
    if config.umask is not None:
        os.umask(config.umask)
    if config.chdir is not None:
        os.chdir(config.chdir)
    set_env(config.env)
    sys.path[0:0] = [path for path in config.pythonpath if path not in sys.path]
    if config.log_config is not None or config.error_log != "-":
        start_logging(config.log_level, config.error_log, config.log_config)


def set_env(env: Env) -> None:
    """Set each key of ``env``, remembering the value it had before the server first set it."""
    for key, value in env:
        _before.setdefault(key, os.environ.get(key))
        os.environ[key] = value


def change_env(old: Env, new: Env) -> Callable[[], None]:
    """Go from ``old``'s keys to ``new``'s; returns what puts the environment back as it was."""
    old, new = tuple(old), tuple(new)
    now = {key: os.environ.get(key) for key, _ in (*old, *new)}
    for key, _ in old:
        _put(key, _before.get(key))
    set_env(new)

    def undo() -> None:
        for key, value in now.items():
            _put(key, value)

    return undo


def env_changes(old: Env, new: Env) -> str:
    """The keys a reload adds, changes and removes, for the log: never their values (secrets)."""
    before, after = dict(old), dict(new)
    said = [
        *(f"{key} changed" for key in after if key in before and before[key] != after[key]),
        *(f"{key} added" for key in after if key not in before),
        *(f"{key} dropped" for key in before if key not in after),
    ]
    return ", ".join(said)


def _put(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value
