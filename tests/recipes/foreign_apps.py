"""Apps that ``tests/recipes/test_other_servers.py`` serves with gunicorn, uWSGI and waitress."""

from __future__ import annotations

import io
import os
from pathlib import Path

from wsgistack.middlewares import ErrorCatcher

BLOB = Path(os.environ.get("FOREIGN_BLOB", "/nonexistent"))


class _SentByDescriptor(io.FileIO):
    """A file that fails if Python reads it: a server's sendfile() never does."""

    def __next__(self) -> bytes:
        raise RuntimeError("the file was iterated instead of sent from its descriptor")

    def read(self, size: int | None = -1) -> bytes:
        raise RuntimeError("the file was read instead of sent from its descriptor")


def download(environ, start_response):
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(BLOB.stat().st_size)),
        ],
    )
    return environ["wsgi.file_wrapper"](_SentByDescriptor(BLOB, "r"), 65536)


caught_download = ErrorCatcher(download)


def balanced():
    """A LoadBalancer over ``FOREIGN_UPSTREAM`` (gunicorn's ``module:factory()`` form)."""
    from wsgistack.middlewares import LoadBalancer

    return LoadBalancer(
        [os.environ["FOREIGN_UPSTREAM"]],
        read_timeout=float(os.environ.get("FOREIGN_READ_TIMEOUT", "30")),
        max_fails=0,
    )
