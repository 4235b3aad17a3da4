"""The error catcher reporting each failure to your own hook (Sentry, a chat, a ticket).

What it solves: an error id the user can quote, the same id in your log and
in your reporting service, and a hook that can never make things worse.

Run it:
    wsgistack serve recipes.error_hook:app --bind 127.0.0.1:8000

What to expect:
    curl -i 127.0.0.1:8000/          -> 500, X-Error-Id: <id>, nothing about the exception
    the log has one ERROR record with that id and the traceback, and
    REPORTED (below) holds (exception type, path, id) for each failure.
"""

from __future__ import annotations

import logging

from wsgistack.middlewares import ErrorCatcher

REPORTED: list[tuple[str, str, str]] = []
log = logging.getLogger("recipes.error_hook")


def report(exc_info, environ, error_id):
    """Your reporting call goes here; a failure inside it is logged, never shown."""
    REPORTED.append((exc_info[0].__name__, environ.get("PATH_INFO", ""), error_id))
    log.info("reported %s as %s", exc_info[0].__name__, error_id)


def app_that_fails(environ, start_response):
    raise KeyError("customer_id")


app = ErrorCatcher(app_that_fails, on_error=report, statuses={TimeoutError: 504})
