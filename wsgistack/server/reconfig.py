"""SIGHUP's configuration: the files read again, then the listeners it needs, and what changed.

Rules: a hangup re-reads the configuration the server started from (the CLI's
``--config``/``--paste`` file under its flags) as gunicorn's HUP does.  Nothing
is applied until every step that can fail has succeeded (the files parse, the
options are valid, the new addresses bind, the pid file and the access log can
be written, the logging section applies): a bad edit leaves the running server
exactly as it was.  A changed ``env`` is set just before the logging section
applies (which may read it, as at start) and put back if that fails
(``processenv.py``).  If the new workers then cannot load the app, the master
goes back to the configuration the old workers run with (``reloadbook.py``'s
``Serving``, ``Server._restore``): the env, the listeners (those opened for
the reload closed, those it dropped kept), the pid file and the worker count;
the logging the reload applied stays, as it cannot be undone.
An address listed before and after keeps its socket, so its port (also one
picked with port 0) and its queued connections stay; only the addresses that
are new are bound, and those no longer listed are closed by the master once
the workers that hold them have left; one listed again before that takes
its held socket back (``Dropped.held``), as binding it anew would fail, and
gives it back to be held again if that reload fails or is replaced.

    again = Reread(config, "stack.toml", apply_logging=lambda: None)
    dropped = Dropped()                               # in the master
    listeners, opened = keep_or_open(
        server.config, again.config, server.listeners, dropped.closed(), dropped.held()
    )
    log.info("%s", "; ".join(changes(server.config, again.config)))
    dropped.take_back(listeners)                      # listed again: lent to the reload
    dropped.hold(zip(server.config.bind, server.listeners), listeners)
    dropped.release(holding=workers.holding)  # each turn: closed once no worker has a copy
    dropped.settle()                  # the reload is done: the lent ones are its own
    given = dropped.go_back(old_listeners)  # it failed: the old ones keep theirs, lent held again
"""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections.abc import Callable, Collection, Iterable

from ..errors import ConfigError
from .bind import Bind
from .config import ServerConfig
from .listener import (
    among,
    close_listeners,
    open_listeners,
    set_socket_mode,
    umask_mode,
    unopen,
)
from .processenv import env_changes

__all__ = ["Dropped", "Reread", "changes", "check_reload", "keep_or_open", "retune"]

log = logging.getLogger("wsgistack.server")


@dataclasses.dataclass(frozen=True)
class Reread:
    """A configuration read again on SIGHUP, checked but not applied yet.

    ``source`` names the file(s) for the log; ``apply_logging`` applies the
    logging they set (an ini's ``[loggers]``, ``log_level``), last, since it
    cannot be undone; a ``ConfigError`` from it still refuses the reload.
    """

    config: ServerConfig
    source: str
    apply_logging: Callable[[], None]


_ACCOUNT = "the workers' user, group, umask and directory are set at start"
_PROCESS = "the master's import path and error log are set at start"
#: Options a reload cannot change, and why: the files the master made are the
#: old user's; what the master set in its own process stays there (``env``
#: can change: ``processenv.py``; a module imported from the old path would
#: stay imported, so a new ``pythonpath`` is refused, where gunicorn ignores it).
_AT_START = {
    "user": _ACCOUNT,
    "group": _ACCOUNT,
    "umask": _ACCOUNT,
    "chdir": _ACCOUNT,
    "pythonpath": _PROCESS,
    "error_log": _PROCESS,
}


def check_reload(old: ServerConfig, config: ServerConfig, source: str) -> None:
    """Refuse what a running master cannot become: no master, --reload or --preload toggled, ...

    The watchers' pipe to the master exists from start-up or not at all; the
    app loaded in the master (--preload) is loaded at start-up or never.
    """
    if not config.workers:
        raise ConfigError(
            f"{source}: workers: 0 serves without a master, which a reload cannot"
            " turn into; restart the server for it"
        )
    for name, why in _AT_START.items():
        if getattr(config, name) != getattr(old, name):
            raise ConfigError(f"{source}: {name}: {why}: changing it takes a restart of the server")
    if (config.log_config is None) != (old.log_config is None):
        # Our handler or the file's: the one to take away is not known then.
        raise ConfigError(
            f"{source}: log_config: turning it {'off' if config.log_config is None else 'on'}"
            " takes a restart of the server (editing the file is read again)"
        )
    if config.reload != old.reload:
        raise ConfigError(
            f"{source}: reload: turning --reload {'on' if config.reload else 'off'} takes"
            " a restart of the server"
        )
    if config.preload != old.preload:
        raise ConfigError(
            f"{source}: preload: turning --preload {'on' if config.preload else 'off'} takes"
            " a restart of the server"
        )


