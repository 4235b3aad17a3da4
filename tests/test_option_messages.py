"""A bad option from Python names the middleware and the option, whichever part checks it."""

from __future__ import annotations

import pytest

from tests.pipeline_fixtures import tags_app
from wsgistack.errors import ConfigError
from wsgistack.middlewares import ErrorCatcher, IPFilter, LoadBalancer, RateLimiter

UPSTREAM = ["http://127.0.0.1:9"]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        # Rates, stores and trusted proxies are checked by shared parts that
        # word their messages by option: "burst: ..." named no middleware.
        pytest.param(
            lambda: RateLimiter(tags_app, "10/minute", burst=0),
            "RateLimiter: burst: must be at least 1, got 0",
            id="burst",
        ),
        pytest.param(
            lambda: RateLimiter(tags_app, "10/minute", burst="5"),
            "RateLimiter: burst: expected a whole number, got '5'",
            id="burst-text",
        ),
        pytest.param(
            lambda: RateLimiter(tags_app, "ten/minute"),
            "RateLimiter: limits: 'ten/minute' is not a rate",
            id="limits",
        ),
        pytest.param(
            lambda: RateLimiter(tags_app, "10/minute", store="mysql://db"),
            "RateLimiter: store: ",
            id="store",
        ),
        pytest.param(
            lambda: RateLimiter(tags_app, "10/minute", trusted_proxies=["proxy"]),
            "RateLimiter: trusted_proxies: 'proxy' is not an IP address",
            id="rate-limiter-proxies",
        ),
        pytest.param(
            lambda: IPFilter(tags_app, allow=["10.0.0.0/8"], trusted_proxies=-1),
            "IPFilter: trusted_proxies: hops must be a whole number >= 0, got -1",
            id="ip-filter-proxies",
        ),
        pytest.param(
            lambda: ErrorCatcher(tags_app, trusted_proxies=[5]),
            "ErrorCatcher: trusted_proxies: 5 is not an IP address or network",
            id="error-catcher-proxies",
        ),
        pytest.param(
            lambda: LoadBalancer(UPSTREAM, trusted_proxies="proxy"),
            "LoadBalancer: trusted_proxies: 'proxy' is not an IP address",
            id="balancer-proxies",
        ),
    ],
)
def test_a_bad_option_names_the_middleware_first(build, message):
    with pytest.raises(ConfigError) as caught:
        build()
    assert str(caught.value).startswith(message), str(caught.value)


def test_a_message_already_naming_the_middleware_is_not_named_twice():
    with pytest.raises(ConfigError) as caught:
        RateLimiter(tags_app, "10/minute", burst=5, strategy="sliding_window")
    assert str(caught.value).startswith("RateLimiter: burst: the sliding window")
