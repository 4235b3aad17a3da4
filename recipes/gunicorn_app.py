"""The same middlewares inside gunicorn, or inside a PasteDeploy ini (recipes/site.ini).

What it solves: keep your server (gunicorn, uWSGI, waitress) and only add
the layers. A wsgistack stack is a plain WSGI app, so any server runs it.

Run it:
    gunicorn 'recipes.gunicorn_app:app' --bind 127.0.0.1:8000 --workers 2
    # or, with PasteDeploy (recipes/site.ini has the same pipeline):
    python -c "from paste.deploy import loadapp; import os; \\
        app = loadapp('config:' + os.path.abspath('recipes/site.ini'))"

What to expect: / answers; /admin/ answers 403 outside the office network;
/boom answers 500 with an error id.
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
