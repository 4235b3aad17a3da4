"""ServerConfig: every option of the reference server, typed, frozen, validated in one place.

Each value is read by its converter in ``options.py`` (one table for the CLI,
the files and the keywords of ``Server``/``serve``); the class checks how the
values go together, and ``layered_options`` how a file's and the command
line's are combined.  A bad value fails at start-up with a ``ConfigError``
that names it.

    config = ServerConfig.from_options(bind="127.0.0.1:0", threads=8)
    config.binds  # (Bind(kind='tcp', host='127.0.0.1', port=0, path='', protocol='http'),)
"""

from __future__ import annotations

import dataclasses
import functools
import os
import ssl
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from ..options import did_you_mean
from .account import Account, check_pid_file
from .bind import Bind
from .logformat import DEFAULT_FORMAT
from .options import FORWARDED_ALLOW_IPS_ENV, OPTIONS
from .proxyproto import DEFAULT_ALLOW_FROM, check_proxy_protocol
from .tls import check_tls, server_context

__all__ = ["ServerConfig", "convert_options", "layered_options"]


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """The server's options (see ``wsgistack serve --help`` for each one's meaning).

    Build it with ``from_options(**kwargs)``, which converts and validates
    every value through ``OPTIONS``; the constructor re-checks the result.
    """

    bind: tuple[Bind, ...] = (Bind("tcp", host="127.0.0.1", port=8000),)
    protocol: str = "http"
    workers: int = 1
    threads: int = 4
    timeout: float = 30.0
    keepalive: float = 5.0
    graceful_timeout: float = 30.0
    #: Seconds a worker's loop may go without a heartbeat before the master
    #: kills and replaces it (0: off).  Only a hung worker stops beating (a C
    #: extension holding the GIL, a deadlocked loop); a slow request does not,
    #: so this can be generous: it bounds how long a hung worker holds its
    #: connections, not how long a request may take.
    worker_timeout: float = 60.0
    max_requests: int = 0
    max_body_size: int = 100 * 1024 * 1024
    root_path: str = ""
    access_log: str | None = None
    access_log_format: str = DEFAULT_FORMAT
    log_level: str = "info"
    #: Where the server's log lines go: standard error (``-``) or a file
    #: (``logsetup.py``); a ``log_config`` file instead says everything.
    error_log: str = "-"
    log_config: str | None = None
    #: Set in the master's environment and put first on ``sys.path`` before
    #: the app is loaded anywhere (gunicorn's ``--env`` and ``--pythonpath``).
    env: tuple[tuple[str, str], ...] = ()
    pythonpath: tuple[str, ...] = ()
    pid: str | None = None
    backlog: int = 2048
    max_request_line: int = 8190
    max_headers: int = 100
    max_header_size: int = 16384
    socket_mode: int | None = None
    #: Peers trusted to say the request came over HTTPS (gunicorn's default);
    #: peers on a unix socket always are (see ``netset.TrustedPeers``).
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1", "::1")
    #: Load the app once in the master, before the workers fork from it (gunicorn's
    #: --preload): their memory shared, a failure seen once; SIGHUP keeps the code.
    preload: bool = False
    #: Development: restart the workers when the app's files change (reloader.py).
    reload: bool = False
    reload_extra_file: tuple[str, ...] = ()
    #: Who the workers run as (``account.py``); None: as the master.
    user: int | str | None = None
    group: int | str | None = None
    #: The process's umask from start-up on; None: the one it was started with.
    umask: int | None = None
    #: Where the server works and the workers load the app from; None: where it started.
    chdir: str | None = None
    #: HTTPS on every http bind (uwsgi binds stay plain): the certificate (and
    #: its chain), its key if not in the same file, and for client certificates
    #: the CA that signs them and whether one is asked for (see ``tls.py``).
    certfile: str | None = None
    keyfile: str | None = None
    ca_certs: str | None = None
    cert_reqs: str = "none"
    ciphers: str | None = None
    #: Every http bind expects a PROXY protocol header (v1 or v2) from a peer
    #: in ``proxy_allow_from``, whose source is then the client (proxyproto.py).
    proxy_protocol: bool = False
    proxy_allow_from: tuple[str, ...] = DEFAULT_ALLOW_FROM
    #: Metrics to a StatsD daemon under gunicorn's names (statsd.py): its address
    #: (None: none sent), a prefix (ends with a dot) and Datadog's tags.
    statsd_host: str | None = None
    statsd_prefix: str = ""
    dogstatsd_tags: str = ""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if OPTIONS[field.name](value) != value:
                raise ConfigError(f"{field.name}: {value!r} is not a valid value")
        if self.socket_mode is not None and not any(b.kind == "unix" for b in self.bind):
            raise ConfigError(
                f"socket_mode: {self.socket_mode:o} applies to unix sockets, and no bind is"
                " unix:/path (an inherited socket's mode is its owner's: systemd's SocketMode=)"
            )
        if self.reload_extra_file and not self.reload:
            raise ConfigError(
                f"reload_extra_file: {self.reload_extra_file[0]!r} is watched with reload only;"
                " add --reload (reload = true)"
            )
        if self.preload and self.reload:
            # gunicorn takes both and its reloader then restarts workers with the
            # old code: saving a file would seem to do nothing.
            raise ConfigError(
                "preload: the app loaded once in the master is what every new worker"
                " runs, so reload could never load new code; give one of --preload"
                " (production) and --reload (development)"
            )
        if self.access_log is None and self.access_log_format != DEFAULT_FORMAT:
            raise ConfigError(
                "access_log_format: given, but there is no access log to write it:"
                " add access_log ('-' for stdout, or a file)"
            )
        if self.log_config is not None and self.error_log != "-":
            raise ConfigError(
                f"error_log: {self.error_log!r} with log_config: the file {self.log_config!r}"
                " says where lines go; give one of them (a FileHandler in the file, or"
                " --error-log alone)"
            )
        account = self.account()  # an account this process cannot switch to fails here, once
        check_tls(self)
        check_proxy_protocol(self)
        if self.statsd_host is None and (self.statsd_prefix or self.dogstatsd_tags):
            name = "statsd_prefix" if self.statsd_prefix else "dogstatsd_tags"
            raise ConfigError(f"{name}: given, but there is no statsd_host to send metrics to")
        if not self.workers:
            self.check_in_process()
            check_pid_file(self.pid, account)

    def check_in_process(self) -> None:
        """Refuse what needs a master, for a server that runs in this process."""
        if self.max_requests:
            raise ConfigError(
                "max_requests: a recycled worker is replaced by the master, so it needs"
                " workers >= 1 (in process the server would stop after that many requests)"
            )
        if self.reload:
            # A re-exec of the whole process (werkzeug's way) would be a second
            # reloader, with its own way to fail; one worker under a master is the same
            # loop for the developer.
            raise ConfigError(
                "reload: new code is loaded by new workers, which a master starts: use"
                " --workers 1 (workers = 1) with it, not 0"
            )

    @functools.cached_property
    def tls_context(self) -> ssl.SSLContext | None:
        """``certfile``'s context, its files read once for this configuration (``tls.py``).

        Read in the master as the options are checked, so every worker forked
        with this configuration serves with it, and a key only root can read
        serves under ``--user``; a SIGHUP's new configuration reads them again.
        """
        return server_context(self)

    def account(self) -> Account | None:
        """Who the workers run as (``user``/``group``); None when as the master."""
        return Account.of(self.user, self.group)

    @classmethod
    def from_options(cls, **options: Any) -> ServerConfig:
        """Convert and validate keyword options (strings from the CLI are fine too).

        A bind without a ``uwsgi://``/``http://`` prefix speaks ``protocol``.
        Without ``forwarded_allow_ips``, the ``FORWARDED_ALLOW_IPS`` environment
        variable gives it, as for gunicorn.
        """
        converted = convert_options(options)
        if "forwarded_allow_ips" not in converted and FORWARDED_ALLOW_IPS_ENV in os.environ:
            try:
                converted["forwarded_allow_ips"] = OPTIONS["forwarded_allow_ips"](
                    os.environ[FORWARDED_ALLOW_IPS_ENV]
                )
            except ConfigError as exc:
                raise ConfigError(f"{FORWARDED_ALLOW_IPS_ENV} (the environment): {exc}") from None
        protocol = converted.get("protocol", "http")
        binds = converted.get("bind", cls.bind)
        converted["bind"] = tuple(
            bind if bind.protocol else dataclasses.replace(bind, protocol=protocol)
            for bind in binds
        )
        return cls(**converted)

    @property
    def binds(self) -> tuple[Bind, ...]:
        return self.bind

    def tls_for(self, bind: Bind) -> bool:
        """Whether ``bind`` serves HTTPS: every http one with ``certfile``, uwsgi ones never."""
        return self.certfile is not None and bind.protocol != "uwsgi"


