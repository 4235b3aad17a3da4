"""Pipelines as data: the same stack as ``compose()``, from a TOML file or a dict.

    # stack.toml
    [[layer]]
    use = "error_catcher"                              # a built-in name ...
    [[layer]]
    use = "werkzeug.middleware.proxy_fix:ProxyFix"     # ... or any module:attr
    x_for = 1
    [app]
    use = "myproject.wsgi:application"

    application = load_pipeline("stack.toml")

Every error names the file, the layer and the option, e.g.
``stack.toml: layer 2 (ip_filter): unknown option 'alow' (did you mean 'allow'?)``.
"""

from __future__ import annotations

import inspect
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ._types import WSGIApplication
from .compose import _arity_says_app, _needs_options, _not_an_app, compose
from .errors import ConfigError, unreadable
from .loader import app_failed, import_object, load_app, raised
from .options import did_you_mean, text_options, unknown_option

__all__ = [
    "BUILTINS",
    "SERVER_TABLE",
    "Builtin",
    "build_objects",
    "build_pipeline",
    "check_options",
    "construct",
    "load_pipeline",
    "read_pipeline",
    "resolve_factory",
]


@dataclass(frozen=True)
class Builtin:
    """A built-in name: where its factory lives and whether it wraps an app or is one.

    ``app_options`` name options whose values are app specs, and ``app_maps``
    options whose values map names to app specs; both are built recursively.
    """

    target: str
    kind: Literal["layer", "app"] = "layer"
    app_options: tuple[str, ...] = ()
    app_maps: tuple[str, ...] = ()


#: Built-in names usable as ``use = "..."``; grows as middlewares land.
BUILTINS: dict[str, Builtin] = {
    "dispatch": Builtin(
        "wsgistack.middlewares.dispatch:PrefixDispatcher",
        kind="app",
        app_options=("default",),
        app_maps=("mounts",),
    ),
    "error_catcher": Builtin("wsgistack.middlewares.errors:ErrorCatcher"),
    "ip_filter": Builtin("wsgistack.middlewares.ipfilter:IPFilter"),
    "load_balance": Builtin("wsgistack.middlewares.forward:LoadBalancer", kind="app"),
    "rate_limit": Builtin("wsgistack.middlewares.ratelimit:RateLimiter"),
    "request_buffering": Builtin("wsgistack.middlewares.buffering:RequestBuffering"),
}

_PIPELINE_KEYS = ("layer", "app")
#: The top-level table of a pipeline file that holds the server's options.  It
#: is ``wsgistack serve``'s (and ``check``'s) to read: building the app ignores
#: it, so the same file serves under gunicorn or uWSGI, whose options are their own.
SERVER_TABLE = "server"


def resolve_factory(use: str) -> tuple[Callable[..., Any], Builtin | None]:
    """The factory named by ``use``: a built-in name or a ``module:attr`` path."""
    if not isinstance(use, str) or not use:
        raise ConfigError(f"'use' must be a built-in name or 'module:attr', got {use!r}")
    builtin = BUILTINS.get(use)
    if builtin is not None:
        return import_object(builtin.target), builtin
    if ":" not in use:
        names = sorted(BUILTINS)
        known = ", ".join(names) if names else "none yet"
        raise ConfigError(
            f"unknown built-in {use!r}{did_you_mean(use, names)}; built-ins: {known}; "
            "or give 'module:attr'"
        )
    return import_object(use, allow_call=True), None


def check_options(factory: Callable[..., Any], options: Mapping[str, Any], skip: int) -> None:
    """Refuse options ``factory`` cannot be called with (after ``skip`` positional ones).

    An unknown name gets a hint; a required option left out is named, here,
    rather than as the factory's own ``TypeError`` (which reads as a crash in
    the app's code, with a traceback).
    """
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    params = list(signature.parameters.values())[skip:]
    unknown = unknown_option(factory, options, skip)
    if unknown is not None:
        raise ConfigError(unknown)
    try:
        signature.bind(*[None] * skip, **options)
    except TypeError as exc:
        missing = [
            repr(p.name)
            for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.default is p.empty
            and p.name not in options
        ]
        if missing:
            raise ConfigError(f"missing option {', '.join(missing)}") from None
        raise ConfigError(f"cannot take these options: {exc}") from None


def build_objects(value: Any, option: str) -> Any:
    """``value`` with each ``{use = "module:attr", ...}`` table in it made the object it names.

    Options that take a Python object (a store, a hook, a key function, a
    ``ProxyTrust``, a logger) have no TOML or ini spelling of their own.  As
    ``use`` names a layer's factory, a table with ``use`` names the object:
    alone, the object itself (a function; ``module:factory()`` calls it);
    with more keys, the factory called with them, as logging's dictConfig
    builds an object from ``()`` and its keys.
    """
    if isinstance(value, list):
        return [build_objects(item, f"{option} item {n}") for n, item in enumerate(value, 1)]
    if not isinstance(value, Mapping):
        return value
    if "use" not in value:
        return {key: build_objects(item, f"{option}.{key}") for key, item in value.items()}
    spec = value["use"]
    if not isinstance(spec, str) or ":" not in spec:
        raise ConfigError(f"{option}: 'use' must name an object as 'module:attr', got {spec!r}")
    where = f"{option} ({spec})"
    try:
        obj = import_object(spec, allow_call=True)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc.__cause__
    except Exception as exc:  # the object's own module, while importing
        raise ConfigError(f"{where}: {raised(exc)}") from exc
    options = {key: build_objects(v, f"{where}: {key}") for key, v in value.items() if key != "use"}
    if not options:
        return obj
    if not callable(obj):
        raise ConfigError(
            f"{where}: {type(obj).__name__} object is not callable: it takes no options"
        )
    try:
        check_options(obj, options, 0)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return construct(obj, where, **options)


