"""A real, minimal Django site for in-process tests (settings are per process: only here).

Views use ``reverse``, ``redirect`` and ``static`` so tests can check that a
mounted Django app builds its URLs under the prefix it was mounted at.
"""

from __future__ import annotations

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
        STATIC_URL="static/",
        USE_TZ=True,
    )
    django.setup()

from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.templatetags.static import static
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


urlpatterns = [
    path("articles/<slug:slug>/", article, name="article"),
    path("old/", old_home),
]

application = get_wsgi_application()
