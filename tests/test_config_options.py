"""Every documented option of every built-in, from Python, a TOML pipeline and an ini alike.

Each case gives the options once as TOML lines; an ini reads the same lines
(its values are read as TOML), so one spelling is checked three ways: the
middleware must be called with the very options Python would pass it.
"""

from __future__ import annotations

import functools
import http.client
import inspect
import logging
import re
import time
import tomllib
from collections.abc import Iterator
from typing import Any
from wsgiref.validate import validator

import pytest
from paste.deploy import loadapp
from webtest import TestApp

import wsgistack.middlewares.buffering
import wsgistack.middlewares.errors
import wsgistack.middlewares.forward
import wsgistack.middlewares.ipfilter
import wsgistack.middlewares.ratelimit
from tests import pipeline_fixtures
from tests.server.live import live_server
from wsgistack import build_pipeline
from wsgistack.clientip import ProxyTrust
from wsgistack.errors import ConfigError
from wsgistack.middlewares.ratelimit import MemoryStore, RedisStore

#: built-in name -> (module holding the class, the class's name, a layer or an app)
TARGETS = {
    "error_catcher": (wsgistack.middlewares.errors, "ErrorCatcher", "layer"),
    "ip_filter": (wsgistack.middlewares.ipfilter, "IPFilter", "layer"),
    "rate_limit": (wsgistack.middlewares.ratelimit, "RateLimiter", "layer"),
    "request_buffering": (wsgistack.middlewares.buffering, "RequestBuffering", "layer"),
    "load_balance": (wsgistack.middlewares.forward, "LoadBalancer", "app"),
}

UPSTREAMS = (
    'upstreams = ["http://127.0.0.1:1", {url = "http://127.0.0.1:2/app", weight = 2},'
    ' {url = "http://127.0.0.1:3", backup = true}]'
)

