"""PasteDeploy: wsgistack filters inside a real [pipeline:main] ini."""

from __future__ import annotations

import re
from wsgiref.validate import validator

import pytest
from paste.deploy import loadapp
from webtest import TestApp

from wsgistack.errors import ConfigError
from wsgistack.paste import ini_value

INI = """
[pipeline:main]
pipeline = first last app

[filter:first]
use = call:tests.pipeline_fixtures:tagger_filter_factory
tag = one

[filter:last]
use = call:tests.pipeline_fixtures:tagger_filter_factory
tag = two
strict = {strict}

[app:app]
use = call:tests.pipeline_fixtures:tags_app_factory
"""


def test_a_paste_pipeline_loads_and_runs_in_order(tmp_path):
    ini = tmp_path / "site.ini"
    ini.write_text(INI.format(strict="true"))
    app = loadapp(f"config:{ini}")
    assert TestApp(validator(app)).get("/").text == "one,two"
    assert app.app.strict is True


def test_a_bad_option_fails_while_loading(tmp_path):
    ini = tmp_path / "site.ini"
    ini.write_text(INI.format(strict="true").replace("tag = two", "tag = ''"))
    with pytest.raises(ConfigError, match=r"tests\.pipeline_fixtures:Tagger: Tagger: tag"):
        loadapp(f"config:{ini}")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        pytest.param('["10.0.0.0/8", "::1"]', ["10.0.0.0/8", "::1"], id="list"),
        pytest.param("true", True, id="bool"),
        pytest.param("5", 5, id="int"),
        pytest.param("100/minute", "100/minute", id="plain-string"),
        pytest.param('"quoted"', "quoted", id="toml-string"),
    ],
)
def test_ini_values_read_as_toml_where_they_parse(text, value):
    assert ini_value(text) == value


EGG_INI = """
[pipeline:main]
pipeline = errors office app

[filter:errors]
use = egg:wsgistack#error_catcher

[filter:office]
use = egg:wsgistack#ip_filter
allow = ["192.0.2.0/24"]

[app:app]
use = call:tests.pipeline_fixtures:tags_app_factory
"""


def test_the_installed_entry_points_load_the_builtin_middlewares(tmp_path):
    ini = tmp_path / "site.ini"
    ini.write_text(EGG_INI)
    app = TestApp(validator(loadapp(f"config:{ini}")))
    assert app.get("/", extra_environ={"REMOTE_ADDR": "192.0.2.1"}).status_int == 200
    assert app.get("/", extra_environ={"REMOTE_ADDR": "203.0.113.1"}, status=403)


COMPOSITE_INI = """
[composite:main]
use = egg:wsgistack#dispatch
/tags = tags
/guarded = guarded
default = tags

[pipeline:guarded]
pipeline = office tags

[filter:office]
use = egg:wsgistack#ip_filter
deny = ["192.0.2.0/24"]

[app:tags]
use = call:tests.pipeline_fixtures:tags_app_factory
"""


def test_the_dispatcher_as_a_paste_composite(tmp_path):
    ini = tmp_path / "site.ini"
    ini.write_text(COMPOSITE_INI)
    app = TestApp(validator(loadapp(f"config:{ini}")))
    assert app.get("/tags/x").status_int == 200
    assert app.get("/guarded/x", extra_environ={"REMOTE_ADDR": "192.0.2.1"}, status=403)
    assert app.get("/guarded/x", extra_environ={"REMOTE_ADDR": "198.51.100.1"}).status_int == 200
    assert app.get("/anything").status_int == 200


@pytest.mark.parametrize(
    ("spelling", "redirects"),
    [
        pytest.param("False", False, id="False"),
        pytest.param("off", False, id="off"),
        pytest.param("0", False, id="zero"),
        pytest.param("YES", True, id="YES"),
        pytest.param("true", True, id="true"),
    ],
)
def test_redirect_slash_reads_the_ini_spellings_of_a_flag(tmp_path, spelling, redirects):
    ini = tmp_path / "site.ini"
    ini.write_text(COMPOSITE_INI.replace("default = tags", f"redirect_slash = {spelling}"))
    response = TestApp(validator(loadapp(f"config:{ini}"))).get("/tags", expect_errors=True)
    assert response.status_int == (308 if redirects else 200)


@pytest.mark.parametrize(
    ("spelling", "value"),
    [
        pytest.param("no", False, id="no"),
        pytest.param("Off", False, id="Off"),
        pytest.param("On", True, id="On"),
        pytest.param("1", True, id="one"),
    ],
)
def test_flag_options_of_a_filter_read_the_ini_spellings(tmp_path, spelling, value):
    ini = tmp_path / "site.ini"
    ini.write_text(
        EGG_INI.replace("[filter:office]", f"pass_http_exceptions = {spelling}\n\n[filter:office]")
    )
    assert loadapp(f"config:{ini}").pass_http_exceptions is value


