"""The /admin allowlist recipe, driven as its docstring promises."""

from __future__ import annotations

from wsgiref.validate import validator

import pytest
from webtest import TestApp

from recipes.flask_admin_allowlist import app


@pytest.fixture
def site():
    return TestApp(validator(app))


def get(site, path, peer, xff=None, **headers):
    if xff:
        headers["X-Forwarded-For"] = xff
    return site.get(path, headers=headers, extra_environ={"REMOTE_ADDR": peer}, expect_errors=True)


def test_the_public_site_is_open_to_everyone(site):
    assert get(site, "/", "203.0.113.9").text == "public home page"


def test_admin_through_a_balancer_for_an_office_client(site):
    assert get(site, "/admin/", "10.1.1.1", xff="192.0.2.10").text == "admin dashboard"


def test_admin_through_a_balancer_for_a_stranger(site):
    assert get(site, "/admin/", "10.1.1.1", xff="203.0.113.9").status_int == 403


def test_a_spoofed_header_from_outside_changes_nothing(site):
    assert get(site, "/admin/", "203.0.113.9", xff="192.0.2.10").status_int == 403


def test_a_stranger_prepending_an_office_address_is_still_refused(site):
    # The balancer appends the real peer: the client's own text stays on the left.
    assert get(site, "/admin/", "10.1.1.1", xff="192.0.2.10, 203.0.113.9").status_int == 403


TLS_AT_THE_BALANCER = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example"}


def test_behind_a_tls_balancer_flask_redirects_to_https(site):
    # Flask's /admin -> /admin/ redirect is an absolute URL: without the
    # balancer's word it sent office users from https:// to http://.
    moved = get(site, "/admin", "10.1.1.1", xff="192.0.2.10", **TLS_AT_THE_BALANCER)
    assert moved.status_int == 308
    assert moved.headers["Location"] == "https://shop.example/admin/"


def test_forwarded_scheme_and_host_from_anyone_else_change_nothing(site):
    # An office machine reaching the app directly is admitted, but its own
    # X-Forwarded-Host cannot choose the host Flask writes into its links.
    moved = get(site, "/admin", "192.0.2.10", **TLS_AT_THE_BALANCER)
    assert moved.status_int == 308
    assert moved.headers["Location"] == "http://localhost/admin/"
