"""The stackable middlewares, one module each.

from wsgistack.middlewares import ErrorCatcher
"""

from __future__ import annotations

from .errors import ErrorCatcher

__all__ = ["ErrorCatcher"]
