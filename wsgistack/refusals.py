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


class _HeadAsGet:
    """Answer HEAD with the head GET gets (RFC 9110 9.3.2), and no body.

    webob answers a HEAD with a bare ``text/html`` head and no
    ``Content-Length``, whatever GET would have said, so a client checking
    a URL with HEAD saw a different response from the one GET gets.
    """

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("REQUEST_METHOD") != "HEAD":
            return super().__call__(environ, start_response)  # type: ignore[misc]
        super().__call__({**environ, "REQUEST_METHOD": "GET"}, start_response)  # type: ignore[misc]
        return []  # webob's bodies are lists: nothing to close


#: Each webob class with ``_HeadAsGet`` in front, made once.
_ANSWERING_HEAD: dict[type, type] = {}


def _answering_head(kind: type[webob.exc.WSGIHTTPException]) -> type[webob.exc.WSGIHTTPException]:
    made = _ANSWERING_HEAD.get(kind)
    if made is None:
        made = type(kind.__name__, (_HeadAsGet, kind), {"__module__": kind.__module__})
        _ANSWERING_HEAD[kind] = made
    return made


def refusal(
    kind: type[webob.exc.WSGIHTTPException], detail: str | None = None, **options: Any
) -> webob.exc.WSGIHTTPException:
    """An instance of ``kind`` (e.g. ``webob.exc.HTTPForbidden``): plain JSON, HEAD as GET."""
    response = _answering_head(kind)(detail, **options)
    response.json_formatter = plain_json  # type: ignore[method-assign]
    return response
