"""Pipelines from TOML files and dicts, and the messages their mistakes get."""

from __future__ import annotations

import re
from wsgiref.validate import validator

import pytest
from webtest import TestApp

from tests.pipeline_fixtures import Tagger
from wsgistack import build_pipeline, describe, load_pipeline
from wsgistack.errors import ConfigError
from wsgistack.pipeline import BUILTINS, Builtin

STACK = """
[[layer]]
use = "tests.pipeline_fixtures:Tagger"
tag = "first"

[[layer]]
use = "werkzeug.middleware.proxy_fix:ProxyFix"
x_for = 1

[[layer]]
use = "tests.pipeline_fixtures:Tagger"
tag = "last"

[app]
use = "tests.pipeline_fixtures:tags_app"
"""


@pytest.fixture
def builtins(monkeypatch):
    """Two real entries in the registry: a layer and an app factory."""
    monkeypatch.setitem(BUILTINS, "tagger", Builtin("tests.pipeline_fixtures:Tagger"))
    monkeypatch.setitem(
        BUILTINS, "tags_site", Builtin("tests.pipeline_fixtures:make_tags_app", kind="app")
    )


def write(tmp_path, text):
    path = tmp_path / "stack.toml"
    path.write_text(text)
    return path


def test_a_toml_pipeline_serves_in_order(tmp_path):
    app = load_pipeline(write(tmp_path, STACK))
    assert TestApp(validator(app)).get("/").text == "first,last"
    assert describe(app).splitlines() == [
        "Tagger(tag='first')",
        "werkzeug.middleware.proxy_fix.ProxyFix",
        "Tagger(tag='last')",
        "tests.pipeline_fixtures.tags_app",
    ]


def test_a_dict_pipeline_with_builtin_names(builtins):
    app = build_pipeline(
        {
            "layer": [{"use": "tagger", "tag": "a"}, {"use": "tagger", "tag": "b"}],
            "app": {"use": "tags_site", "greeting": "tags: "},
        }
    )
    assert isinstance(app, Tagger)
    assert TestApp(validator(app)).get("/").text == "tags: a,b"


def test_app_as_a_string_and_as_a_factory_call():
    app = build_pipeline({"app": "tests.pipeline_fixtures:make_tags_app('hey ')"})
    assert TestApp(validator(app)).get("/").text == "hey "


def test_nested_pipeline_as_the_app():
    app = build_pipeline(
        {
            "layer": [{"use": "tests.pipeline_fixtures:Tagger", "tag": "outer"}],
            "app": {
                "layer": [{"use": "tests.pipeline_fixtures:Tagger", "tag": "inner"}],
                "app": "tests.pipeline_fixtures:tags_app",
            },
        }
    )
    assert TestApp(validator(app)).get("/").text == "outer,inner"


