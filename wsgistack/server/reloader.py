"""``--reload``: each worker watches the app's files, and a change reloads every worker.

For development, as ``gunicorn --reload``, werkzeug's reloader and Django's
``runserver`` do.  Strategy: once a worker has loaded the app, a daemon
thread (``Watcher``) stats the files of the modules the worker has imported
(``sys.modules``, looked at afresh each turn, so a module imported at the
first request counts too) and the files named by ``--reload-extra-file``
(the served ``--config``/``--paste`` file among them) once a second, and
sends each change it sees to the master over a pipe (``ReloadRequests``).
Polling, as gunicorn's and werkzeug's stat reloaders: no dependency, and a
few hundred ``stat`` calls a second cost nothing a developer notices.

A change reaches the master once from every worker: the master acts on a
(file, mtime) it has not acted on yet, by the same step as SIGHUP (a
graceful reload: in-flight requests finish, new workers import the new
code), and says so in one line.  A worker whose app fails to load answers
500 (``broken_app``) and watches the files of the failure's traceback too,
so the save that fixes the code brings the app back.  The same failure in
every worker of a reload is logged with its traceback once (``FirstFailure``).

    watcher = Watcher(lambda: watched_files(extra), on_change=ask_master)
    watcher.start()    # in the worker, after the app loaded
    watcher.stop()     # as it stops: the thread wakes and ends at once
"""

from __future__ import annotations

import logging
import os
import struct
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from typing import Any

import webob.exc

from ..refusals import refusal

__all__ = [
    "INTERVAL",
    "FirstFailure",
    "ReloadRequests",
    "Watcher",
    "broken_app",
    "failure_files",
    "watched_files",
]

log = logging.getLogger("wsgistack.server")

#: Seconds between two looks at the files (gunicorn's and werkzeug's: 1).
INTERVAL = 1.0
#: One change on the pipe: the path's length and its mtime (ns), then the path.
_CHANGE = struct.Struct("<HQ")
#: A write of at most PIPE_BUF bytes is atomic: changes from several workers never mix.
_MAX_PATH = 4096 - _CHANGE.size

Change = tuple[str, int]  # (path, st_mtime_ns)


def watched_files(extra: Iterable[str] = ()) -> set[str]:
    """The files of every imported module, and ``extra``."""
    files = set(extra)
    for module in list(sys.modules.values()):  # a copy: another thread may import meanwhile
        path = getattr(module, "__file__", None)
        if isinstance(path, str):
            files.add(path)
    return files


def failure_files(exc: BaseException) -> set[str]:
    """The files an app's load failure points at: its traceback's, a SyntaxError's own file.

    A module that failed is not in ``sys.modules``, and may be new (imported
    by the edit that broke it): the save that fixes it must still be seen.
    """
    files: set[str] = set()
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        error = stack.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, SyntaxError) and error.filename:
            files.add(error.filename)
        files.update(frame.filename for frame in traceback.extract_tb(error.__traceback__))
        stack += [error.__cause__, error.__context__]
    return {path for path in files if os.path.isfile(path)}  # not "<string>", "<frozen ...>"


def broken_app(what: str) -> Callable[..., Any]:
    """The app a worker serves while the app's code does not load: a 500 that says where to look.

    The error itself is in the server's log only: its traceback names the
    code's paths, which are no client's business even in development.
    """
    return refusal(
        webob.exc.HTTPInternalServerError,
        f"The app could not be loaded ({what}); the server's log says why."
        " It is loaded again when one of its files changes (--reload).",
    )


