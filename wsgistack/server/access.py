"""The access log in the combined log format (Apache/nginx "combined"), one line a response.

access = AccessLog.open("-")      # stdout; a path appends to that file
access(environ, response)
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

from ..errors import ConfigError

__all__ = ["AccessLog"]


class AccessLog:
    """Writes ``host - - [date] "request" status size "referer" "agent"`` lines."""

    def __init__(self, stream: TextIO, owned: bool) -> None:
        self._stream = stream
        self._owned = owned
        self._lock = threading.Lock()

    @classmethod
    def open(cls, target: str | None) -> AccessLog | None:
        if target is None:
            return None
        if target == "-":
            return cls(sys.stdout, owned=False)
        try:
            stream = open(target, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 (kept open)
        except OSError as exc:
            raise ConfigError(f"access_log: cannot open {target!r}: {exc.strerror}") from None
        return cls(stream, owned=True)

    def __call__(self, environ: dict[str, Any], response: Any) -> None:
        status = (response.status or "500")[:3]
        size = response.written or "-"
        line = (
            f"{environ.get('REMOTE_ADDR', '-')} - - "
            f"[{time.strftime('%d/%b/%Y:%H:%M:%S %z')}] "
            f'"{environ["REQUEST_METHOD"]} {environ["RAW_URI"]} {environ["SERVER_PROTOCOL"]}" '
            f"{status} {size} "
            f'"{environ.get("HTTP_REFERER", "-")}" "{environ.get("HTTP_USER_AGENT", "-")}"\n'
        )
        with self._lock:
            self._stream.write(line)
            self._stream.flush()

    def close(self) -> None:
        if self._owned:
            self._stream.close()
