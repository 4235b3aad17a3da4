"""Checks shared by the middlewares' options, so each kind of option fails the same way.

A flag must be a real ``bool``: ``bool("false")`` is True, so taking any
truthy value would leave an option on when a config file spells it as a
string.  Ini files (PasteDeploy) have only strings; they get the usual
spellings, read by :func:`ini_flag`.

    self.dry_run = flag(dry_run, "IPFilter: dry_run")
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import logging
import re
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .errors import ConfigError

__all__ = [
    "MAX_SECONDS",
    "TCHAR",
    "TOKEN",
    "choice",
    "count",
    "did_you_mean",
    "flag",
    "function",
    "header_name",
    "ini_flag",
    "listed",
    "log_target",
    "owned",
    "seconds",
    "text_options",
    "unknown_option",
]

#: RFC 9110 5.6.2: tchar, as a regex character class.
TCHAR = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
#: RFC 9110 5.1: field-name = token; 5.6.2: token = 1*tchar.  The server checks
#: the names an app sends with it too.
TOKEN = re.compile(TCHAR + r"+\Z")

#: The largest number of seconds an option takes: "never" for every practical
#: purpose, and well inside what the kernel's socket timeouts (a C ``long``) and
#: ``threading``'s waits (``TIMEOUT_MAX``) accept.
MAX_SECONDS = 365 * 24 * 3600

_INI_TRUE = frozenset({"true", "yes", "on", "1"})
_INI_FALSE = frozenset({"false", "no", "off", "0"})


def flag(value: object, option: str) -> bool:
    """``value`` if it is ``True`` or ``False``; a ``ConfigError`` naming ``option`` otherwise."""
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{option}: expected true or false, got {value!r}")


def choice(value: object, option: str, choices: Iterable[str]) -> str:
    """``value`` if it is one of the words ``choices``; a ``ConfigError`` naming ``option`` if not.

    Checked by equality on strings only: a list from a config file is refused
    by name, not looked up in a dict (``unhashable type: 'list'``).
    """
    words = list(choices)
    if isinstance(value, str) and value in words:
        return value
    quoted = [repr(word) for word in words]
    expected = " or ".join(quoted) if len(quoted) == 2 else "one of " + ", ".join(quoted)
    raise ConfigError(f"{option}: expected {expected}, got {value!r}")


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'allow'?)`` for a misspelt ``name`` close to one of ``choices``, else ""."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_option(factory: Callable[..., Any], names: Iterable[str], skip: int) -> str | None:
    """``unknown option 'alow' (did you mean 'allow'?)`` for a name ``factory`` does not take.

    ``skip`` positional arguments come first (the app, a dispatcher's mounts),
    so their parameters are offered as no hint.  None when every name is taken, or
    when the factory takes ``**kwargs`` or has no signature to read: compose()
    and pipelines say the same thing, before any app is built.
    """
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    taken = {p.name for p in positional[:skip]}
    named = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for name in names:
        if name not in named:  # a name given twice (the app's) is binding's to tell
            hints = [known for known in named if known not in taken]
            return f"unknown option {name!r}{did_you_mean(name, hints)}"
    return None


_NUMBERS = frozenset({"int", "float", "bool"})


def _typed(annotation: object) -> object:
    """The type ``Annotated[T, ...]`` gives (``T``); any other annotation as it is."""
    if typing.get_origin(annotation) is typing.Annotated:
        return typing.get_args(annotation)[0]
    return annotation


def _union_members(annotation: object) -> set[str]:
    """The names of a union's members (``str | None``, ``Optional[str]``), or of the type alone.

    ``list[str]`` is a list, not text: only a union is looked into.
    ``Annotated[str, ...]`` is ``str``, alone or as a member.
    """
    annotation = _typed(annotation)
    members = [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [_typed(arg) for arg in typing.get_args(annotation)]
    return {getattr(member, "__name__", repr(member)) for member in members}


def _split(text: str) -> list[str]:
    """``text``'s parts between the "|" and "," outside brackets: a union's members."""
    parts, depth, start = [], 0, 0
    for at, char in enumerate(text + "|"):
        depth += (char == "[") - (char == "]")
        if char in "|," and depth == 0:
            parts.append(text[start:at].strip())
            start = at + 1
    return parts


def _unwrapped(text: str, wrappers: tuple[str, ...]) -> str | None:
    """What ``text`` holds inside the first of ``wrappers`` it is (``Optional[...]``), or None."""
    for wrapper in wrappers:
        for spelling in (wrapper, f"typing.{wrapper}"):
            if text.startswith(f"{spelling}[") and text.endswith("]"):
                return text[len(spelling) + 1 : -1]
    return None


def _written_type(text: str) -> str:
    """The type ``Annotated[str, ...]`` is written to give (``str``); any other text as it is."""
    annotated = _unwrapped(text, ("Annotated",))
    return text if annotated is None else _split(annotated)[0]


def _written_members(annotation: str) -> set[str]:
    """The same, read from an annotation's text, when its names cannot be evaluated."""
    text = _written_type(annotation.strip())
    members = _split(_unwrapped(text, ("Optional", "Union")) or text)
    return {_written_type(member).removeprefix("builtins.") for member in members}


def text_options(factory: Callable[..., Any]) -> frozenset[str]:
    """The options of ``factory`` that take text and no number: names, paths, hosts, prefixes.

    Read from the annotations (``name: str | None``, ``Optional[str]``,
    ``Annotated[str, ...]``), or
    from a text default where there is none.  An ini value ``name = 2024`` is
    the text "2024" for these: an ini has no quotes to tell text from a number.
    """
    try:
        params = inspect.signature(factory, eval_str=True).parameters.values()
    except (NameError, SyntaxError, AttributeError):  # a name only a type checker sees
        try:
            params = inspect.signature(factory).parameters.values()
        except (TypeError, ValueError):
            return frozenset()
    except (TypeError, ValueError):
        return frozenset()
    names = set()
    for param in params:
        annotation = param.annotation
        if annotation is param.empty:
            if isinstance(param.default, str):
                names.add(param.name)
            continue
        if isinstance(annotation, str):
            members = _written_members(annotation)
        else:
            members = _union_members(annotation)
        if "str" in members and not members & _NUMBERS:
            names.add(param.name)
    return frozenset(names)


@contextlib.contextmanager
def owned(owner: str) -> Iterator[None]:
    """Put ``owner`` (``RateLimiter``) before a ConfigError raised inside, so each names its layer.

    Shared parts (rates, stores, ``trusted_proxies``) word their messages by
    option (``burst: ...``); the middleware that took the option adds its name
    here, once, as its own checks do (``RateLimiter: burst: ...``).
    """
    try:
        yield
    except ConfigError as exc:
        if str(exc).startswith(f"{owner}: "):
            raise
        raise ConfigError(f"{owner}: {exc}") from exc.__cause__


def count(value: object, option: str, least: int = 1) -> int:
    """``value`` if it is a whole number >= ``least`` (a size, a limit); a ConfigError otherwise.

    ``least=0`` for the options where 0 means "none" or "off" (as nginx's
    ``max_fails=0``).
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= least:
        return value
    raise ConfigError(f"{option}: expected a whole number >= {least}, got {value!r}")


def seconds(value: object, option: str) -> float:
    """``value`` as seconds if it is > 0 and at most a year (a timeout); else a ConfigError.

    Zero is refused too: as a socket timeout it means "never wait", so every
    call would fail.  So is more than a year: a socket or a thread's wait
    cannot hold it, so it would fail at the first request that waits.
    """
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise ConfigError(f"{option}: expected seconds > 0, got {value!r}")
    if value > MAX_SECONDS:
        raise ConfigError(
            f"{option}: expected at most {MAX_SECONDS} seconds (a year), got {value!r}"
        )
    return float(value)


def ini_flag(text: object, option: str) -> bool:
    """An ini value as a flag: true/yes/on/1 or false/no/off/0, in any case."""
    if isinstance(text, bool):
        return text
    word = text.strip().lower() if isinstance(text, str) else None
    if word in _INI_TRUE:
        return True
    if word in _INI_FALSE:
        return False
    raise ConfigError(f"{option}: expected true/yes/on/1 or false/no/off/0, got {text!r}")


def header_name(value: object, option: str) -> str:
    """``value`` if it is a valid HTTP header name (an RFC 9110 token); else a ConfigError.

    Checked at start-up: a bad name would otherwise break the response that
    carries it, at the first request.
    """
    if isinstance(value, str) and TOKEN.match(value):
        return value
    raise ConfigError(f"{option}: {value!r} is not a header name (letters, digits, '-', ...)")


def listed(value: object, option: str, of: str = "") -> list[Any]:
    """``value`` as a list if it is a collection; a ``ConfigError`` naming ``option`` if not.

    A string is iterable too: taken as a list it would be read a character at
    a time, so it is refused by name.  ``of`` says what the list holds.
    """
    what = f"a list of {of}" if of else "a list"
    if isinstance(value, str | bytes):
        raise ConfigError(f"{option}: expected {what}, got the string {value!r}")
    if not isinstance(value, Iterable):
        raise ConfigError(f"{option}: expected {what}, got {value!r}")
    return list(value)


def function(value: object, option: str) -> Callable[..., Any]:
    """``value`` if it is callable (a clock, a key function); else a ConfigError.

    Checked at start-up: a string from a config file would otherwise fail at
    the first request that calls it.
    """
    if callable(value):
        return value
    raise ConfigError(f"{option}: {value!r} is not callable")


def log_target(
    value: object, option: str, default: str
) -> logging.Logger | logging.LoggerAdapter[Any]:
    """``value`` if it is a logger, the logger named ``default`` if None; else a ConfigError.

    A logger's name (``logger = "myapp"`` in a config file) is refused rather
    than taken: the first refusal would otherwise fail on ``logger.info``.
    """
    if value is None:
        return logging.getLogger(default)
    if isinstance(value, logging.Logger | logging.LoggerAdapter):
        return value
    raise ConfigError(f"{option}: expected a logging.Logger, got {value!r}")
