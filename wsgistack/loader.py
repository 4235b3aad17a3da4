"""Load objects from ``module:attr`` strings, the way gunicorn loads apps.

``"myproject.wsgi"`` means ``myproject.wsgi:application``;
``"pkg.app:make_app('prod', debug=False)"`` calls a factory with literal
arguments.  The server's CLI and pipelines share this loader.

    app = load_app("myproject.wsgi:application")
"""

from __future__ import annotations

import ast
import importlib
import inspect
import logging
import os
import sys
from typing import Any

from .errors import ConfigError
from .options import did_you_mean

__all__ = [
    "app_failed",
    "import_object",
    "load_app",
    "log_load_failure",
    "raised",
    "working_directory",
]


def working_directory() -> str:
    """The working directory as it was named (the shell's ``$PWD``), symlinks kept.

    A deploy points a ``current`` symlink at a new release and sends SIGHUP;
    ``os.getcwd()`` names the release resolved at start-up for good, so the
    CLI puts this on ``sys.path`` and workers ``chdir`` to it before loading,
    as gunicorn does.
    """
    cwd = os.getcwd()
    named = os.environ.get("PWD", "")
    try:
        if os.path.isabs(named) and os.path.samefile(named, cwd):
            return named
    except OSError:
        pass
    return cwd


def _literal(node: ast.expr, spec: str) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ConfigError(
            f"{spec!r}: factory arguments must be literals (strings, numbers, lists, ...)"
        ) from None
    except TypeError as exc:  # {[1]: 2}: a literal Python itself cannot build
        raise ConfigError(f"{spec!r}: a factory argument cannot be built: {exc}") from None


def _parse_target(target: str, spec: str) -> tuple[list[str], ast.Call | None]:
    try:
        expression = ast.parse(target, mode="eval").body
    except SyntaxError:
        raise ConfigError(f"{spec!r}: {target!r} is not an attribute name or a call") from None
    call = expression if isinstance(expression, ast.Call) else None
    node = call.func if call else expression
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise ConfigError(f"{spec!r}: {target!r} is not an attribute name or a call")
    names.append(node.id)
    return names[::-1], call


def _call(obj: Any, call: ast.Call, target: str, spec: str) -> Any:
    """Call the factory ``obj`` as ``call`` spells it; a spec that cannot work is a ConfigError."""
    args = [_literal(arg, spec) for arg in call.args]
    kwargs = {}
    for keyword in call.keywords:
        if keyword.arg is None:  # **{...}: not silently dropped, refused
            raise ConfigError(f"{spec!r}: write factory arguments out, not as **mapping")
        kwargs[keyword.arg] = _literal(keyword.value, spec)
    if not callable(obj):
        raise ConfigError(f"{spec!r}: {type(obj).__name__} object is not callable")
    try:
        inspect.signature(obj).bind(*args, **kwargs)
    except ValueError:
        pass  # no signature to check against (some builtins): let the call decide
    except TypeError as exc:
        # Checked before calling, so a TypeError raised inside the factory stays a traceback.
        name = target.partition("(")[0].strip()
        raise ConfigError(f"{spec!r}: {name}() does not take these arguments: {exc}") from None
    return obj(*args, **kwargs)


