"""Every refusal a layer sends reads as plain text in its JSON form, as in its text form.

webob puts its HTML body's markup into the JSON ``message`` (``<br /><br />``);
an API client should get the sentence a person reads in the text form.
"""

from __future__ import annotations

import json
import socket
from wsgiref.validate import validator

import pytest
from webtest import TestApp

from tests.conftest import hello_app
from wsgistack.middlewares import (
    ErrorCatcher,
    IPFilter,
    LoadBalancer,
    PrefixDispatcher,
    RateLimiter,
)
from wsgistack.middlewares.ratelimit import RedisStore

CLIENT = {"REMOTE_ADDR": "192.0.2.9"}


def _closed_url(scheme: str) -> str:
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        return f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"


def _raises(environ, start_response):
    raise RuntimeError("the database went away")


def _limited_twice():
    return RateLimiter(hello_app, "1/minute"), 2


def _store_down():
    store = RedisStore(_closed_url("redis") + "/0", timeout=0.5)
    return RateLimiter(hello_app, "1/minute", store=store, fail="closed"), 1


CASES = {
    "ipfilter-403": (lambda: (IPFilter(hello_app, deny=["192.0.2.0/24"]), 1), "/", 403),
    "dispatch-404": (lambda: (PrefixDispatcher({"/a": hello_app}), 1), "/b", 404),
    "dispatch-308": (lambda: (PrefixDispatcher({"/a": hello_app}), 1), "/a", 308),
    "ratelimit-429": (_limited_twice, "/", 429),
    "ratelimit-503": (_store_down, "/", 503),
    "errors-500": (lambda: (ErrorCatcher(_raises), 1), "/", 500),
    "forward-502": (lambda: (LoadBalancer([_closed_url("http")], max_fails=100), 1), "/", 502),
    "forward-503": (
        lambda: (LoadBalancer([_closed_url("http"), _closed_url("http")], max_fails=1), 2),
        "/",
        503,
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_json_message_is_the_plain_sentence(case):
    make, path, status = case
    app, calls = make()
    client = TestApp(validator(app), extra_environ=CLIENT)
    for _ in range(calls - 1):
        client.get(path, expect_errors=True)
    response = client.get(path, headers={"Accept": "application/json"}, status=status)
    body = json.loads(response.text)
    message = body["message"]
    assert message and "<" not in message and "\n" not in message
    assert body["code"].startswith(str(status))
    text = client.get(path, headers={"Accept": "text/plain"}, status=status).text
    assert message.split(" Error id: ")[0] in " ".join(text.split())


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("accept", ["application/json", "text/plain", "*/*"])
def test_head_gets_the_head_get_gets_without_the_body(case, accept):
    # webob answered HEAD with a bare text/html head and no Content-Length.
    make, path, status = case
    heads = {}
    for method in ("GET", "HEAD"):
        app, calls = make()
        client = TestApp(validator(app), extra_environ=CLIENT)
        for _ in range(calls - 1):
            client.get(path, expect_errors=True)
        response = client._gen_request(
            method, path, headers={"Accept": accept}, status=status, expect_errors=True
        )
        heads[method] = response
    get, head = heads["GET"], heads["HEAD"]
    assert head.body == b"" and get.body
    assert head.content_type == get.content_type
    assert head.headers["Content-Length"] == get.headers["Content-Length"] == str(len(get.body))
