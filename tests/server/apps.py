"""Apps the process tests serve with the real CLI."""

from __future__ import annotations

import os
import time
from pathlib import Path


def app(environ, start_response):
    """/pid answers the worker's pid; /slow?SECONDS&MARKER waits, after touching MARKER."""
    path = environ["PATH_INFO"]
    if path == "/slow":
        seconds, _, marker = environ["QUERY_STRING"].partition("&")
        Path(marker).touch()
        time.sleep(float(seconds))  # a slow app, on purpose
        body = b"slow done"
    else:
        body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def broken_factory():
    raise RuntimeError("this app cannot load")
