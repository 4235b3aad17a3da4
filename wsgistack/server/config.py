"""ServerConfig: every option of the reference server, typed, frozen, validated in one place.

The CLI and the keyword arguments of ``Server``/``serve`` share one table of
``(name, converter)`` pairs (``OPTIONS``), so an option means the same thing
however it is given, and a bad value fails at start-up with a ``ConfigError``
that names it.

    config = ServerConfig.from_options(bind="127.0.0.1:0", threads=8)
    config.binds  # (Bind(kind='tcp', host='127.0.0.1', port=0, path='', protocol='http'),)
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from ..errors import ConfigError
from ..netset import as_network
from ..options import MAX_SECONDS, did_you_mean, ini_flag, listed
from ..paths import check_spelling
from .account import Account, group_option, user_option
from .logformat import DEFAULT_FORMAT, compile_format
from .logsetup import LogConfig
from .tls import check_tls

__all__ = ["OPTIONS", "Bind", "ServerConfig", "convert_options", "layered_options", "parse_bind"]

LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


PROTOCOLS = ("http", "uwsgi")


@dataclasses.dataclass(frozen=True)
class Bind:
    """One address to listen on: ``tcp`` (host, port), ``unix`` (path) or ``fd``.

    An ``fd`` bind is a listening socket this process inherited, open as
    descriptor ``fd`` (``fd://3``, from systemd or a supervisor): its family
    and address are the socket's own, read when it is adopted.
    ``protocol`` is what the socket speaks: ``http``, ``uwsgi`` (nginx's
    ``uwsgi_pass``), or ``""`` until ``ServerConfig`` applies ``--protocol``.
    """

    kind: Literal["tcp", "unix", "fd"]
    host: str = ""
    port: int = 0
    path: str = ""
    protocol: str = ""
    fd: int = -1

    def __str__(self) -> str:
        scheme = "uwsgi://" if self.protocol == "uwsgi" else ""
        if self.kind == "unix":
            return f"{scheme}unix:{self.path}"
        if self.kind == "fd":
            return f"{scheme}fd://{self.fd}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}{host}:{self.port}"


def parse_bind(value: str) -> Bind:
    """Parse ``HOST:PORT``, ``[IPv6]:PORT``, ``:PORT``, ``unix:/path`` or ``fd://N``.

    A ``uwsgi://`` or ``http://`` prefix sets the bind's protocol, so HTTP and
    uwsgi listeners can sit side by side (``uwsgi://127.0.0.1:9000``, also
    ``uwsgi://fd://3``).
    """
    if not isinstance(value, str) or not value:
        raise ConfigError(f"bind: {value!r} is not HOST:PORT or unix:/path")
    scheme, sep, rest = value.partition("://")
    if sep and scheme == "fd":
        if not (rest.isascii() and rest.isdigit()):
            raise ConfigError(f"bind: {value!r}: fd://N takes a descriptor number, e.g. fd://3")
        return Bind("fd", fd=int(rest))
    if sep:
        if scheme not in PROTOCOLS:
            raise ConfigError(f"bind: {value!r}: unknown scheme {scheme!r} (http, uwsgi or fd)")
        return dataclasses.replace(parse_bind(rest), protocol=scheme)
    if value.startswith("unix:"):
        path = value[5:]
        if not path:
            raise ConfigError(f"bind: {value!r} names no socket path")
        return Bind("unix", path=path)
    host, sep, port_text = value.rpartition(":")
    if not sep or not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise ConfigError(f"bind: {value!r} is not HOST:PORT (port 0-65535) or unix:/path")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"bind: {value!r}: {host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ConfigError(f"bind: {value!r}: write an IPv6 address in brackets, [::1]:8000")
    return Bind("tcp", host=host or "0.0.0.0", port=int(port_text))


def _binds(value: Any) -> tuple[Bind, ...]:
    if isinstance(value, str | Bind):
        items = [value]
    elif isinstance(value, Iterable) and not isinstance(value, bytes | Mapping):
        items = list(value)
    else:  # 8000, None, b"...": a port alone is not an address
        raise ConfigError(
            f"bind: {value!r} is not HOST:PORT or unix:/path (or a list of them), "
            "e.g. '127.0.0.1:8000'"
        )
    if not items:
        raise ConfigError("bind: at least one address is needed")
    binds = tuple(item if isinstance(item, Bind) else parse_bind(item) for item in items)
    fds = [bind.fd for bind in binds if bind.kind == "fd"]
    for fd in fds:
        if fds.count(fd) > 1:  # one socket served twice would split its queue for nothing
            raise ConfigError(f"bind: fd://{fd} is listed twice")
    return binds


#: listen() takes a C int (the kernel caps the backlog at net.core.somaxconn anyway).
MAX_BACKLOG = 2**31 - 1


def _integer(name: str, minimum: int, maximum: int | None = None) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: {value!r} is not an integer") from None
        too_large = maximum is not None and number > maximum
        if isinstance(value, float | bool) or number < minimum or too_large:
            bound = "" if maximum is None else f" and <= {maximum}"
            raise ConfigError(f"{name}: {value!r} must be an integer >= {minimum}{bound}")
        return number

    return convert


def _seconds(name: str, minimum: float) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: {value!r} is not a number of seconds") from None
        if isinstance(value, bool) or not minimum <= number <= MAX_SECONDS:
            raise ConfigError(
                f"{name}: {value!r} must be a finite number >= {minimum}"
                f" and <= {MAX_SECONDS} (a year)"
            )
        return number

    return convert


#: The shortest --worker-timeout: a healthy worker's loop beats at least every
#: half second and the master looks about once a second, so less would kill
#: healthy workers.
MIN_WORKER_TIMEOUT = 2.0


def _worker_timeout(value: Any) -> float:
    number = _seconds("worker_timeout", 0.0)(value)
    if 0 < number < MIN_WORKER_TIMEOUT:
        raise ConfigError(
            f"worker_timeout: {value!r} must be 0 (off) or at least {MIN_WORKER_TIMEOUT:g}"
            " seconds (a healthy worker reports about once a second)"
        )
    return number


def _root_path(value: Any) -> str:
    if not isinstance(value, str) or (value and (value[0] != "/" or value.endswith("/"))):
        raise ConfigError(f"root_path: {value!r} must be '' or start with '/' and not end with '/'")
    check_spelling(value, "root_path")
    return value


def _access_log(value: Any) -> str | None:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if value is None or (isinstance(value, str) and value):
        return value
    raise ConfigError(f"access_log: {value!r} must be '-' (stdout) or a file path")


def _access_log_format(value: Any) -> str:
    compile_format(value)  # an unknown atom or a broken format fails here, not per line
    return str(value)


def _pid(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"pid: {value!r} must be a file path")
    directory = os.path.dirname(os.path.abspath(value))
    if not os.path.isdir(directory):
        raise ConfigError(f"pid: {value!r}: the directory {directory!r} does not exist")
    return value


def _protocol(value: Any) -> str:
    if not isinstance(value, str) or value.lower() not in PROTOCOLS:
        raise ConfigError(f"protocol: {value!r} is not one of {', '.join(PROTOCOLS)}")
    return value.lower()


def _octal(name: str, value: Any) -> int:
    """Octal permission bits: ``"660"``, ``"0660"``, ``"0o660"`` or ``0o660``, at most 777."""
    if isinstance(value, str):
        text = value.removeprefix("0o")
        if not (text and text.isascii() and all(c in "01234567" for c in text)):
            raise ConfigError(f"{name}: {value!r} is not an octal mode such as 660")
        mode = int(text, 8)
    elif isinstance(value, int) and not isinstance(value, bool):
        mode = value  # 0o660 (a decimal 660 is 0o1224, refused below)
    else:
        raise ConfigError(f"{name}: {value!r} is not an octal mode such as 660")
    if not 0 <= mode <= 0o777:
        hint = ""
        if isinstance(value, int) and all(c in "01234567" for c in str(value)):
            # socket_mode = 660 in a TOML file, or in code: a decimal number.
            # Both read 0o660, and both read the text "660" as octal.
            hint = f' (read as a decimal number: write 0o{value} or "{value}")'
        raise ConfigError(f"{name}: {value!r} is not a mode of 000-777{hint}")
    return mode


def _socket_mode(value: Any) -> int | None:
    """The permissions of unix socket files (see ``_octal``)."""
    if value is None:
        return None
    mode = _octal("socket_mode", value)
    if mode & 0o600 != 0o600:
        # The next start probes the file to tell a live server from a stale one:
        # without read and write for its owner, it could not connect.
        raise ConfigError(f"socket_mode: {value!r}: the owner needs read and write (6xx)")
    return mode


def _umask(value: Any) -> int | None:
    """The process's file mode mask, as ``umask 027`` takes it (see ``_octal``)."""
    return None if value is None else _octal("umask", value)


def _chdir(value: Any) -> str | None:
    """An existing directory, absolute (the CLI makes ``--chdir``'s so), as named: links kept.

    A relative one in a file or in code would depend on where the server is
    started; a symlinked release is followed afresh at each load of the app.
    """
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not os.path.isabs(value):
        raise ConfigError(f"chdir: {value!r} must be an absolute directory path")
    if not os.path.isdir(value):
        raise ConfigError(f"chdir: {value!r} is not a directory")
    return os.path.normpath(value)


def _reload(value: Any) -> bool:
    return ini_flag(value, "reload")  # true from the CLI and TOML, "true" in an ini


def _preload(value: Any) -> bool:
    return ini_flag(value, "preload")


def _reload_extra_files(value: Any) -> tuple[str, ...]:
    """Files a --reload worker watches besides the app's modules; each must exist."""
    items = [value] if isinstance(value, str | os.PathLike) else value
    if not isinstance(items, list | tuple):
        raise ConfigError(f"reload_extra_file: {value!r} is not a file path (or a list of them)")
    paths = tuple(os.fspath(item) if isinstance(item, os.PathLike) else item for item in items)
    for path in paths:
        if not isinstance(path, str) or not os.path.isfile(path):
            raise ConfigError(f"reload_extra_file: {path!r} is not a file")
    return paths


def _error_log(value: Any) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str) and value:
        return value
    raise ConfigError(f"error_log: {value!r} must be '-' (standard error) or a file path")


def _log_config(value: Any) -> str | None:
    """A logging file that exists and parses (``LogConfig.read``); it is applied at start."""
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"log_config: {value!r} must be a file path")
    LogConfig.read(value)
    return value


