"""An in-process server stand-in that keeps a real server's promises, for middleware tests.

Headers go out with the first non-empty chunk or write(); ``start_response``
with ``exc_info`` replaces unsent headers and re-raises once they are sent; the
result's ``close()`` is always called.  An exception that escapes after the
headers were sent is an aborted response, as a real server would treat it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from wsgiref.util import setup_testing_defaults

from wsgistack._types import WSGIApplication


@dataclass
class Outcome:
    status: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    aborted: BaseException | None = None

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def serve_once(app: WSGIApplication, path: str = "/", **environ_extra: str) -> Outcome:
    environ: dict = {"PATH_INFO": path, "QUERY_STRING": "", "SCRIPT_NAME": "", **environ_extra}
    setup_testing_defaults(environ)
    outcome = Outcome()
    pending: dict = {}

    def send(data: bytes) -> None:
        if not outcome.status:
            outcome.status, outcome.headers = pending["status"], pending["headers"]
        outcome.body += data

    def start_response(status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if outcome.status:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif pending:
            raise AssertionError("start_response called twice without exc_info")
        pending["status"], pending["headers"] = status, headers
        return lambda data: data and send(data)

    try:
        result = app(environ, start_response)
    except Exception as exc:
        if not outcome.status:
            raise
        outcome.aborted = exc
        return outcome
    try:
        for chunk in result:
            if chunk:
                send(chunk)
        if not outcome.status:
            send(b"")
    except Exception as exc:
        if not outcome.status:
            raise
        outcome.aborted = exc
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return outcome
