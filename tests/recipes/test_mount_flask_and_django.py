"""The Flask + Django recipe, driven in its own interpreter (Django settings are global)."""

from __future__ import annotations

DRIVER = """
import json, warnings
warnings.simplefilter("error")
warnings.filterwarnings("ignore", "'cgi' is deprecated", DeprecationWarning)
from wsgiref.validate import validator
from webtest import TestApp
from recipes.mount_flask_and_django import app
site = TestApp(validator(app))
print(json.dumps({
    "api": site.get("/api/users/ann").json,
    "site": site.get("/site/articles/hi/").json,
    "slash": site.get("/site?x=1", status=308).location,
    "index": site.get("/").text,
    "shop": site.get("/", extra_environ={"SCRIPT_NAME": "/shop"}).text,
    "shop_api": site.get("/api/users/ann", extra_environ={"SCRIPT_NAME": "/shop"}).json,
    "neighbour": site.get("/apiv2/users/ann").text,
}))
"""


def test_each_framework_builds_urls_under_its_prefix(in_subprocess):
    result = in_subprocess(DRIVER)
    assert result["api"] == {"self": "/api/users/ann"}
    assert result["site"] == {"self": "/site/articles/hi/"}
    assert result["slash"] == "/site/?x=1"
    assert 'href="/api/users/ann"' in result["index"]
    # Served under a prefix (nginx's uwsgi_param SCRIPT_NAME /shop), every link stays in it.
    assert 'href="/shop/api/users/ann"' in result["shop"]
    assert 'href="/shop/site/articles/hi/"' in result["shop"]
    assert result["shop_api"] == {"self": "/shop/api/users/ann"}
    assert result["neighbour"] == result["index"]  # /apiv2 is not /api: the index answers
