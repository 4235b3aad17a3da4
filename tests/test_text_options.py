"""An option that takes text (a name, a path, a host) given a number: ini keeps it, TOML refuses."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Annotated, Optional, Union
from wsgiref.validate import validator

import pytest
from paste.deploy import loadapp
from webtest import TestApp

import wsgistack.options
from wsgistack import build_pipeline
from wsgistack._types import StartResponse, WSGIApplication, WSGIEnvironment
from wsgistack.errors import ConfigError
from wsgistack.middlewares import ErrorCatcher, LoadBalancer, RateLimiter
from wsgistack.middlewares.ratelimit import RedisStore
from wsgistack.paste import make_filter_factory

LIMIT_INI = """
[pipeline:main]
pipeline = limit app

[filter:limit]
use = egg:wsgistack#rate_limit
limits = 2/minute
{lines}

[app:app]
use = call:tests.pipeline_fixtures:tags_app_factory
"""


class Labeller:
    """A third party's layer whose text options are ``Annotated`` (as typer/FastAPI style has it)."""

    def __init__(
        self,
        app: WSGIApplication,
        *,
        label: Annotated[str, "shown in X-Label"],
        note: Optional[Annotated[str, "shown in X-Note"]] = None,  # noqa: UP045
    ) -> None:
        if not isinstance(label, str) or (note is not None and not isinstance(note, str)):
            raise ConfigError(f"Labeller: expected text, got {label!r}, {note!r}")
        self.app = app
        self.label = label
        self.note = note

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ["tests.label"] = (self.label, self.note)
        return self.app(environ, start_response)


labeller_filter_factory = make_filter_factory("tests.test_text_options:Labeller")


def _limiter(tmp_path, lines: str) -> RateLimiter:
    ini = tmp_path / "site.ini"
    ini.write_text(LIMIT_INI.format(lines=lines))
    app = loadapp(f"config:{ini}")
    assert isinstance(app, RateLimiter)
    return app


def test_an_ini_name_of_digits_is_the_text_written(tmp_path):
    # name = 2024 was read as the integer 2024 and refused ("expected 1-64
    # letters, digits or '_.-/', got 2024"), though a name may be digits.
    limiter = _limiter(tmp_path, "name = 2024\nburst = 1")
    assert limiter.name == "2024"
    response = TestApp(validator(limiter)).get("/", extra_environ={"REMOTE_ADDR": "192.0.2.1"})
    assert response.headers["RateLimit-Policy"].startswith('"2024";')


def test_an_ini_number_stays_a_number_where_a_number_belongs(tmp_path):
    limiter = _limiter(tmp_path, "name = 007\nburst = 1")
    assert limiter.name == "007"  # as written: not 7
    assert limiter.burst == 1 and [rate.burst for rate in limiter.rates] == [1]


def test_an_ini_header_name_of_digits_is_text(tmp_path):
    ini = tmp_path / "site.ini"
    ini.write_text(
        "[filter:errors]\nuse = egg:wsgistack#error_catcher\nerror_id_header = 1234\n\n"
        "[app:app]\nuse = call:tests.pipeline_fixtures:tags_app_factory\n\n"
        "[pipeline:main]\npipeline = errors app\n"
    )
    app = loadapp(f"config:{ini}")
    assert isinstance(app, ErrorCatcher) and app.error_id_header == "1234"


def test_the_options_that_take_text_are_found_from_their_annotations():
    assert {"name", "key", "limits"} <= wsgistack.options.text_options(RateLimiter)
    assert not {"burst", "ipv6_prefix", "store", "dry_run"} & wsgistack.options.text_options(
        RateLimiter
    )
    assert {"health_path", "health_host", "strategy"} <= wsgistack.options.text_options(
        LoadBalancer
    )
    assert "max_fails" not in wsgistack.options.text_options(LoadBalancer)
    assert "error_id_header" in wsgistack.options.text_options(ErrorCatcher)
    assert "prefix" in wsgistack.options.text_options(RedisStore)


def test_a_third_party_option_with_a_text_default_is_text():
    def make(app, *, label="x", size=3):  # no annotations
        return app

    assert wsgistack.options.text_options(make) == {"label"}


