"""A HEAD to Django's streaming response is answered from its head: the body is not drained.

A HEAD's body goes nowhere, so no send ever fails to tell the server that
the client left: a server that reads an endless body (server-sent events, a
long poll) to its end for a HEAD holds a request thread for good, and a few
HEADs stop the worker.  The generator must be closed once the head is out.
(Flask needs nothing: werkzeug itself gives no body for a HEAD.)
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.test import override_settings
from django.urls import path

import tests.djangoapp  # noqa: F401  (configures Django's settings)

from .live import RawClient, live_server
from .served import poll

#: Far more events than a test would wait for: drained, they would still end.
EVENTS = 10_000


def events(taken: list[object]) -> Iterator[bytes]:
    """An event stream that records each event taken, and its close."""
    try:
        for number in range(EVENTS):
            taken.append(number)
            yield b"data: %d\n\n" % number
    except GeneratorExit:
        taken.append("closed")
        raise


TAKEN: list[object] = []  # the Django view's (its urlconf is this module)


def django_stream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(events(TAKEN), content_type="text/event-stream")


urlpatterns = [
    path("events", django_stream),
    path("ok", lambda request: HttpResponse(b"ok", content_type="text/plain")),
]


@pytest.fixture
def django_events() -> Iterator[tuple[object, list[object], list[object]]]:
    finished: list[object] = []

    def count(sender: object, **kwargs: object) -> None:
        finished.append(sender)

    TAKEN.clear()
    signals.request_finished.connect(count)
    try:
        with override_settings(ROOT_URLCONF=sys.modules[__name__]):
            yield get_wsgi_application(), TAKEN, finished
    finally:
        signals.request_finished.disconnect(count)


def test_a_head_to_djangos_streaming_response_closes_it_once(django_events):
    app, taken, finished = django_events
    with live_server(app, threads=1) as server, RawClient(server.address) as client:
        status, headers, _ = client.request(
            b"HEAD /events HTTP/1.1\r\nHost: a\r\n\r\n", head_only=True
        )
        assert (status, headers["content-type"]) == (200, "text/event-stream")
        assert "transfer-encoding" not in headers  # no body follows, framed or not
        poll(lambda: finished)
        # Served on the same connection, by the same (only) request thread.
        status, _, body = client.request(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (status, body) == (200, b"ok")
    assert taken == [0, "closed"]
    assert len(finished) == 2  # request_finished: once for the HEAD, once for the GET
