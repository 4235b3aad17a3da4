"""Every option of the reference server, and the converter that reads and checks its value.

One table (``OPTIONS``) serves the command line, a TOML file's ``[server]``
table, an ini's ``[server:main]`` and the keywords of ``Server``, so an option
means the same however it is given, and a bad value fails at start-up with a
``ConfigError`` that names it.  How the values go together is
``ServerConfig``'s to check (``config.py``).  (``wsgistack.options`` holds the
helpers every layer's options share.)

    OPTIONS["threads"]("8")        # 8
    OPTIONS["socket_mode"]("660")  # 0o660
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..errors import ConfigError
from ..netset import peer_list
from ..options import MAX_SECONDS, ini_flag, listed
from ..paths import check_spelling
from .account import group_option, user_option
from .bind import PROTOCOLS, Bind, parse_bind
from .logformat import compile_format
from .logsetup import LogConfig
from .proxyproto import proxy_allow_from, proxy_protocol
from .statsd import dogstatsd_tags, statsd_host, statsd_prefix

__all__ = ["FORWARDED_ALLOW_IPS_ENV", "LOG_LEVELS", "MIN_WORKER_TIMEOUT", "OPTIONS"]

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


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


def _file_path(value: Any, option: str, what: str) -> str:
    """``value`` as a path's text (a ``pathlib.Path`` too); else ``OPTION: VALUE must be WHAT``."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str) and value:
        return value
    raise ConfigError(f"{option}: {value!r} must be {what}")


def _access_log(value: Any) -> str | None:
    return None if value is None else _file_path(value, "access_log", "'-' (stdout) or a file path")


def _access_log_format(value: Any) -> str:
    compile_format(value)  # an unknown atom or a broken format fails here, not per line
    return str(value)


def _pid(value: Any) -> str | None:
    if value is None:
        return None
    value = _file_path(value, "pid", "a file path")
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
    value = _file_path(value, "chdir", "an absolute directory path")
    if not os.path.isabs(value):
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
    return _file_path(value, "error_log", "'-' (standard error) or a file path")


def _log_config(value: Any) -> str | None:
    """A logging file that exists and parses (``LogConfig.read``); it is applied at start."""
    if value is None:
        return None
    value = _file_path(value, "log_config", "a file path")
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
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise ConfigError(f"env: {key!r}: a variable's name is not empty, without = or NUL")
        if "\0" in text:  # the value's own fault, not the name's: os.environ would refuse it
            raise ConfigError(f"env: {key!r}: its value holds a NUL, which no variable can carry")
        if any(char.isspace() for char in key):
            # An ini's env = {A = "1"} (TOML's form) or A = 1 would name "{A " or "A ".
            raise ConfigError(
                f"env: {key!r}: a variable's name has no spaces (KEY=VALUE; in an ini,"
                " one per line)"
            )
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
    """Peers whose ``X-Forwarded-Proto`` sets ``wsgi.url_scheme``, as gunicorn's option."""
    return peer_list(value, "forwarded_allow_ips")


def _pem_path(name: str) -> Callable[[Any], str | None]:
    """A PEM file's path (loaded by ``tls.server_context``, which says what is wrong in it)."""

    def convert(value: Any) -> str | None:
        return None if value is None else _file_path(value, name, "the path of a PEM file")

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
    "proxy_protocol": proxy_protocol,
    "proxy_allow_from": proxy_allow_from,
    "statsd_host": statsd_host,
    "statsd_prefix": statsd_prefix,
    "dogstatsd_tags": dogstatsd_tags,
}
