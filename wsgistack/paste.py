"""PasteDeploy entry points, so the middlewares work in an existing ``[pipeline:main]``.

Ini values are strings; each is read as a TOML value when it parses as one
(``allow = ["10.0.0.0/8"]``, ``burst = 5``) and kept as a string otherwise
(``limits = 100/minute``); an inline table with ``use`` names a Python object,
as in a TOML pipeline (``store = {use = "module:attr", ...}``).  An option
whose default is ``True``/``False`` is a flag: ``true``/``yes``/``on``/``1`` or
``false``/``no``/``off``/``0``, any case.  An option that takes text (a
name, a path, a host) keeps a value that looks like a number as the text
written: ``name = 2024`` is "2024".

    [filter:errors]
    use = egg:wsgistack#error_catcher
    debug = false
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import socket
import tomllib
from collections.abc import Callable, Mapping
from typing import Any

from ._types import WSGIApplication
from .errors import ConfigError
from .options import did_you_mean, ini_flag, text_options
from .pipeline import build_objects, check_options, construct, resolve_factory

__all__ = ["ini_server_options", "ini_value", "make_filter_factory", "server_factory"]

FilterFactory = Callable[..., Callable[[WSGIApplication], WSGIApplication]]

# configparser ends a key at the first "=" or ":", so "api.example.com:8080 = app"
# arrives as the key "api.example.com" with the value "8080 = app".
_PORT_CUT_OFF = re.compile(r"\d+(/\S*)?\s*[=:]")


def ini_value(text: str) -> Any:
    """A PasteDeploy option value as the TOML value it spells, else the string itself."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def _flags(factory: Callable[..., Any]) -> frozenset[str]:
    """The options of ``factory`` that default to True or False: flags, read by ini_flag."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return frozenset()
    return frozenset(p.name for p in parameters if isinstance(p.default, bool))


def _options(
    local_conf: Mapping[str, str], factory: Callable[..., Any], where: str
) -> dict[str, Any]:
    flags = _flags(factory)
    texts = text_options(factory)
    options: dict[str, Any] = {}
    for key, value in local_conf.items():
        if key in flags:
            options[key] = ini_flag(value, f"{where}: {key}")
            continue
        parsed = ini_value(value)
        if key in texts and not isinstance(parsed, str | list | dict):
            # name = 2024: an ini cannot quote it, so a number here is the text written.
            options[key] = value.strip()
            continue
        try:
            options[key] = build_objects(parsed, key)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc.__cause__
    return options


def _where(global_conf: Mapping[str, str], what: str) -> str:
    """``what`` after the ini file PasteDeploy is loading (it passes ``__file__``)."""
    path = global_conf.get("__file__")
    return f"{path}: {what}" if path else what


def make_filter_factory(use: str) -> FilterFactory:
    """A ``paste.filter_factory`` for the built-in (or ``module:attr``) middleware ``use``."""

    def filter_factory(global_conf: Mapping[str, str], **local_conf: str) -> Any:
        where = _where(global_conf, f"filter {use}")
        factory, _ = resolve_factory(use)
        try:
            check_options(factory, local_conf, 1)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        options = _options(local_conf, factory, where)

        def wrap(app: WSGIApplication) -> WSGIApplication:
            # PasteDeploy calls this while loading, so a bad option fails at start-up.
            return construct(factory, where, app, **options)

        return wrap

    filter_factory.__name__ = filter_factory.__qualname__ = f"{use}_filter_factory"
    return filter_factory


error_catcher = make_filter_factory("error_catcher")
ip_filter = make_filter_factory("ip_filter")
rate_limit = make_filter_factory("rate_limit")
request_buffering = make_filter_factory("request_buffering")


#: The keys of a dispatch composite that are options; every other one is a mount.
_DISPATCH_OPTIONS = ("default", "redirect_slash")


def dispatch(loader: Any, global_conf: Mapping[str, str], **local_conf: str) -> WSGIApplication:
    """A ``paste.composite_factory``: each ``/prefix = appname`` line mounts an app.

    Like ``paste.urlmap``, keys are prefixes or hosts and values name other
    sections; ``default = appname`` answers what no mount matches.  An ini key
    cannot hold ":", so a host mount here names no port (it matches any port).
    """
    from .middlewares.dispatch import PrefixDispatcher

    where = _where(global_conf, "composite dispatch")
    for key, name in local_conf.items():
        if _PORT_CUT_OFF.match(name):
            raise ConfigError(
                f"{where}: '{key}:{name}': an ini key ends at ':', so a host "
                "mount cannot name a port here; mount the host without its port (it then "
                "matches any port), or mount it in a TOML pipeline or in Python"
            )
    for key in local_conf:
        if key not in _DISPATCH_OPTIONS and "/" not in key and "." not in key:
            # Any other key is a host to mount, so a misspelt option would
            # silently mount a host of that name, and the option be ignored.
            # A dot or a slash ("default.lan", "intranet/api") is a host's.
            hint = did_you_mean(key, _DISPATCH_OPTIONS)
            if hint:
                raise ConfigError(f"{where}: {key!r} would mount a host of that name{hint}")
    default_name = local_conf.pop("default", None)
    redirect = ini_flag(local_conf.pop("redirect_slash", "true"), f"{where}: redirect_slash")
    mounts = {
        key: loader.get_app(name, global_conf=global_conf) for key, name in local_conf.items()
    }
    default = loader.get_app(default_name, global_conf=global_conf) if default_name else None
    return PrefixDispatcher(mounts, default=default, redirect_slash=redirect)


def load_balance(global_conf: Mapping[str, str], **local_conf: str) -> WSGIApplication:
    """A ``paste.app_factory`` for the forwarder: ``upstreams = ["http://...", ...]``."""
    from .middlewares.forward import LoadBalancer

    where = _where(global_conf, "app load_balance")
    try:
        check_options(LoadBalancer, local_conf, 0)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    options = _options(local_conf, LoadBalancer, where)
    return construct(LoadBalancer, where, **options)


def _ini_binds(local_conf: Mapping[str, str], where: str) -> dict[str, Any]:
    """The server's options with ``host``/``port`` or ``listen`` made its ``bind``.

    pserve's ini files name the address as ``host`` and ``port`` (gunicorn's
    and waitress's runners read them so) or, for waitress, ``listen``; ours is
    ``bind``.  Several addresses: space-separated, or a TOML list.  Each
    address is read as waitress reads it (see ``_every_address``).
    """
    options: dict[str, Any] = dict(local_conf)
    named = [key for key in ("bind", "listen") if key in options]
    if len(named) > 1:
        raise ConfigError(f"{where}: listen: give bind or listen (the same option), not both")
    host, port = options.pop("host", None), options.pop("port", None)
    if named and (host is not None or port is not None):
        raise ConfigError(
            f"{where}: {'host' if host is not None else 'port'}: give host and port,"
            f" or {named[0]}, not both"
        )
    if named:
        value = ini_value(options.pop(named[0]))
        addresses = value.split() if isinstance(value, str) else value
        if isinstance(addresses, list):
            addresses = _every_address(addresses, f"{where}: {named[0]}")
        options["bind"] = addresses
    elif host is not None or port is not None:
        host = (host or "127.0.0.1").strip()
        port = (port or "8000").strip()
        if not (port.isascii() and port.isdigit()):
            raise ConfigError(f"{where}: port: {port!r} is not a port number (0-65535)")
        bracketed = f"[{host}]" if ":" in host and not host.startswith("[") else host
        options["bind"] = _every_address([f"{bracketed}:{port}"], f"{where}: host")
    return options


def _every_address(addresses: list[Any], where: str) -> list[Any]:
    """``addresses`` with each host name replaced by every address it resolves to, once each.

    As waitress does with ``listen``: Pyramid's development.ini says
    ``listen = localhost:6543``, which waitress binds on 127.0.0.1 and on
    ::1, so a browser that tries ::1 first is answered; and ``*`` is every
    interface, 0.0.0.0 and ``[::]`` (each IPv6 socket is bound IPv6-only, so
    the two share the port).  A name that resolves to nothing fails here, at
    start-up.  An address that is not ``HOST:PORT`` (``unix:``, ``fd://``) or
    not text is left to the ``bind`` option to check.
    """
    from .server.bind import parse_bind

    found: list[Any] = []
    for address in addresses:
        try:
            bind = parse_bind(address)
        except ConfigError:
            found.append(address)  # the bind option says what is wrong with it
            continue
        if bind.kind != "tcp":
            found.append(address)
            continue
        scheme = address[: address.index("://") + 3] if bind.protocol else ""
        for host in _resolve(bind.host, bind.port, where):
            one = scheme + str(dataclasses.replace(bind, host=host, protocol=""))
            # A name and an address of it, or two names of one address, would
            # bind one address twice; port 0 binds a new port each time.
            if bind.port == 0 or one not in found:
                found.append(one)
    return found


def _resolve(host: str, port: int, where: str) -> list[str]:
    """The addresses ``host`` resolves to for a listening TCP socket, in the resolver's order."""
    try:
        infos = socket.getaddrinfo(
            None if host == "*" else host,
            port,
            socket.AF_UNSPEC,
            socket.SOCK_STREAM,
            socket.IPPROTO_TCP,
            socket.AI_PASSIVE,
        )
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else "not a valid host name"
        raise ConfigError(f"{where}: {host!r} does not resolve to an address ({reason})") from None
    hosts: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in hosts:
            hosts.append(address)
    return hosts


def ini_server_options(
    local_conf: Mapping[str, str], where: str, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The server options of a ``[server:main]`` that uses ours, ``overrides`` (flags) winning.

    ``server_factory`` (pserve) and ``wsgistack serve --paste`` both read the
    section here, through the same ``layered_options`` as a TOML ``[server]``
    table, so ``host``/``port``/``listen`` and every option mean one thing.
    """
    from .server.config import layered_options

    return layered_options(_ini_binds(local_conf, where), where, overrides)


def server_factory(
    global_conf: Mapping[str, str], **local_conf: str
) -> Callable[[WSGIApplication], int]:
    """A ``paste.server_factory``: ``[server:main]`` with ``use = egg:wsgistack#main``.

    Its options are our server's, by the names of ``ServerConfig`` (values as
    the command line takes them: ``workers = 2``, ``socket_mode = 660``), plus
    ``host`` and ``port`` or ``listen``.  A factory rather than a runner
    (gunicorn's and waitress's are runners): PasteDeploy calls it while it
    loads the server, so a bad option fails before the app is loaded.  What
    the app's import may read (``env``, ``pythonpath``, ``chdir``...) is set
    here too, as the CLI sets it before anything else (``settle``): pserve
    loads the app after the server, and before it calls ``serve``.
    """
    from .server.cli import serve_announced
    from .server.config import ServerConfig
    from .server.processenv import Settled
    from .server.server import Server

    where = _where(global_conf, "server main")
    options = ini_server_options(local_conf, where)
    config = ServerConfig.from_options(**options)
    settled = Settled()  # the Server's, handed over: it settles again as it binds, as a no-op
    settled.settle(config)
    level = config.log_level

    def serve(app: WSGIApplication) -> int:
        """Serve ``app`` until stopped; with workers, each forks from this loaded app."""
        settled.start_logging(level)
        return serve_announced(Server(app, settled=settled, **options))

    return serve