def construct(factory: Callable[..., Any], where: str, /, *args: Any, **options: Any) -> Any:
    """``factory(*args, **options)``, with a failure a ConfigError naming ``where``.

    A layer or an option's object is made at start-up, where it may also fail
    for reasons of its own (a file missing, a server refusing, a bug): its
    error, whatever its type, then says which layer or option was being made,
    and stays the cause, so its traceback still shows the line that raised.
    """
    try:
        return factory(*args, **options)
    except ConfigError as exc:  # a bad option: its own message, and its cause if any
        raise ConfigError(f"{where}: {exc}") from exc.__cause__
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    except Exception as exc:  # its own failure, e.g. OSError: "FileNotFoundError: ..."
        raise ConfigError(f"{where}: {raised(exc)}") from exc
    except SystemExit as exc:
        # Not an Exception: in process it ended serve (status 1, naming no layer),
        # and it ended a worker as a crash would, so the log named no layer either.
        raise ConfigError(f"{where}: called sys.exit({exc.code!r})") from exc


class _Builder:
    """Builds apps and layers from config, carrying the source name for messages."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {where}: {message}")

    def _options(
        self, table: Mapping[str, Any], factory: Any, builtin: Builtin | None, where: str
    ) -> dict:
        options = {k: v for k, v in table.items() if k != "use"}
        apps = () if builtin is None else builtin.app_options + builtin.app_maps
        self._no_numbers_for_text(factory, options, where)
        for name, value in options.items():
            if name not in apps:
                try:
                    options[name] = build_objects(value, name)
                except ConfigError as exc:
                    raise self.fail(where, str(exc)) from exc.__cause__
        if builtin is None:
            return options
        for name in builtin.app_options:
            if name in options and options[name] is not None:
                options[name] = self.app(options[name], f"{where} {name}")
        for name in builtin.app_maps:
            if name in options:
                value = options[name]
                if not isinstance(value, Mapping):
                    raise self.fail(where, f"option {name!r} must be a table, got {value!r}")
                options[name] = {k: self.app(v, f"{where} {name}.{k}") for k, v in value.items()}
        return options

    def _resolve(self, use: Any, where: str) -> tuple[Any, Builtin | None]:
        """The factory ``use`` names; its module failing while importing is named here."""
        try:
            return resolve_factory(use)
        except ConfigError as exc:
            raise self.fail(where, str(exc)) from exc.__cause__
        except Exception as exc:  # the layer's or app's own module, while importing
            raise self.fail(where, raised(exc)) from exc

    def _no_numbers_for_text(self, factory: Any, options: dict, where: str) -> None:
        """Refuse ``name = 2024`` for an option that takes text: TOML says how to quote it.

        Unlike an ini, TOML tells a number from text, so a number is refused
        rather than guessed at, with the spelling that works.
        """
        for name in text_options(factory) & options.keys():
            value = options[name]
            if isinstance(value, int | float) and not isinstance(value, bool):
                raise self.fail(
                    where,
                    f"{name}: expected text, got the number {value!r}; "
                    f'quote it: {name} = "{value}"',
                )

    def _construct(self, factory: Any, options: dict, where: str, skip: int, *head: Any) -> Any:
        try:
            check_options(factory, options, skip)
        except ConfigError as exc:
            raise self.fail(where, str(exc)) from None
        return construct(factory, f"{self.source}: {where}", *head, **options)

    def layer(
        self, table: Any, index: int, within: str = ""
    ) -> Callable[[WSGIApplication], WSGIApplication]:
        """Layer ``index`` of the pipeline at ``within`` ("" at the top, else e.g. a mount)."""
        prefix = f"{within}: " if within else ""
        if not isinstance(table, Mapping) or "use" not in table:
            raise self.fail(
                f"{prefix}layer {index}", "each [[layer]] needs use = 'name' or 'module:attr'"
            )
        use = table["use"]
        where = f"{prefix}layer {index} ({use})"
        factory, builtin = self._resolve(use, where)
        if builtin is not None and builtin.kind == "app":
            raise self.fail(where, f"{use!r} is an app, not a layer; put it in [app]")
        if not callable(factory):
            raise self.fail(where, f"{use!r} is not callable")
        options = {k: v for k, v in table.items() if k != "use"}
        try:  # names are checked in file order, before the app loads or an option's object is made
            check_options(factory, options, 1)
        except ConfigError as exc:
            if not options and _arity_says_app(factory) and _needs_options(factory) is None:
                # Else "missing option 'start_response'": it wants a request, not an app.
                raise self.fail(
                    where,
                    f"{use!r} is a WSGI app (it takes environ and start_response), "
                    "not a layer; put it in [app]",
                ) from None
            raise self.fail(where, str(exc)) from None
        options = self._options(table, factory, builtin, where)

        def build(app: WSGIApplication) -> WSGIApplication:
            return self._construct(factory, options, where, 1, app)

        build.__qualname__ = build.__name__ = f"layer {index} ({use})"
        return build

    def app(self, spec: Any, where: str = "app") -> WSGIApplication:
        if isinstance(spec, str):
            try:
                loaded = load_app(spec)
            except ConfigError as exc:
                # The loader's cause is the app's own failure (a dependency its
                # module imports): kept, so its traceback shows the line.
                raise self.fail(where, str(exc)) from exc.__cause__
            except Exception as exc:  # the app's own code, while importing
                raise self.fail(where, str(app_failed(spec, exc))) from exc
            return self._checked_app(loaded, spec, where)
        if not isinstance(spec, Mapping):
            raise self.fail(where, f"expected 'module:attr' or a table, got {spec!r}")
        if "use" not in spec:
            return self.pipeline(spec, where)
        use = spec["use"]
        where = f"{where} ({use})"
        factory, builtin = self._resolve(use, where)
        if builtin is not None and builtin.kind == "layer":
            raise self.fail(where, f"{use!r} is a layer, not an app; put it in [[layer]]")
        options = {k: v for k, v in spec.items() if k != "use"}
        if options and callable(factory):
            try:  # a misspelt option's object is not made (it may connect somewhere)
                check_options(factory, options, 0)
            except ConfigError as exc:
                raise self.fail(where, str(exc)) from None
        options = self._options(spec, factory, builtin, where)
        if builtin is None and not options:
            if not callable(factory):
                raise self.fail(where, f"{use!r} is not a WSGI app (not callable)")
            return self._checked_app(factory, use, where)
        return self._construct(factory, options, where, 0)

    def _checked_app(self, app: Any, spec: str, where: str) -> WSGIApplication:
        """``app`` if it can be one; a layer named where an app belongs fails now.

        compose() checks the top-level app, but a mount or a default is only
        called at the first request, where a class would be built per request.
        """
        reason = _not_an_app(app)
        if reason is not None:
            raise self.fail(where, f"{spec!r}: {reason}; put it in [[layer]]")
        return app

    def pipeline(self, config: Any, where: str = "") -> WSGIApplication:
        prefix = f"{where}: " if where else ""
        _check_shape(config, self.source, where)
        layers = config.get("layer", [])
        built = [self.layer(table, index, where) for index, table in enumerate(layers, start=1)]
        app = self.app(config["app"], f"{where} app".strip())
        try:
            return compose(*built, app)
        except TypeError as exc:
            raise ConfigError(f"{self.source}: {prefix}{exc}") from exc


def _check_shape(config: Any, source: str, where: str) -> None:
    """Refuse a table that cannot be a pipeline: a misspelt key, no app, a ``layer`` not a list.

    ``where`` is "" for a file's top level, which may also hold ``[server]``;
    ``read_pipeline`` checks a file's so before anything binds.
    """
    prefix = f"{where}: " if where else ""
    if not isinstance(config, Mapping):
        raise ConfigError(f"{source}: {prefix}expected a table, got {config!r}")
    keys = _PIPELINE_KEYS if where else (*_PIPELINE_KEYS, SERVER_TABLE)
    for key in config:
        if key not in keys:
            raise ConfigError(
                f"{source}: {prefix}unknown key {key!r}"
                f"{did_you_mean(key, keys)}; a pipeline has [[layer]] and [app]"
                + ("" if where else f", and its file a [{SERVER_TABLE}] table")
            )
    if "app" not in config:
        raise ConfigError(f"{source}: {prefix}no [app]: a pipeline needs an app to serve")
    if not isinstance(config.get("layer", []), list):
        raise ConfigError(f"{source}: {prefix}'layer' must be an array of tables")


def build_pipeline(config: Mapping[str, Any], *, source: str = "<pipeline>") -> WSGIApplication:
    """Build the app a pipeline dict describes (the parsed form of a TOML file)."""
    return _Builder(source).pipeline(config)


def read_pipeline(path: str | Path) -> dict[str, Any]:
    """The parsed TOML of a pipeline file; a ConfigError naming the file (and line) if not.

    ``wsgistack serve --config`` reads it once before binding, so a missing or
    broken file, a misspelt top-level key (``[sever]``, ``[[layers]]``) or a
    missing ``[app]`` fails at once, not in each worker after the ports are open.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            config = tomllib.load(handle)
    except OSError as exc:  # missing, a directory, no permission, ...
        raise unreadable(path, exc) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    _check_shape(config, str(path), "")
    return config


def load_pipeline(path: str | Path) -> WSGIApplication:
    """Build the app a TOML pipeline file describes."""
    return build_pipeline(read_pipeline(path), source=str(Path(path)))