CASES = [
    pytest.param(
        "error_catcher",
        'debug = false\npass_http_exceptions = false\nerror_id_header = "X-Request-Id"\n'
        "trusted_proxies = 1",
        {
            "debug": False,
            "pass_http_exceptions": False,
            "error_id_header": "X-Request-Id",
            "trusted_proxies": 1,
        },
        id="error_catcher-scalars",
    ),
    pytest.param(
        "error_catcher",
        'on_error = [{use = "tests.pipeline_fixtures:report"}]\n'
        'logger = {use = "logging:getLogger", name = "myapp.errors"}',
        {"on_error": [pipeline_fixtures.report], "logger": logging.getLogger("myapp.errors")},
        id="error_catcher-hooks-and-logger",
    ),
    pytest.param(
        "error_catcher",
        'statuses = { "django.core.exceptions:PermissionDenied" = 403,'
        ' "builtins:TimeoutError" = 504 }',
        {
            "statuses": {
                "django.core.exceptions:PermissionDenied": 403,
                "builtins:TimeoutError": 504,
            }
        },
        id="error_catcher-statuses-by-name",
    ),
    pytest.param(
        "ip_filter",
        'allow = ["10.0.0.0/8", "2001:db8::/32"]\ndeny = ["10.9.0.0/16"]\n'
        'precedence = "deny"\npaths = ["/admin"]\nignore_case = true\ndry_run = true\n'
        'reload_interval = 2.5\ntrusted_proxies = ["192.0.2.0/24", "unix"]',
        {
            "allow": ["10.0.0.0/8", "2001:db8::/32"],
            "deny": ["10.9.0.0/16"],
            "precedence": "deny",
            "paths": ["/admin"],
            "ignore_case": True,
            "dry_run": True,
            "reload_interval": 2.5,
            "trusted_proxies": ["192.0.2.0/24", "unix"],
        },
        id="ip_filter-lists-and-flags",
    ),
    pytest.param(
        "ip_filter",
        'allow = ["10.0.0.0/8"]\n'
        'trusted_proxies = {use = "wsgistack.clientip:ProxyTrust", proxies = ["192.0.2.1"],'
        ' header = "forwarded"}\nrefuse = {use = "tests.pipeline_fixtures:tags_app"}',
        {
            "allow": ["10.0.0.0/8"],
            "trusted_proxies": ProxyTrust(["192.0.2.1"], header="forwarded"),
            "refuse": pipeline_fixtures.tags_app,
        },
        id="ip_filter-forwarded-and-refuse-app",
    ),
    pytest.param(
        "rate_limit",
        'limits = "10/second; 1000/hour"\nburst = 20\nkey = "header:X-Api-Key"\n'
        'strategy = "gcra"\nipv6_prefix = 56\nexempt = ["10.0.0.0/8"]\npaths = ["/api"]\n'
        'ignore_case = true\nname = "login"\nfail = "closed"\nstore_backoff = 2.0\n'
        "store_failures = 5\ndry_run = true\nlegacy_headers = true\ntrusted_proxies = 2",
        {
            "limits": "10/second; 1000/hour",
            "burst": 20,
            "key": "header:X-Api-Key",
            "strategy": "gcra",
            "ipv6_prefix": 56,
            "exempt": ["10.0.0.0/8"],
            "paths": ["/api"],
            "ignore_case": True,
            "name": "login",
            "fail": "closed",
            "store_backoff": 2.0,
            "store_failures": 5,
            "dry_run": True,
            "legacy_headers": True,
            "trusted_proxies": 2,
        },
        id="rate_limit-scalars",
    ),
    pytest.param(
        "ip_filter",
        'allow_files = ["/dev/null"]\ndeny_files = ["/dev/null"]\n'
        'clock = {use = "time:monotonic"}\n'
        'logger = {use = "logging:getLogger", name = "myapp.access"}\n'
        'trusted_proxies = {use = "wsgistack.clientip:ProxyTrust", hops = 2}',
        {
            "allow_files": ["/dev/null"],
            "deny_files": ["/dev/null"],
            "clock": time.monotonic,
            "logger": logging.getLogger("myapp.access"),
            "trusted_proxies": ProxyTrust(hops=2),
        },
        id="ip_filter-files-clock-logger-hops",
    ),
    pytest.param(
        "rate_limit",
        'limits = ["10/second", "1000/hour"]\nclock = {use = "time:time"}\n'
        'logger = {use = "logging:getLogger", name = "myapp.limits"}',
        {
            "limits": ["10/second", "1000/hour"],
            "clock": time.time,
            "logger": logging.getLogger("myapp.limits"),
        },
        id="rate_limit-list-clock-logger",
    ),
    pytest.param(
        "rate_limit",
        'limits = "100/minute"\nstrategy = "sliding_window"\nstore = "redis://127.0.0.1:1/0"',
        {"limits": "100/minute", "strategy": "sliding_window", "store": "redis://127.0.0.1:1/0"},
        id="rate_limit-store-url",
    ),
    pytest.param(
        "rate_limit",
        'limits = "100/minute"\n'
        'store = {use = "wsgistack.middlewares.ratelimit:RedisStore",'
        ' target = "redis://127.0.0.1:1/0", prefix = "site:", timeout = 0.5,'
        " max_connections = 8}\n"
        'key = {use = "tests.pipeline_fixtures:api_key"}\n'
        'exempt = {use = "tests.pipeline_fixtures:is_health_check"}',
        {
            "limits": "100/minute",
            "store": RedisStore(
                "redis://127.0.0.1:1/0", prefix="site:", timeout=0.5, max_connections=8
            ),
            "key": pipeline_fixtures.api_key,
            "exempt": pipeline_fixtures.is_health_check,
        },
        id="rate_limit-redis-store-options-and-callables",
    ),
    pytest.param(
        "rate_limit",
        'limits = "100/minute"\n'
        'store = {use = "wsgistack.middlewares.ratelimit:MemoryStore", max_keys = 1000}',
        {"limits": "100/minute", "store": MemoryStore(max_keys=1000)},
        id="rate_limit-memory-store-size",
    ),
    pytest.param(
        "request_buffering",
        'max_size = 1_048_576\nlogger = {use = "logging:getLogger", name = "myapp.uploads"}',
        {"max_size": 1048576, "logger": logging.getLogger("myapp.uploads")},
        id="request_buffering",
    ),
    pytest.param(
        "load_balance",
        UPSTREAMS + '\nstrategy = "least_conn"\nmax_fails = 0\nfail_timeout = 5\n'
        'health_path = "/health"\nhealth_interval = 2.5\nhealth_rise = 3\n'
        'health_host = "site.example"\nnext_upstream = ["error", "timeout", "http_502"]\n'
        "tries = 2\nretry_timeout = 5.0\nconnect_timeout = 1\nread_timeout = 30\n"
        "preserve_host = false\ncookie_paths = false\nmax_idle = 4\nidle_timeout = 3.5\n"
        "request_buffering = true\nmax_body_size = 10485760\ntrusted_proxies = 1",
        {
            "upstreams": [
                "http://127.0.0.1:1",
                {"url": "http://127.0.0.1:2/app", "weight": 2},
                {"url": "http://127.0.0.1:3", "backup": True},
            ],
            "strategy": "least_conn",
            "max_fails": 0,
            "fail_timeout": 5,
            "health_path": "/health",
            "health_interval": 2.5,
            "health_rise": 3,
            "health_host": "site.example",
            "next_upstream": ["error", "timeout", "http_502"],
            "tries": 2,
            "retry_timeout": 5.0,
            "connect_timeout": 1,
            "read_timeout": 30,
            "preserve_host": False,
            "cookie_paths": False,
            "max_idle": 4,
            "idle_timeout": 3.5,
            "request_buffering": True,
            "max_body_size": 10485760,
            "trusted_proxies": 1,
        },
        id="load_balance",
    ),
    pytest.param(
        "load_balance",
        UPSTREAMS + '\nstrategy = "hash"\nhash_key = {use = "tests.pipeline_fixtures:api_key"}',
        {
            "upstreams": [
                "http://127.0.0.1:1",
                {"url": "http://127.0.0.1:2/app", "weight": 2},
                {"url": "http://127.0.0.1:3", "backup": True},
            ],
            "strategy": "hash",
            "hash_key": pipeline_fixtures.api_key,
        },
        id="load_balance-hash-key",
    ),
    pytest.param(
        "load_balance",
        'upstreams = ["http://127.0.0.1:1"]\nclock = {use = "time:monotonic"}',
        {"upstreams": ["http://127.0.0.1:1"], "clock": time.monotonic},
        id="load_balance-clock",
    ),
]


