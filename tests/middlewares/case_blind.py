"""An app that routes as IIS or a macOS/Windows file system does, for the ``ignore_case`` tests."""

from __future__ import annotations

from wsgistack._types import WSGIApplication


def case_blind_app(*routes: str, body: bytes) -> WSGIApplication:
    """Answers ``body`` under any of ``routes`` (first segments) in any letter case, else "welcome"."""

    def app(environ, start_response):
        route = environ["PATH_INFO"].encode("latin-1").decode("utf-8").lower()
        answer = body if route.split("/")[1] in routes else b"welcome"
        headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(answer)))]
        start_response("200 OK", headers)
        return [answer]

    return app
