"""A real, minimal Django site for in-process tests (settings are per process: only here).

Views use ``reverse``, ``redirect`` and ``static`` so tests can check that a
mounted Django app builds its URLs under the prefix it was mounted at.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="tests-only-not-secret",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django.contrib.staticfiles"],
        MIDDLEWARE=[],
        STATIC_URL="static/",  # relative: Django puts the script prefix in front
        USE_TZ=True,
    )
    django.setup()

from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.templatetags.static import static
from django.test import override_settings
from django.urls import path, reverse


def article(request: HttpRequest, slug: str) -> HttpResponse:
    return JsonResponse(
        {
            "self": reverse("article", args=[slug]),
            "path": request.path,
            "path_info": request.path_info,
            "static": static("site.css"),
        }
    )


def old_home(request: HttpRequest) -> HttpResponse:
    return redirect("article", slug="home")


def upload(request: HttpRequest) -> HttpResponse:
    """A form post with a file, as Django parses it (the body read through wsgi.input)."""
    sent = request.FILES["upload"]
    return JsonResponse({"name": request.POST["name"], "file": sent.name, "size": sent.size})


def body(request: HttpRequest) -> HttpResponse:
    """What Django read of the request body, and the framing it was told of."""
    return JsonResponse(
        {
            "size": len(request.body),
            "sha256": hashlib.sha256(request.body).hexdigest(),
            "content_length": request.META.get("CONTENT_LENGTH"),
            "transfer_encoding": request.META.get("HTTP_TRANSFER_ENCODING"),
        }
    )


urlpatterns = [
    path("articles/<slug:slug>/", article, name="article"),
    path("old/", old_home),
    path("upload/", upload),
    path("body/", body),
]

application = get_wsgi_application()


@contextmanager
def fresh_static_url() -> Iterator[None]:
    """Let the next request, not the first of the process, decide the static URL prefix.

    Django prefixes a relative STATIC_URL with the script prefix of the first
    request that reads it, then keeps the result for the process (in the
    settings cache and the staticfiles storage). A test that runs the site at
    "/" first would fix it at "/static/" for every later test; overriding the
    setting clears both caches on the way in and on the way out.
    """
    with override_settings(STATIC_URL="static/"):
        yield
