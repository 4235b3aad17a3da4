"""How a worker tells the master it has loaded the app: its pid, on a pipe every worker shares.

The master counts a worker as serving (a reload's switch-over, the watchdog's
"still loading", systemd's READY=1, the end of a boot back-off) only once the
worker says so here.  Kept in one place because both ends must agree on the
words: a pid is 4 bytes, and a write of at most PIPE_BUF bytes is atomic, so
the words of workers that load at once never mix.  The master reads without
waiting, on each turn of its loop.

    ready = ReadyPipe()               # in the master, before the first fork
    ready.say()                       # in a worker, once the app is loaded
    for pid in ready.read(): ...      # in the master
"""

from __future__ import annotations

import errno
import os

__all__ = ["ReadyPipe"]


class ReadyPipe:
    """The pipe from the workers to the master that carries each one's "ready"."""

    def __init__(self) -> None:
        self.reader, self.writer = os.pipe()
        os.set_blocking(self.reader, False)

    def say(self) -> None:
        """In a worker: say this process is ready, then let go of the pipe.

        A master gone meanwhile (EPIPE) is no error here: the worker's own
        watchdog notices it and stops.
        """
        try:
            os.write(self.writer, os.getpid().to_bytes(4, "little"))
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise
        os.close(self.writer)

    def read(self) -> list[int]:
        """In the master: the pids that said ready since the last read (none: an empty list)."""
        try:
            data = os.read(self.reader, 4096)
        except BlockingIOError:
            return []
        return [
            int.from_bytes(data[index : index + 4], "little")
            for index in range(0, len(data) - 3, 4)
        ]

    def close(self) -> None:
        """In the master, as it ends: both ends."""
        for fd in (self.reader, self.writer):
            os.close(fd)
