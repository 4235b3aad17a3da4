"""Small real middlewares and apps that the foundation tests stack and load by name."""

from __future__ import annotations

from collections.abc import Iterable

from wsgistack._types import StartResponse, WSGIApplication, WSGIEnvironment
from wsgistack.errors import ConfigError
from wsgistack.paste import make_filter_factory


class Tagger:
    """Records ``tag`` in ``environ["tests.tags"]`` ."""

    def __init__(self, app: WSGIApplication, *, tag: str, strict: bool = False) -> None:
        if not isinstance(tag, str) or not tag:
            raise ConfigError(f"Tagger: tag: expected a non-empty string, got {tag!r}")
        self.app = app
        self.tag = tag
        self.strict = strict

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ.setdefault("tests.tags", []).append(self.tag)
        return self.app(environ, start_response)

    def __repr__(self) -> str:
        return f"Tagger(tag={self.tag!r})"


def tags_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Answers with the tags the request collected on its way down, in order."""
    body = ",".join(environ.get("tests.tags", [])).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def make_tags_app(greeting: str = "") -> WSGIApplication:
    """A factory in gunicorn's ``module:factory()`` style."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        body = (greeting + ",".join(environ.get("tests.tags", []))).encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]

    return app


not_an_app = 42

#: A paste.filter_factory built the way wsgistack.paste builds its entry points.
tagger_filter_factory = make_filter_factory("tests.pipeline_fixtures:Tagger")


def tags_app_factory(global_conf: dict, **local_conf: str) -> WSGIApplication:
    """A paste.app_factory for the PasteDeploy test."""
    return tags_app


def report(exc_info: object, environ: WSGIEnvironment, error_id: str) -> None:
    """An ErrorCatcher ``on_error`` hook named from a config file."""


def api_key(environ: WSGIEnvironment) -> str | None:
    """A key function (a rate limiter's ``key``, a balancer's ``hash_key``) named from a config."""
    return environ.get("HTTP_X_API_KEY")


def is_health_check(environ: WSGIEnvironment) -> bool:
    """A rate limiter's ``exempt`` callable named from a config file."""
    return environ.get("PATH_INFO") == "/health"


def unreachable_store(url: str) -> object:
    """A store factory that fails as one whose server is down does (for a misspelt option)."""
    raise RuntimeError(f"cannot connect to {url}")


class Banner:
    """Reads a file at start-up (as a layer loading its rules does): missing, it is an OSError."""

    def __init__(self, app: WSGIApplication, *, path: str) -> None:
        with open(path, encoding="utf-8") as handle:
            self.text = handle.read()
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return self.app(environ, start_response)


banner_filter_factory = make_filter_factory("tests.pipeline_fixtures:Banner")


def unready_app(*, url: str) -> WSGIApplication:
    """An app factory that fails at start-up as one whose database is down does."""
    raise RuntimeError(f"cannot connect to {url}")


def forbidden_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Raises Django's PermissionDenied, for an ErrorCatcher mapping it to a status by name."""
    from django.core.exceptions import PermissionDenied

    raise PermissionDenied("not yours")


def forbidden_app_factory(global_conf: dict, **local_conf: str) -> WSGIApplication:
    """A paste.app_factory for ``forbidden_app``."""
    return forbidden_app