BAD = [
    pytest.param(
        {"layer": [{"use": "tagger", "tag": "a"}, {"use": "tagger", "tg": "b"}], "app": "x:y"},
        "stack.toml: layer 2 (tagger): unknown option 'tg' (did you mean 'tag'?)",
        id="unknown-option",
    ),
    pytest.param(
        {"layer": [{"use": "tagerr", "tag": "a"}], "app": "x:y"},
        "stack.toml: layer 1 (tagerr): unknown built-in 'tagerr' (did you mean 'tagger'?)",
        id="unknown-builtin",
    ),
    pytest.param(
        {"layer": [{"use": "tagger", "tag": ""}], "app": "tests.pipeline_fixtures:tags_app"},
        "stack.toml: layer 1 (tagger): Tagger: tag: expected a non-empty string, got ''",
        id="bad-value",
    ),
    pytest.param(
        {"layer": [{"use": "tagger"}], "app": "tests.pipeline_fixtures:tags_app"},
        "stack.toml: layer 1 (tagger): missing option 'tag'",
        id="missing-option",
    ),
    pytest.param(
        {"app": {"use": "dispatch", "redirect_slash": False}},
        "stack.toml: app (dispatch): missing option 'mounts'",
        id="missing-option-of-an-app",
    ),
    pytest.param(
        {"layer": [{"use": "tests.pipeline_fixtures:tags_app"}], "app": "x:y"},
        "stack.toml: layer 1 (tests.pipeline_fixtures:tags_app): "
        "'tests.pipeline_fixtures:tags_app' is a WSGI app (it takes environ and "
        "start_response), not a layer; put it in [app]",
        id="an-app-function-as-a-layer",
    ),
    pytest.param(
        {"layer": [{"tag": "a"}], "app": "x:y"},
        "stack.toml: layer 1: each [[layer]] needs use = 'name' or 'module:attr'",
        id="no-use",
    ),
    pytest.param(
        {"layer": [{"use": "tags_site"}], "app": "x:y"},
        "stack.toml: layer 1 (tags_site): 'tags_site' is an app, not a layer; put it in [app]",
        id="app-as-layer",
    ),
    pytest.param(
        {"app": {"use": "tagger", "tag": "a"}},
        "stack.toml: app (tagger): 'tagger' is a layer, not an app; put it in [[layer]]",
        id="layer-as-app",
    ),
    pytest.param(
        {
            "app": {
                "use": "dispatch",
                "mounts": {
                    "/admin": {
                        "layer": [{"use": "tagger", "tag": "a"}, {"use": "tagger", "tg": "b"}],
                        "app": "tests.pipeline_fixtures:tags_app",
                    }
                },
            }
        },
        "stack.toml: app (dispatch) mounts./admin: layer 2 (tagger): unknown option 'tg'",
        id="nested-in-a-mount",
    ),
    pytest.param(
        {"app": {"layer": [{"tag": "a"}], "app": "tests.pipeline_fixtures:tags_app"}},
        "stack.toml: app: layer 1: each [[layer]] needs use",
        id="nested-no-use",
    ),
    pytest.param(
        {"app": {"use": "dispatch", "mounts": {"/a": "wsgistack.middlewares:IPFilter"}}},
        "stack.toml: app (dispatch) mounts./a: 'wsgistack.middlewares:IPFilter': "
        "a class that takes an app: a layer, not the app; put it in [[layer]]",
        id="layer-class-as-a-mount",
    ),
    pytest.param(
        {
            "app": {
                "use": "dispatch",
                "mounts": {"/a": "tests.pipeline_fixtures:tags_app"},
                "default": {"use": "wsgistack.middlewares:ErrorCatcher"},
            }
        },
        "stack.toml: app (dispatch) default (wsgistack.middlewares:ErrorCatcher): "
        "'wsgistack.middlewares:ErrorCatcher': a class that takes an app",
        id="layer-class-as-the-default",
    ),
    pytest.param({"layer": []}, "stack.toml: no [app]", id="no-app"),
    pytest.param(
        {"layers": [], "app": "x:y"},
        "stack.toml: unknown key 'layers' (did you mean 'layer'?)",
        id="unknown-key",
    ),
    pytest.param(
        {"app": "tests.pipeline_fixtures:nothing_here"},
        "stack.toml: app: 'tests.pipeline_fixtures:nothing_here': "
        "'tests.pipeline_fixtures' has no attribute 'nothing_here'",
        id="app-missing",
    ),
    pytest.param(
        {"app": "tests.pipeline_fixtures:not_an_app"},
        "stack.toml: app: 'tests.pipeline_fixtures:not_an_app': int object is not a WSGI app",
        id="app-not-callable",
    ),
]


@pytest.mark.parametrize(("config", "message"), BAD)
def test_errors_name_the_file_the_layer_and_the_option(builtins, config, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        build_pipeline(config, source="stack.toml")
    # A cause would make the CLI print it as the app's own crash, with a traceback.
    assert raised.value.__cause__ is None


def test_a_file_that_is_not_toml(tmp_path):
    path = write(tmp_path, "[[layer]\nuse=")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: not valid TOML")):
        load_pipeline(path)


def test_a_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_pipeline(tmp_path / "absent.toml")


def test_a_directory_instead_of_a_file(tmp_path):
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path}: cannot read: Is a directory")):
        load_pipeline(tmp_path)