@pytest.mark.parametrize(
    ("ini_text", "message"),
    [
        pytest.param(
            COMPOSITE_INI.replace("default = tags", "redirect_slash = nope"),
            "composite dispatch: redirect_slash: expected true/yes/on/1 or false/no/off/0, got 'nope'",
            id="composite",
        ),
        pytest.param(
            EGG_INI.replace("[filter:office]", "debug = 2\n\n[filter:office]"),
            "filter error_catcher: debug: expected true/yes/on/1 or false/no/off/0, got '2'",
            id="filter",
        ),
    ],
)
def test_a_flag_spelled_otherwise_fails_while_loading(tmp_path, ini_text, message):
    ini = tmp_path / "site.ini"
    ini.write_text(ini_text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        loadapp(f"config:{ini}")


HOST_INI = """
[composite:main]
use = egg:wsgistack#dispatch
{mount} = tags

[app:tags]
use = call:tests.pipeline_fixtures:tags_app_factory
"""


def test_a_host_mount_in_a_composite_matches_any_port(tmp_path):
    ini = tmp_path / "site.ini"
    ini.write_text(HOST_INI.format(mount="API.example.com"))
    app = TestApp(validator(loadapp(f"config:{ini}")))
    assert app.get("/", headers={"Host": "api.example.com:8080"}).status_int == 200
    assert app.get("/", headers={"Host": "other.example.com"}, status=404)


@pytest.mark.parametrize(
    ("key", "hint"),
    [("defualt", "default"), ("redirect_slashes", "redirect_slash")],
)
def test_a_misspelt_option_of_the_composite_is_not_mounted_as_a_host(tmp_path, key, hint):
    # Any key but the options is a host mount: "defualt = tags" mounted a host
    # named defualt, and the site had no default, with nothing said.
    ini = tmp_path / "site.ini"
    ini.write_text(HOST_INI.format(mount=key))
    message = f"'{key}' would mount a host of that name (did you mean '{hint}'?)"
    with pytest.raises(ConfigError, match=re.escape(message)):
        loadapp(f"config:{ini}")


@pytest.mark.parametrize("host", ["default.lan", "default.test", "dev.default"])
def test_a_host_named_like_an_option_is_still_mounted(tmp_path, host):
    # The misspelling check refused these hosts as "did you mean 'default'?",
    # and no spelling would mount them: an option's name has no dot.
    ini = tmp_path / "site.ini"
    ini.write_text(HOST_INI.format(mount=host))
    app = TestApp(validator(loadapp(f"config:{ini}")))
    assert app.get("/", headers={"Host": host}).status_int == 200
    assert app.get("/", headers={"Host": "other.example.com"}, status=404)


@pytest.mark.parametrize("mount", ["api.example.com:8080", "api.example.com:8080/v1"])
def test_a_host_mount_with_a_port_is_refused_with_the_reason(tmp_path, mount):
    # configparser splits "api.example.com:8080 = tags" at the ":": say so, not "no section".
    ini = tmp_path / "site.ini"
    ini.write_text(HOST_INI.format(mount=mount))
    with pytest.raises(ConfigError, match=re.escape(f"'{mount} = tags': an ini key ends at ':'")):
        loadapp(f"config:{ini}")


@pytest.mark.parametrize(
    ("ini_text", "message"),
    [
        pytest.param(
            EGG_INI.replace('allow = ["192.0.2.0/24"]', 'alow = ["192.0.2.0/24"]'),
            ": filter ip_filter: unknown option 'alow' (did you mean 'allow'?)",
            id="filter",
        ),
        pytest.param(
            "[app:main]\nuse = egg:wsgistack#load_balance\n"
            'upstreams = ["http://127.0.0.1:1"]\nread_timout = 5\n',
            ": app load_balance: unknown option 'read_timout' (did you mean 'read_timeout'?)",
            id="app",
        ),
    ],
)
def test_an_unknown_option_is_named_with_the_ini_file_and_a_hint(tmp_path, ini_text, message):
    # It was "IPFilter.__init__() got an unexpected keyword argument 'alow'", no file named.
    ini = tmp_path / "site.ini"
    ini.write_text(ini_text)
    with pytest.raises(ConfigError, match=re.escape(f"{ini}{message}")):
        loadapp(f"config:{ini}")


@pytest.mark.parametrize(
    ("ini_text", "message"),
    [
        pytest.param(
            EGG_INI.replace("pipeline = errors office app", "pipeline = errors limit app")
            + "\n[filter:limit]\nuse = egg:wsgistack#rate_limit\nburst = 5\n",
            ": filter rate_limit: missing option 'limits'",
            id="filter",
        ),
        pytest.param(
            "[app:main]\nuse = egg:wsgistack#load_balance\nstrategy = least_conn\n",
            ": app load_balance: missing option 'upstreams'",
            id="app",
        ),
    ],
)
def test_a_required_option_left_out_is_named_with_the_ini_file(tmp_path, ini_text, message):
    # It was "RateLimiter.__init__() missing 1 required positional argument: 'limits'".
    ini = tmp_path / "site.ini"
    ini.write_text(ini_text)
    with pytest.raises(ConfigError, match=re.escape(f"{ini}{message}")) as raised:
        loadapp(f"config:{ini}")
    assert raised.value.__cause__ is None  # a bad option, not a crash in code: no traceback