def _env(value: Any) -> tuple[tuple[str, str], ...]:
    """``KEY=VALUE`` items (a list, lines of an ini, or a table) as (key, value) pairs."""
    if isinstance(value, Mapping):
        items: list[Any] = list(value.items())
    elif isinstance(value, str):
        items = [line.strip() for line in value.splitlines() if line.strip()]
    else:
        items = listed(value, "env", "KEY=VALUE items")
    pairs = []
    for item in items:
        if isinstance(item, str):
            key, sep, text = item.partition("=")
            if not sep:
                raise ConfigError(f"env: {item!r} is not KEY=VALUE")
            item = (key, text)
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], str)):
            raise ConfigError(f"env: {item!r} is not KEY=VALUE (a value is a string)")
        key, text = item
        if not isinstance(key, str) or not key or "=" in key or "\0" in key + text:
            raise ConfigError(f"env: {key!r}: a variable's name is not empty, without = or NUL")
        pairs.append((key, text))
    return tuple(pairs)


def _pythonpath(value: Any) -> tuple[str, ...]:
    """Directories (``"a,b"`` or a list), made absolute from the working directory now.

    That is ``--chdir``'s when given: the CLI moves there before it checks
    the options, as gunicorn resolves ``--pythonpath`` from its ``chdir``.
    """
    if isinstance(value, str):
        items: list[Any] = [part.strip() for part in value.split(",") if part.strip()]
    else:
        items = listed(value, "pythonpath", "directories")
    paths = []
    for item in items:
        if isinstance(item, os.PathLike):
            item = os.fspath(item)
        if not isinstance(item, str) or not os.path.isdir(item):
            raise ConfigError(f"pythonpath: {item!r} is not a directory")
        paths.append(os.path.abspath(item))
    return tuple(paths)


