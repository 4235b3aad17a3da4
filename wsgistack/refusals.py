"""Error responses as WSGI apps (``webob.exc``), with a JSON form fit for API clients.

webob negotiates HTML, JSON or plain text by ``Accept``, but its JSON
``message`` is the HTML body's text, markup and all (``"...time<br /><br />\\n"``).
Every refusal a layer sends (403, 404, 429, 500, 502...) is built here, so
each one's JSON says the same plain sentence its text form says.

    return refusal(webob.exc.HTTPTooManyRequests, headers=[("Retry-After", "3")])(
        environ, start_response
    )
"""

from __future__ import annotations

from typing import Any

import webob.exc

__all__ = ["plain_json", "refusal"]


def plain_json(body: str, status: str, title: str, environ: dict[str, Any]) -> dict[str, str]:
    """webob's JSON fields, the message as one line of text without markup."""
    return {"message": " ".join(webob.exc.strip_tags(body).split()), "code": status, "title": title}


def refusal(
    kind: type[webob.exc.WSGIHTTPException], detail: str | None = None, **options: Any
) -> webob.exc.WSGIHTTPException:
    """An instance of ``kind`` (e.g. ``webob.exc.HTTPForbidden``) whose JSON is plain."""
    response = kind(detail, **options)
    response.json_formatter = plain_json  # type: ignore[method-assign]
    return response
