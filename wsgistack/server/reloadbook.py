"""A reload's bookkeeping in the master: the configuration it takes, and the one it may go back to.

Rules: a SIGHUP reload takes what the files now hold (``Server._reconfigure``,
``reconfig.py``) before any new worker starts; one that cannot apply is
logged and changes nothing.  The first reload of a run remembers what the
set serving runs with (``Serving``): its configuration, listeners and count.
A reload that replaces one under way keeps that memory (the set serving is
still the same) and undoes the sockets only the replaced attempt opened.
If the new workers cannot load the app, the master goes back to it
(``go_back``, with ``Server._restore`` for what lies outside the master),
so the workers it respawns and the next reload start from there; once the
new set is ready, the memory is dropped (``done``).  The listeners reloads
dropped are held here too (``Dropped``), until the workers holding them leave.

    book = ReloadBook(server._reconfigure, server._restore, notify)
    taken = book.read_again(config, listeners)   # None: refused, logged
    book.keep(Serving(old_config, tuple(old_listeners), target))
    book.done()                                  # the new set is ready
    config, listeners, target = book.go_back()   # it cannot load the app
"""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections.abc import Callable

from ..errors import ConfigError
from .bind import Bind
from .config import ServerConfig
from .listener import among, unopen
from .notify import Notify
from .reconfig import Dropped

__all__ = ["ReloadBook", "Serving"]

log = logging.getLogger("wsgistack.server")

#: SIGHUP's new configuration and listeners (``Server._reconfigure``), given the
#: listeners reloads dropped that the master still holds, and the inherited
#: descriptors it closed (``Dropped.closed``).
Reconfigure = Callable[
    [list[tuple[Bind, socket.socket]], frozenset[int]],
    tuple[ServerConfig, list[socket.socket]],
]
#: Puts back what ``Reconfigure`` changed outside the master (``Server._restore``),
#: given the listeners the failed reload took back and gave back (held again);
#: returns the configuration as it now is (a pid file that could not move back).
Restore = Callable[
    [ServerConfig, list[socket.socket], list[tuple[Bind, socket.socket]]], ServerConfig
]


@dataclasses.dataclass(frozen=True)
class Serving:
    """What the set serving when a reload began runs with: a failed reload goes back to it."""

    config: ServerConfig
    listeners: tuple[socket.socket, ...]
    target: int  # how many of it to keep (SIGTTIN / SIGTTOU during the reload count too)


class ReloadBook:
    """The master's record of its reloads: what one takes, what it goes back to, what it dropped.

    ``reconfigure`` (None: the options stay) and ``restore`` (None: nothing
    outside the master to put back) are the server's; ``notify`` tells
    systemd a refused reload has ended.
    """

    def __init__(
        self, reconfigure: Reconfigure | None, restore: Restore | None, notify: Notify
    ) -> None:
        self._reconfigure = reconfigure
        self._restore = restore
        self._notify = notify
        self.dropped = Dropped()  # listeners a reload dropped, still held
        self.serving: Serving | None = None  # while reloading: what the old set runs with

    def read_again(
        self, config: ServerConfig, listeners: list[socket.socket]
    ) -> tuple[ServerConfig, list[socket.socket]] | None:
        """The configuration and listeners the files now hold; None (logged) if they cannot apply.

        ``config`` and ``listeners`` are what the master runs with now: the
        set serving's, or those of the reload under way this one replaces.
        """
        if self._reconfigure is None:
            return config, listeners
        try:
            new_config, new_listeners = self._reconfigure(
                self.dropped.held(), self.dropped.closed()
            )
        except ConfigError as exc:
            log.error("master: reload refused, the old configuration and workers serve on: %s", exc)
            self._notify.reload_ended("reload refused, see the log")
            return None
        if self.serving is not None:
            # A reload replaces one under way: the sockets only that attempt
            # opened are undone now (its workers, the only others holding
            # them, are told to stop), as a failed one's are: closed, and an
            # inherited one let go of, so a later reload can adopt it again;
            # those it took back from the held ones are not its own (``hold`` below).
            kept = (*new_listeners, *self.serving.listeners, *self.dropped.lent())
            unopen([sock for sock in listeners if not among(sock, kept)])
        self.dropped.take_back(new_listeners)  # an address dropped, listed again: its socket, lent
        self.dropped.hold(zip(config.bind, listeners, strict=True), new_listeners)
        return new_config, new_listeners

    def keep(self, serving: Serving) -> None:
        """A reload begins while the set ``serving`` serves: what a failure goes back to."""
        self.serving = serving

    def resize(self, step: int) -> None:
        """SIGTTIN / SIGTTOU during a reload: the old set's count moves too (never below one)."""
        if self.serving is not None and self.serving.target + step >= 1:
            self.serving = dataclasses.replace(self.serving, target=self.serving.target + step)

    def done(self) -> None:
        """The new set is ready: nothing to go back to, and the sockets it took back are its own."""
        self.serving = None
        self.dropped.settle()

    def go_back(self) -> tuple[ServerConfig, list[socket.socket], int]:
        """The failed reload undone: the configuration, listeners and count the old set runs with.

        A worker respawned for it (a crash, --max-requests, SIGTTIN) gets its
        options, env and listeners, not the new ones with the old code; the
        count is its count, and the next reload is told against it.
        """
        assert self.serving is not None  # set while reloading
        serving, self.serving = self.serving, None
        listeners = list(serving.listeners)
        # The addresses it dropped are served again; those it took back are held again.
        given = self.dropped.go_back(listeners)
        config = serving.config
        if self._restore is not None:
            config = self._restore(config, listeners, given)  # closes those it opened
        return config, listeners, serving.target
