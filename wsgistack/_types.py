"""WSGI types used across the package, named once."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeAlias
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["ExcInfo", "Layer", "StartResponse", "WSGIApplication", "WSGIEnvironment"]

#: Anything that takes an app and returns an app: a middleware class, ``use(...)``, a function.
Layer: TypeAlias = Callable[[WSGIApplication], WSGIApplication]
ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, object] | tuple[None, None, None]
AppIter: TypeAlias = Iterable[bytes]
