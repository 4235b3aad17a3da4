"""The small apps that recipes/stack.toml mounts (any WSGI apps would do)."""

from __future__ import annotations

import json


def api(environ, start_response):
    body = json.dumps({"path": environ["SCRIPT_NAME"] + environ["PATH_INFO"]}).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def admin(environ, start_response):
    body = b"admin area"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def boom(environ, start_response):
    raise RuntimeError("fails on purpose: the error catcher answers 500 with an error id")