def _log_level(value: Any) -> str:
    if not isinstance(value, str) or value.lower() not in LOG_LEVELS:
        raise ConfigError(f"log_level: {value!r} is not one of {', '.join(LOG_LEVELS)}")
    return value.lower()


#: gunicorn's environment variable for the default of ``forwarded_allow_ips``.
FORWARDED_ALLOW_IPS_ENV = "FORWARDED_ALLOW_IPS"


def _forwarded_allow_ips(value: Any) -> tuple[str, ...]:
    """Peers whose ``X-Forwarded-Proto`` sets ``wsgi.url_scheme``, as gunicorn's option.

    A comma-separated string (``"127.0.0.1,::1"``, as gunicorn, ini files and
    the environment write it) or a list of addresses and networks; ``*`` is
    every peer.  Kept as written, each entry checked here.
    """
    option = "forwarded_allow_ips"
    if isinstance(value, str):
        entries: list[Any] = [entry.strip() for entry in value.split(",")]
    else:
        entries = listed(value, option, "addresses or networks")
    kept: list[str] = []
    for entry in entries:
        if isinstance(entry, str):
            entry = entry.strip()
            if not entry:
                continue  # "a,,b"; "" alone trusts no peer with an address
            if entry == "*":
                kept.append(entry)
                continue
        network = as_network(entry, option=option)
        kept.append(entry if isinstance(entry, str) else str(network))
    return tuple(kept)


