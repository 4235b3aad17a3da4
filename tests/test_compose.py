"""compose(), use() and describe(): order, third-party layers, errors."""

from __future__ import annotations

import functools
import inspect
import re

import pytest
from flask import Flask
from webtest import TestApp
from werkzeug.middleware.proxy_fix import ProxyFix

from tests.conftest import hello_app
from tests.pipeline_fixtures import Tagger, tags_app
from wsgistack import compose, describe, use
from wsgistack.middlewares import IPFilter, LoadBalancer, PrefixDispatcher, RateLimiter
from wsgistack.wsgi import close_iterable


def test_layers_run_in_the_order_they_are_listed(checked):
    stack = compose(
        use(Tagger, tag="outer"),
        use(Tagger, tag="middle"),
        functools.partial(Tagger, tag="inner"),
        checked(tags_app),
    )
    assert TestApp(checked(stack)).get("/").text == "outer,middle,inner"


def test_compose_returns_the_outermost_layer_itself():
    stack = compose(use(Tagger, tag="a"), use(Tagger, tag="b"), tags_app)
    assert isinstance(stack, Tagger) and stack.tag == "a"
    assert stack.app.tag == "b" and stack.app.app is tags_app


def test_an_app_alone_is_returned_unchanged():
    assert compose(tags_app) is tags_app


@pytest.mark.parametrize(
    "layers",
    [
        pytest.param([functools.partial(ProxyFix, x_for=1, x_proto=1)], id="partial"),
        pytest.param([use(ProxyFix, x_for=1), use(ProxyFix, x_proto=1)], id="use"),
    ],
)
def test_werkzeug_proxyfix_joins_as_partial_and_as_use(checked, layers):
    seen = {}

    def spy(environ, start_response):
        seen["addr"], seen["scheme"] = environ["REMOTE_ADDR"], environ["wsgi.url_scheme"]
        return hello_app(environ, start_response)

    stack = compose(*layers, checked(spy))
    TestApp(checked(stack)).get(
        "/",
        headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"},
        extra_environ={"REMOTE_ADDR": "10.0.0.1"},
    )
    assert seen == {"addr": "203.0.113.7", "scheme": "https"}


def test_a_plain_function_is_a_layer_and_describe_sees_through_it(checked):
    def shout(app):
        def wrapped(environ, start_response):
            body = app(environ, start_response)
            try:
                return [chunk.upper() for chunk in body]
            finally:
                close_iterable(body)

        return wrapped

    stack = compose(use(Tagger, tag="t"), shout, checked(tags_app))
    assert TestApp(checked(stack)).get("/").text == "T"
    lines = describe(stack).splitlines()
    assert lines[0] == "Tagger(tag='t')"
    assert lines[1].endswith("shout.<locals>.wrapped")
    assert len(lines) == 3


def test_describe_lists_each_layer_outermost_first_without_calling():
    called = []

    def app(environ, start_response):  # pragma: no cover - must never run
        called.append(1)
        return []

    stack = compose(use(Tagger, tag="a"), functools.partial(ProxyFix, x_for=1), app)
    assert describe(stack).splitlines() == [
        "Tagger(tag='a')",
        "werkzeug.middleware.proxy_fix.ProxyFix",
        "tests.test_compose.test_describe_lists_each_layer_outermost_first_without_calling"
        ".<locals>.app",
    ]
    assert called == []


def test_describe_shows_mounts_as_an_indented_tree():
    class Mounts:
        def __init__(self):
            self.mounts = {"/api": compose(use(Tagger, tag="api"), tags_app)}
            self.default = tags_app

        def __call__(self, environ, start_response):  # pragma: no cover - never called
            return tags_app(environ, start_response)

        def __repr__(self):
            return "Mounts()"

    text = describe(compose(use(Tagger, tag="top"), Mounts()))
    assert text.splitlines() == [
        "Tagger(tag='top')",
        "Mounts()",
        "  /api ->",
        "    Tagger(tag='api')",
        "    tests.pipeline_fixtures.tags_app",
        "  (default) ->",
        "    tests.pipeline_fixtures.tags_app",
    ]


