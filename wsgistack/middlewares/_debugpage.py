"""The debug traceback page: each frame with its source line and local variables.

Everything shown is HTML-escaped and every repr is cut short, so a hostile
value cannot inject markup and a huge one cannot flood the page.
"""

from __future__ import annotations

import html
import reprlib
import traceback
from types import TracebackType
from typing import Any

__all__ = ["debug_page", "debug_text", "summary"]


class _Repr(reprlib.Repr):
    # reprlib cuts str before repr() but bytes only after: a 100 MB upload held in a
    # frame would be repr()ed whole (four characters a byte) to show 200 of them.
    repr_bytes = reprlib.Repr.repr_str
    repr_bytearray = reprlib.Repr.repr_str


_repr = _Repr()
_repr.maxstring = 200
_repr.maxother = 200
_repr.maxlevel = 3


def _safe_repr(value: Any) -> str:
    try:
        return _repr.repr(value)
    except Exception as exc:  # a broken __repr__ must not break the page
        return f"<repr failed: {type(exc).__name__}>"


def _frames(tb: TracebackType | None) -> str:
    parts = []
    for frame, lineno in traceback.walk_tb(tb):
        code = frame.f_code
        line = traceback.FrameSummary(code.co_filename, lineno, code.co_name).line or ""
        # exec() takes any mapping as locals: a name may be any key, not only a str.
        named = [
            (name if isinstance(name, str) else _safe_repr(name), value)
            for name, value in frame.f_locals.items()
        ]
        local_rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td><code>{html.escape(_safe_repr(value))}</code>"
            "</td></tr>"
            for name, value in sorted(named, key=lambda item: item[0])
        )
        parts.append(
            f"<section><h3>{html.escape(code.co_filename)}:{lineno} in "
            f"{html.escape(code.co_name)}</h3><pre>{html.escape(line)}</pre>"
            f"<table>{local_rows}</table></section>"
        )
    return "".join(parts)


def summary(error: BaseException) -> str:
    """The exception's last traceback line: ``ValueError: bad input``."""
    return "".join(traceback.format_exception_only(type(error), error)).strip()


def debug_page(exc_info: tuple[Any, BaseException, TracebackType | None], error_id: str) -> str:
    """An HTML page describing the exception, for ``ErrorCatcher(debug=True)`` only."""
    _, error, tb = exc_info
    return (
        "<!DOCTYPE html><html><head><title>500 Internal Server Error</title></head><body>"
        f"<h1>{html.escape(summary(error))}</h1><p>Error id: {html.escape(error_id)}</p>"
        f"{_frames(tb)}</body></html>"
    )


def debug_text(exc_info: tuple[Any, BaseException, TracebackType | None]) -> str:
    """The traceback as Python prints it, for clients that asked for JSON or plain text."""
    _, error, tb = exc_info
    return "".join(traceback.format_exception(type(error), error, tb))
