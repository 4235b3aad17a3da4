"""Load objects from ``module:attr`` strings, the way gunicorn loads apps.

``"myproject.wsgi"`` means ``myproject.wsgi:application``;
``"pkg.app:make_app('prod', debug=False)"`` calls a factory with literal
arguments.  The server's CLI and pipelines share this loader.

    app = load_app("myproject.wsgi:application")
"""

from __future__ import annotations

import ast
import importlib
from typing import Any

from .errors import ConfigError

__all__ = ["import_object", "load_app"]


def _literal(node: ast.expr, spec: str) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ConfigError(
            f"{spec!r}: factory arguments must be literals (strings, numbers, lists, ...)"
        ) from None


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


def import_object(spec: str, *, default_attr: str | None = None, allow_call: bool = False) -> Any:
    """Import ``module:attr`` (``attr`` may be dotted, or a call when ``allow_call``)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"expected 'module:attr', got {spec!r}")
    module_name, sep, target = spec.strip().partition(":")
    if not sep:
        if default_attr is None:
            raise ConfigError(f"{spec!r}: expected 'module:attr' (for example 'myapp.wsgi:app')")
        target = default_attr
    names, call = _parse_target(target, spec)
    if call is not None and not allow_call:
        raise ConfigError(f"{spec!r}: a call is not allowed here, name the object itself")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name and module_name.startswith(exc.name) and exc.name == module_name:
            raise ConfigError(f"{spec!r}: no module named {module_name!r}") from None
        raise ConfigError(f"{spec!r}: importing {module_name!r} failed: {exc}") from exc
    for name in names:
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise ConfigError(f"{spec!r}: {module_name!r} has no attribute {target!r}") from None
    if call is not None:
        args = [_literal(arg, spec) for arg in call.args]
        kwargs = {kw.arg: _literal(kw.value, spec) for kw in call.keywords if kw.arg}
        obj = obj(*args, **kwargs)
    return obj


def load_app(spec: str) -> Any:
    """Load a WSGI app from ``module``, ``module:attr`` or ``module:factory(...)``."""
    app = import_object(spec, default_attr="application", allow_call=True)
    if not callable(app):
        raise ConfigError(f"{spec!r}: {type(app).__name__} object is not a WSGI app (not callable)")
    return app