def test_use_repr_shows_the_options():
    assert repr(use(Tagger, tag="x", strict=True)) == "use(Tagger, tag='x', strict=True)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param((), "needs the app as its last argument", id="nothing"),
        pytest.param(
            (use(Tagger, tag="a"),), "the last argument must be the WSGI app", id="layer-last"
        ),
        pytest.param(
            (use(Tagger, tag="a"), 42), "the app (argument 2) is not callable", id="app-42"
        ),
        pytest.param(("ProxyFix", tags_app), "argument 1 ('ProxyFix') is not a layer", id="str"),
        pytest.param(
            (tags_app, tags_app),
            "argument 1 (tests.pipeline_fixtures.tags_app) is a WSGI app",
            id="app-as-layer",
        ),
        # Not "a WSGI app": a middleware class with a required option, given bare.
        pytest.param(
            (RateLimiter, tags_app),
            "argument 1 (RateLimiter) cannot wrap the app by itself: it needs more "
            "arguments (limits); write use(RateLimiter, ...)",
            id="class-without-its-options",
        ),
        pytest.param(
            (functools.partial(RateLimiter, key="path"), tags_app),
            "needs more arguments (limits); write use(RateLimiter, ...)",
            id="partial-without-its-options",
        ),
    ],
)
def test_wrong_shapes_fail_at_compose_time(args, message):
    with pytest.raises(TypeError, match=re.escape(message)):
        compose(*args)


@pytest.mark.parametrize(
    "last",
    [
        pytest.param(functools.partial(Tagger, tag="x"), id="partial-of-a-class"),
        pytest.param(functools.partial(ProxyFix, x_proto=1), id="partial-proxyfix"),
        pytest.param(ProxyFix, id="class"),
        pytest.param(lambda app: app, id="one-argument-function"),
    ],
)
def test_a_layer_in_the_app_position_is_refused(last):
    # The app forgotten: compose(use(A), partial(B, ...)) must not build a stack that 500s.
    with pytest.raises(TypeError, match=r"the last argument must be the WSGI app, got .*"):
        compose(use(Tagger, tag="a"), last)