def import_object(spec: str, *, default_attr: str | None = None, allow_call: bool = False) -> Any:
    """Import ``module:attr`` (``attr`` may be dotted, or a call when ``allow_call``)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"expected 'module:attr', got {spec!r}")
    module_name, sep, target = spec.strip().partition(":")
    if not sep:
        if default_attr is None:
            raise ConfigError(f"{spec!r}: expected 'module:attr' (for example 'myapp.wsgi:app')")
        target = default_attr
    if not all(part.isidentifier() for part in module_name.split(".")):
        raise ConfigError(
            f"{spec!r}: {module_name!r} is not a module name (absolute and dotted, 'pkg.module')"
        )
    names, call = _parse_target(target, spec)
    if call is not None and not allow_call:
        raise ConfigError(f"{spec!r}: a call is not allowed here, name the object itself")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        # Not found: the module or a package on its path ('mysite' of 'mysite.wsgi').
        # Any other ImportError (a missing dependency, a circular import whose
        # ``name`` is the app's own package) happened while the app imported.
        missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise ConfigError(
                f"{spec!r}: no module named {missing!r}{_not_found(spec, module_name)}"
            ) from None
        raise ConfigError(f"{spec!r}: importing {module_name!r} failed: {exc}") from exc
    except SystemExit as exc:
        # Not an Exception: it ended a worker as if it had served, and the
        # master respawned it for ever instead of giving up with status 2.
        raise ConfigError(
            f"{spec!r}: importing {module_name!r} called sys.exit({exc.code!r})"
        ) from exc
    for depth, name in enumerate(names):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            owner = ":".join([module_name, ".".join(names[:depth])]) if depth else module_name
            hint = _no_default(spec, obj) if not sep else _closest(name, obj)
            raise ConfigError(f"{spec!r}: {owner!r} has no attribute {name!r}{hint}") from None
    if call is not None:
        try:
            obj = _call(obj, call, target, spec)
        except SystemExit as exc:
            raise ConfigError(f"{spec!r}: {target} called sys.exit({exc.code!r})") from exc
    return obj


def _not_found(spec: str, module_name: str) -> str:
    """Why a module was not found, in the words a new user needs: a file name, or where."""
    if module_name.endswith(".py"):  # 'myapp.py:app', the file the shell completed
        module = module_name.removesuffix(".py")
        return f": name the module, not its file: {module + spec.strip()[len(module_name) :]!r}"
    cwd = os.path.realpath(os.getcwd())
    if any(os.path.realpath(entry or ".") == cwd for entry in sys.path):
        # The CLI puts it there, as gunicorn does: started from the wrong directory.
        where = working_directory()
        return f" (not in the working directory {where}, nor installed for {sys.executable})"
    return f" (not installed for {sys.executable}, nor elsewhere on sys.path)"


def _closest(name: str, obj: Any) -> str:
    """`` (did you mean 'app'?)`` from ``obj``'s attributes (private ones for a private name)."""
    names = [attr for attr in dir(obj) if name.startswith("_") or not attr.startswith("_")]
    return did_you_mean(name, names)


def _no_default(spec: str, module: Any) -> str:
    """A module named alone has no ``application``: say it was the default, and how to name one."""
    attr = "app" if callable(getattr(module, "app", None)) else "NAME"
    return f", the name taken when none is given; name the app: {f'{spec.strip()}:{attr}'!r}"


def load_app(spec: str) -> Any:
    """Load a WSGI app from ``module``, ``module:attr`` or ``module:factory(...)``."""
    app = import_object(spec, default_attr="application", allow_call=True)
    if not callable(app):
        raise ConfigError(f"{spec!r}: {type(app).__name__} object is not a WSGI app (not callable)")
    return app


def raised(exc: BaseException) -> str:
    """``KeyError: 'DEBUG'``: an exception as the last line of its traceback names it.

    Its ``str()`` alone is ``'DEBUG'``, which says neither what went wrong
    nor where to look.  A ``str()`` that raises is written as the traceback
    writes it: else its error would replace the app's in the line.
    """
    kind = type(exc)
    name = kind.__qualname__
    if kind.__module__ != "builtins":
        name = f"{kind.__module__}.{name}"
    try:
        text = str(exc)
    except Exception:
        text = "<exception str() failed>"
    return f"{name}: {text}" if text else name


def app_failed(spec: str, exc: BaseException) -> ConfigError:
    """The error for an app whose own code raised ``exc`` while loading: spec and exception.

    Raise it ``from exc``: the log shows the app's traceback under the line.
    """
    return ConfigError(f"{spec!r}: {raised(exc)}")


def log_load_failure(
    log: logging.Logger, who: str, exc: BaseException, *, traceback_elsewhere: str = ""
) -> None:
    """Log why the app could not load, the same way in a worker and in process.

    A bad spec or a missing module is one line; what the app's own code raised
    (also an import failing inside it, which ``load_app`` wraps) comes with its
    traceback, so a missing setting shows its type and line.
    ``traceback_elsewhere``: another process logged the same traceback; this
    note, ending the line, takes its place.
    """
    cause = exc.__cause__ if isinstance(exc, ConfigError) else exc
    shown = cause is not None and not traceback_elsewhere
    log.error(
        "%s: cannot load the app: %s%s",
        who,
        exc if isinstance(exc, ConfigError) else raised(exc),
        f" ({traceback_elsewhere})" if traceback_elsewhere else "",
        exc_info=(type(cause), cause, cause.__traceback__) if shown and cause else None,
    )
