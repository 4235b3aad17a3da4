"""RateLimiter(ignore_case=True): paths and a path key read as an app that routes case-blind."""

from __future__ import annotations

import re
from wsgiref.validate import validator

import pytest
from paste.deploy import loadapp
from webtest import TestApp

from tests.conftest import hello_app
from tests.middlewares.case_blind import case_blind_app
from tests.server.live import RawClient, live_server
from wsgistack import build_pipeline, describe
from wsgistack.errors import ConfigError
from wsgistack.middlewares import RateLimiter
from wsgistack.middlewares.ratelimit import RedisStore


class Clock:
    def __call__(self) -> float:
        return 1_000_000.0


case_blind = case_blind_app("login", "café", body=b"signed in")


def _statuses(app, *urls, root_path=""):
    with live_server(app, root_path=root_path) as server, RawClient(server.address) as raw:
        return [
            raw.request(f"GET {root_path}{url} HTTP/1.1\r\nHost: a\r\n\r\n".encode())[0]
            for url in urls
        ]


@pytest.mark.parametrize(
    ("url", "limited"),
    [
        pytest.param("/LOGIN", True, id="upper"),
        pytest.param("/Login/form", True, id="mixed-below"),
        pytest.param("/%4Cogin", True, id="escaped-upper"),
        pytest.param("/x/../LOGIN//form", True, id="dot-segments"),
        pytest.param("/CAF%C3%89/menu", True, id="non-ascii-upper"),
        pytest.param("/LOGINS", False, id="not-a-segment"),
        pytest.param("/public", False, id="elsewhere"),
    ],
)
def test_ignore_case_limits_every_spelling_a_case_blind_app_routes(url, limited):
    # Without it, /LOGIN reached the app's /login unlimited: one spelling per
    # quota, 2**5 of them for a five-letter path.
    app = RateLimiter(
        validator(case_blind),
        "1/minute",
        paths=["/login", "/Café"],
        ignore_case=True,
        clock=Clock(),
    )
    first = "/caf%C3%A9" if "CAF" in url else "/login"
    statuses = _statuses(app, first, url, root_path="/app")
    assert statuses == [200, 429 if limited else 200]


def test_paths_match_letter_case_as_written_by_default():
    app = RateLimiter(validator(case_blind), "1/minute", paths=["/login"], clock=Clock())
    assert _statuses(app, "/login", "/LOGIN", "/login") == [200, 200, 429]


def test_a_path_key_counts_every_case_of_a_path_as_one():
    # key="path" gave /LOGIN and /login a quota each, as it did //login before
    # paths were resolved: a case-blind app serves them as one resource.
    app = RateLimiter(
        validator(case_blind), "2/minute", key="path", ignore_case=True, clock=Clock()
    )
    assert _statuses(app, "/login", "/LOGIN", "/Login", "/other") == [200, 200, 429, 200]


def test_the_store_key_names_the_folded_scope_and_path(redis_server):
    store = RedisStore(redis_server.url.replace("/0", "/6"))
    store.client.flushdb()
    app = RateLimiter(
        validator(case_blind),
        "1/minute",
        key="path",
        paths=["/Login"],
        ignore_case=True,
        store=store,
        clock=Clock(),
    )
    try:
        assert _statuses(app, "/LOGIN/Form", "/login/form") == [200, 429]
        assert store.client.keys() == [
            b"wsgistack:rl:{gcra:1-per-60s:path@/login:/login/form}:1-per-60s"
        ]
    finally:
        store.close()


def _stack_warnings(caplog, outer: dict, inner: dict) -> list[str]:
    caplog.set_level("WARNING", "wsgistack.ratelimit")
    RateLimiter(RateLimiter(validator(hello_app), "100/minute", **inner), "100/minute", **outer)
    return [r.getMessage() for r in caplog.records if "same RateLimit policy" in r.getMessage()]


@pytest.mark.parametrize(
    ("outer", "inner", "warned"),
    [
        pytest.param(
            {"paths": ["/login"], "ignore_case": True}, {"paths": ["/Login"]}, True, id="outer"
        ),
        pytest.param(
            {"paths": ["/LOGIN/form"]}, {"paths": ["/login"], "ignore_case": True}, True, id="inner"
        ),
        pytest.param(
            {"paths": ["/login"], "ignore_case": True}, {"paths": ["/Search"]}, False, id="apart"
        ),
        pytest.param({"paths": ["/login"]}, {"paths": ["/Login"]}, False, id="both-exact"),
    ],
)
def test_stacked_limiters_that_meet_only_case_blind_are_still_told_apart(
    caplog, outer, inner, warned
):
    # /Login reaches both a case-blind /login limiter and an exact /Login one.
    assert bool(_stack_warnings(caplog, outer, inner)) == warned


def test_describe_shows_it():
    layer = RateLimiter(hello_app, "1/minute", paths=["/Login"], ignore_case=True)
    assert "paths=['/login'], ignore_case=True" in describe(layer)
    assert "ignore_case" not in repr(RateLimiter(hello_app, "1/minute", paths=["/login"]))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"paths": ["/login"], "ignore_case": "yes"}, "RateLimiter: ignore_case: expected true or"),
        ({"ignore_case": True}, "RateLimiter: ignore_case: it applies to paths and key='path'"),
        ({"ignore_case": True, "key": "header:X-Api-Key"}, "RateLimiter: ignore_case: it applies"),
    ],
    ids=["not-a-flag", "without-paths", "other-key"],
)
def test_a_bad_ignore_case_fails_at_start_up(options, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        RateLimiter(hello_app, "1/minute", **options)


@pytest.mark.parametrize(("value", "error"), [(True, None), ("yes", "expected true or false")])
def test_in_a_pipeline_file(value, error):
    spec = {
        "layer": [
            {"use": "rate_limit", "limits": "1/minute", "paths": ["/login"], "ignore_case": value}
        ],
        "app": "tests.conftest:hello_app",
    }
    if error is None:
        app = build_pipeline(spec)
        assert "ignore_case=True" in repr(app)
        client = TestApp(validator(app), extra_environ={"REMOTE_ADDR": "192.0.2.1"})
        assert [client.get(u, expect_errors=True).status_int for u in ("/login", "/LOGIN")] == [
            200,
            429,
        ]
    else:
        with pytest.raises(ConfigError, match=re.escape(f"RateLimiter: ignore_case: {error}")):
            build_pipeline(spec)


def test_in_a_paste_pipeline(tmp_path):
    ini = tmp_path / "site.ini"
    ini.write_text(
        "[pipeline:main]\npipeline = limit app\n\n"
        "[filter:limit]\nuse = egg:wsgistack#rate_limit\nlimits = 1/minute\n"
        'paths = ["/login"]\nignore_case = yes\n\n'
        "[app:app]\nuse = call:tests.pipeline_fixtures:tags_app_factory\n"
    )
    app = loadapp(f"config:{ini}")
    assert app.ignore_case is True
    client = TestApp(validator(app), extra_environ={"REMOTE_ADDR": "192.0.2.1"})
    assert [client.get(u, expect_errors=True).status_int for u in ("/Login", "/login")] == [
        200,
        429,
    ]