@pytest.mark.parametrize(
    ("table", "option", "number"),
    [
        pytest.param(
            {"use": "rate_limit", "limits": "2/minute", "name": 2024}, "name", 2024, id="name"
        ),
        pytest.param(
            {"use": "error_catcher", "error_id_header": 1234}, "error_id_header", 1234, id="header"
        ),
    ],
)
def test_a_toml_number_where_text_belongs_is_refused_saying_how_to_quote_it(table, option, number):
    # TOML tells text from numbers: the number is refused, naming the option,
    # rather than guessed at ("1234 is not a header name (letters, digits...)").
    config = {"layer": [table], "app": "tests.pipeline_fixtures:tags_app"}
    message = (
        f"stack.toml: layer 1 ({table['use']}): {option}: expected text, got the number "
        f'{number}; quote it: {option} = "{number}"'
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_pipeline(config, source="stack.toml")


def test_a_toml_number_where_a_number_belongs_is_taken():
    config = {
        "layer": [{"use": "rate_limit", "limits": "2/minute", "name": "2024", "burst": 1}],
        "app": "tests.pipeline_fixtures:tags_app",
    }
    app = build_pipeline(config, source="stack.toml")
    assert isinstance(app, RateLimiter) and app.name == "2024" and app.burst == 1


def test_third_party_annotations_are_read_as_the_types_they_name():
    # Under postponed annotations Optional[str] arrived as the text "Optional[str]"
    # and was not seen as text, so an ini "label = 2024" became the number 2024.
    def make(
        app,
        *,
        label: Optional[str] = None,  # noqa: UP045 (a third party's style)
        pick: Callable[[str], str] | str = "x",
        tags: list[str] | None = None,
        size: Union[int, str] = 3,  # noqa: UP007
    ):
        return app

    assert wsgistack.options.text_options(make) == {"label", "pick"}


def test_a_container_of_text_is_not_text():
    # Evaluated annotations were looked into whatever they were: list[str] and
    # dict[str, str] counted as text, and a number there got "quote it".
    def make(app, tags=None, labels=None, name=None):
        return app

    make.__annotations__ = {"tags": list[str], "labels": dict[str, str], "name": str | None}
    assert wsgistack.options.text_options(make) == {"name"}


def test_an_annotation_naming_what_only_a_type_checker_sees_is_read_as_written():
    def make(app, *, label: Optional[Secret] = None, size: int | Secret = 3):  # noqa: F821, UP045
        return app

    assert wsgistack.options.text_options(make) == set()
    make.__annotations__ = {"label": "Optional[str]", "size": "int | Secret"}
    assert wsgistack.options.text_options(make) == {"label"}


def test_an_ini_annotated_text_option_given_digits_is_the_text_written(tmp_path):
    # Annotated[str, ...] was not seen as text: label = 2024 became the number
    # 2024 and the layer refused it.
    ini = tmp_path / "site.ini"
    ini.write_text(
        "[filter:label]\nuse = call:tests.test_text_options:labeller_filter_factory\n"
        "label = 2024\nnote = 7\n\n"
        "[app:app]\nuse = call:tests.pipeline_fixtures:tags_app_factory\n\n"
        "[pipeline:main]\npipeline = label app\n"
    )
    app = loadapp(f"config:{ini}")
    assert isinstance(app, Labeller)
    assert (app.label, app.note) == ("2024", "7")
    TestApp(validator(app)).get("/")


@pytest.mark.parametrize("option", ["label", "note"])
def test_a_toml_number_for_an_annotated_text_option_says_how_to_quote_it(option):
    table = {"use": "tests.test_text_options:Labeller", "label": "main", option: 2024}
    config = {"layer": [table], "app": "tests.pipeline_fixtures:tags_app"}
    message = f'{option}: expected text, got the number 2024; quote it: {option} = "2024"'
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_pipeline(config, source="stack.toml")


def test_annotated_text_is_text_also_where_its_metadata_cannot_be_evaluated():
    def make(app, *, label=None, size=3, tags=None):
        return app

    make.__annotations__ = {
        "label": "Optional[Annotated[str, Doc('shown')]]",
        "size": "Annotated[int | str, Doc('bytes')]",
        "tags": "Annotated[list[str], Doc('tags')]",
    }
    assert wsgistack.options.text_options(make) == {"label"}
