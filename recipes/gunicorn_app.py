"""The same middlewares inside gunicorn, or inside a PasteDeploy ini (recipes/site.ini).

What it solves: keep your server (gunicorn, uWSGI, waitress) and only add
the layers. A wsgistack stack is a plain WSGI app, so any server runs it.

Needs: pip install gunicorn pastedeploy

Run it (from the repository, so that ``recipes`` is importable):
    gunicorn 'recipes.gunicorn_app:app' --bind 127.0.0.1:8000 --workers 2
    # or the same pipeline from the PasteDeploy ini, recipes/site.ini:
    gunicorn --paste recipes/site.ini --bind 127.0.0.1:8000 --workers 2

What to expect:
    curl 127.0.0.1:8000/        -> 200 "served by any WSGI server"
    curl 127.0.0.1:8000/admin/  -> 403 (127.0.0.1 is not the office network)
    curl 127.0.0.1:8000/boom    -> 500 with an error id (the traceback goes to stderr)
"""

from __future__ import annotations

from wsgistack import compose, use
from wsgistack.middlewares import ErrorCatcher, IPFilter


def site(environ, start_response):
    if environ["PATH_INFO"] == "/boom":
        raise RuntimeError("fails on purpose")
    body = b"served by any WSGI server"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


app = compose(
    use(ErrorCatcher),
    use(IPFilter, allow=["192.0.2.0/24"], paths=["/admin"]),
    site,
)


def site_factory(global_conf, **local_conf):
    """A paste.app_factory for recipes/site.ini."""
    return site