def _address(bind: Bind) -> tuple[str, str, int, str, int]:
    """Where a bind listens; its protocol is the workers' business, not the socket's."""
    return (bind.kind, bind.host, bind.port, bind.path, bind.fd)


def keep_or_open(
    old: ServerConfig,
    new: ServerConfig,
    listeners: list[socket.socket],
    dropped_fds: Collection[int] = (),
    held: Iterable[tuple[Bind, socket.socket]] = (),
) -> tuple[list[socket.socket], list[socket.socket]]:
    """The listeners for ``new.bind``, in its order, and those of them opened here.

    An address in ``old.bind`` keeps its socket from ``listeners`` (same
    order as ``old.bind``), and one an earlier reload dropped that the master
    still ``held`` (``Dropped.held``) takes that socket back: binding it again
    would fail while it is open.  Any other is bound now (an ``fd://N``
    adopted first, as at start).  If one fails, those opened here are undone
    (``unopen``) and the ``ConfigError`` names the address.  ``dropped_fds``:
    the inherited descriptors an earlier reload dropped and the master closed
    (``Dropped.closed``), so the number no longer names that socket and is refused.
    """
    pairs = [*zip(old.bind, listeners, strict=True), *held]
    kept = {_address(bind): sock for bind, sock in pairs}
    ours = {sock.fileno(): bind for bind, sock in pairs}
    result: dict[int, socket.socket] = {}
    opened: list[socket.socket] = []
    order = sorted(range(len(new.bind)), key=lambda index: new.bind[index].kind != "fd")
    try:
        for index in order:
            bind = new.bind[index]
            sock = kept.pop(_address(bind), None)
            if sock is None:
                _check_fd(bind, ours, dropped_fds)
                sock = open_listeners((bind,), new.backlog, new.socket_mode, new.account())[0]
                opened.append(sock)
            result[index] = sock
    except BaseException:
        unopen(opened)
        raise
    return [result[index] for index in range(len(new.bind))], opened


def _check_fd(bind: Bind, ours: dict[int, Bind], dropped_fds: Collection[int]) -> None:
    """Refuse an ``fd://N`` that names no inherited socket any more, or one of our own."""
    if bind.kind != "fd":
        return
    if bind.fd in dropped_fds:
        raise ConfigError(
            f"bind: {bind}: an earlier reload dropped this inherited socket, and the server"
            " closed its copy; it cannot be taken back: restart the server to serve it again"
        )
    if bind.fd in ours:
        raise ConfigError(
            f"bind: {bind}: descriptor {bind.fd} is this server's own listener for"
            f" {ours[bind.fd]}, not an inherited socket"
        )


def changes(old: ServerConfig, new: ServerConfig) -> list[str]:
    """``option old -> new`` for each option that differs, in ``ServerConfig``'s order.

    ``env`` by its keys only: its values are often secrets.
    """
    said = []
    for field in dataclasses.fields(ServerConfig):
        before, after = getattr(old, field.name), getattr(new, field.name)
        if field.name == "env":
            if keys := env_changes(before, after):
                said.append(f"env {keys}")
        elif before != after:
            said.append(f"{field.name} {_shown(field.name, before)} -> {_shown(field.name, after)}")
    return said


def _shown(name: str, value: object) -> str:
    if name == "bind" and isinstance(value, tuple):
        return ",".join(str(bind) for bind in value)
    if name == "socket_mode" and isinstance(value, int):
        return f"{value:o}"
    return str(value)


def retune(sock: socket.socket, bind: Bind, old: ServerConfig | None, new: ServerConfig) -> None:
    """Give a listener kept across a reload ``new``'s backlog and socket mode, where they differ.

    ``old``: the configuration it was tuned for; None when that is not known
    (a socket a reload dropped, taken back), and both are applied.  A socket
    mode turned off is the one the process umask gives, as a fresh bind would.
    """
    if bind.kind == "fd":
        return  # an inherited socket's backlog and mode are its owner's: ListenQueueBacklog=
    if old is None or new.backlog != old.backlog:
        sock.listen(new.backlog)  # Linux applies a new backlog to a listening socket
    if bind.kind == "unix" and (old is None or new.socket_mode != old.socket_mode):
        mode = umask_mode() if new.socket_mode is None else new.socket_mode
        try:
            set_socket_mode(sock, mode)
        except OSError as exc:
            log.warning("master: socket_mode not applied to %s: %s", bind, exc.strerror)


