"""RateLimiter's RateLimit-Policy and RateLimit fields, read as a client reads them.

draft-ietf-httpapi-ratelimit-headers (-10, -11): both fields are structured-field
Lists (RFC 8941) of Items whose value is a String naming a policy; ``q`` and ``w``
describe a policy, ``r`` and ``t`` its state now.  A list may be split over
several field lines, so limiters stacked in one pipeline (or an API and its
limiter) each add members.  The responses here are read over a real socket from
the reference server, the field lines joined as a client joins them, and parsed
strictly: what a parser refuses, a client ignores.
"""

from __future__ import annotations

import base64
import math
import re
import string
from wsgiref.validate import validator

import pytest

from tests.conftest import hello_app
from tests.server.live import RawClient, live_server
from wsgistack.middlewares import RateLimiter
from wsgistack.middlewares.ratelimit import Rate

# -- a strict RFC 8941 List parser (Items only: these fields hold no Inner Lists) ------

_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_NUMBER = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,3})?")
_BYTES = re.compile(r":([A-Za-z0-9+/=]*):")

Item = tuple[object, dict[str, object]]


class Refused(ValueError):
    """A field value a structured-field parser refuses (and a client must ignore)."""


def _bare(text: str, at: int) -> tuple[object, int]:
    if at >= len(text):
        raise Refused(f"an item expected at {at} in {text!r}")
    char = text[at]
    if char == '"':
        value, at = "", at + 1
        while at < len(text):
            char = text[at]
            if char == "\\":
                if at + 1 >= len(text) or text[at + 1] not in '"\\':
                    raise Refused(f"a bad escape at {at} in {text!r}")
                value, at = value + text[at + 1], at + 2
            elif char == '"':
                return value, at + 1
            elif char not in string.printable or char in "\t\n\r\x0b\x0c":
                raise Refused(f"{char!r} in a string in {text!r}")
            else:
                value, at = value + char, at + 1
        raise Refused(f"an unterminated string in {text!r}")
    if char == "?" and text[at + 1 : at + 2] in ("0", "1"):
        return text[at + 1] == "1", at + 2
    if match := _BYTES.match(text, at):
        return base64.b64decode(match[1], validate=True), match.end()
    if match := _NUMBER.match(text, at):
        end = match.end()
        if end < len(text) and text[end].isdigit():
            raise Refused(f"a number longer than 15 digits in {text!r}")
        number = match[0]
        return (float(number) if "." in number else int(number)), end
    if match := _TOKEN.match(text, at):
        return ("token", match[0]), match.end()
    raise Refused(f"no item at {at} in {text!r}")


def _parameters(text: str, at: int) -> tuple[dict[str, object], int]:
    parameters: dict[str, object] = {}
    while at < len(text) and text[at] == ";":
        at += 1
        while at < len(text) and text[at] == " ":
            at += 1
        key = _KEY.match(text, at)
        if key is None:
            raise Refused(f"a bad parameter key at {at} in {text!r}")
        at = key.end()
        value: object = True
        if at < len(text) and text[at] == "=":
            value, at = _bare(text, at + 1)
        parameters[key[0]] = value
    return parameters, at


def sf_list(text: str) -> list[Item]:
    """Parse a List of Items as RFC 8941 section 4.2 does; raise Refused where it would fail."""
    text = text.strip(" ")
    members: list[Item] = []
    at = 0
    while at < len(text):
        value, at = _bare(text, at)
        parameters, at = _parameters(text, at)
        members.append((value, parameters))
        while at < len(text) and text[at] in " \t":
            at += 1
        if at >= len(text):
            return members
        if text[at] != ",":
            raise Refused(f"',' expected at {at} in {text!r}")
        at += 1
        while at < len(text) and text[at] in " \t":
            at += 1
        if at >= len(text):
            raise Refused(f"a trailing comma in {text!r}")
    return members


def test_the_parser_refuses_what_rfc_8941_refuses():
    assert sf_list('"a";q=1;w=60, "b";r=0') == [("a", {"q": 1, "w": 60}), ("b", {"r": 0})]
    for bad in ['"a",', '"a";Q=1', '"a";q=1234567890123456', '"a" "b"', '"a', "a=1,"]:
        with pytest.raises(Refused):
            sf_list(bad)


# -- over a socket ------------------------------------------------------------------


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fetch(app, path: str = "/", api_key: str = "k-1", times: int = 1):
    """``times`` requests to ``app`` served by the reference server; the last response."""
    with live_server(app) as server, RawClient(server.address) as client:
        for _ in range(times):
            response = client.request(
                f"GET {path} HTTP/1.1\r\nHost: a\r\nX-Api-Key: {api_key}\r\n\r\n".encode()
            )
    return response