class Watcher:
    """Look at ``files()``' mtimes every ``interval`` s in a daemon thread; report changes.

    ``on_change`` gets the (path, mtime_ns) of each file changed since the
    last look.  A file seen for the first time is no change, unless it
    changed after ``since`` (ns, the wall clock as the app began to load):
    saved while the app loaded, it may have been read as it was before.  A
    file that went missing is skipped until it is back (an editor saving by
    rename removes it for a moment), and its return with a new mtime is a
    change.
    """

    def __init__(
        self,
        files: Callable[[], Iterable[str]],
        on_change: Callable[[list[Change]], None],
        interval: float = INTERVAL,
        since: int | None = None,
    ) -> None:
        self.files = files
        self.on_change = on_change
        self.interval = interval
        self._mtimes: dict[str, int] = {}
        self._stopped = threading.Event()
        self.scan()  # what the app was loaded from: later looks compare with it
        for path, mtime in self._mtimes.items():
            if since is not None and mtime > since:
                self._mtimes[path] = -1  # the first look reports it
        self._thread = threading.Thread(target=self._run, name="wsgistack-reloader", daemon=True)

    def scan(self) -> list[Change]:
        """The files changed since the last scan (and remember their mtimes)."""
        changed: list[Change] = []
        for path in sorted(self.files()):
            try:
                mtime = os.stat(path).st_mtime_ns
            except OSError:
                continue
            if self._mtimes.setdefault(path, mtime) != mtime:
                self._mtimes[path] = mtime
                changed.append((path, mtime))
        return changed

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End the thread; it wakes at once (no wait at the worker's exit)."""
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                if changed := self.scan():
                    self.on_change(changed)
            except Exception:  # the worker serves on; the next look tries again
                log.exception("worker %d: --reload: looking at the files failed", os.getpid())


class FirstFailure:
    """Which worker of a set logs the app's load failure with its traceback.

    Every worker of a reload imports the same code: code that does not load
    failed in each, and as many identical tracebacks filled the screen.  The
    master makes a pipe holding one byte for each set of workers it starts
    (``renew``); the first of them whose app fails to load takes it (reading
    one byte from a pipe is atomic: exactly one reader gets it) and logs the
    traceback, the others one line each.  A worker respawned later in the
    same set finds the byte taken.  Nothing of it is on the request path.
    """

    def __init__(self) -> None:
        self._reader = -1
        self.renew()

    def renew(self) -> None:
        """In the master, before it starts a set of workers: a byte for its first failure."""
        reader, writer = os.pipe()
        os.write(writer, b"!")
        os.close(writer)  # once the byte is taken, a read finds the end: never blocks
        self.close()
        self._reader = reader

    def take(self) -> bool:
        """In a worker whose app failed to load: whether it is the first of its set to fail."""
        return os.read(self._reader, 1) == b"!"

    def close(self) -> None:
        """Let go of the pipe (a worker, once its app is loaded or not; the master, at its end)."""
        if self._reader >= 0:
            os.close(self._reader)
            self._reader = -1


class ReloadRequests:
    """The pipe from the workers' watchers to the master, and the master's memory of changes.

    ``send`` (in a worker) writes each change; ``read`` (in the master)
    returns the changed paths it has not acted on yet: the same change seen
    by every worker counts once.
    """

    def __init__(self) -> None:
        self.reader, self.writer = os.pipe()
        os.set_blocking(self.reader, False)
        self._buffer = b""
        self._acted: dict[str, int] = {}  # path -> the mtime a reload was asked for

    def send(self, changes: list[Change]) -> None:
        for path, mtime in changes:
            data = os.fsencode(path)[-_MAX_PATH:]
            os.write(self.writer, _CHANGE.pack(len(data), mtime) + data)

    def read(self) -> list[str]:
        try:
            while chunk := os.read(self.reader, 65536):
                self._buffer += chunk
        except BlockingIOError:
            pass
        new: list[str] = []
        while len(self._buffer) >= _CHANGE.size:
            size, mtime = _CHANGE.unpack_from(self._buffer)
            end = _CHANGE.size + size
            if len(self._buffer) < end:
                break
            path = os.fsdecode(self._buffer[_CHANGE.size : end])
            self._buffer = self._buffer[end:]
            if self._acted.get(path) != mtime:
                self._acted[path] = mtime
                new.append(path)
        return new

    def close(self) -> None:
        for fd in (self.reader, self.writer):
            os.close(fd)