def _pem_path(name: str) -> Callable[[Any], str | None]:
    """A PEM file's path (loaded by ``tls.server_context``, which says what is wrong in it)."""

    def convert(value: Any) -> str | None:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if value is None or (isinstance(value, str) and value):
            return value
        raise ConfigError(f"{name}: {value!r} must be the path of a PEM file")

    return convert


def _cert_reqs(value: Any) -> str:
    names = ("none", "optional", "required")
    if not isinstance(value, str) or value.lower() not in names:
        raise ConfigError(
            f"cert_reqs: {value!r} is not one of {', '.join(names)} (whether clients must"
            " show a certificate from ca_certs)"
        )
    return value.lower()


def _ciphers(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.strip()):
        return value
    raise ConfigError(f"ciphers: {value!r} must be an OpenSSL cipher list, e.g. 'ECDHE+AESGCM'")


#: Every option: its name and the converter that validates it (shared by CLI and kwargs).
OPTIONS: dict[str, Callable[[Any], Any]] = {
    "bind": _binds,
    "protocol": _protocol,
    "workers": _integer("workers", 0),
    "threads": _integer("threads", 1),
    "timeout": _seconds("timeout", 0.001),
    "keepalive": _seconds("keepalive", 0.0),
    "graceful_timeout": _seconds("graceful_timeout", 0.0),
    "worker_timeout": _worker_timeout,
    "max_requests": _integer("max_requests", 0),
    "max_body_size": _integer("max_body_size", 0),
    "root_path": _root_path,
    "access_log": _access_log,
    "access_log_format": _access_log_format,
    "log_level": _log_level,
    "error_log": _error_log,
    "log_config": _log_config,
    "env": _env,
    "pythonpath": _pythonpath,
    "pid": _pid,
    "backlog": _integer("backlog", 1, MAX_BACKLOG),
    "max_request_line": _integer("max_request_line", 64),
    "max_headers": _integer("max_headers", 1),
    "max_header_size": _integer("max_header_size", 256),
    "socket_mode": _socket_mode,
    "forwarded_allow_ips": _forwarded_allow_ips,
    "preload": _preload,
    "reload": _reload,
    "reload_extra_file": _reload_extra_files,
    "user": user_option,
    "group": group_option,
    "umask": _umask,
    "chdir": _chdir,
    "certfile": _pem_path("certfile"),
    "keyfile": _pem_path("keyfile"),
    "ca_certs": _pem_path("ca_certs"),
    "cert_reqs": _cert_reqs,
    "ciphers": _ciphers,
}


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
    #: peers on a unix socket always are (see ``environ.SchemeTrust``).
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
        self.account()  # an account this process cannot switch to fails here, once
        check_tls(self)
        if not self.workers:
            self.check_in_process()

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
                converted["forwarded_allow_ips"] = _forwarded_allow_ips(
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