def policies(headers: dict[str, str]) -> dict[object, dict[str, object]]:
    members = sf_list(headers["ratelimit-policy"])
    names = [name for name, _ in members]
    assert len(set(names)) == len(names), f"two policies are named alike: {names}"
    return dict(members)


def states(headers: dict[str, str]) -> dict[object, dict[str, object]]:
    members = sf_list(headers["ratelimit"])
    names = [name for name, _ in members]
    assert len(set(names)) == len(names), f"two states are named alike: {names}"
    return dict(members)


def test_stacked_limiters_with_names_stay_apart_over_a_socket():
    # Per client address and per API key, the same rate: both said "100-per-60s",
    # twice in each field, so a client could not tell which count was which.
    clock = Clock()
    per_key = RateLimiter(
        validator(hello_app), "100/minute", key="header:X-Api-Key", name="per-key", clock=clock
    )
    per_ip = RateLimiter(validator(per_key), "100/minute", name="per-ip", clock=clock)
    status, headers, _ = fetch(per_ip, times=3)
    assert status == 200
    assert policies(headers) == {
        "per-ip": {"q": 100, "w": 60},
        "per-key": {"q": 100, "w": 60},
    }
    assert states(headers) == {
        "per-ip": {"r": 97, "t": 2},
        "per-key": {"r": 97, "t": 2},
    }


def test_a_named_limiter_with_several_rates_names_each_policy():
    limiter = RateLimiter(validator(hello_app), "10/second; 100/minute", name="api", clock=Clock())
    status, headers, _ = fetch(limiter, times=2)
    assert status == 200
    assert policies(headers) == {
        "api:10-per-1s": {"q": 10, "w": 1},
        "api:100-per-60s": {"q": 100, "w": 60},
    }
    assert states(headers) == {"api:10-per-1s": {"r": 8, "t": 1}}


def test_without_a_name_the_policy_is_named_by_its_rate_as_before():
    # Clients (and dashboards) may match on it: the default does not change.
    status, headers, _ = fetch(RateLimiter(validator(hello_app), "5/minute", clock=Clock()))
    assert status == 200
    assert headers["ratelimit-policy"] == '"5-per-60s";q=5;w=60'
    assert headers["ratelimit"] == '"5-per-60s";r=4;t=12'


def test_a_refusal_is_logged_under_the_policy_name_the_client_saw(caplog):
    caplog.set_level("INFO", "wsgistack.ratelimit")
    limiter = RateLimiter(validator(hello_app), "1/minute", name="login", clock=Clock())
    status, headers, _ = fetch(limiter, times=2)
    assert (status, headers["ratelimit"], headers["retry-after"]) == (429, '"login";r=0;t=60', "60")
    assert "RateLimiter refused 127.0.0.1: / over login (retry in 60s)" in caplog.messages


def api_with_its_own_limit(environ, start_response):
    """An API that reports its own quota, as one behind the limiter (or an upstream) may."""
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/plain"),
            ("RateLimit-Policy", '"app-quota";q=5000;w=86400'),
            ("RateLimit", '"app-quota";r=4321;t=7200'),
            ("X-RateLimit-Limit", "5000"),
            ("X-RateLimit-Remaining", "4321"),
            ("X-RateLimit-Reset", "7200"),
        ],
    )
    return [b"ok"]


def test_the_apps_own_fields_stay_and_ours_are_further_members():
    limiter = RateLimiter(validator(api_with_its_own_limit), "100/minute", clock=Clock())
    status, headers, _ = fetch(limiter)
    assert status == 200
    assert list(policies(headers)) == ["app-quota", "100-per-60s"]
    assert states(headers) == {
        "app-quota": {"r": 4321, "t": 7200},
        "100-per-60s": {"r": 99, "t": 1},
    }


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        pytest.param("10000/minute", ("5000", "4321", "7200"), id="the-apps-is-tighter"),
        pytest.param("3/minute", ("3", "2", "20"), id="ours-is-tighter"),
    ],
)
def test_legacy_fields_are_one_value_each_the_tighter(limits, expected):
    # X-RateLimit-* are single numbers, no lists: an app's and ours were both sent,
    # and a client read "4321, 9999" as its remaining count, which is no number.
    limiter = RateLimiter(
        validator(api_with_its_own_limit), limits, legacy_headers=True, clock=Clock()
    )
    status, headers, _ = fetch(limiter)
    assert status == 200
    legacy = tuple(headers[f"x-ratelimit-{name}"] for name in ("limit", "remaining", "reset"))
    assert legacy == expected


