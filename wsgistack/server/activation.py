"""Socket activation: serve the listening sockets systemd passed, read as ``sd_listen_fds(3)``.

Rules: when ``LISTEN_PID`` is this process's id, ``LISTEN_FDS`` sockets are
open from descriptor 3 on.  The variables (with ``LISTEN_FDNAMES``) are removed
from the environment once read, whoever they named, so the app's own programs
never take the sockets for theirs.  The passed sockets replace the configured
binds, as gunicorn's do, and speak ``--protocol``; binds that are all
``fd://N`` say which of them to serve and how (``uwsgi://fd://4``), and stand.

    fds = listen_fds()                        # once, as the server binds
    config, said = activated(config, fds, bind_given=True)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import MutableMapping

from ..errors import ConfigError
from .bind import Bind
from .config import ServerConfig

__all__ = ["SD_LISTEN_FDS_START", "activated", "listen_fds"]

#: The first descriptor of the passed sockets (after stdin, stdout and stderr).
SD_LISTEN_FDS_START = 3

_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def listen_fds(
    environ: MutableMapping[str, str] | None = None, pid: int | None = None
) -> tuple[int, ...]:
    """The descriptors passed to this process (``pid``), with the variables removed; () if none.

    A ``LISTEN_PID`` of another process is no socket of ours (its parent's,
    say): ignored.  A value that is not a number fails naming the variable.
    """
    environ = os.environ if environ is None else environ
    listen_pid, count = environ.get("LISTEN_PID"), environ.get("LISTEN_FDS")
    for name in _VARIABLES:
        environ.pop(name, None)
    if listen_pid is None:
        return ()
    if not (listen_pid.isascii() and listen_pid.isdigit()):
        raise ConfigError(f"LISTEN_PID (the environment): {listen_pid!r} is not a process id")
    if int(listen_pid) != (os.getpid() if pid is None else pid):
        return ()
    if count is None or not (count.isascii() and count.isdigit()):
        raise ConfigError(f"LISTEN_FDS (the environment): {count!r} is not a number of sockets")
    return tuple(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)))


def activated(
    config: ServerConfig, fds: tuple[int, ...], *, bind_given: bool
) -> tuple[ServerConfig, str]:
    """``config`` serving the passed ``fds``, and a line that says so ('' when none were passed).

    ``bind_given``: the binds were configured, not the default, so the line
    says they are ignored (gunicorn's warning).
    """
    if not fds:
        return config, ""
    passed = f"{len(fds)} socket{'s' if len(fds) > 1 else ''} passed by systemd (LISTEN_FDS)"
    if all(bind.kind == "fd" for bind in config.bind):
        said = f"socket activation: {passed}; serving the fd:// binds given"
        left = sorted(set(fds) - {bind.fd for bind in config.bind})
        if left:  # open, and queueing clients nobody will answer: a unit and binds that disagree
            said += f"; fd {', '.join(map(str, left))} not among them, not served"
        return config, said
    binds = tuple(Bind("fd", fd=fd, protocol=config.protocol) for fd in fds)
    said = f"socket activation: serving the {passed}"
    if bind_given:
        said += f"; --bind {','.join(str(bind) for bind in config.bind)} ignored"
    return dataclasses.replace(config, bind=binds), said