@pytest.fixture
def recorded(monkeypatch) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Each built-in replaced by a subclass that records its options, then validates them."""
    calls: list[tuple[str, dict[str, Any]]] = []
    built: list[Any] = []
    for name, (module, attr, _) in TARGETS.items():
        real = getattr(module, attr)

        @functools.wraps(real.__init__)  # its signature: options are checked as for the real one
        def __init__(self: Any, *args: Any, _real: Any = real, _name: str = name, **kw: Any):
            calls.append((_name, kw))
            _real.__init__(self, *args, **kw)
            built.append(self)

        monkeypatch.setattr(module, attr, type(attr, (real,), {"__init__": __init__}))
    yield calls
    for obj in built:
        if hasattr(obj, "close"):
            obj.close()


def comparable(value: Any) -> Any:
    """``value`` with objects built apart (a store, a ProxyTrust) compared by type and repr."""
    if isinstance(value, list | tuple):
        return [comparable(item) for item in value]
    if isinstance(value, dict):
        return {key: comparable(item) for key, item in value.items()}
    if value is None or isinstance(value, str | int | float | logging.Logger):
        return value
    if inspect.isfunction(value) or inspect.isbuiltin(value):
        return value
    return (type(value).__name__, repr(value))


def from_python(name: str, options: dict[str, Any]) -> Any:
    module, attr, kind = TARGETS[name]
    factory = getattr(module, attr)
    return factory(**options) if kind == "app" else factory(pipeline_fixtures.tags_app, **options)


def toml_config(name: str, lines: str) -> dict[str, Any]:
    table = {"use": name, **tomllib.loads(lines)}
    if TARGETS[name][2] == "app":
        return {"app": table}
    return {"layer": [table], "app": "tests.pipeline_fixtures:tags_app"}


def ini_text(name: str, lines: str) -> str:
    if TARGETS[name][2] == "app":
        return f"[app:main]\nuse = egg:wsgistack#{name}\n{lines}\n"
    return (
        f"[pipeline:main]\npipeline = layer app\n\n[filter:layer]\nuse = egg:wsgistack#{name}\n"
        f"{lines}\n\n[app:app]\nuse = call:tests.pipeline_fixtures:tags_app_factory\n"
    )


@pytest.mark.parametrize(("name", "lines", "options"), CASES)
def test_each_option_means_the_same_in_python_toml_and_ini(
    recorded, tmp_path, name, lines, options
):
    from_python(name, options)
    build_pipeline(toml_config(name, lines), source="stack.toml")
    ini = tmp_path / "site.ini"
    ini.write_text(ini_text(name, lines))
    loadapp(f"config:{ini}")
    assert [call[0] for call in recorded] == [name] * 3
    python, toml, paste = (comparable(call[1]) for call in recorded)
    assert toml == python
    assert paste == python


BAD = [
    pytest.param(
        "ip_filter", 'allow = ["10.0.0.0/8"]\nalow = ["10.0.0.1"]', "unknown option 'alow'"
    ),
    pytest.param("rate_limit", 'limits = "10/minute"\nratelimit = 5', "unknown option 'ratelimit'"),
    pytest.param(
        "rate_limit", 'limits = "10/minute"\nburst = "10"', "burst: expected a whole number"
    ),
    pytest.param(
        "ip_filter",
        'allow = ["10.0.0.0/8"]\npaths = ["/a"]\nignore_case = "true"',
        "ignore_case: expected true",
    ),
    pytest.param("ip_filter", 'allow = "10.0.0.0/8"', "allow: expected a list"),
    pytest.param(
        "rate_limit",
        'limits = "10/minute"\nstore = {use = "wsgistack.middlewares.ratelimit:NoSuchStore"}',
        "store (wsgistack.middlewares.ratelimit:NoSuchStore): "
        "'wsgistack.middlewares.ratelimit:NoSuchStore': "
        "'wsgistack.middlewares.ratelimit' has no attribute 'NoSuchStore'",
    ),
    pytest.param(
        "rate_limit",
        'limits = "10/minute"\n'
        'store = {use = "wsgistack.middlewares.ratelimit:MemoryStore", max_kyes = 5}',
        "store (wsgistack.middlewares.ratelimit:MemoryStore): unknown option 'max_kyes' "
        "(did you mean 'max_keys'?)",
    ),
    pytest.param(
        "rate_limit",
        'limits = "10/minute"\n'
        'store = {use = "wsgistack.middlewares.ratelimit:RedisStore",'
        ' target = "redis://127.0.0.1:1/0", timeout = 0}',
        "store (wsgistack.middlewares.ratelimit:RedisStore): ",
    ),
    pytest.param(
        "rate_limit",
        'limits = "10/minute"\nstore = {use = "wsgistack.options:MAX_SECONDS", size = 5}',
        "store (wsgistack.options:MAX_SECONDS): int object is not callable: it takes no options",
    ),
    # A misspelt option holding an object was built before its name was checked:
    # a factory that could not connect hid the "did you mean" behind its own error.
    pytest.param(
        "rate_limit",
        'limits = "10/minute"\n'
        'stor = {use = "tests.pipeline_fixtures:unreachable_store", url = "redis://h/0"}',
        "unknown option 'stor' (did you mean 'store'?)",
    ),
    pytest.param(
        "load_balance",
        'upstreams = ["http://127.0.0.1:9"]\n'
        'hash_kye = {use = "tests.pipeline_fixtures:unreachable_store", url = "redis://h/0"}',
        "unknown option 'hash_kye' (did you mean 'hash_key'?)",
    ),
    pytest.param(
        "error_catcher",
        'statuses = { "django.core.exceptions:PermissionDenid" = 403 }',
        "ErrorCatcher: statuses: 'django.core.exceptions:PermissionDenid': "
        "'django.core.exceptions' has no attribute 'PermissionDenid'",
    ),
    pytest.param(
        "error_catcher",
        'statuses = { "no_such_module_xyz:Error" = 503 }',
        "ErrorCatcher: statuses: 'no_such_module_xyz:Error': no module named 'no_such_module_xyz'",
    ),
    pytest.param(
        "error_catcher",
        'statuses = { "tests.pipeline_fixtures:tags_app" = 503 }',
        "ErrorCatcher: statuses: 'tests.pipeline_fixtures:tags_app' names a function, "
        "not an exception class",
    ),
    pytest.param(
        "error_catcher",
        'statuses = { "TimeoutError" = 504 }',
        "ErrorCatcher: statuses: 'TimeoutError' is not an exception class; name one as "
        "'module:attr' (did you mean 'builtins:TimeoutError'?)",
    ),
    pytest.param(
        "error_catcher",
        'on_error = [{use = "rate_limit"}]',
        "on_error item 1: 'use' must name an object as 'module:attr', got 'rate_limit'",
    ),
]


@pytest.mark.parametrize(("name", "lines", "message"), BAD)
def test_a_bad_option_fails_at_start_up_naming_it_in_toml_and_ini(tmp_path, name, lines, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        build_pipeline(toml_config(name, lines), source="stack.toml")
    assert str(raised.value).startswith("stack.toml: ")
    assert f"({name}): " in str(raised.value)
    ini = tmp_path / "site.ini"
    ini.write_text(ini_text(name, lines))
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        loadapp(f"config:{ini}")
    assert str(raised.value).startswith(f"{ini}: ")


def test_a_file_named_in_an_ini_can_use_here(tmp_path, monkeypatch):
    # PasteDeploy's %(here)s is the ini's directory, inside a TOML list as anywhere.
    (tmp_path / "allow.txt").write_text("192.0.2.0/24\n")
    ini = tmp_path / "site.ini"
    ini.write_text(ini_text("ip_filter", 'allow_files = ["%(here)s/allow.txt"]'))
    monkeypatch.chdir("/")
    app = TestApp(validator(loadapp(f"config:{ini}")))
    assert app.get("/", extra_environ={"REMOTE_ADDR": "192.0.2.7"}).status_int == 200
    assert app.get("/", extra_environ={"REMOTE_ADDR": "203.0.113.1"}, status=403)


STATUSES_TOML = """
[[layer]]
use = "error_catcher"
statuses = { "django.core.exceptions:PermissionDenied" = 403 }

