"""Listening sockets for the configured binds (TCP v4/v6 and unix), bound before serving.

An ``fd://N`` bind adopts a listening socket the process inherited (from
systemd, see ``activation.py``, or a supervisor) instead: it is checked, never
bound, listened on or chmod-ed again, and its unix socket file (if any) is
never removed, since it is not ours: systemd keeps it across our restarts.

sockets = open_listeners(config.bind, backlog=2048)
addresses = [describe_socket(sock) for sock in sockets]
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
import sys
from collections.abc import Callable, Iterable

from ..errors import ConfigError
from .account import Account
from .bind import Bind

__all__ = [
    "ACCEPT_PAUSE",
    "AcceptPause",
    "about_one_connection",
    "accept",
    "among",
    "close_listeners",
    "describe_listener",
    "describe_socket",
    "open_listeners",
    "set_socket_mode",
    "umask_mode",
    "unopen",
]

log = logging.getLogger("wsgistack.server")

#: How long listeners rest after accept() ran out of descriptors or memory.
ACCEPT_PAUSE = 0.5

#: Linux copies TCP_NODELAY from a listener to the sockets it accepts, which
#: spares a system call per connection; elsewhere ``accept`` sets it.
_NODELAY_INHERITED = sys.platform.startswith("linux")


#: accept() errors about the connection it took, not the listener: accept(2)
#: asks to treat the network errors Linux hands on from it like EAGAIN, and
#: EPERM is a firewall refusing that one peer.
_CONNECTION_ERRORS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNABORTED",
        "ECONNRESET",
        "EPERM",
        "EPROTO",
        "ENETDOWN",
        "ENETUNREACH",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "EHOSTUNREACH",
        "ENONET",
        "EOPNOTSUPP",
        "ETIMEDOUT",
    )
    if hasattr(errno, name)
)

#: uwsgi binds: how long the kernel holds a connection that has sent nothing
#: before handing it over anyway (Linux ``TCP_DEFER_ACCEPT``).
DEFER_ACCEPT_SECONDS = 5

#: The unix socket files this process created: path -> (st_dev, st_ino, pid), so
#: closing removes a file only while it is still ours, and only in the process
#: that made it (a forked worker's copy of this table names its master).
_UNIX_FILES: dict[str, tuple[int, int, int]] = {}


def _listening(path: str) -> bool:
    """Whether a server answers on the unix socket at ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except TimeoutError:
            return True  # accepting, but busy
        except OSError:
            return False  # refused: nobody listens, the file is left over
    return True


def _clear_stale(bind: Bind) -> None:
    """Remove a socket file a previous run left; refuse one a live server uses."""
    try:
        if not stat.S_ISSOCK(os.stat(bind.path).st_mode):
            return  # not a socket: bind() fails and says so
    except FileNotFoundError:
        return
    if _listening(bind.path):
        raise ConfigError(f"bind: {bind} is in use by a running server")
    try:
        os.unlink(bind.path)
    except OSError as exc:
        raise ConfigError(f"bind: cannot remove the stale {bind}: {exc.strerror}") from None


def _bind_with_mode(sock: socket.socket, path: str, mode: int) -> None:
    """Create the socket file with exactly ``mode``, before anyone can connect.

    bind() creates the file with the mode less the umask, so the umask is the
    mode's complement for that one call.  A chmod by path afterwards would
    follow whatever someone able to write to the directory put there meanwhile
    (a symlink to a file of ours).  The umask is the process's: a file another
    thread creates in that instant gets no more than ``mode`` allows.
    """
    previous = os.umask(0o777 & ~mode)
    try:
        sock.bind(path)
    finally:
        os.umask(previous)


def umask_mode() -> int:
    """The mode bind() gives a unix socket file under the process umask (``socket_mode`` off).

    Read by setting the umask and putting it straight back, as ``_bind_with_mode`` does.
    """
    umask = os.umask(0o077)
    os.umask(umask)
    return 0o777 & ~umask


