"""A Flask app and a Django app in one process, each under its own prefix.

What it solves: an API written in Flask and a site written in Django, served
by one server.  Each believes it is the whole site: Flask's ``url_for`` and
Django's ``reverse`` produce URLs under /api and /site by themselves, because
the dispatcher moves the prefix into SCRIPT_NAME.

Needs: pip install flask django

Run it:
    wsgistack serve recipes.mount_flask_and_django:app --bind 127.0.0.1:8000

What to expect:
    curl 127.0.0.1:8000/api/users/ann     -> {"self":"/api/users/ann"}
    curl 127.0.0.1:8000/site/articles/hi/ -> {"self": "/site/articles/hi/"}
    curl -i 127.0.0.1:8000/site           -> 308 to /site/
    curl 127.0.0.1:8000/                  -> a page linking both
"""

from __future__ import annotations

from urllib.parse import quote

import django
from django.conf import settings
from flask import Flask, url_for

from wsgistack.middlewares import PrefixDispatcher

# -- the Flask API -------------------------------------------------------------
api = Flask(__name__)


@api.get("/users/<name>")
def user(name: str) -> dict[str, str]:
    return {"self": url_for("user", name=name)}


# -- the Django site (settings inline: a real project keeps them in settings.py) --
if not settings.configured:
    settings.configure(
        SECRET_KEY="recipe-only-change-me",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
    )
    django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.urls import path, reverse  # noqa: E402


def article(request: HttpRequest, slug: str) -> JsonResponse:
    return JsonResponse({"self": reverse("article", args=[slug])})


urlpatterns = [path("articles/<slug:slug>/", article, name="article")]


# -- one site ------------------------------------------------------------------
def index(environ, start_response):
    # Links under SCRIPT_NAME too: served at /shop (--root-path, nginx's uwsgi_param
    # SCRIPT_NAME), "/api/..." would leave the site.
    root = quote(environ.get("SCRIPT_NAME", "").encode("latin-1"))
    body = (
        f'<a href="{root}/api/users/ann">Flask API</a> '
        f'<a href="{root}/site/articles/hi/">Django site</a>'
    ).encode()
    start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(body)))])
    return [body]


app = PrefixDispatcher(
    {"/api": api.wsgi_app, "/site": get_wsgi_application()},
    default=index,
)