[app]
use = "tests.pipeline_fixtures:forbidden_app"
"""

STATUSES_INI = """
[pipeline:main]
pipeline = errors app

[filter:errors]
use = egg:wsgistack#error_catcher
statuses = { "django.core.exceptions:PermissionDenied" = 403 }

[app:app]
use = call:tests.pipeline_fixtures:forbidden_app_factory
"""


@pytest.mark.parametrize("form", ["toml", "ini"])
def test_a_status_mapped_by_name_answers_a_real_request(tmp_path, form):
    # A table key cannot hold a class, so statuses had no spelling in a file:
    # Django's PermissionDenied, raised below a catcher, could only be a 500.
    from django.core.exceptions import PermissionDenied

    if form == "toml":
        stack = build_pipeline(tomllib.loads(STATUSES_TOML), source="stack.toml")
    else:
        ini = tmp_path / "site.ini"
        ini.write_text(STATUSES_INI)
        stack = loadapp(f"config:{ini}")
    assert stack.statuses == {PermissionDenied: 403}
    with live_server(stack) as server:
        connection = http.client.HTTPConnection(*server.address, timeout=10)
        try:
            connection.request("GET", "/private")
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
    assert response.status == 403
    assert response.getheader("X-Error-Id")
    assert b"not yours" not in body  # the exception is never leaked
