"""systemd's ``Type=notify``: tell the service manager the server is ready, reloading, stopping.

Rules, as ``sd_notify(3)`` sets them: when ``NOTIFY_SOCKET`` names a unix
datagram socket (a path, or ``@name`` in the abstract namespace), the
serving process (the master, or the ``--workers 0`` process) sends it lines
such as ``READY=1``.  The variable is removed once read, with
``WATCHDOG_USEC`` and ``WATCHDOG_PID``, so our workers and the app's own
programs never speak for the service.  ``READY=1`` comes once every worker
of the first set has loaded the app (never at bind time: an app that cannot
load never said it), and again after each reload, done, refused or failed,
since the old workers serve on.  A socket that is missing or refuses is
logged once and changes nothing else: telling systemd is never a reason to
stop serving.  ``WATCHDOG=1`` is sent from the master's loop every half
``WATCHDOG_USEC`` (systemd's ``WatchdogSec=``), so a hung master is restarted.

    notify = Notify.from_environ()        # once, before any fork
    notify.serving(ready=2, loading=0, wanted=2)   # READY=1, MAINPID=..., STATUS=serving, 2 workers
    notify.reloading()                    # RELOADING=1, MONOTONIC_USEC=...
    notify.stopping("graceful stop")      # STOPPING=1
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, MutableMapping

from ..errors import ConfigError

__all__ = ["Notify"]

log = logging.getLogger("wsgistack.server")

_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notify:
    """The service manager's notification socket, or nothing to tell (``address`` None).

    ``watchdog``: seconds between two ``WATCHDOG=1`` (half of ``WATCHDOG_USEC``), or 0.
    ``clock``: the monotonic clock, read for the watchdog and ``MONOTONIC_USEC``.
    """

    def __init__(
        self,
        address: str | bytes | None,
        *,
        watchdog: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.address = address
        #: The address as systemd named it, for the log.
        self.name = address if isinstance(address, str) else f"@{(address or b'')[1:].decode()}"
        self.watchdog_every = watchdog if address is not None else 0.0
        self._clock = clock
        self._pinged = clock()
        self._ready = False  # READY=1 was said: the service runs
        self._reloading = False  # RELOADING=1 was said, READY=1 not yet again
        self._note = ""  # how the reload ended, for the STATUS of the READY after it
        self._status = ""
        self._stopping = False
        self._failed = False  # the first failure to send was logged
        #: Also told how many workers run (ready or loading), on each ``serving``
        #: call: the StatsD worker gauge (``statsd.master_metrics``).
        self.on_workers: Callable[[int], None] | None = None

    @classmethod
    def from_environ(
        cls, environ: MutableMapping[str, str] | None = None, pid: int | None = None
    ) -> Notify:
        """What systemd asked of this process (``pid``), with the variables removed.

        An unsupported address (not ``/path`` nor ``@name``) is logged and
        ignored; a ``WATCHDOG_USEC`` that is not a number fails naming it.  A
        ``WATCHDOG_PID`` of another process is not our watchdog.
        """
        environ = os.environ if environ is None else environ
        named, usec, watched = (environ.pop(name, None) for name in _VARIABLES)
        address: str | bytes | None = None
        if named and named[0] == "@":
            address = b"\0" + named[1:].encode()
        elif named and named[0] == "/":
            address = named
        elif named:
            log.warning(
                "NOTIFY_SOCKET %r: not a socket path nor @name; systemd is told nothing", named
            )
        every = 0.0
        if usec is not None:
            if not (usec.isascii() and usec.isdigit()) or int(usec) == 0:
                raise ConfigError(f"WATCHDOG_USEC (the environment): {usec!r} is not microseconds")
            if watched is None or watched == str(os.getpid() if pid is None else pid):
                every = int(usec) / 2e6  # sd_watchdog_enabled(3): notify within half of it
        return cls(address, watchdog=every)

    @property
    def enabled(self) -> bool:
        """There is a service manager to tell."""
        return self.address is not None

    # -- the states ----------------------------------------------------------------------
    def serving(self, ready: int, loading: int, wanted: int) -> None:
        """The master serves with ``ready`` workers, ``loading`` more; ``wanted`` is --workers.

        Called on each turn of the master's loop outside a reload or a stop.
        The first ``READY=1`` waits for the whole first set (or for those that
        could not load to be given up on); after a reload the first call says
        ``READY=1`` again.  Otherwise only a changed ``STATUS=`` is sent.
        """
        if self.on_workers is not None:
            self.on_workers(ready + loading)
        if self._stopping or self.address is None:
            return
        status = f"serving, {ready} worker{'' if ready == 1 else 's'}"
        if ready < wanted:
            status = f"serving, {ready} of {wanted} workers"
            if loading:
                status += f" ({loading} loading)"
        if not self._ready:
            if ready and not loading:
                self._ready = True
                self._send("READY=1", f"MAINPID={os.getpid()}", f"STATUS={status}")
        elif self._reloading:
            self._reloading = False
            self._send("READY=1", f"STATUS={status}{self._note}")
        elif status != self._status:
            self._send(f"STATUS={status}")
        else:
            return
        self._status = status  # without the note: a STATUS is sent when the workers change

    def in_process(self) -> None:
        """The ``--workers 0`` process has loaded the app and listens: ``READY=1``.

        Not once a stop has begun (a signal that came while the app loaded).
        """
        if self._stopping:
            return
        self._ready = True
        self._send("READY=1", f"MAINPID={os.getpid()}", "STATUS=serving, in process (--workers 0)")

    def reloading(self) -> None:
        """A reload begins (SIGHUP): ``RELOADING=1``, until ``serving`` says ``READY=1``.

        Before the first ``READY=1`` there is nothing to reload, in systemd's view.
        """
        if self._ready and not self._stopping:
            self._reloading = True
            self._note = ""
            usec = int(self._clock() * 1_000_000)  # CLOCK_MONOTONIC, as Type=notify-reload asks
            self._send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading")

    def reload_ended(self, how: str) -> None:
        """The reload was refused or failed (``how``): the next ``READY=1``'s status says so."""
        self._note = f"; {how}"

    def stopping(self, how: str) -> None:
        """A stop begins: ``STOPPING=1`` (once; a quicker stop after it changes nothing)."""
        if not self._stopping:
            self._stopping = True
            self._send("STOPPING=1", f"STATUS=stopping ({how})")

    def beat(self, draining: bool = False) -> None:
        """``WATCHDOG=1`` if half the watchdog's interval has passed (cheap otherwise).

        ``draining`` is the worker's heartbeat signature (``--workers 0`` calls
        this from its loop); draining or not, the loop turns.
        """
        if self.watchdog_every and self._clock() - self._pinged >= self.watchdog_every:
            self._pinged = self._clock()
            self._send("WATCHDOG=1")

    # -- the socket ----------------------------------------------------------------------
    def _send(self, *lines: str) -> None:
        """One datagram; a failure is logged the first time only, and never raised."""
        if self.address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)  # a full queue of systemd's must not hold the master
                sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning(
                    "NOTIFY_SOCKET %s: cannot tell systemd %s: %s; serving on"
                    " (said once: later failures are not logged)",
                    self.name,
                    lines[0],
                    exc.strerror or exc,
                )
