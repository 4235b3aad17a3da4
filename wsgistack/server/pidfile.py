"""``--pid FILE``: the serving process's PID in a file, for init scripts and logrotate.

    PidFile.check("/run/app.pid")               # before the bind: a live server holds it?
    pid_file = PidFile.create("/run/app.pid")   # after it; refuses as check() does
    ...
    pid_file.remove()                           # only while the file is still ours

As gunicorn's ``--pid``: ``kill -HUP $(cat /run/app.pid)`` reloads, and
logrotate's ``postrotate`` sends ``USR1`` the same way.  A file left by a
server that died is taken over; one naming a live process is refused, so a
second start cannot hide the first one's PID.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from ..errors import ConfigError

__all__ = ["PidFile"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True


class PidFile:
    """A PID file this process wrote; ``remove()`` deletes it if it still says so."""

    def __init__(self, path: Path, pid: int) -> None:
        self.path = path
        self.pid = pid

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> PidFile:
        """Write this process's PID to ``path`` (atomically); ConfigError naming ``pid``."""
        path = Path(path)
        pid = os.getpid()
        cls.check(path)  # again: a server may have started since the check before the bind
        temporary = None
        try:
            # A fresh, unguessable name (O_EXCL): never a link someone planted.
            fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            with os.fdopen(fd, "w", encoding="ascii") as file:
                os.fchmod(fd, 0o644)  # readable by init scripts, as gunicorn's
                file.write(f"{pid}\n")
            os.replace(temporary, path)
        except OSError as exc:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
            raise ConfigError(f"pid: cannot write {path}: {exc.strerror or exc}") from None
        # Kept absolute: a SIGHUP may move the master into the release a
        # `current` symlink names now, and the file to remove is this one.
        return cls(path.absolute(), pid)

    @classmethod
    def check(cls, path: str | os.PathLike[str]) -> None:
        """Refuse (ConfigError naming ``pid``) a file naming another live process.

        Called before the bind as well as by ``create`` after it: a refused
        start then never says ``listening on``, and still leaves no file when
        the bind fails.
        """
        path = Path(path)
        holder = cls._read(path)
        if holder is not None and holder != os.getpid() and _alive(holder):
            raise ConfigError(
                f"pid: {path}: a server is already running as PID {holder}"
                " (remove the file if that process is not one)"
            )

    @staticmethod
    def _read(path: Path) -> int | None:
        try:
            text = path.read_text(encoding="ascii", errors="replace").strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"pid: cannot read {path}: {exc.strerror or exc}") from None
        if not (text.isdigit() and 0 < int(text) < 2**31):
            return None  # junk, or a PID no kernel hands out: stale
        return int(text)

    def remove(self) -> None:
        """Delete the file, unless another process has written its own PID there since."""
        with contextlib.suppress(OSError, ConfigError):
            if self._read(self.path) == self.pid:
                self.path.unlink()