#: Other servers' names for where to listen (pserve's and uvicorn's host and
#: port, waitress's listen): ours is ``bind``, which a spelling hint cannot find.
_ADDRESS_NAMES = ("host", "port", "listen")


def convert_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Apply ``OPTIONS`` to each given option; unknown names are a ``ConfigError``."""
    converted: dict[str, Any] = {}
    for name, value in options.items():
        if name in _ADDRESS_NAMES:
            raise ConfigError(
                f"{name}: unknown server option; the address is bind, e.g."
                " bind = '127.0.0.1:8000' (a list for several)"
            )
        if name not in OPTIONS:
            hint = did_you_mean(name, OPTIONS) or f" (known: {', '.join(OPTIONS)})"
            raise ConfigError(f"{name}: unknown server option{hint}")
        converted[name] = OPTIONS[name](value)
    return converted


def layered_options(
    table: Any, where: str, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The server options of a config file's table, with ``overrides`` (flags) over them.

    Each value is converted and checked here, before anything binds or loads,
    and an error says where it came from: ``stack.toml: [server]: workers: -1
    must be ...`` for the file's, the option alone for a flag's.  The command
    line wins over the file, as gunicorn's does over its config file.  The
    result is what ``ServerConfig.from_options`` (or ``Server``) takes.
    """
    given = convert_options(overrides or {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: expected a table of server options, got {table!r}")
    try:
        from_file = convert_options(table)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc.__cause__
    options = {**from_file, **given}
    try:
        ServerConfig.from_options(**options)  # options that cannot go together
    except ConfigError as exc:
        if not from_file.keys() - given.keys():
            raise  # the command line's alone
        raise ConfigError(f"{_conflict_source(from_file, where, exc)}: {exc}") from exc.__cause__
    return options


def _conflict_source(from_file: Mapping[str, Any], where: str, error: ConfigError) -> str:
    """``where`` if the file's options alone fail so, else ``where`` with the command line."""
    try:
        ServerConfig.from_options(**from_file)
    except ConfigError as alone:
        if str(alone) == str(error):
            return where
    return f"{where} with the command line"
