"""The middlewares inside waitress, run for real (issue 9).

waitress decides some things itself that the layers decide too: who the
client is (``trusted_proxy``, and it drops forwarded headers it does not
trust), the mount point (``url_prefix``), and a chunked body's length (it
reads the body whole).  These tests pin how the two compose.
"""

from __future__ import annotations

import http.client

import pytest

from tests.recipes.foreign import serving

APPS = "tests.recipes.foreign_apps"
FORWARDED = {"X-Forwarded-For": "203.0.113.7"}  # the proxy on loopback says who asked


def ask(port: int, path: str, headers: dict[str, str], body=None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST" if body is not None else "GET", path, body, headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("target", "options", "status"),
    [
        # By default waitress deletes X-Forwarded-For (and Forwarded, X-Forwarded-Proto,
        # -Host, -Port, -By) from every request: trusted_proxies never see it, and
        # every client is the proxy.
        pytest.param("denied_behind_proxy", (), 200, id="waitress-drops-the-header"),
        # Keep the headers, and the layers' trusted_proxies decide.
        pytest.param(
            "denied_behind_proxy",
            ("--no-clear-untrusted-proxy-headers",),
            403,
            id="layers-decide",
        ),
        # Or waitress decides: REMOTE_ADDR becomes the client, as the layers read it.
        pytest.param(
            "denied",
            ("--trusted-proxy=127.0.0.1", "--trusted-proxy-headers=x-forwarded-for"),
            403,
            id="waitress-decides",
        ),
        # Both: waitress's client is no trusted proxy, so the layers keep it.
        pytest.param(
            "denied_behind_proxy",
            ("--trusted-proxy=127.0.0.1", "--trusted-proxy-headers=x-forwarded-for"),
            403,
            id="both-agree",
        ),
    ],
)
def test_who_the_client_is_under_waitress(target, options, status, tmp_path):
    with serving("waitress", f"{APPS}:{target}", *options, home=tmp_path) as run:
        answer, _ = ask(run.port, "/", FORWARDED)
    assert answer == status, run.log


def test_a_prefix_dispatcher_mounts_inside_waitress_url_prefix(tmp_path):
    # waitress moves its url_prefix from PATH_INFO to SCRIPT_NAME; a mount adds to it.
    with serving("waitress", f"{APPS}:mounted", "--url-prefix=/site", home=tmp_path) as run:
        inside = ask(run.port, "/site/api/users?x=1", {})
        outside = ask(run.port, "/site/other", {})
    assert inside == (200, b"/site/api|/users|0"), run.log
    assert outside[0] == 404, run.log


def test_a_chunked_upload_through_request_buffering_under_waitress(tmp_path):
    # waitress reads a chunked body whole itself and gives it a CONTENT_LENGTH:
    # the layer passes it on untouched, the app reads all of it.
    data = b"x" * 300_000
    with serving("waitress", f"{APPS}:buffered", home=tmp_path) as run:
        answer = ask(
            run.port,
            "/up",
            {},
            iter([data[:1000], data[1000:]]),  # no length: sent chunked
        )
    assert answer == (200, b"|/up|300000"), run.log