def test_stacked_limiters_send_one_set_of_legacy_fields_the_tighter():
    clock = Clock()
    per_key = RateLimiter(
        validator(hello_app), "3/minute", key="header:X-Api-Key", legacy_headers=True, clock=clock
    )
    per_ip = RateLimiter(validator(per_key), "100/minute", legacy_headers=True, clock=clock)
    status, headers, _ = fetch(per_ip, times=2)
    assert status == 200
    assert headers["x-ratelimit-remaining"] == "1"  # the per-key limit, 1 of 3 left
    assert (headers["x-ratelimit-limit"], headers["x-ratelimit-reset"]) == ("3", "40")
    status, headers, _ = fetch(per_ip, times=2)  # the 3rd and 4th: the inner one refuses
    assert (status, headers["retry-after"]) == (429, "20")
    legacy = tuple(headers[f"x-ratelimit-{name}"] for name in ("limit", "remaining", "reset"))
    assert legacy == ("3", "0", "60")


def _stack(caplog, outer: dict, inner: dict) -> list[str]:
    caplog.set_level("WARNING", "wsgistack.ratelimit")
    RateLimiter(RateLimiter(validator(hello_app), "100/minute", **inner), "100/minute", **outer)
    return [r.getMessage() for r in caplog.records if "same RateLimit policy" in r.getMessage()]


@pytest.mark.parametrize(
    ("outer", "inner", "warned"),
    [
        pytest.param({}, {"key": "header:X-Api-Key"}, True, id="unnamed"),
        pytest.param({"paths": ["/api"]}, {"paths": ["/api/v1"]}, True, id="nested-paths"),
        pytest.param({"paths": ["/login"]}, {"paths": ["/search"]}, False, id="apart-paths"),
        pytest.param({"name": "per-ip"}, {"name": "per-key"}, False, id="named"),
    ],
)
def test_stacking_two_limiters_that_send_the_same_policy_is_told_at_start_up(
    caplog, outer, inner, warned
):
    # Unnamed, both said "100-per-60s": the stack works, but clients cannot tell
    # the counts apart.  Limiters on paths no request shares never meet.
    messages = _stack(caplog, outer, inner)
    assert bool(messages) == warned
    if warned:
        assert messages[0].endswith(
            "sends the same RateLimit policy '100-per-60s', so clients cannot tell the two "
            "counts apart; give each a name="
        )


def _local(limits, **options):
    """A limiter over hello_app with a clock; ``ask()`` gives one response's headers."""
    from webtest import TestApp

    clock = Clock()
    app = TestApp(validator(RateLimiter(validator(hello_app), limits, clock=clock, **options)))

    def ask():
        return app.get("/", extra_environ={"REMOTE_ADDR": "192.0.2.1"}, expect_errors=True)

    return ask, clock


@pytest.mark.parametrize(
    ("limits", "burst", "quota", "window"),
    [
        pytest.param("10/minute", 50, 50, 300, id="burst-above-the-amount"),
        pytest.param("60/minute", 2, 2, 2, id="burst-below-the-amount"),
        pytest.param("10/minute", None, 10, 60, id="no-burst"),
    ],
)
def test_the_policy_is_the_bucket_a_client_can_pace_by(limits, burst, quota, window):
    # With burst=50 on 10/minute the policy said q=10;w=60 while RateLimit said
    # r=49: more left than the whole quota, and a client pacing 10 a minute never
    # used its burst.  The policy is now the bucket itself: q of them at once,
    # refilled in w seconds, which is also the sustained rate (q/w = amount/period).
    ask, clock = _local(limits, burst=burst, legacy_headers=True)
    first = ask()
    [(_, policy)] = policies(first.headers).items()
    assert (policy["q"], policy["w"]) == (quota, window)
    seen = [first] + [ask() for _ in range(quota - 1)]
    assert [r.status_int for r in seen] == [200] * quota
    for response in seen:
        [(_, state)] = states(response.headers).items()
        assert 0 <= state["r"] < quota and 0 < state["t"] <= window
        assert int(response.headers["X-RateLimit-Limit"]) == quota
    refused = ask()
    [(_, state)] = states(refused.headers).items()
    assert (refused.status_int, state["r"], state["t"]) == (429, 0, window)
    assert int(refused.headers["Retry-After"]) == math.ceil(window / quota)
    clock.now += window  # q per w: all of them pass again, a whole bucket
    assert [ask().status_int for _ in range(quota)] == [200] * quota


def test_describe_shows_a_rate_objects_own_burst():
    # A Rate carrying its own burst showed as '10/60s': the burst was invisible.
    limiter = RateLimiter(hello_app, Rate(amount=10, period=60.0, burst=50))
    assert repr(limiter).startswith("RateLimiter('10/60s burst 50', key='ip'")
