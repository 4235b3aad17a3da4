"""What README python, TOML and ini blocks promise beyond running: ``BEHAVIOUR``.

``BEHAVIOUR`` maps a block id to a check driving what the block built through
webtest; ``fresh_namespace`` holds the names python blocks assume.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from wsgiref.validate import validator

import redis
import webob
from flask import Flask
from webtest import TestApp

from tests.readme_blocks import Block


# -- the names python blocks assume -------------------------------------------------------
def named(name: str):
    """A tiny app answering with its own name (so tests see which app answered)."""

    def app(environ, start_response):
        body = name.encode()
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]

    return app


def make_flask_app() -> Flask:
    """A real Flask app: the ``flask_app`` the middleware sections wrap."""
    app = Flask("readme_flask_app")

    @app.get("/")
    def home():
        return "flask home"

    @app.get("/admin/")
    def admin():
        return "flask admin"

    @app.get("/api/items")
    def items():
        return {"items": []}

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret detail")

    @app.get("/timeout")
    def timeout():
        raise TimeoutError("upstream too slow")

    return app


def fresh_namespace(block: Block) -> dict:
    from tests.djangoapp import (
        application as django_application,
    )  # Django settings: one per process

    module = block.filename.removesuffix(".py").replace("/", ".") if block.filename else "readme"
    return {
        "__name__": module,
        "flask_app": make_flask_app(),
        "django_application": django_application,
        "docs_app": named("docs_app"),
        "tenants_app": named("tenants_app"),
        "legacy_app": named("legacy_app"),
        "local_app": named("local_app"),
    }


# -- what some blocks promise, beyond running ---------------------------------------------
def get(app, path: str, addr: str = "198.51.100.1", **kw):
    return TestApp(validator(app)).get(
        path, extra_environ={"REMOTE_ADDR": addr}, expect_errors=True, **kw
    )


def flask_wrapped(ns, ctx):
    app = ns["app"]
    assert get(app, "/").text == "hello"
    assert get(app, "/admin/", "203.0.113.9").status_int == 403
    assert get(app, "/admin/", "192.0.2.7").text == "admin dashboard"


def django_wrapped(ns, ctx):
    app = ns["application"]
    page = get(app, "/articles/hi/")
    assert page.json["self"] == "/articles/hi/" and "RateLimit" not in page.headers
    api = get(app, "/api/anything")
    assert api.headers["RateLimit-Policy"] == '"100-per-60s";q=100;w=60'


def composed(ns, ctx):
    lines = ctx.stdout.splitlines()
    assert lines[0].startswith("ErrorCatcher(")
    assert "ProxyFix" in lines[1] and lines[2].startswith("IPFilter(")
    assert lines[3].startswith("RateLimiter(") and "Flask.wsgi_app" in lines[4]
    assert get(ns["application"], "/", "10.1.2.3").text == "flask home"
    assert get(ns["application"], "/", "203.0.113.9").status_int == 403
    # ProxyFix takes the scheme only: a client cannot name an allowed address itself.
    spoofed = get(ns["application"], "/", "203.0.113.9", headers={"X-Forwarded-For": "10.1.2.3"})
    assert spoofed.status_int == 403


def toml_stack(ns, ctx):
    app = ns["application"]
    assert get(app, "/articles/hi/").json["self"] == "/articles/hi/"
    # mysite.wsgi:application limits /api itself: the file adds no second limiter.
    assert get(app, "/api/x").headers.getall("RateLimit-Policy") == ['"100-per-60s";q=100;w=60']
    assert get(app, "/admin/", "203.0.113.9").status_int == 403
    assert get(app, "/admin/", "10.0.0.2").status_int != 403


def paste_site(ns, ctx):
    app = ns["application"]
    assert get(app, "/").text == "hello"
    assert get(app, "/admin/", "203.0.113.9").status_int == 403


def error_catcher(ns, ctx):
    app = ns["flask_app"]
    boom = get(app, "/boom")
    error_id = boom.headers["X-Error-Id"]
    assert boom.status_int == 500 and error_id in boom.text and "secret" not in boom.text
    assert any(error_id in r.getMessage() for r in ctx.caplog.records if r.name == "myapp.alerts")
    assert get(app, "/timeout").status_int == 504


def ip_filter(ns, ctx):
    app = ns["flask_app"]
    office = {"X-Forwarded-For": "192.0.2.5"}
    assert get(app, "/admin/", "10.0.0.2", headers=office).text == "flask admin"  # via a balancer
    assert get(app, "/admin/", "203.0.113.9", headers=office).status_int == 403  # spoofed
    assert (
        get(app, "/admin/", "10.0.0.2", headers={"X-Forwarded-For": "203.0.113.9"}).status_int
        == 403
    )
    assert get(app, "/", "203.0.113.9").text == "flask home"


def dispatcher(ns, ctx):
    app = ns["application"]
    assert get(app, "/api/").text == "flask home"
    assert get(app, "/admin/articles/x/").json["self"] == "/admin/articles/x/"
    assert get(app, "/", headers={"Host": "docs.example.com:8080"}).text == "docs_app"
    assert get(app, "/v1/x", headers={"Host": "a.example.com"}).text == "tenants_app"
    assert get(app, "/apiv2").text == "legacy_app"


def dispatch_toml(ns, ctx):
    app = ns["application"]
    assert get(app, "/api/").text == "hello"
    assert get(app, "/admin/articles/x/", "203.0.113.9").status_int == 403
    assert get(app, "/admin/articles/x/", "10.0.0.1").json["self"] == "/admin/articles/x/"


def rate_limiter(ns, ctx):
    app = ns["flask_app"]
    api = get(app, "/api/items")
    assert api.json == {"items": []}
    assert api.headers["RateLimit-Policy"].startswith('"10-per-1s";q=10;w=1')
    assert redis.Redis.from_url(ctx.redis_url).dbsize() > 0  # the counts live in Redis
    assert "RateLimit" not in get(app, "/").headers


def load_balancer(ns, ctx):
    assert get(ns["application"], "/").text == "local_app"
    assert [(u["url"], u["weight"], u["backup"]) for u in ns["pool"].status()] == [
        ("http://10.0.0.5:8000", 1, False),
        ("http://10.0.0.6:8000/app", 2, False),
        ("http://10.0.0.9:8000", 1, True),
    ]


def request_buffering(ns, ctx):
    body = b"x" * 5000
    request = webob.Request.blank("/body/", method="POST", body=body)
    del request.environ["CONTENT_LENGTH"]  # sent chunked: no length, as a server passes it on
    request.environ.update({"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True})
    seen = request.get_response(validator(ns["application"])).json
    assert seen["size"] == len(body) and seen["content_length"] == str(len(body))
    assert seen["transfer_encoding"] is None


def server_in_code(ns, ctx):
    assert ctx.stdout == "b'hello'\n"


#: Block id -> what the block promises, checked after it ran (or was loaded).
BEHAVIOUR: dict[str, Callable[[dict, SimpleNamespace], None]] = {
    "wrapping-a-flask-app-1": flask_wrapped,
    "wrapping-a-django-project-1": django_wrapped,
    "compose-a-pipeline-in-request-order-1": composed,
    "pipelines-as-data-1": toml_stack,
    "pipelines-as-data-3": toml_stack,
    "pastedeploy-1": paste_site,
    "errorcatcher-1": error_catcher,
    "ipfilter-1": ip_filter,
    "prefixdispatcher-1": dispatcher,
    "prefixdispatcher-2": dispatch_toml,
    "ratelimiter-1": rate_limiter,
    "loadbalancer-1": load_balancer,
    "requestbuffering-1": request_buffering,
    "the-server-2": server_in_code,
}