def _tcp_options(sock: socket.socket, bind: Bind) -> None:
    """What a TCP listener of ours is set to before it accepts (its connections inherit it)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if bind.protocol == "uwsgi" and hasattr(socket, "TCP_DEFER_ACCEPT"):
        # nginx sends its packet as soon as it connects: have the kernel hand
        # over connections only once it has, as uWSGI does.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, DEFER_ACCEPT_SECONDS)


class InheritedSocket(socket.socket):
    """A listener adopted from a descriptor this process was given (``fd://N``).

    Closing it closes our copy only: whoever passed it (systemd) keeps it.
    """


def _adopt(bind: Bind) -> socket.socket:
    """The listening socket inherited as descriptor ``bind.fd``; a ``ConfigError`` says why not.

    Refused rather than repaired: a socket bound but not listening (gunicorn
    would listen() on it) or one not even bound (listen() would pick a random
    port) is a mistake upstream, and an accepted connection (a socket unit
    with ``Accept=yes``) is no listener at all.
    """
    try:
        if not stat.S_ISSOCK(os.fstat(bind.fd).st_mode):
            raise ConfigError(f"bind: {bind}: descriptor {bind.fd} is not a socket")
    except OSError:
        raise ConfigError(
            f"bind: {bind}: descriptor {bind.fd} is not open (no socket was passed as {bind.fd})"
        ) from None
    sock = InheritedSocket(fileno=bind.fd)  # its family and type, read from the socket itself
    problem = ""
    if sock.family not in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
        problem = f"is a {sock.family.name} socket, not TCP or unix"
    elif sock.type != socket.SOCK_STREAM:
        problem = f"is a {sock.type.name} socket, not a stream (SOCK_STREAM) one"
    elif not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        problem = (
            "is not listening (a connection, or a socket never listen()ed on;"
            " a systemd socket unit needs Accept=no)"
        )
    if problem:
        sock.detach()  # still the passer's: refused, not closed
        raise ConfigError(f"bind: {bind}: descriptor {bind.fd} {problem}")
    # As sd_listen_fds(3) does: the app's own programs are not handed our listener.
    sock.set_inheritable(False)
    if sock.family != socket.AF_UNIX:
        _tcp_options(sock, bind)
    sock.setblocking(False)
    return sock


def _open(
    bind: Bind, backlog: int, mode: int | None = None, owner: Account | None = None
) -> socket.socket:
    if bind.kind == "fd":
        return _adopt(bind)
    if bind.kind == "unix":
        _clear_stale(bind)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address: str | tuple[str, int] = bind.path
    else:
        family = socket.AF_INET6 if ":" in bind.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        _tcp_options(sock, bind)
        address = (bind.host, bind.port)
    try:
        if mode is not None and bind.kind == "unix":
            _bind_with_mode(sock, bind.path, mode)
        else:
            sock.bind(address)
        if owner is not None and bind.kind == "unix":
            owner.give_socket(bind.path)  # before anyone can connect, as the mode
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"bind: cannot listen on {bind}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    if bind.kind == "unix":
        info = os.stat(bind.path)
        _UNIX_FILES[bind.path] = (info.st_dev, info.st_ino, os.getpid())
    return sock


def open_listeners(
    binds: tuple[Bind, ...],
    backlog: int,
    socket_mode: int | None = None,
    owner: Account | None = None,
) -> list[socket.socket]:
    """Bind and listen on every address; on any failure close those already open.

    ``socket_mode`` (e.g. ``0o660``): the permissions of the unix socket files
    bound here, set before they listen; ``None`` leaves them to the process
    umask.  Inherited sockets (``fd://N``) are adopted first, so no socket
    opened here can take a descriptor number a later ``fd://`` names.
    ``owner``: the account (``--user``/``--group``) the unix socket files are
    given to, as gunicorn does, so that the group's members (nginx) can connect.
    """
    opened: dict[int, socket.socket] = {}
    order = sorted(range(len(binds)), key=lambda index: binds[index].kind != "fd")
    try:
        for index in order:
            opened[index] = _open(binds[index], backlog, socket_mode, owner)
    except BaseException:
        unopen(list(opened.values()))
        raise
    return [opened[index] for index in range(len(binds))]


def unopen(sockets: list[socket.socket]) -> None:
    """Undo ``open_listeners`` for a start or reload that fails after all.

    What was bound here is closed (its unix socket file removed); an
    inherited socket is let go of, its descriptor left open as it came, so a
    corrected reload can still adopt it.
    """
    for sock in sockets:
        if isinstance(sock, InheritedSocket):
            sock.detach()
    close_listeners([sock for sock in sockets if sock.fileno() != -1])


def set_socket_mode(sock: socket.socket, mode: int) -> None:
    """Give a listening unix socket's file ``mode``, if the file is still the one we made.

    Through a descriptor of the file itself (``O_PATH``, no symlink followed),
    checked to be our socket, so a link someone put at the path meanwhile is
    never followed (see ``_bind_with_mode``).  An ``OSError`` says why not.
    """
    path = sock.getsockname()
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW)
    try:
        info = os.fstat(fd)
        if _UNIX_FILES.get(path) != (info.st_dev, info.st_ino, os.getpid()):
            raise OSError(errno.ESTALE, "the file at that path is not this server's socket")
        os.chmod(f"/proc/self/fd/{fd}", mode)  # Linux: the file the descriptor names
    finally:
        os.close(fd)


def among(sock: socket.socket, listeners: Iterable[socket.socket]) -> bool:
    """Whether ``sock`` is one of ``listeners`` (the same object: sockets have no equality)."""
    return any(sock is each for each in listeners)


def close_listeners(sockets: list[socket.socket]) -> None:
    """Close listeners and remove their unix socket files, if still the ones we made.

    An inherited socket's file was never ours (``_UNIX_FILES`` has no entry
    for it): systemd made it, and keeps it for our next start.  Another
    server may have replaced the file since (after someone removed ours);
    its file is left alone.  So is the file in a forked worker that
    lets go of its copies: the master (or the new workers of a reload)
    still serves on it, and removes it when it stops.
    """
    for sock in sockets:
        if sock.fileno() == -1:
            continue  # closed already (a stop closes them as it begins)
        if sock.family == socket.AF_UNIX:
            path = sock.getsockname()
            ours = _UNIX_FILES.pop(path, None)
            # None: not a file we made (an inherited socket's, or an abstract
            # name, "\0..." with no file at all, which os.stat() would refuse).
            if ours is not None:
                with contextlib.suppress(OSError):
                    info = os.stat(path)
                    if ours == (info.st_dev, info.st_ino, os.getpid()):
                        os.unlink(path)
        sock.close()


def describe_socket(sock: socket.socket) -> tuple[str, int]:
    """(host, port) of a listening socket; for unix sockets (path, 0).

    An abstract unix socket (systemd's ``ListenStream=@name``, passed to us)
    has a name that starts with a NUL byte: it is written ``@name``, as
    systemd and ``ss`` write it.
    """
    name = sock.getsockname()
    if isinstance(name, str | bytes):
        path = os.fsdecode(name)
        return ("@" + path[1:] if path[:1] == "\0" else path, 0)
    return (name[0], name[1])


def describe_listener(sock: socket.socket, bind: Bind, tls: bool = False) -> str:
    """Where a listener serves, for the ``listening on`` line: ``http://127.0.0.1:8000``."""
    host, port = describe_socket(sock)
    scheme = "uwsgi://" if bind.protocol == "uwsgi" else "https://" if tls else "http://"
    if sock.family == socket.AF_UNIX:
        return f"{scheme}unix:{host}"
    return f"{scheme}[{host}]:{port}" if ":" in host else f"{scheme}{host}:{port}"


def accept(
    listener: socket.socket, family: int | None = None, early: bool = True
) -> tuple[socket.socket, object, bytes] | None:
    """Accept one connection (non-blocking listener); None when none is waiting.

    Also returns what the client has already sent (b"" if nothing yet): a
    request that arrived with the handshake is served without a trip through
    the poller.  The socket is left blocking, without a Python timeout:
    ``Connection`` bounds its waits (see ``Connection.sendall``).

    ``family`` is the listener's, as an int, from a caller that accepts often:
    ``socket.accept()`` converts the listener's family and type to enums on
    every call, which is a third of its cost on the uwsgi path, where each
    request is a new connection.  ``early=False`` reads nothing: a TLS
    handshake's bytes are OpenSSL's to read.
    """
    try:
        fd, peer = listener._accept()  # type: ignore[attr-defined]
    except (BlockingIOError, InterruptedError, ConnectionAbortedError):
        return None
    sock = socket.socket(family or listener.family, socket.SOCK_STREAM, 0, fd)
    data = b""
    if early:
        try:
            data = sock.recv(65536, socket.MSG_DONTWAIT)
        except OSError:
            data = b""  # nothing yet (EAGAIN), or a reset the poller will report
    if not _NODELAY_INHERITED and sock.family != socket.AF_UNIX:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock, peer, data


def about_one_connection(exc: OSError) -> bool:
    """Whether an error from ``accept`` concerns the connection it took, not the listener.

    Such an error skips that connection; any other (out of descriptors, a
    listener shut down) would fail again at once and must pause accepting.
    """
    return exc.errno in _CONNECTION_ERRORS


class AcceptPause:
    """A worker's answer to a failed accept(): how long to rest, and a warning now and then.

    One per worker, shared by whatever accepts in it (the loop, or a
    uwsgi-only worker's threads), so the warning is throttled for all of them.
    """

    __slots__ = ("_clock", "_warned")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._warned = -60.0

    def after(self, exc: OSError) -> float:
        """How long accepting must pause (0: not at all): any error not about the one connection.

        Out of descriptors or memory, the pending connection stays in the
        backlog and the listener stays readable, so retrying at once would
        spin; as nginx does, accepting rests for ``ACCEPT_PAUSE`` while open
        connections finish and free their descriptors.  An error of the
        listener itself (EINVAL once it was shut down) would spin for ever:
        it rests too, and the warning says why.  Errors about one connection
        (reset, or a network error Linux hands on from it) just skip it.
        """
        if about_one_connection(exc):
            log.info("accept failed: %s", exc)
            return 0.0
        now = self._clock()
        if now - self._warned >= 30.0:
            self._warned = now
            log.warning("accept failed (%s): pausing accepts for %.1f s", exc, ACCEPT_PAUSE)
        return ACCEPT_PAUSE
