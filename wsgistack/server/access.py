"""The access log, one line a response: the combined format, or ``--access-log-format``'s.

access = AccessLog.open("-")      # stdout; a path appends to that file
access(environ, response, started)
access.reopen()                   # after logrotate moved the file (SIGUSR1)
check_access_log(config)          # at start-up and on SIGHUP: a bad path fails there
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO

from ..errors import ConfigError
from .account import give_log
from .logformat import DEFAULT_FORMAT, Entry, compile_format

if TYPE_CHECKING:  # config.py's options table takes statsd.py's converters, which import this
    from .config import ServerConfig

__all__ = ["AccessLog", "check_access_log"]

log = logging.getLogger("wsgistack.server")


class AccessLog:
    """Writes ``host - - [date] "request" status size "referer" "agent"`` lines by default.

    ``size`` is the body bytes sent, the server's own refusals (400, 408, 413,
    the 500 for a broken app) included, as nginx's ``$body_bytes_sent``; ``-``
    when none were (Apache's ``%b``).  ``line_format`` is gunicorn's
    ``access_log_format`` (see ``logformat``), compiled here once.
    """

    def __init__(
        self,
        stream: TextIO,
        owned: bool,
        path: str | None = None,
        line_format: str = DEFAULT_FORMAT,
    ) -> None:
        self._line = compile_format(line_format)
        self._stream = stream
        self._owned = owned
        self._path = path  # the file to open again on reopen()
        self._lock = threading.Lock()
        self._failing = False  # the last write failed (logged once, not per line)
        self._closed = False

    @classmethod
    def open(cls, target: str | None, line_format: str = DEFAULT_FORMAT) -> AccessLog | None:
        if target is None:
            return None
        if target == "-":
            return cls(sys.stdout, owned=False, line_format=line_format)
        try:
            stream = _append(target)
        except OSError as exc:
            raise ConfigError(f"access_log: cannot open {target!r}: {exc.strerror}") from None
        return cls(stream, owned=True, path=target, line_format=line_format)

    def reopen(self) -> None:
        """Open the file again by its name: logrotate moved the old one away.

        Lines keep going to the old file until the new one is open, and if it
        cannot be opened (a full disk, a missing directory) they stay there.
        """
        if self._path is None:
            return  # stdout: nothing to reopen
        try:
            stream = _append(self._path)
        except OSError as exc:
            log.error(
                "access_log: cannot reopen %r, still writing to the old file: %s",
                self._path,
                exc.strerror,
            )
            return
        with self._lock:
            old, self._stream = self._stream, stream
        with contextlib.suppress(OSError):  # lines it could not flush: already reported
            old.close()

    def __call__(
        self, environ: dict[str, Any], response: Any, started: float | None = None
    ) -> None:
        """Log a request the app answered (or began to: the bytes actually sent).

        The host is the client as :mod:`wsgistack.clientip` decided it for the
        layers (a trusted proxy's ``X-Forwarded-For``), as nginx's realip module
        sets ``$remote_addr``: the log names whom the IP filter judged.  A peer
        without an IP address (a unix socket) is written as ``REMOTE_ADDR`` has it.
        ``started``: the ``time.monotonic()`` the request head was complete at,
        for the duration atoms; the response ends now.
        """
        status = (response.status or "500")[:3]
        entry = Entry(environ, status, response.written, started, response.headers)
        self._write(self._line(entry) + "\n")

    def refused(self, peer: Any, status: int, request: str = "", *, size: int = 0) -> None:
        """Log a request refused before it had an environ (a malformed head: 400, 431...).

        ``request`` is its request line where it is known (a uwsgi packet's);
        ``size`` the bytes of the refusal's body sent, as nginx's ``$body_bytes_sent``.
        Atoms of an environ, of headers and of the duration are ``-``.
        """
        host = peer[0] if isinstance(peer, tuple) else ""
        self._write(self._line(Entry({}, str(status), size, host=host, request=request)) + "\n")

    def _write(self, line: str) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._stream.write(line)
                self._stream.flush()
            except OSError as exc:  # a full disk, a closed pipe: serving goes on, as nginx's
                if not self._failing:
                    log.error(
                        "access_log: cannot write, lines are lost until it works again: %s",
                        exc.strerror or exc,
                    )
                self._failing = True
            else:
                self._failing = False

    def close(self) -> None:
        """Write no more lines; a request a stop cut may end later, in process: it has none."""
        with self._lock:
            self._closed = True
            if self._owned:
                with contextlib.suppress(OSError):  # the last lines could not be flushed: said
                    self._stream.close()


def check_access_log(config: ServerConfig) -> None:
    """Open and close the --access-log file: a bad path fails here, not in each worker.

    With --user, it is created and given to the user first: the workers open
    it by its name once they are no longer root.
    """
    give_log(config.access_log, config.account())
    access_log = AccessLog.open(config.access_log)
    if access_log is not None:
        access_log.close()


def _append(path: str) -> TextIO:
    return open(path, "a", encoding="utf-8", buffering=1)