@dataclasses.dataclass(eq=False)
class _Held:
    """A listener a reload dropped, with the bind it was opened for."""

    bind: Bind
    sock: socket.socket


class Dropped:
    """The listeners reloads dropped, held by the master until the workers holding them leave.

    Until then the old workers serve the connections already queued on them,
    and a reload that lists the address again takes the socket back.  It is
    lent to that reload until it is done (``settle``): one that fails or is
    replaced dropping it again gives it back (``go_back``, ``hold``), to be
    held for its old workers still, and for those forked while it was lent,
    never closed under them as a socket that reload had opened.  Who holds a
    copy is the workers' table's to say (``Roster.holding``): those forked
    while the master listed it, not every worker still draining.
    """

    def __init__(self) -> None:
        self._held: list[_Held] = []
        self._lent: list[_Held] = []  # taken back by the reload under way
        self._closed: set[int] = set()  # the inherited descriptors (fd://N) closed here

    def hold(self, old: Iterable[tuple[Bind, socket.socket]], new: list[socket.socket]) -> None:
        """Keep those of ``old`` (bind, socket) that ``new`` no longer lists.

        One lent to the reload ``new`` replaces is held again.
        """
        for bind, sock in old:
            if sock.fileno() == -1 or among(sock, new) or _find(sock, self._held):
                continue
            lent = _find(sock, self._lent)
            if lent is not None:
                self._lent.remove(lent)
            self._held.append(lent or _Held(bind, sock))

    def held(self) -> list[tuple[Bind, socket.socket]]:
        """Each listener held now, with the bind it was opened for (``keep_or_open`` takes them)."""
        return [(each.bind, each.sock) for each in self._held]

    def closed(self) -> frozenset[int]:
        """The inherited descriptors closed here: their numbers name that socket no more.

        ``keep_or_open`` refuses them.  Only a held one is ever closed while
        the master serves: any other inherited socket a reload lets go of
        (``unopen``) stays open as it came, and can be adopted again.
        """
        return frozenset(self._closed)

    def lent(self) -> list[socket.socket]:
        """The listeners the reload under way took back: not its own to close."""
        return [each.sock for each in self._lent]

    def take_back(self, listeners: Iterable[socket.socket]) -> None:
        """Lend those of ``listeners`` held to the reload that lists them again."""
        back = list(listeners)
        self._lent += [each for each in self._held if among(each.sock, back)]
        self._held = [each for each in self._held if not among(each.sock, back)]

    def settle(self) -> None:
        """The reload under way is done: the listeners lent to it are its own now."""
        self._lent = []

    def go_back(self, serving: Iterable[socket.socket]) -> list[tuple[Bind, socket.socket]]:
        """The reload under way failed: the old workers' ``serving`` listeners are theirs again.

        Those it dropped are held no more; those lent to it that ``serving``
        does not list are held again, and returned (bind, socket).
        """
        kept = list(serving)
        given = [each for each in self._lent if not among(each.sock, kept)]
        self._held = [each for each in self._held if not among(each.sock, kept)] + given
        self._lent = []
        return [(each.bind, each.sock) for each in given]

    def release(self, holding: Callable[[socket.socket], Collection[int]]) -> None:
        """Close each held listener once ``holding(sock)``, the workers with a copy, is empty."""
        gone = [each for each in self._held if not holding(each.sock)]
        if gone:
            self._close(gone)
            self._held = [each for each in self._held if each not in gone]  # by identity

    def close(self) -> None:
        """Close the held ones now: the master stops, or a new worker lets go of its copies."""
        self._close(self._held)
        self._held = []

    def _close(self, entries: list[_Held]) -> None:
        self._closed |= {each.bind.fd for each in entries if each.bind.kind == "fd"}
        close_listeners([each.sock for each in entries])


def _find(sock: socket.socket, entries: list[_Held]) -> _Held | None:
    return next((each for each in entries if each.sock is sock), None)
