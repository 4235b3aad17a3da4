"""``--user`` and ``--group``: bind as root, run the app as an unprivileged account.

Rules (as gunicorn's): the master stays who it started as, so a SIGHUP can
still bind a privileged port and it can still create the files the workers
use; each worker switches after the fork and before it loads the app, so no
line of the app (its import included) runs as root.  The files a worker must
write are given to the account by the master: the unix socket files (so a
proxy in the group can connect as ``--socket-mode`` allows) and the access
log, created if missing at start, on SIGHUP and on SIGUSR1 before the workers
reopen it.

    account = Account.of("nobody", None)     # nobody's primary group
    account.give_file("/var/log/app.log")    # in the master
    account.switch()                         # in the worker, before the import
"""

from __future__ import annotations

import dataclasses
import grp
import logging
import os
import pwd
import stat
from typing import Any

from ..errors import ConfigError

__all__ = [
    "Account",
    "check_pid_file",
    "give_log",
    "give_log_to_reopen",
    "group_option",
    "user_option",
]

log = logging.getLogger("wsgistack.server")


def _id_or_name(value: Any, option: str) -> int | str:
    """A name, or a numeric id (an int, or the digits the command line gives)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value:
        return int(value) if value.isascii() and value.isdigit() else value
    raise ConfigError(f"{option}: {value!r} is not a name or a numeric id")


def user_option(value: Any) -> int | str | None:
    """``--user``: a user name or UID; a name must be in the user database."""
    if value is None:
        return None
    user = _id_or_name(value, "user")
    if isinstance(user, str):
        try:
            pwd.getpwnam(user)
        except KeyError:
            raise ConfigError(f"user: {user!r} is not a user of this system") from None
    return user


def group_option(value: Any) -> int | str | None:
    """``--group``: a group name or GID; a name must be in the group database."""
    if value is None:
        return None
    group = _id_or_name(value, "group")
    if isinstance(group, str):
        try:
            grp.getgrnam(group)
        except KeyError:
            raise ConfigError(f"group: {group!r} is not a group of this system") from None
    return group


@dataclasses.dataclass(frozen=True)
class Account:
    """Who the workers run as: ``uid``, ``gid``, and ``name`` for its supplementary groups."""

    uid: int
    gid: int
    name: str | None

    @classmethod
    def of(cls, user: int | str | None, group: int | str | None) -> Account | None:
        """The account ``--user``/``--group`` name; None when neither is given.

        Without ``--group``, the user's primary group.  A switch this process
        cannot make (it is not root) is refused here, once, rather than by
        every worker it would start.
        """
        if user is None and group is None:
            return None
        entry = None
        if user is not None:
            try:
                entry = pwd.getpwnam(user) if isinstance(user, str) else pwd.getpwuid(user)
            except KeyError:
                if group is None:
                    raise ConfigError(
                        f"user: {user!r} is not in the user database, so it has no primary"
                        " group: give group too"
                    ) from None
        uid = os.geteuid() if user is None else (entry.pw_uid if entry else int(user))
        if group is None:
            gid = entry.pw_gid if entry is not None else os.getegid()
        else:
            gid = grp.getgrnam(group).gr_gid if isinstance(group, str) else group
        account = cls(uid, gid, entry.pw_name if entry is not None else None)
        if os.geteuid() != 0 and (uid, gid) != (os.geteuid(), os.getegid()):
            option = "user" if uid != os.geteuid() else "group"
            raise ConfigError(
                f"{option}: switching the workers to {user if option == 'user' else group!r}"
                f" needs root, and this process runs as UID {os.geteuid()}"
                " (start it as root, or without user and group)"
            )
        return account

    def switch(self) -> None:
        """Become this account for good: groups first, while still allowed to set them.

        The supplementary groups are the user's (``initgroups``, as gunicorn
        does), or none but ``gid`` for a UID without a database entry: root's
        own groups never carry over.
        """
        if os.geteuid() == 0:
            if self.name is not None:
                os.initgroups(self.name, self.gid)
            else:
                os.setgroups([self.gid])
        os.setgid(self.gid)
        os.setuid(self.uid)

    def may_remove_from(self, directory: str) -> bool:
        """Whether the account may remove a file of root's from ``directory``.

        It must write and search the directory, by its owner, group or other
        bits (ACLs aside); a sticky one (``/tmp``) must be its own.
        """
        info = os.stat(directory)
        groups = {self.gid, *(os.getgrouplist(self.name, self.gid) if self.name else ())}
        if info.st_uid == self.uid:
            bits = info.st_mode >> 6
        elif info.st_gid in groups:
            bits = info.st_mode >> 3
        else:
            bits = info.st_mode
        if bits & 0o3 != 0o3:
            return False
        return not info.st_mode & stat.S_ISVTX or info.st_uid == self.uid

    def give_socket(self, path: str) -> None:
        """Give the unix socket file at ``path`` to the account (not a link put there)."""
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW)
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                raise OSError(f"{path} is no longer a socket")
            os.chown(f"/proc/self/fd/{fd}", self.uid, self.gid)  # the file the fd names
        finally:
            os.close(fd)

    def give_file(self, path: str) -> None:
        """Create the log file at ``path`` if missing, and give it to the account.

        Only a plain file with one name is given: the directory may be the
        account's, and a link it put there (to ``/etc/shadow``) must not be
        handed to it by root.
        """
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
        fd = os.open(path, flags | os.O_CLOEXEC, 0o666)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
                raise OSError(f"{path} is not a plain file with one name")
            if (info.st_uid, info.st_gid) != (self.uid, self.gid):
                os.fchown(fd, self.uid, self.gid)
        finally:
            os.close(fd)


def check_pid_file(path: str | None, account: Account | None) -> None:
    """With ``--workers 0``: refuse a pid file the process, once the account, could not remove.

    There is no master to stay root, and a file left behind names a PID the
    kernel hands out again: logrotate's ``kill -USR1 $(cat app.pid)`` would
    end whichever process has it then.  A directory that cannot be looked at
    is left for ``PidFile.create`` to name.
    """
    if path is None or account is None or os.geteuid() != 0 or account.uid == 0:
        return
    directory = os.path.dirname(os.path.abspath(path))
    try:
        removable = account.may_remove_from(directory)
    except OSError:
        return
    if not removable:
        who = account.name or f"UID {account.uid}"
        raise ConfigError(
            f"pid: {path}: with workers 0 the server runs as {who} once it has bound,"
            f" and {who} could not remove the file from {directory} at exit: use a"
            f" directory {who} may write (/run/app/, its own), or workers >= 1"
            " (the master stays root and removes it)"
        )


def give_log(path: str | None, account: Account | None, option: str = "access_log") -> None:
    """Have the log file at ``path`` exist and be ``account``'s, for its workers.

    A ``ConfigError`` naming ``option`` if it cannot be; nothing to do
    without an account or for standard output.
    """
    if account is None or path is None or path == "-":
        return
    try:
        account.give_file(path)
    except OSError as exc:
        raise ConfigError(
            f"{option}: cannot give {path!r} to the workers' user: {exc.strerror or exc}"
        ) from None


def give_log_to_reopen(
    path: str | None, account: Account | None, option: str = "access_log"
) -> None:
    """``give_log`` in the master on SIGUSR1, before the workers reopen the file by its name.

    Logrotate moved the old file away: the workers, no longer root, could not
    create a new one in a directory of root's.  A failure is logged; the
    workers then keep writing to the old file (``AccessLog.reopen``).
    """
    try:
        give_log(path, account, option)
    except ConfigError as exc:
        log.error("master: %s", exc)
