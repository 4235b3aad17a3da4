"""Request text made safe for a log line: what a client sent cannot forge lines.

As nginx writes its log: '"', '\\', control characters and bytes past ASCII
become ``\\xHH``, so a client cannot end a line, forge fields or send escape
sequences to a terminal.  (Environ text is latin-1: one character per byte
received, and a percent-decoded ``PATH_INFO`` carries ``%0A`` as a real LF.)

    logger.error("failed: %s %s", method, log_text(environ["PATH_INFO"]))
"""

from __future__ import annotations

from typing import Any

from .clientip import ProxyTrust, client_addr

__all__ = ["LOG_ESCAPES", "log_text", "request_from"]

#: A ``str.translate`` table; the access log applies it to each field directly.
LOG_ESCAPES = {code: f"\\x{code:02X}" for code in (*range(0x20), 0x22, 0x5C, *range(0x7F, 0x100))}


def log_text(text: str) -> str:
    """``text`` with every character a client could abuse in a log written as ``\\xHH``."""
    return text.translate(LOG_ESCAPES)


def request_from(environ: dict[str, Any], trust: ProxyTrust | None = None) -> str:
    """``GET /mount/path from 203.0.113.9``: which request a failure line is about.

    Method and path are escaped; the client is the one ``trust`` decides (the
    peer without it), always an address or ``-``, so it needs no escaping.
    """
    method = environ.get("REQUEST_METHOD", "-")
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    return f"{log_text(f'{method} {path}')} from {client_addr(environ, trust)}"
