"""What the options set for the whole process (``settle``), and ``--env`` changed by a SIGHUP.

Rules: ``settle`` applies --umask, --chdir, --env, --pythonpath and the
logging before anything binds or loads.  As in gunicorn's reload, the first
time the server sets a key, the value it had before (or its absence) is
remembered.  A reload puts each key the old configuration set and the new
one drops back to that value (or removes it), then sets the new
configuration's keys, so a key dropped from the file is gone and one that was
there before the server started comes back.  The workers forked next inherit
the result.  The record is one server's (``Settled``), never the module's: the
CLI and pserve settle before the app's import and hand theirs to the
``Server`` they make, which settles again as it binds (changing nothing); a
``Server`` made in code keeps its own, so a second server in the process
starts from what it finds.

    settled = Settled()
    settled.settle(config)            # at start: --env among others
    serving = settled.env
    settled.change_env(new.env)       # a reload
    settled.change_env(serving)       # it failed after all: back to what serves
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from .config import ServerConfig
from .logsetup import start_logging

__all__ = ["Env", "Settled", "env_changes"]

Env = tuple[tuple[str, str], ...]


class Settled:
    """What ``settle`` set in this process for one server, so a reload can change it back."""

    def __init__(self) -> None:
        #: Each key this server has set, and its value before (None: unset).
        self._before: dict[str, str | None] = {}
        self._env: Env = ()
        #: The (error_log, log_config) ``start_logging`` set up, once it has.
        self._logging: tuple[str, str | None] | None = None

    @property
    def env(self) -> Env:
        """The ``env`` set last: the one the workers forked next inherit."""
        return self._env

    def settle(self, config: ServerConfig) -> None:
        """What the options set for the whole process, before it binds or loads the app.

        --umask, --chdir, --env and --pythonpath, then the logging a --log-config
        or --error-log gives.  The CLI calls it first of all; a Server made in
        code (or by pserve) as it binds; again, it changes nothing.
        """
        if config.umask is not None:
            os.umask(config.umask)
        if config.chdir is not None:
            os.chdir(config.chdir)
        self.change_env(config.env)
        sys.path[0:0] = [path for path in config.pythonpath if path not in sys.path]
        if config.log_config is not None or config.error_log != "-":
            self.start_logging(config.log_level, config.error_log, config.log_config)

    def change_env(self, env: Iterable[tuple[str, str]]) -> None:
        """Set ``env``'s keys; those set last that ``env`` drops get their value from before."""
        env = tuple(env)
        kept = {key for key, _ in env}
        for key, _ in self._env:
            if key not in kept:
                _put(key, self._before[key])
        for key, value in env:
            self._before.setdefault(key, os.environ.get(key))
            os.environ[key] = value
        self._env = env

    def start_logging(
        self, level: str, error_log: str = "-", log_config: str | None = None
    ) -> None:
        """``logsetup.start_logging``, once: asked again for the same files, it changes nothing.

        The CLI asks, then the Server it hands this record to, as it binds.
        """
        if self._logging == (error_log, log_config):
            return
        if start_logging(level, error_log, log_config):
            self._logging = (error_log, log_config)


def env_changes(old: Iterable[tuple[str, str]], new: Iterable[tuple[str, str]]) -> str:
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
