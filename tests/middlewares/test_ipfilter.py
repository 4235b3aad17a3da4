"""IPFilter: allow/deny semantics, proxies, paths, files with reload, dry run."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import unicodedata
from wsgiref.validate import validator

import pytest
import webob
from webtest import TestApp

from tests.conftest import hello_app
from tests.middlewares.case_blind import case_blind_app
from wsgistack import build_pipeline
from wsgistack.clientip import ProxyTrust
from wsgistack.errors import ConfigError
from wsgistack.middlewares import IPFilter, PrefixDispatcher


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def client(app, **options):
    return TestApp(validator(IPFilter(validator(app), **options)))


def status_for(app, peer, path="/", **headers):
    return app.get(
        path, headers=headers, extra_environ={"REMOTE_ADDR": peer}, expect_errors=True
    ).status_int


RULES = [
    # (id, options, peer, expected status)
    ("allow-only-in", {"allow": ["10.0.0.0/8"]}, "10.1.2.3", 200),
    ("allow-only-out", {"allow": ["10.0.0.0/8"]}, "192.0.2.1", 403),
    ("deny-only-in", {"deny": ["192.0.2.0/24"]}, "192.0.2.1", 403),
    ("deny-only-out", {"deny": ["192.0.2.0/24"]}, "198.51.100.1", 200),
    ("both-deny-wins", {"allow": ["10.0.0.0/8"], "deny": ["10.9.0.0/16"]}, "10.9.1.1", 403),
    ("both-allowed", {"allow": ["10.0.0.0/8"], "deny": ["10.9.0.0/16"]}, "10.8.1.1", 200),
    ("both-neither", {"allow": ["10.0.0.0/8"], "deny": ["10.9.0.0/16"]}, "192.0.2.1", 403),
    (
        "allow-precedence-exception",
        {"allow": ["10.9.9.9"], "deny": ["10.0.0.0/8"], "precedence": "allow"},
        "10.9.9.9",
        200,
    ),
    (
        "allow-precedence-still-denies",
        {"allow": ["10.9.9.9"], "deny": ["10.0.0.0/8"], "precedence": "allow"},
        "10.9.9.8",
        403,
    ),
    (
        # The point of carving exceptions: everyone outside the denied network is admitted.
        "allow-precedence-outside-the-denied-network",
        {"allow": ["10.9.9.9"], "deny": ["10.0.0.0/8"], "precedence": "allow"},
        "192.0.2.1",
        200,
    ),
    ("v6-allow", {"allow": ["2001:db8::/32"]}, "2001:db8::1", 200),
    ("v6-refused", {"allow": ["2001:db8::/32"]}, "2001:db9::1", 403),
    ("mapped-peer", {"allow": ["10.0.0.0/8"]}, "::ffff:10.0.0.1", 200),
    ("mapped-entry", {"deny": ["::ffff:192.0.2.0/120"]}, "192.0.2.77", 403),
    ("empty-allow-refuses-all", {"allow": []}, "10.0.0.1", 403),
]


@pytest.mark.parametrize(
    ("options", "peer", "expected"), [r[1:] for r in RULES], ids=[r[0] for r in RULES]
)
def test_rules(options, peer, expected):
    assert status_for(client(hello_app, **options), peer) == expected


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(ipaddress.ip_network("::ffff:192.0.2.0/120"), id="mapped-network"),
        pytest.param(ipaddress.ip_network("192.0.2.0/24"), id="network"),
        pytest.param(ipaddress.ip_address("192.0.2.9"), id="address"),
        pytest.param(ipaddress.ip_address("::ffff:192.0.2.9"), id="mapped-address"),
    ],
)
def test_ipaddress_objects_are_entries_like_their_text(entry):
    app = client(hello_app, deny=[entry])
    assert status_for(app, "192.0.2.9") == 403
    assert status_for(app, "198.51.100.1") == 200


def test_a_spoofed_forwarded_header_from_an_untrusted_peer_is_ignored():
    app = client(hello_app, allow=["192.0.2.0/24"], trusted_proxies=["10.0.0.0/8"])
    assert status_for(app, "203.0.113.9", X_Forwarded_For="192.0.2.5") == 403
    assert status_for(app, "203.0.113.9", Forwarded="for=192.0.2.5") == 403


def test_a_trusted_proxy_is_believed():
    app = client(hello_app, allow=["192.0.2.0/24"], trusted_proxies=["10.0.0.0/8"])
    assert status_for(app, "10.0.0.1", X_Forwarded_For="192.0.2.5") == 200
    assert status_for(app, "10.0.0.1", X_Forwarded_For="192.0.2.5, 203.0.113.9") == 403


def test_an_open_quote_in_forwarded_does_not_make_the_client_our_proxy():
    # The client sends `Forwarded: for="x`; our proxy appends its quoted element.
    # Misread, the chain would end at the proxy, which the allow list admits.
    trust = ProxyTrust(["10.0.0.0/8"], header="forwarded")
    app = client(hello_app, allow=["10.0.0.0/8"], trusted_proxies=trust)
    joined = 'for="x, for="[2001:db8::1]"'
    assert status_for(app, "10.0.0.1", Forwarded=joined) == 403
    assert status_for(app, "10.0.0.1", Forwarded='for="x, for="10.0.0.7"') == 200


def test_hop_count_mode():
    app = client(hello_app, deny=["203.0.113.0/24"], trusted_proxies=1)
    assert status_for(app, "10.0.0.1", X_Forwarded_For="203.0.113.9") == 403
    assert status_for(app, "10.0.0.1", X_Forwarded_For="203.0.113.9, 198.51.100.1") == 200


def test_malformed_forwarded_headers_fall_back_without_error():
    app = client(hello_app, allow=["10.0.0.0/8"], trusted_proxies=["10.0.0.0/8"])
    assert status_for(app, "10.0.0.1", X_Forwarded_For="not-an-ip") == 200  # the proxy itself
    assert status_for(app, "10.0.0.1", X_Forwarded_For="[::1") == 200


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/admin", 403, id="prefix"),
        pytest.param("/admin/users", 403, id="below"),
        pytest.param("/administrator", 200, id="not-a-segment"),
        pytest.param("/", 200, id="root"),
        pytest.param("/public/admin", 200, id="elsewhere"),
        pytest.param("//admin", 403, id="doubled-slash"),
        pytest.param("/admin//users", 403, id="doubled-slash-below"),
        pytest.param("/./admin", 403, id="dot-segment"),
        pytest.param("/public/../admin/users", 403, id="dot-dot-segment"),
        pytest.param("/../admin", 403, id="dot-dot-above-the-root"),
        # An app may route the raw path (werkzeug's <path:...> takes "../public"): still filtered.
        pytest.param("/admin/../public", 403, id="dot-dot-out-of-it-as-sent"),
        pytest.param("/.admin", 200, id="dot-name-is-not-a-dot-segment"),
    ],
)
def test_rules_apply_only_under_the_given_paths(path, expected):
    app = client(hello_app, allow=["10.0.0.0/8"], paths=["/admin/"])
    assert status_for(app, "192.0.2.1", path) == expected


@pytest.mark.parametrize("path", ["/caf%C3%A9", "/caf%C3%A9/menu", "//caf%C3%A9/./menu"])
def test_a_non_ascii_prefix_is_matched_on_the_path_as_sent(path):
    # PATH_INFO carries the UTF-8 bytes as latin-1 (PEP 3333): "/café" is "/cafÃ©" there.
    app = client(hello_app, allow=["10.0.0.0/8"], paths=["/café"])
    assert status_for(app, "192.0.2.1", path) == 403
    assert status_for(app, "192.0.2.1", "/cafe") == 200


def test_a_doubled_slash_cannot_reach_a_protected_mount_unfiltered():
    # PrefixDispatcher matches mounts on non-empty segments, so //admin/users is
    # served by the /admin app: the filter must see it as under /admin too.
    admin = validator(hello_app)
    dispatcher = PrefixDispatcher({"/admin": admin}, default=validator(hello_app))
    app = client(dispatcher, allow=["10.0.0.0/8"], paths=["/admin"])
    assert status_for(app, "192.0.2.1", "//admin/users") == 403
    assert status_for(app, "192.0.2.1", "/public") == 200


@pytest.mark.parametrize("url", ["/app/admin", "/app/admin/users", "/admin"])
def test_paths_are_the_apps_routes_under_a_root_path(url):
    # The README's Flask example served under a prefix (--root-path, or nginx's
    # SCRIPT_NAME): Flask routes PATH_INFO, so paths=["/admin"] must cover its
    # /admin route, which /app/admin (and /admin: not under the root) reach.
    import flask

    from tests.server.live import RawClient, live_server

    flask_app = flask.Flask(__name__)
    flask_app.add_url_rule("/admin", "admin", lambda: "secrets")
    flask_app.add_url_rule("/admin/users", "users", lambda: "more secrets")
    flask_app.add_url_rule("/", "home", lambda: "welcome")
    flask_app.wsgi_app = IPFilter(  # type: ignore[method-assign]
        validator(flask_app.wsgi_app), allow=["192.0.2.0/24"], paths=["/admin"]
    )
    with live_server(flask_app, root_path="/app") as server, RawClient(server.address) as raw:
        status, _, body = raw.request(f"GET {url} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        assert (status, body.count(b"secrets")) == (403, 0)
        status, _, body = raw.request(b"GET /app/ HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (status, body) == (200, b"welcome")


def test_an_absolute_prefix_still_covers_a_mounted_app():
    # Written as the URL a browser shows (SCRIPT_NAME + PATH_INFO), as before.
    app = client(hello_app, allow=["10.0.0.0/8"], paths=["/app/admin"])
    environ = {"REMOTE_ADDR": "192.0.2.1", "SCRIPT_NAME": "/app"}
    assert app.get("/admin", extra_environ=environ, expect_errors=True).status_int == 403
    assert app.get("/public", extra_environ=environ).status_int == 200


def test_a_path_sent_without_its_slash_cannot_reach_a_protected_mount_unfiltered():
    # werkzeug's server passes "GET admin/users HTTP/1.1" on as PATH_INFO "admin/users"
    # (wsgiref's validator would refuse it, so none is outside); the dispatcher serves it.
    dispatcher = PrefixDispatcher({"/admin": validator(hello_app)}, default=validator(hello_app))
    app = IPFilter(dispatcher, allow=["10.0.0.0/8"], paths=["/admin"])
    request = webob.Request.blank("/", remote_addr="192.0.2.1")
    request.environ["PATH_INFO"] = "admin/users"
    assert request.get_response(app).status_int == 403


def test_the_refusal_is_negotiated_and_logged(caplog):
    caplog.set_level(logging.INFO, "wsgistack.ipfilter")
    app = client(hello_app, deny=["192.0.2.0/24"])
    response = app.get(
        "/x",
        headers={"Accept": "application/json"},
        extra_environ={"REMOTE_ADDR": "192.0.2.9"},
        status=403,
    )
    assert response.content_type == "application/json"
    [record] = [r for r in caplog.records if r.name == "wsgistack.ipfilter"]
    assert record.getMessage() == "IPFilter refused 192.0.2.9 /x: deny 192.0.2.0/24"


def test_a_decoded_newline_in_the_path_cannot_forge_a_log_line(caplog):
    # PATH_INFO is percent-decoded: /x%0AIPFilter%20refused... arrives with a real LF.
    caplog.set_level(logging.INFO, "wsgistack.ipfilter")
    app = client(hello_app, deny=["192.0.2.0/24"])
    forged = "/x\nIPFilter admitted 10.0.0.1 /admin"
    app.get("/", extra_environ={"REMOTE_ADDR": "192.0.2.9", "PATH_INFO": forged}, status=403)
    [record] = [r for r in caplog.records if r.name == "wsgistack.ipfilter"]
    assert record.getMessage() == (
        "IPFilter refused 192.0.2.9 /x\\x0AIPFilter admitted 10.0.0.1 /admin: deny 192.0.2.0/24"
    )


def test_a_zone_id_in_x_forwarded_for_cannot_forge_a_log_line(caplog):
    # ipaddress takes any text after "%" as an IPv6 zone, a line feed too; a client
    # whose entry was taken (a chain shorter than hops) wrote whole log lines.
    caplog.set_level(logging.INFO, "wsgistack.ipfilter")
    app = client(hello_app, deny=["2001:db8::/32", "192.0.2.0/24"], trusted_proxies=1)
    forged = "2001:db8::1%x\nIPFilter admitted 10.0.0.1 to everything"
    app.get(
        "/",
        headers={"X-Forwarded-For": forged},
        extra_environ={"REMOTE_ADDR": "192.0.2.9"},
        status=403,
    )
    [record] = [r for r in caplog.records if r.name == "wsgistack.ipfilter"]
    assert record.getMessage() == "IPFilter refused 192.0.2.9 /: deny 192.0.2.0/24"


def test_a_deny_list_that_cannot_see_a_unix_socket_client_says_so_once(tmp_path, caplog):
    # nginx in front over a unix socket, trusted_proxies=["unix"] forgotten: the
    # deny list checked no one, and nothing said why the blocked kept coming in.
    import socket

    from tests.server.live import live_server

    caplog.set_level(logging.INFO, "wsgistack.ipfilter")
    path = str(tmp_path / "app.sock")
    app = IPFilter(validator(hello_app), deny=["198.51.100.0/24"])
    request = b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 198.51.100.7\r\n"
    with live_server(app, bind=f"unix:{path}"):
        for _ in range(2):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(5)
                sock.connect(path)
                sock.sendall(request + b"Connection: close\r\n\r\n")
                data = b"".join(iter(lambda: sock.recv(65536), b""))
            assert data.startswith(b"HTTP/1.1 200 ")  # in neither list, as documented
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage() == (
        "IPFilter: a request with no client address (REMOTE_ADDR '') was admitted "
        "without a deny check, as others will be; behind a proxy on a unix socket, "
        "give trusted_proxies=['unix'] and have it send X-Forwarded-For"
    )


def test_the_access_log_names_the_client_the_filter_judged(tmp_path, caplog):
    # Behind nginx the access log said 127.0.0.1 on every line while the filter
    # refused 198.51.100.7: fail2ban or goaccess on it would ban or count nginx.
    from tests.server.live import RawClient, live_server

    caplog.set_level(logging.INFO, "wsgistack.ipfilter")
    log = tmp_path / "access.log"
    app = IPFilter(validator(hello_app), deny=["198.51.100.0/24"], trusted_proxies=["127.0.0.1"])
    with live_server(app, access_log=str(log)) as server, RawClient(server.address) as raw:
        for client in ("198.51.100.7", "203.0.113.9"):
            raw.request(f"GET /x HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: {client}\r\n\r\n".encode())
        raw.request(b"GET /y HTTP/1.1\r\nHost: a\r\n\r\n")  # nginx itself, say a health check
    first, second, third = log.read_text().splitlines()
    assert first.startswith("198.51.100.7 - - [") and '"GET /x HTTP/1.1" 403 ' in first
    assert second.startswith("203.0.113.9 - - [") and '"GET /x HTTP/1.1" 200 ' in second
    assert third.startswith("127.0.0.1 - - [")
    assert "IPFilter refused 198.51.100.7 /x" in caplog.text


def test_a_custom_refusal_app():
    def teapot(environ, start_response):
        start_response("418 I'm a teapot", [("Content-Type", "text/plain")])
        return [b"no"]

    app = client(hello_app, deny=["192.0.2.0/24"], refuse=validator(teapot))
    assert status_for(app, "192.0.2.1") == 418


def test_dry_run_logs_but_admits(caplog):
    caplog.set_level(logging.INFO, "wsgistack.ipfilter")
    app = client(hello_app, allow=["10.0.0.0/8"], dry_run=True)
    assert status_for(app, "192.0.2.1") == 200
    assert "would refuse 192.0.2.1 /: not in the allow list" in caplog.text


def write_list(path, *lines, mtime=None):
    path.write_text("\n".join(lines) + "\n")
    if mtime is not None:
        os.utime(path, ns=(mtime, mtime))


def test_list_files_are_read_and_reloaded_when_they_change(tmp_path, caplog):
    clock = FakeClock()
    blocklist = tmp_path / "deny.txt"
    write_list(blocklist, "# bad actors", "192.0.2.0/24  # a comment", "", mtime=1)
    app = client(hello_app, deny_files=[blocklist], reload_interval=5, clock=clock)
    assert status_for(app, "192.0.2.1") == 403
    assert status_for(app, "198.51.100.1") == 200

    write_list(blocklist, "198.51.100.0/24", mtime=2)
    assert status_for(app, "198.51.100.1") == 200  # not checked again before the interval
    clock.now += 5
    assert status_for(app, "198.51.100.1") == 403
    assert status_for(app, "192.0.2.1") == 200


@pytest.mark.parametrize("how", ["renamed", "in-place"])
def test_a_list_replaced_with_its_old_size_and_mtime_is_reloaded(tmp_path, how):
    # cp -p, tar, unzip and rsync -a (a temporary file renamed over the old one) keep
    # the source's mtime; with the same size the new list went unseen for good.
    clock = FakeClock()
    blocklist = tmp_path / "deny.txt"
    write_list(blocklist, "192.0.2.7", mtime=10**18)
    app = client(hello_app, deny_files=[blocklist], reload_interval=5, clock=clock)
    assert status_for(app, "192.0.2.7") == 403
    target = tmp_path / "deny.txt.new" if how == "renamed" else blocklist
    write_list(target, "192.0.2.8", mtime=10**18)
    if how == "renamed":
        os.replace(target, blocklist)
    clock.now += 5
    assert status_for(app, "192.0.2.7") == 200
    assert status_for(app, "192.0.2.8") == 403


@pytest.mark.parametrize(
    ("name", "reason"), [("missing.txt", "no such file"), ("", "cannot read: Is a directory")]
)
def test_a_list_file_that_cannot_be_read_fails_at_start_up_in_one_line(tmp_path, name, reason):
    path = tmp_path / name
    with pytest.raises(ConfigError) as caught:
        IPFilter(hello_app, deny_files=[path])
    assert str(caught.value) == f"{path}: {reason}"


def test_a_list_file_with_a_byte_order_mark_reads_its_first_line(tmp_path):
    blocklist = tmp_path / "deny.txt"
    blocklist.write_bytes(b"\xef\xbb\xbf192.0.2.0/24\r\n198.51.100.7\r\n")  # Notepad's UTF-8
    app = client(hello_app, deny_files=[blocklist])
    assert status_for(app, "192.0.2.1") == 403 and status_for(app, "198.51.100.7") == 403


def test_a_list_file_that_is_not_utf8_is_refused_and_on_reload_the_old_list_kept(tmp_path, caplog):
    blocklist = tmp_path / "deny.txt"
    blocklist.write_bytes(b"192.0.2.0/24\n# caf\xe9 wifi\n")  # saved as latin-1
    with pytest.raises(ConfigError, match=re.escape(f"{blocklist}:2: not UTF-8 text")):
        IPFilter(hello_app, deny_files=[blocklist])
    clock = FakeClock()
    write_list(blocklist, "192.0.2.0/24", mtime=1)
    app = client(hello_app, deny_files=[blocklist], reload_interval=5, clock=clock)
    blocklist.write_bytes(b"198.51.100.0/24\n# caf\xe9\n")
    os.utime(blocklist, ns=(2, 2))
    clock.now += 5
    # It raised UnicodeDecodeError out of the request: a 500 every reload_interval.
    assert status_for(app, "192.0.2.1") == 403 and status_for(app, "198.51.100.1") == 200
    assert f"{blocklist}:2: not UTF-8 text" in caplog.text


def test_a_relative_list_file_is_taken_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    write_list(tmp_path / "conf" / "blocked.txt", "192.0.2.0/24")
    monkeypatch.chdir(tmp_path)
    app = build_pipeline(
        {
            "layer": [{"use": "ip_filter", "deny_files": ["conf/blocked.txt"]}],
            "app": {"use": "tests.conftest:hello_app"},
        }
    )
    client = TestApp(validator(app))
    assert status_for(client, "192.0.2.1") == 403 and status_for(client, "198.51.100.1") == 200


def test_a_bad_line_on_reload_is_reported_and_the_previous_list_kept(tmp_path, caplog):
    clock = FakeClock()
    blocklist = tmp_path / "deny.txt"
    write_list(blocklist, "192.0.2.0/24", mtime=1)
    app = client(hello_app, deny_files=[blocklist], clock=clock)
    write_list(blocklist, "198.51.100.0/24", "not-an-address", mtime=2)
    clock.now += 10
    assert status_for(app, "192.0.2.1") == 403
    assert status_for(app, "198.51.100.1") == 200
    assert f"{blocklist}:2: 'not-an-address' is not an IP address or network" in caplog.text


def test_a_list_fixed_while_its_broken_version_was_read_is_loaded(tmp_path, monkeypatch):
    # The file was stamped after the failed read: a fix saved in between took that
    # stamp, looked already seen, and stayed unread until the next edit.
    from wsgistack.middlewares import ipfilter

    clock = FakeClock()
    blocklist = tmp_path / "deny.txt"
    write_list(blocklist, "192.0.2.0/24", mtime=1)
    app = client(hello_app, deny_files=[blocklist], reload_interval=5, clock=clock)
    read_list = ipfilter._read_list

    def read_then_fixed(path):
        try:
            return read_list(path)
        finally:  # the user saves the fix while the broken version is being read
            write_list(blocklist, "198.51.100.0/24", mtime=3)

    write_list(blocklist, "198.51.100.0/24", "198.51.100.", mtime=2)
    monkeypatch.setattr(ipfilter, "_read_list", read_then_fixed)
    clock.now += 5
    assert status_for(app, "192.0.2.1") == 403  # the broken file: the old list kept
    monkeypatch.setattr(ipfilter, "_read_list", read_list)
    clock.now += 5
    assert status_for(app, "198.51.100.1") == 403
    assert status_for(app, "192.0.2.1") == 200


def test_a_bad_line_at_start_up_fails_loudly(tmp_path):
    blocklist = tmp_path / "deny.txt"
    write_list(blocklist, "10.0.0.0/8", "10.0.0.1/8")
    with pytest.raises(ConfigError, match=r"deny.txt:2: '10.0.0.1/8'"):
        IPFilter(hello_app, deny_files=[blocklist])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"allow": ["10.0.0.300"]}, "IPFilter: allow: '10.0.0.300'", id="bad-entry"),
        pytest.param({"allow": "10.0.0.0/8"}, "expected a list, got the string", id="string"),
        pytest.param({}, "give allow and/or deny", id="nothing"),
        pytest.param({"deny": 5}, "IPFilter: deny: expected a list, got 5", id="not-a-list"),
        pytest.param(
            {"deny": [None]}, "IPFilter: deny: None is not an IP address or network", id="none"
        ),
        pytest.param(
            {"deny": ["192.0.2.0/24"], "allow_files": None},
            "IPFilter: allow_files: expected a list of paths, got None",
            id="files-none",
        ),
        pytest.param(
            {"deny": ["192.0.2.0/24"], "deny_files": [1]},
            "IPFilter: deny_files: 1 is not a path",
            id="files-entry",
        ),
        pytest.param(
            {"deny": ["192.0.2.0/24"], "paths": 5},
            "IPFilter: paths: expected a list of prefixes, got 5",
            id="paths-not-a-list",
        ),
        pytest.param(
            {"deny": ["192.0.2.0/24"], "clock": 5}, "IPFilter: clock: 5 is not callable", id="clock"
        ),
        pytest.param(
            {"deny": ["192.0.2.0/24"], "logger": "myapp"},
            "IPFilter: logger: expected a logging.Logger, got 'myapp'",
            id="logger",
        ),
        pytest.param(
            {"deny": ["192.0.2.0/24"], "reload_interval": float("nan")},
            "IPFilter: reload_interval: expected seconds, got nan",
            id="reload-nan",
        ),
        pytest.param(
            {"deny": ["192.0.2.0/24"], "precedence": "first"},
            "precedence: expected",
            id="precedence",
        ),
        pytest.param(
            # Allow entries would be exceptions to nothing: everyone would be admitted.
            {"allow": ["10.0.0.0/8"], "precedence": "allow"},
            "IPFilter: precedence: 'allow' makes the allow list exceptions to deny",
            id="allow-precedence-without-deny",
        ),
        pytest.param(
            {"deny": ["192.0.2.0/24"], "paths": ["admin"]},
            "must be a path starting with '/'",
            id="path",
        ),
        pytest.param(
            # PATH_INFO is decoded: an escaped prefix would never match, and filter nothing.
            {"deny": ["192.0.2.0/24"], "paths": ["/caf%C3%A9"]},
            "IPFilter: paths: '/caf%C3%A9': it is matched on the decoded path; write '/café'",
            id="path-escaped",
        ),
        pytest.param(
            {"deny": ["192.0.2.0/24"], "paths": ["/admin?x=1"]},
            "IPFilter: paths: '/admin.x=1': it is a path, without a query or fragment",
            id="path-query",
        ),
        pytest.param(
            {"deny": ["192.0.2.0/24"], "refuse": 403}, "refuse: 403 is not a WSGI app", id="refuse"
        ),
        pytest.param(
            {"deny": ["192.0.2.0/24"], "dry_run": "false"},
            "IPFilter: dry_run: expected true or false, got 'false'",
            id="dry-run",
        ),
    ],
)
def test_bad_options_fail_at_start_up(options, message):
    with pytest.raises(ConfigError, match=message):
        IPFilter(hello_app, **options)


def test_in_a_pipeline_and_its_typo_message():
    app = build_pipeline(
        {
            "layer": [{"use": "ip_filter", "deny": ["192.0.2.0/24"]}],
            "app": "tests.conftest:hello_app",
        }
    )
    assert repr(app) == "IPFilter(deny=1 networks)"
    with pytest.raises(ConfigError) as error:
        build_pipeline(
            {
                "layer": [{"use": "error_catcher"}, {"use": "ip_filter", "alow": ["10.0.0.0/8"]}],
                "app": "x:y",
            },
            source="stack.toml",
        )
    assert (
        str(error.value)
        == "stack.toml: layer 2 (ip_filter): unknown option 'alow' (did you mean 'allow'?)"
    )


case_blind = case_blind_app("admin", "café", body=b"secrets")


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        pytest.param("/ADMIN", True, id="upper"),
        pytest.param("/Admin/users", True, id="mixed-below"),
        pytest.param("/%41dmin", True, id="escaped-upper"),
        pytest.param("/x/../ADMIN//users", True, id="dot-segments"),
        pytest.param("/CAF%C3%89/menu", True, id="non-ascii-upper"),
        pytest.param("/ADMINISTRATOR", False, id="not-a-segment"),
        pytest.param("/public", False, id="elsewhere"),
    ],
)
def test_ignore_case_covers_every_spelling_a_case_blind_app_routes(url, refused):
    # Without it, /ADMIN reaches the app's /admin unfiltered: nginx users write
    # "location ~*" for such a backend; here it is ignore_case=True.
    from tests.server.live import RawClient, live_server

    app = IPFilter(
        validator(case_blind),
        allow=["192.0.2.0/24"],
        paths=["/admin", "/Café"],
        ignore_case=True,
    )
    with live_server(app, root_path="/app") as server, RawClient(server.address) as raw:
        status, _, body = raw.request(f"GET /app{url} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    assert (status, b"secrets" in body) == ((403, False) if refused else (200, False))


def _ntfs_name(text):
    """A name as NTFS compares it: each letter by its one-letter upper case ($UpCase)."""
    return "".join(c.upper() if len(c.upper()) == 1 else c for c in text)


def _apfs_name(text):
    """A name as a case- and normalization-blind macOS disk compares it."""
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", text).casefold())


def disk_blind(environ, start_response):
    """An app serving files from a case-blind disk: a secret under a name NTFS or macOS equates."""
    first = environ["PATH_INFO"].encode("latin-1").decode("utf-8").split("/")[1]
    secret = any(
        fold(first) == fold(name)
        for name in ("admin", "ΟΔΟΣ", "café", "straße")
        for fold in (_ntfs_name, _apfs_name)
    )
    body = b"secrets" if secret else b"welcome"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("/adm%C4%B1n", id="turkish-dotless-i"),  # NTFS: I is its upper case
        pytest.param("/%CE%BF%CE%B4%CE%BF%CF%83", id="greek-sigma-at-the-end"),  # not final form
        pytest.param("/%CE%BF%CE%B4%CE%BF%CF%82/x", id="greek-final-sigma"),
        pytest.param("/cafe%CC%81/menu", id="decomposed-accent"),  # macOS: one name with café
        pytest.param("/STRASSE", id="sharp-s-folded-fully"),
    ],
)
def test_ignore_case_covers_the_names_a_case_blind_disk_equates(url):
    # str.lower() left these apart although the disk serves one file for both:
    # the filter let the client through to the secret.
    from tests.server.live import RawClient, live_server

    app = IPFilter(
        validator(disk_blind),
        allow=["192.0.2.0/24"],
        paths=["/admin", "/οδοσ", "/café", "/straße"],
        ignore_case=True,
    )
    with live_server(app) as server, RawClient(server.address) as raw:
        status, _, body = raw.request(f"GET {url} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    assert (status, b"secrets" in body) == (403, False)


def test_ignore_case_covers_a_prefix_written_as_the_url_shows_it():
    app = client(case_blind, allow=["10.0.0.0/8"], paths=["/App/Admin"], ignore_case=True)
    environ = {"REMOTE_ADDR": "192.0.2.1", "SCRIPT_NAME": "/app"}
    assert app.get("/ADMIN", extra_environ=environ, expect_errors=True).status_int == 403


def test_paths_match_letter_case_as_written_by_default():
    app = client(case_blind, allow=["192.0.2.0/24"], paths=["/admin"])
    assert status_for(app, "198.51.100.1", "/admin") == 403
    assert status_for(app, "198.51.100.1", "/ADMIN") == 200  # a case-blind app needs ignore_case


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"paths": ["/admin"], "ignore_case": "yes"}, "IPFilter: ignore_case: expected true or"),
        ({"ignore_case": True}, "IPFilter: ignore_case: it applies to paths"),
    ],
)
def test_a_bad_ignore_case_fails_at_start_up(options, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        IPFilter(hello_app, allow=["10.0.0.0/8"], **options)
