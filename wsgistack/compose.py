"""Declare a pipeline top to bottom: ``compose(layer, layer, ..., app)``.

The first layer is the outermost, the one a request meets first; the app
comes last.  A layer is anything that takes an app and returns an app: a
middleware class, ``use(Middleware, **options)``, a ``functools.partial``, a
plain function.  The result is the outermost layer itself, a plain WSGI
callable with no wrapper on the hot path.

    application = compose(
        use(ErrorCatcher),
        use(IPFilter, allow=["10.0.0.0/8"]),
        flask_app.wsgi_app,
    )
    print(describe(application))
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Concatenate, Generic, ParamSpec
from urllib.parse import unquote

from ._types import WSGIApplication
from .options import unknown_option

__all__ = ["Layer", "compose", "describe", "label", "use"]

P = ParamSpec("P")


class Layer(Generic[P]):
    """A middleware with its options, waiting for the app it will wrap."""

    __slots__ = ("args", "factory", "kwargs")

    def __init__(
        self,
        factory: Callable[Concatenate[WSGIApplication, P], WSGIApplication],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> None:
        if not callable(factory):
            raise TypeError(f"use(): {factory!r} is not callable; pass a middleware class")
        self.factory = factory
        self.args: tuple[Any, ...] = tuple(args)
        self.kwargs: dict[str, Any] = dict(kwargs)

    def __call__(self, app: WSGIApplication) -> WSGIApplication:
        return self.factory(app, *self.args, **self.kwargs)

    def __repr__(self) -> str:
        parts = [getattr(self.factory, "__qualname__", repr(self.factory))]
        parts += [repr(a) for a in self.args]
        parts += [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"use({', '.join(parts)})"


def use(
    factory: Callable[Concatenate[WSGIApplication, P], WSGIApplication],
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> Layer[P]:
    """A layer that builds ``factory(app, *args, **kwargs)``; options are type-checked."""
    return Layer(factory, *args, **kwargs)


def _binds(obj: object, count: int) -> bool | None:
    """Whether ``obj`` can be called with ``count`` positional arguments; None: unknown."""
    try:
        signature = inspect.signature(obj)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*([None] * count))
    except TypeError:
        return False
    return True


def _arity_says_app(obj: object) -> bool:
    """True when ``obj`` accepts (environ, start_response) but not a single app."""
    return bool(_binds(obj, 2)) and _binds(obj, 1) is False


def _needs_options(layer: object) -> tuple[str, list[str]] | None:
    """(name, required arguments after the app) of a middleware class given without them.

    ``compose(RateLimiter, app)`` cannot build ``RateLimiter(app)``; its
    arity alone makes it look like a WSGI app (two positional arguments).
    """
    factory = layer
    while isinstance(factory, functools.partial):
        factory = factory.func
    if not inspect.isclass(factory):
        return None
    try:
        params = list(inspect.signature(layer).parameters.values())  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not params or params[0].name in ("environ", "env"):  # a class that is an app
        return None
    required = [
        p.name
        for p in params[1:]
        if p.default is p.empty and p.kind is not p.VAR_POSITIONAL and p.kind is not p.VAR_KEYWORD
    ]
    return (factory.__qualname__, required) if required else None


#: What a middleware calls the app it wraps, first (ours, werkzeug's, paste's, whitenoise's).
_APP_NAMES = frozenset({"app", "application", "wsgi_app"})


def _by_position(layer: Layer[Any], after_app: list[inspect.Parameter]) -> str | None:
    """Why ``layer.args`` are too many for the parameters after the app, or None if they fit.

    ``use(IPFilter, ["10.0.0.0/8"])``: an option meant by name, given by position.
    """
    if any(p.kind is p.VAR_POSITIONAL for p in after_app):
        return None
    positional = [
        p.name for p in after_app if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(layer.args) <= len(positional):
        return None
    taken = ", ".join(positional) if positional else "no option"
    return (
        f"{getattr(layer.factory, '__qualname__', layer.factory)} takes {taken} by position "
        f"after the app, got {len(layer.args)} positional argument(s); "
        "give the options by name (name=value)"
    )


def _cannot_build(layer: Layer[Any]) -> str | None:
    """Why ``layer`` cannot be called with an app, or None if it may (or cannot be told)."""
    try:
        signature = inspect.signature(layer.factory)
    except (TypeError, ValueError):
        return None
    unknown = unknown_option(layer.factory, layer.kwargs, 1 + len(layer.args))
    if unknown is not None:  # worded as a pipeline's: with a hint for a misspelt name
        return unknown
    try:
        signature.bind(None, *layer.args, **layer.kwargs)
    except TypeError as exc:
        params = list(signature.parameters.values())
        if params and params[0].name in _APP_NAMES:  # a layer: the arguments are wrong
            return _by_position(layer, params[1:]) or str(exc)
        try:
            signature.bind(*layer.args, **layer.kwargs)
        except TypeError:
            return str(exc)
        # Complete without an app: an app itself (PrefixDispatcher, LoadBalancer).
        return (
            f"{getattr(layer.factory, '__qualname__', layer.factory)} takes no app to wrap; "
            "an app such as a dispatcher or a balancer goes last, built by itself"
        )
    return None


def _not_an_app(obj: object) -> str | None:
    """Why the last argument of compose() cannot be the app, or None if it may be.

    A class (or a partial of one) that can be built from one argument is a
    layer: WSGI apps are objects (a Flask or Django app, a function, an
    instance with ``__call__``), and a class that is itself an app is built
    from (environ, start_response).  Anything else must accept those two.
    """
    factory = obj
    while isinstance(factory, functools.partial):
        factory = factory.func
    if inspect.isclass(factory) and _binds(obj, 1):
        return "a class that takes an app: a layer, not the app"
    if _binds(obj, 2) is False:
        return "it cannot be called with (environ, start_response)"
    return None


def compose(*parts: Any) -> WSGIApplication:
    """Stack ``parts[:-1]`` around the app ``parts[-1]``, first layer outermost."""
    if not parts:
        raise TypeError("compose() needs the app as its last argument, got nothing")
    *layers, app = parts
    position = len(parts)
    if isinstance(app, Layer):
        raise TypeError(
            f"compose(): the last argument must be the WSGI app, got the layer {app!r}; "
            "put the app last"
        )
    if not callable(app):
        raise TypeError(f"compose(): the app (argument {position}) is not callable: {app!r}")
    reason = _not_an_app(app)
    if reason is not None:
        raise TypeError(
            f"compose(): the last argument must be the WSGI app, got {label(app)}: {reason}; "
            "put the app last"
        )
    for index, layer in enumerate(layers, start=1):
        if not callable(layer):
            raise TypeError(
                f"compose(): argument {index} ({layer!r}) is not a layer: "
                "a layer is a callable that takes an app and returns an app"
            )
        problem = _cannot_build(layer) if isinstance(layer, Layer) else None
        if problem is not None:
            raise TypeError(
                f"compose(): argument {index} ({layer!r}) cannot wrap the app: {problem}"
            )
        if not isinstance(layer, Layer) and _arity_says_app(layer):
            needs = _needs_options(layer)
            if needs is not None:
                name, required = needs
                raise TypeError(
                    f"compose(): argument {index} ({name}) cannot wrap the app by itself: "
                    f"it needs more arguments ({', '.join(required)}); write use({name}, ...)"
                )
            raise TypeError(
                f"compose(): argument {index} ({label(layer)}) is a WSGI app, not a layer "
                "(it takes environ and start_response); only the last argument is the app"
            )
    result: WSGIApplication = app
    for index in range(len(layers), 0, -1):
        layer = layers[index - 1]
        wrapped = layer(result)
        if not callable(wrapped):
            raise TypeError(
                f"compose(): layer {index} ({label(layer)}) returned {wrapped!r}, not a WSGI app"
            )
        if _closes_over(wrapped, result):
            # Lets describe() see through plain function layers (inspect.unwrap's convention).
            with contextlib.suppress(AttributeError, TypeError):
                wrapped.__wrapped__ = result  # type: ignore[attr-defined]
        result = wrapped
    return result


def _closes_over(wrapped: object, inner: object) -> bool:
    """True for a function a layer made around ``inner`` that names no inner app itself.

    Only such a closure gets ``__wrapped__``: an identity layer returns
    ``inner`` itself (``__wrapped__`` pointing at itself breaks
    ``inspect.signature``), and any other object may be the caller's to keep.
    """
    if wrapped is inner or not inspect.isfunction(wrapped):
        return False
    if getattr(wrapped, "app", None) is not None or hasattr(wrapped, "__wrapped__"):
        return False
    return any(cell.cell_contents is inner for cell in wrapped.__closure__ or ())


def label(obj: object) -> str:
    """A one-line name for a layer or app: its repr, or its qualified name if the repr is bare."""
    text = repr(obj)
    if (text.startswith("<") and " at 0x" in text) or inspect.isfunction(obj):
        target = obj if inspect.isfunction(obj) or inspect.ismethod(obj) else type(obj)
        module = getattr(target, "__module__", "")
        name = getattr(target, "__qualname__", type(obj).__name__)
        return f"{module}.{name}" if module else name
    return text


def _inner(obj: object) -> object | None:
    inner = getattr(obj, "app", None)
    if inner is None or not callable(inner):
        inner = getattr(obj, "__wrapped__", None)
    return inner if callable(inner) else None


def _lines(
    obj: object,
    indent: str,
    path: str | None,
    host: str | None,
    above: frozenset[int] = frozenset(),
) -> Iterator[str]:
    # ``above``: the apps on the way down to here, so a mount that leads back up ends.
    seen: set[int] = set(above)
    node: object | None = obj
    while node is not None:
        if id(node) in seen:
            yield f"{indent}{label(node)}  (a cycle: shown above)"
            return
        seen.add(id(node))
        yield indent + label(node)
        route = getattr(node, "route", None)
        mounts = getattr(node, "mounts", None)
        if path is not None and callable(route):
            match = route(path, host)
            if match is None:
                yield indent + "  (no mount matches)"
                return
            prefix, child, rest = match
            yield f"{indent}  {prefix or '(default)'} ->"
            yield from _lines(child, indent + "    ", rest, host, frozenset(seen))
            return
        if isinstance(mounts, Mapping):
            for prefix, child in mounts.items():
                yield f"{indent}  {prefix} ->"
                yield from _lines(child, indent + "    ", None, None, frozenset(seen))
            default = getattr(node, "default", None)
            if default is not None:
                yield f"{indent}  (default) ->"
                yield from _lines(default, indent + "    ", None, None, frozenset(seen))
            return
        node = _inner(node)


def describe(app: object, path: str | None = None, host: str | None = None) -> str:
    """The stack under ``app``, one layer a line, outermost first; never calls an app.

    With ``path`` (and optionally ``host``), a dispatcher shows only the mount
    a request for that path would reach: "which layers does this URL pass?".
    The path is read as a URL carries it, as the server reads a request
    line: the query and fragment are dropped and %-escapes decoded, so a path
    copied from an access log (``/caf%C3%A9?page=2``) finds its mount.
    """
    if path is not None:
        path = unquote(path.partition("#")[0].partition("?")[0])
    return "\n".join(_lines(app, "", path, host))