class ClassApp:
    """PEP 3333 allows a class as the app: calling it with (environ, start_response)."""

    def __init__(self, environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        self.body = [b"from a class"]

    def __iter__(self):
        return iter(self.body)


class InstanceApp:
    def __call__(self, environ, start_response):
        return hello_app(environ, start_response)


def flask_home() -> Flask:
    app = Flask("real")
    app.add_url_rule("/", "home", lambda: "flask home")
    return app


@pytest.mark.parametrize(
    ("app", "text"),
    [
        pytest.param(ClassApp, "from a class", id="class-app"),
        pytest.param(InstanceApp(), "hello |/", id="instance-app"),
        pytest.param(flask_home(), "flask home", id="flask-app"),
        pytest.param(flask_home().wsgi_app, "flask home", id="flask-wsgi-app"),
        pytest.param(functools.partial(hello_app), "hello |/", id="partial-of-a-function"),
    ],
)
def test_real_apps_are_still_taken_as_the_app(checked, app, text):
    stack = compose(use(Tagger, tag="a"), checked(app))
    assert TestApp(checked(stack)).get("/").text == text


def test_an_identity_layer_leaves_the_app_untouched():
    def app(environ, start_response):
        return hello_app(environ, start_response)

    def shared(environ, start_response):  # a module-level app a layer hands back
        return hello_app(environ, start_response)

    assert compose(lambda inner: inner, app) is app
    assert not hasattr(app, "__wrapped__")
    assert str(inspect.signature(app)) == "(environ, start_response)"
    assert compose(lambda inner: shared, app) is shared
    assert not hasattr(shared, "__wrapped__")


def test_a_flask_app_where_a_layer_belongs_is_named():
    flask_app = Flask("shop")
    with pytest.raises(TypeError, match=r"argument 2 \(<Flask 'shop'>\) is a WSGI app"):
        compose(use(Tagger, tag="a"), flask_app, tags_app)


def test_a_layer_that_returns_no_app_is_named():
    def broken(app):
        return None

    with pytest.raises(TypeError, match=r"layer 1 \(.*broken\) returned None, not a WSGI app"):
        compose(broken, tags_app)


def test_a_bad_option_fails_when_the_layer_is_built():
    with pytest.raises(ValueError, match="Tagger: tag: expected a non-empty string, got ''"):
        compose(use(Tagger, tag=""), tags_app)


def test_describe_stops_at_a_mount_that_leads_back_up_the_stack():
    # A dispatcher mounting the stack it sits in ("/v1" serving the same API) made
    # describe() recurse until RecursionError; an app shared by two mounts is shown twice.
    class Mounts:
        def __init__(self):
            self.mounts = {}

        def __call__(self, environ, start_response):  # pragma: no cover - never called
            return tags_app(environ, start_response)

        def __repr__(self):
            return "Mounts()"

    mounts = Mounts()
    stack = compose(use(Tagger, tag="top"), mounts)
    mounts.mounts.update({"/v1": stack, "/a": tags_app, "/b": tags_app})
    assert describe(stack).splitlines() == [
        "Tagger(tag='top')",
        "Mounts()",
        "  /v1 ->",
        "    Tagger(tag='top')  (a cycle: shown above)",
        "  /a ->",
        "    tests.pipeline_fixtures.tags_app",
        "  /b ->",
        "    tests.pipeline_fixtures.tags_app",
    ]


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        pytest.param(
            use(PrefixDispatcher, mounts={"/api": tags_app}),
            "argument 2 (use(PrefixDispatcher, mounts={'/api': <function tags_app at 0x",
            id="dispatcher",
        ),
        pytest.param(
            use(LoadBalancer, ["http://127.0.0.1:9"]),
            "argument 2 (use(LoadBalancer, ['http://127.0.0.1:9'])) cannot wrap the app: "
            "LoadBalancer takes no app to wrap; an app "
            "such as a dispatcher or a balancer goes last",
            id="balancer",
        ),
        pytest.param(
            use(hello_app),
            "argument 2 (use(hello_app)) cannot wrap the app: "
            "missing a required argument: 'start_response'",
            id="app",
        ),
    ],
)
def test_use_of_something_that_cannot_take_the_app_is_named(layer, message):
    # These failed inside the class with "got multiple values for argument 'mounts'" or
    # "takes 2 positional arguments but 3 were given", naming neither compose() nor the layer.
    with pytest.raises(TypeError, match=re.escape(message)):
        compose(use(Tagger, tag="a"), layer, tags_app)


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        pytest.param(
            use(IPFilter, ["10.0.0.0/8"]),
            "argument 1 (use(IPFilter, ['10.0.0.0/8'])) cannot wrap the app: IPFilter takes "
            "no option by position after the app, got 1 positional argument(s); "
            "give the options by name (name=value)",
            id="keyword-only",
        ),
        pytest.param(
            use(RateLimiter, "10/minute", "ip"),
            "cannot wrap the app: RateLimiter takes limits by position after the app, "
            "got 2 positional argument(s)",
            id="after-a-positional",
        ),
        pytest.param(
            use(RateLimiter, "10/minute", limits="20/minute"),
            "cannot wrap the app: multiple values for argument 'limits'",
            id="given-twice",
        ),
    ],
)
def test_a_layer_given_an_option_by_position_is_not_taken_for_an_app(layer, message):
    # The first positional bound as the app, so each of these read "IPFilter takes
    # no app to wrap; an app such as a dispatcher or a balancer goes last".
    with pytest.raises(TypeError, match=re.escape(message)):
        compose(layer, tags_app)


def test_a_dispatcher_given_as_a_layer_is_told_to_go_last():
    with pytest.raises(TypeError, match=r"PrefixDispatcher takes no app to wrap; .* goes last"):
        compose(use(PrefixDispatcher, {"/api": tags_app}), tags_app)


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        pytest.param(
            use(IPFilter, alow=["10.0.0.0/8"]),
            "argument 1 (use(IPFilter, alow=['10.0.0.0/8'])) cannot wrap the app: "
            "unknown option 'alow' (did you mean 'allow'?)",
            id="keyword-only",
        ),
        pytest.param(
            use(RateLimiter, "10/minute", bursts=3),
            "cannot wrap the app: unknown option 'bursts' (did you mean 'burst'?)",
            id="after-a-positional",
        ),
        pytest.param(
            use(Tagger, tga="a"),
            "cannot wrap the app: unknown option 'tga' (did you mean 'tag'?)",
            id="third-party",
        ),
    ],
)
def test_a_misspelt_option_is_named_with_a_hint_as_in_pipelines(layer, message):
    # It was Python's "got an unexpected keyword argument 'alow'", with no hint,
    # although a pipeline with the same typo suggests 'allow'.
    with pytest.raises(TypeError, match=re.escape(message)):
        compose(layer, tags_app)


def test_an_option_given_twice_is_still_python_s_message():
    # The app's own parameter named as an option: no "unknown option 'app'".
    with pytest.raises(TypeError, match="multiple values for argument 'app'"):
        compose(use(Tagger, app=tags_app), tags_app)
