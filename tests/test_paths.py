"""paths: whether a request is under a ``paths=`` prefix, however its path is spelled."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsgistack.paths import SAFE_PATH, folded, normal_spelling, prefixes, under, url_path, wsgi_str


@pytest.mark.parametrize(
    ("path_info", "expected"),
    [
        pytest.param("/admin/x", True, id="rooted"),
        # werkzeug's server passes "GET admin/x" on as PATH_INFO "admin/x"; werkzeug's
        # router and PrefixDispatcher read it as "/admin/x", so the filter must too.
        pytest.param("admin/x", True, id="unrooted"),
        pytest.param("admin", True, id="unrooted-exact"),
        pytest.param("./admin", True, id="unrooted-dot"),
        pytest.param("../admin/x", True, id="unrooted-dot-dot"),
        pytest.param("administrator", False, id="unrooted-not-a-segment"),
        pytest.param("public/admin", False, id="unrooted-elsewhere"),
    ],
)
def test_a_path_without_its_leading_slash_is_read_from_the_root(path_info, expected):
    scope = prefixes(["/admin"], "IPFilter: paths")
    assert under({"SCRIPT_NAME": "", "PATH_INFO": path_info}, scope) is expected


@pytest.mark.parametrize(
    ("prefix", "script_name", "path_info", "expected"),
    [
        pytest.param("/admin", "/app", "/admin", True, id="the-apps-route"),
        pytest.param("/admin", "/app", "/admin/users", True, id="below-the-apps-route"),
        pytest.param("/admin", "/app", "//admin", True, id="the-apps-route-doubled-slash"),
        pytest.param("/admin", "/app", "/public", False, id="another-route"),
        pytest.param("/app/admin", "/app", "/admin", True, id="the-url"),
        pytest.param("/app/admin", "/app", "/public", False, id="another-url"),
        pytest.param("/app", "/app", "", True, id="the-mount-itself"),
        pytest.param("/admin", "/app", "", False, id="the-mount-is-not-the-route"),
    ],
)
def test_a_prefix_is_the_apps_route_or_the_url(prefix, script_name, path_info, expected):
    # Under a root path a route (PATH_INFO) and a URL (SCRIPT_NAME + PATH_INFO) differ;
    # users write either, and a filter scoped to either must see the request.
    scope = prefixes([prefix], "RateLimiter: paths")
    assert under({"SCRIPT_NAME": script_name, "PATH_INFO": path_info}, scope) is expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/%7Eapp/%7e", "/~app/~", id="unreserved-decoded"),
        pytest.param("/%61%2D%5F%2E", "/a-_.", id="letters-and-marks-decoded"),
        pytest.param("/a%2fb%c3%a9", "/a%2Fb%C3%A9", id="others-upper-cased"),
        pytest.param("/100%25", "/100%25", id="percent-stays"),
        pytest.param("/plain", "/plain", id="no-escape"),
    ],
)
def test_normal_spelling_makes_equivalent_paths_equal(path, expected):
    assert normal_spelling(path) == expected


@given(st.text(st.characters(max_codepoint=255), max_size=30))
def test_url_path_spells_any_decoded_path_as_quoting_it_would(path):
    assert url_path(path) == quote(path.encode("latin-1"), safe=SAFE_PATH)


@pytest.mark.parametrize(
    ("path", "spelled"),
    [
        ("/shop/cart;v=1/~me", "/shop/cart;v=1/~me"),
        ("/my app/caf\xe9", "/my%20app/caf%E9"),
        ("/100%/a?b#c", "/100%25/a%3Fb%23c"),
    ],
)
def test_url_path_escapes_only_what_a_url_path_cannot_hold(path, spelled):
    assert url_path(path) == spelled


@pytest.mark.parametrize(
    ("path_info", "expected"),
    [
        pytest.param(wsgi_str("/ÉTÉ/x"), True, id="non-ascii-upper"),
        pytest.param("/\xc9T\xc9/x", False, id="latin-1-bytes-are-not-utf-8-letters"),
        pytest.param(wsgi_str("/été/x"), True, id="as-written"),
    ],
)
def test_ignore_case_folds_utf_8_letters_and_leaves_other_bytes(path_info, expected):
    scope = prefixes(["/Été"], "paths", ignore_case=True)
    assert under({"PATH_INFO": path_info}, scope, ignore_case=True) is expected


@given(st.binary(max_size=40))
def test_folding_any_wsgi_path_keeps_it_a_wsgi_str(raw):
    # Bytes that are not UTF-8 stay as sent: the result is latin-1 text, its segments kept.
    path = "/" + raw.decode("latin-1")
    assert folded(path).encode("latin-1").count(b"/") == path.count("/")
