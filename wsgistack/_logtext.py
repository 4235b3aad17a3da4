"""Request text made safe for a log line: what a client sent cannot forge lines.

As nginx writes its log: '"', '\\', control characters and bytes past ASCII
become ``\\xHH``, so a client cannot end a line, forge fields or send escape
sequences to a terminal.  (Environ text is latin-1: one character per byte
received, and a percent-decoded ``PATH_INFO`` carries ``%0A`` as a real LF.)

    logger.error("failed: %s %s", method, log_text(environ["PATH_INFO"]))
"""

from __future__ import annotations

from typing import Any

__all__ = ["LOG_ESCAPES", "log_text", "request_text"]

#: A ``str.translate`` table; the access log applies it to each field directly.
LOG_ESCAPES = {code: f"\\x{code:02X}" for code in (*range(0x20), 0x22, 0x5C, *range(0x7F, 0x100))}


def log_text(text: str) -> str:
    """``text`` with every character a client could abuse in a log written as ``\\xHH``."""
    return text.translate(LOG_ESCAPES)


def request_text(environ: dict[str, Any]) -> str:
    """``METHOD /mount/path`` of a request, escaped: what each failure line names."""
    method = environ.get("REQUEST_METHOD", "-")
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    return log_text(f"{method} {path}")
