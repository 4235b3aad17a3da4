"""IPFilter: admit or refuse clients by address, for a whole site or under some paths.

The client is decided by :mod:`wsgistack.clientip`: ``REMOTE_ADDR``, or a
forwarded address only when the peer is a configured trusted proxy.  Lists
hold addresses and networks (IPv4, IPv6, IPv4-mapped), given inline or in
files (one entry a line, ``#`` comments) that are re-read when they change.
Lookups are O(log n): 100,000 networks cost within 2x of what 10 do.

    # /admin only from the office, behind our load balancers
    app = IPFilter(app, allow=["192.0.2.0/24"], paths=["/admin"],
                   trusted_proxies=["10.0.0.0/8"])

Rules, by ``precedence``:

- ``"deny"`` (default): a client in ``deny`` is refused; when ``allow`` is
  given, a client not in it is refused too.  ``allow`` is an allow list.
- ``"allow"``: ``allow`` holds exceptions to ``deny`` (like Apache's ``Order
  Deny,Allow`` or nginx's ``allow`` written before ``deny``): a client in
  ``deny`` is refused unless it is in ``allow``; everyone else is admitted.

A client with no address (a unix socket peer, or a ``REMOTE_ADDR`` that is
not an IP address) counts as in neither list; the first one a deny list lets
through is logged as a warning, as it most likely means a proxy on a unix
socket that ``trusted_proxies`` does not name (``"unix"``).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import webob.exc

from .._logtext import log_text
from .._types import StartResponse, WSGIApplication, WSGIEnvironment
from ..clientip import ProxyTrust, client_ip, warn_no_address
from ..errors import ConfigError, unreadable
from ..forking import forget_on_fork
from ..netset import IPAddress, IPNetwork, NetworkSet, as_network, parse_network
from ..options import choice, flag, function, listed, log_target, owned
from ..paths import prefixes, under
from ..refusals import refusal

__all__ = ["IPFilter"]


def _read_list(path: Path) -> list[IPNetwork]:
    """The entries of a list file; ConfigError naming file and line for a bad one."""
    entries = []
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise unreadable(path, exc) from None
    try:
        text = data.decode("utf-8-sig")  # a BOM, as Windows editors write, is not an entry
    except UnicodeDecodeError as exc:
        bad_line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}:{bad_line}: not UTF-8 text") from None
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if entry:
            try:
                entries.append(parse_network(entry))
            except ConfigError:
                raise ConfigError(
                    f"{path}:{number}: {entry!r} is not an IP address or network"
                ) from None
    return entries


_Stamp = tuple[int, int, int, int, int]


def _stamp(path: Path) -> _Stamp | None:
    """What tells a changed file apart: ``None`` when it cannot be seen.

    Not mtime and size alone: ``cp -p``, tar and ``rsync -a`` keep the source's
    mtime, and a list of the same length looked unchanged for good.  A file
    renamed over the path is another inode; one rewritten in place, its mtime
    set back or not, has a new ctime (which nothing can set back).
    """
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


@dataclass(frozen=True)
class _Rules:
    """One consistent snapshot of both lists, swapped whole on reload."""

    allow: NetworkSet | None
    deny: NetworkSet
    stamps: tuple[_Stamp | None, ...]


def _check_scalars(precedence: object, refuse: object, reload_interval: object) -> None:
    """The single-valued options, checked before anything is built from them."""
    choice(precedence, "IPFilter: precedence", ("deny", "allow"))
    if refuse is not None and not callable(refuse):
        raise ConfigError(f"IPFilter: refuse: {refuse!r} is not a WSGI app")
    if (
        isinstance(reload_interval, bool)
        or not isinstance(reload_interval, int | float)
        or math.isnan(reload_interval)  # never >= the clock: the files would never reload
    ):
        raise ConfigError(f"IPFilter: reload_interval: expected seconds, got {reload_interval!r}")
    if reload_interval < 0:
        raise ConfigError(f"IPFilter: reload_interval: must be >= 0, got {reload_interval!r}")


def _entries(option: str, values: object) -> list[IPNetwork]:
    """Inline entries as networks: text or ``ipaddress`` objects, nothing else."""
    return [
        as_network(value, option=f"IPFilter: {option}")
        for value in listed(values, f"IPFilter: {option}")
    ]


def _files(option: str, files: object) -> tuple[Path, ...]:
    paths = listed(files, f"IPFilter: {option}", "paths")  # a lone Path is not a list either
    for path in paths:
        if not isinstance(path, str | os.PathLike):
            raise ConfigError(f"IPFilter: {option}: {path!r} is not a path")
    return tuple(Path(path) for path in paths)


class IPFilter:
    """Refuse clients by address with a 403 (or an app you give).

    :param app: the WSGI app to protect.
    :param allow: addresses/networks admitted; when given, everyone else is refused
        (with ``precedence="allow"``: the exceptions to ``deny``).
    :param deny: addresses/networks refused.
    :param allow_files: files of allow entries, re-read when they change.
    :param deny_files: files of deny entries, re-read when they change.
    :param precedence: ``"deny"`` (a client in both lists is refused) or ``"allow"``
        (a denied client in ``allow`` is admitted, and so is a client in neither).
    :param paths: apply the rules only under these path prefixes (whole segments);
        a path is under one as sent or with ``//``, ``.`` and ``..`` resolved, and
        as the app routes it (``PATH_INFO``) or as the URL has it (with ``SCRIPT_NAME``).
    :param ignore_case: match ``paths`` ignoring letter case (``/ADMIN`` is under
        ``/admin``), for an app that routes so: IIS behind a forwarder, files on a
        macOS or Windows disk (nginx's ``location ~*``).
    :param trusted_proxies: networks of your proxies, or a hop count, or a
        :class:`~wsgistack.clientip.ProxyTrust` (to choose the header).
    :param refuse: the app that answers a refused client; ``HTTPForbidden`` by default.
    :param dry_run: log what would be refused, refuse nothing.
    :param reload_interval: seconds between checks of the list files.
    :param clock: a monotonic clock in seconds, for tests.
    :param logger: where refusals (INFO), reload problems (ERROR) and, once, a
        client without an address that a deny list let through (WARNING) are logged.
    """

    def __init__(
        self,
        app: WSGIApplication,
        /,
        *,
        allow: Iterable[str | IPNetwork | IPAddress] | None = None,
        deny: Iterable[str | IPNetwork | IPAddress] | None = None,
        allow_files: Sequence[str | Path] = (),
        deny_files: Sequence[str | Path] = (),
        precedence: Literal["deny", "allow"] = "deny",
        paths: Iterable[str] | None = None,
        ignore_case: bool = False,
        trusted_proxies: ProxyTrust | Iterable[str | IPNetwork | IPAddress] | int | None = None,
        refuse: WSGIApplication | None = None,
        dry_run: bool = False,
        reload_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
    ) -> None:
        _check_scalars(precedence, refuse, reload_interval)
        self.clock = function(clock, "IPFilter: clock")
        self.logger = log_target(logger, "IPFilter: logger", "wsgistack.ipfilter")
        self.app = app
        self._allow_inline = None if allow is None else _entries("allow", allow)
        self._deny_inline = [] if deny is None else _entries("deny", deny)
        self._allow_files = _files("allow_files", allow_files)
        self._deny_files = _files("deny_files", deny_files)
        if (
            self._allow_inline is None
            and not self._allow_files
            and not (self._deny_inline or self._deny_files)
        ):
            raise ConfigError("IPFilter: give allow and/or deny entries (or files)")
        if precedence == "allow" and deny is None and not self._deny_files:
            # Exceptions to an absent deny list would silently admit everyone.
            raise ConfigError(
                "IPFilter: precedence: 'allow' makes the allow list exceptions to deny; "
                "give deny entries (or deny_files), or use precedence='deny'"
            )
        self.precedence = precedence
        self.ignore_case = flag(ignore_case, "IPFilter: ignore_case")
        if self.ignore_case and paths is None:
            raise ConfigError(
                "IPFilter: ignore_case: it applies to paths; give paths too, or drop it"
            )
        self.paths = prefixes(paths, "IPFilter: paths", ignore_case=self.ignore_case)
        with owned("IPFilter"):
            self.trust = ProxyTrust.coerce(trusted_proxies)
        self.refuse = refuse or refusal(webob.exc.HTTPForbidden)
        self.dry_run = flag(dry_run, "IPFilter: dry_run")
        self.reload_interval = float(reload_interval)
        self._lock = threading.Lock()
        self._told_no_address = False  # warned, once, that a deny list could not see a client
        self._watching = bool(self._allow_files or self._deny_files)
        self._rules = self._load(self._stamps())
        self._next_check = clock() + self.reload_interval
        forget_on_fork(self)

    def _forked(self) -> None:
        """In a new child: a new reload lock, in case a thread of the parent held the old one.

        The lock is only tried, never waited for: copied held, the child would
        skip every reload and keep the lists it had at the fork for good.
        """
        self._lock = threading.Lock()

    def _stamps(self) -> tuple[_Stamp | None, ...]:
        return tuple(_stamp(path) for path in self._allow_files + self._deny_files)

    def _load(self, stamps: tuple[_Stamp | None, ...]) -> _Rules:
        """The lists as the files hold them now, marked with ``stamps`` taken before reading."""
        allow_entries = list(self._allow_inline or [])
        deny_entries = list(self._deny_inline)
        for path in self._allow_files:
            allow_entries += _read_list(path)
        for path in self._deny_files:
            deny_entries += _read_list(path)
        has_allow = self._allow_inline is not None or bool(self._allow_files)
        return _Rules(
            allow=NetworkSet(allow_entries, option="allow") if has_allow else None,
            deny=NetworkSet(deny_entries, option="deny"),
            stamps=stamps,
        )

    def _maybe_reload(self) -> None:
        if not self._lock.acquire(blocking=False):
            return  # another thread is checking; this request uses the current rules
        try:
            self._next_check = self.clock() + self.reload_interval
            stamps = self._stamps()
            if stamps == self._rules.stamps:
                return
            try:
                self._rules = self._load(stamps)
            except ConfigError as exc:
                self.logger.error("IPFilter: keeping the previous lists: %s", exc)
                # Do not retry the same broken content on every check; the stamps are
                # the ones taken before reading, so a file fixed since is read next time.
                old = self._rules
                self._rules = _Rules(old.allow, old.deny, stamps)
            else:
                files = self._allow_files + self._deny_files
                self.logger.info("IPFilter: reloaded %s", ", ".join(str(p) for p in files))
        finally:
            self._lock.release()

    def _applies(self, environ: WSGIEnvironment) -> bool:
        return not self.paths or under(environ, self.paths, ignore_case=self.ignore_case)

    def verdict(self, address: Any) -> str | None:
        """Why ``address`` is refused (the rule that matched), or ``None`` if admitted."""
        rules = self._rules
        # Membership first (fast); the matching rule is named only for a refusal's log line.
        denied = address is not None and address in rules.deny and rules.deny.match(address)
        allowed = address is not None and rules.allow is not None and address in rules.allow
        if self.precedence == "allow":
            # allow entries are exceptions to deny; a client in neither list is admitted.
            return f"deny {denied}" if denied and not allowed else None
        if denied:
            return f"deny {denied}"
        if rules.allow is not None and not allowed:
            return "not in the allow list"
        return None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self._watching and self.clock() >= self._next_check:
            self._maybe_reload()
        if self.paths and not self._applies(environ):
            return self.app(environ, start_response)
        address = client_ip(environ, self.trust)
        reason = self.verdict(address)
        if reason is None:
            if address is None and not self._told_no_address:
                self._unknown_client(environ)
            return self.app(environ, start_response)
        path = log_text(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
        client = "-" if address is None else str(address)
        if self.dry_run:
            self.logger.info("IPFilter dry run: would refuse %s %s: %s", client, path, reason)
            return self.app(environ, start_response)
        self.logger.info("IPFilter refused %s %s: %s", client, path, reason)
        return self.refuse(environ, start_response)

    def _unknown_client(self, environ: WSGIEnvironment) -> None:
        """Say once that a deny list let a client through unseen: likely a setup gap."""
        self._told_no_address = True
        warn_no_address(
            self.logger, "IPFilter", "was admitted without a deny check, as others will be", environ
        )

    def __repr__(self) -> str:
        rules = self._rules
        parts = []
        if rules.allow is not None:
            parts.append(f"allow={len(rules.allow)} networks")
        if len(rules.deny):
            parts.append(f"deny={len(rules.deny)} networks")
        if self.precedence != "deny":
            parts.append(f"precedence={self.precedence!r}")
        if self.paths:
            parts.append(f"paths={list(self.paths)!r}")
        if self.ignore_case:
            parts.append("ignore_case=True")
        if self.trust is not None:
            parts.append(f"trusted_proxies={self.trust!r}")
        if self.dry_run:
            parts.append("dry_run=True")
        return f"IPFilter({', '.join(parts)})"
