"""``--access-log-format``: gunicorn's atoms shape the access log's line."""

from __future__ import annotations

import os
import re
import time

import pytest

from wsgistack.cli import main
from wsgistack.errors import ConfigError
from wsgistack.server.config import ServerConfig
from wsgistack.server.logformat import DEFAULT_FORMAT, Entry, compile_format

from .live import RawClient, live_server
from .served import poll
from .test_uwsgi import exchange, nginx_vars
from .test_uwsgi import packet as uwsgi_packet

#: The atoms users add most, after the combined ones: durations, an id, the upstream.
CUSTOM = (
    "%(h)s %(s)s %(b)s %(B)s %(T)s %(L)s %(M)s %(D)s %({x-request-id}i)s"
    " %({X-Upstream}o)s %({wsgi.url_scheme}e)s %(m)s %(U)s %(q)s %(H)s %(p)s %(u)s"
)


def naps(environ, start_response):
    """Works for 50 ms, then answers with the upstream it asked (as a forwarder would)."""
    time.sleep(0.05)
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Upstream", "10.0.0.2:8000")])
    return [b"slept"]


def test_a_custom_format_writes_each_atom(tmp_path):
    log = tmp_path / "access.log"
    with (
        live_server(naps, access_log=str(log), access_log_format=CUSTOM) as server,
        RawClient(server.address) as client,
    ):
        client.request(b"GET /a/b?x=1 HTTP/1.1\r\nHost: a\r\nX-Request-ID: req-7\r\n\r\n")
    (line,) = log.read_text().splitlines()
    host, status, b, big_b, t, seconds, ms, us, rest = line.split(" ", 8)
    assert (host, status, b, big_b) == ("127.0.0.1", "200", "5", "5")
    assert rest == f"req-7 10.0.0.2:8000 http GET /a/b x=1 HTTP/1.1 <{os.getpid()}> -"
    # The durations are one measurement in gunicorn's units; the app's nap is in it.
    assert re.fullmatch(r"\d+\.\d{6}", seconds), seconds
    assert int(us) >= 50_000
    assert int(t) == int(float(seconds)) and int(ms) == int(us) // 1000
    assert abs(float(seconds) * 1_000_000 - int(us)) <= 1


def test_the_path_of_an_absolute_form_target_is_its_path_not_the_url(tmp_path):
    # %(U)s wrote "http://example.com/abs" for a proxy-style request line, so a
    # gunicorn format that counts hits per path split one page in two.
    log = tmp_path / "access.log"
    with (
        live_server(naps, access_log=str(log), access_log_format="%(U)s %(q)s") as server,
        RawClient(server.address) as client,
    ):
        client.request(b"GET http://example.com/abs?z=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
        client.request(b"GET http://example.com?y HTTP/1.1\r\nHost: example.com\r\n\r\n")
        client.request(b"GET /plain?x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert log.read_text().splitlines() == ["/abs z=1", "/ y", "/plain x"]


def test_no_query_is_an_empty_q_as_gunicorn_writes_it(tmp_path):
    # q wrote "-" for no query, so a gunicorn format that rebuilds the target
    # logged "/p?-"; a request refused before its head has "-", as every
    # request atom.
    log = tmp_path / "access.log"
    with live_server(naps, access_log=str(log), access_log_format="%(U)s?%(q)s") as server:
        with RawClient(server.address) as client:
            client.request(b"GET /p HTTP/1.1\r\nHost: a\r\n\r\n")
            client.request(b"GET /p? HTTP/1.1\r\nHost: a\r\n\r\n")
            client.request(b"GET /p?x=1 HTTP/1.1\r\nHost: a\r\n\r\n")
        poll(lambda: log.read_text().count("\n") == 3)
        with RawClient(server.address) as client:
            client.send(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n")
            assert client.response()[0] == 400
        poll(lambda: log.read_text().count("\n") == 4)
    assert log.read_text().splitlines() == ["/p?", "/p?", "/p?x=1", "-?-"]


def test_the_default_format_is_the_combined_line(tmp_path):
    # Byte for byte what the log wrote before the format was an option, and the
    # default's direct function writes what the atoms' table would.
    log = tmp_path / "access.log"
    with (
        live_server(naps, access_log=str(log)) as server,
        RawClient(server.address) as client,
    ):
        client.request(
            b'GET /x?q=1 HTTP/1.1\r\nHost: a\r\nReferer: http://r/\r\nUser-Agent: t/"1\r\n\r\n'
        )
    line = log.read_text()
    assert re.fullmatch(
        r"127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "
        r'"GET /x\?q=1 HTTP/1\.1" 200 5 "http://r/" "t/\\x221"\n',
        line,
    ), line
    generic = compile_format(DEFAULT_FORMAT + " ")  # the same atoms, through the table
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/\x1b[2J",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "::ffff:192.0.2.1",
        "HTTP_USER_AGENT": 'a"\n\xe9',
    }
    for entry in (
        Entry(environ, "200", 0),
        Entry(environ, "500", 12, time.monotonic(), [("X", "y")]),
        Entry({}, "400", 30, host="192.0.2.9", request=""),
    ):
        assert compile_format(DEFAULT_FORMAT)(entry) + " " == generic(entry)


def test_atoms_escape_what_clients_send(tmp_path):
    # A quote or a newline in a header or a (percent-decoded) path would forge
    # a field or a whole line: every atom is escaped as the combined line is.
    log = tmp_path / "access.log"
    with (
        live_server(
            naps,
            access_log=str(log),
            access_log_format='"%({x-request-id}i)s" "%({path_info}e)s" %(s)s',
        ) as server,
        RawClient(server.address) as client,
    ):
        client.request(
            b"GET /a%0A127.0.0.1%20-%20-%22 HTTP/1.1\r\nHost: a\r\n"
            b'X-Request-Id: x" 500 "\xc3\xa9\r\n\r\n'
        )
    assert log.read_text() == '"x\\x22 500 \\x22\\xC3\\xA9" "/a\\x0A127.0.0.1 - -\\x22" 200\n'


def test_a_refused_and_a_broken_off_request_are_logged_in_the_format(tmp_path):
    def breaks(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Upstream", "u1")])
        yield b"partial"
        raise RuntimeError("the database went away")

    log = tmp_path / "access.log"
    line_format = "%(h)s [%(r)s] %(s)s %(b)s %(D)s %({x-upstream}o)s %({x-request-id}i)s"
    with live_server(breaks, access_log=str(log), access_log_format=line_format) as server:
        with RawClient(server.address) as client:
            client.send(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n")
            status, _, body = client.response()
            assert status == 400
        # The refusal's line is written after its answer: wait, so the two keep their order.
        poll(lambda: log.exists() and log.read_text().count("\n") == 1)
        with RawClient(server.address) as client:
            client.send(b"GET /broken HTTP/1.1\r\nHost: a\r\nX-Request-Id: r1\r\n\r\n")
            client.read_to_close()
    refused, broken = log.read_text().splitlines()
    # Refused before it had an environ: no request line, headers or duration.
    assert refused == f"127.0.0.1 [-] 400 {len(body)} - - -"
    # What went out before it broke: its status, 7 bytes, its headers.
    assert re.fullmatch(r"127\.0\.0\.1 \[GET /broken HTTP/1\.1\] 200 7 \d+ u1 r1", broken), broken


def test_the_uwsgi_bind_writes_the_format_too(tmp_path):
    log = tmp_path / "access.log"
    line_format = "%(h)s %(r)s %(s)s %({x-request-id}i)s %({uwsgi.node}e)s %(D)s"
    with live_server(
        naps, bind="uwsgi://127.0.0.1:0", access_log=str(log), access_log_format=line_format
    ) as server:
        status, _, _ = exchange(server, uwsgi_packet(nginx_vars(HTTP_X_REQUEST_ID="n-1")))
        assert status == 200
        status, _, _ = exchange(server, uwsgi_packet({"PATH_INFO": "/"}))
        assert status == 400
    answered, refused = log.read_text().splitlines()
    head, us = answered.rsplit(" ", 1)
    assert head == "203.0.113.7 GET / HTTP/1.1 200 n-1 -"
    assert int(us) >= 50_000
    assert refused == "127.0.0.1 - 400 - - -"


@pytest.mark.parametrize(
    ("line_format", "message"),
    [
        pytest.param("%(h)s %(Z)s", r"unknown atom %\(Z\)s; known: h l u t r", id="unknown"),
        pytest.param("%(h)s %(x-id)s", r"unknown atom %\(x-id\)s", id="header-without-braces"),
        pytest.param("%(D)d", r"write each atom as %\(name\)s", id="numeric-conversion"),
        pytest.param("%(h)s 100%", r"a literal % as %%", id="lone-percent"),
        pytest.param("%(h)s %s", r"a literal % as %%", id="positional"),
        pytest.param("%(h", r"write each atom as %\(name\)s", id="unclosed"),
        pytest.param("%(h)s\n%(r)s", r"control character: one line a request", id="newline"),
        pytest.param("", r"must be a format", id="empty"),
    ],
)
def test_a_bad_format_fails_at_start_up_naming_the_option(line_format, message):
    with pytest.raises(ConfigError, match=r"^access_log_format: .*" + message):
        ServerConfig.from_options(access_log="-", access_log_format=line_format)


def test_a_format_without_an_access_log_is_refused():
    with pytest.raises(ConfigError, match=r"^access_log_format: given, but there is no access"):
        ServerConfig.from_options(access_log_format="%(h)s %(D)s")


def test_a_bad_format_on_the_command_line_is_named(tmp_path, capsys):
    sock = tmp_path / "never.sock"
    args = ["serve", "tests.server.conftest:echo_app", "--bind", f"unix:{sock}"]
    code = main([*args, "--access-log", "-", "--access-log-format", "%(h)s %(d)s"])
    assert code == 2
    assert capsys.readouterr().err.startswith(
        "wsgistack serve: error: access_log_format: unknown atom %(d)s"
    )
    assert not sock.exists()


def test_a_bad_format_in_a_server_table_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "stack.toml").write_text(
        "[server]\naccess_log = '-'\naccess_log_format = '%(h)s %(D)i'\n"
        "[app]\nuse = 'tests.server.conftest:echo_app'\n"
    )
    sock = tmp_path / "never.sock"
    assert main(["serve", "--config", "stack.toml", "--bind", f"unix:{sock}"]) == 2
    assert capsys.readouterr().err.startswith(
        "wsgistack serve: error: stack.toml: [server]: access_log_format: '%(h)s %(D)i'"
    )
    assert not sock.exists()


def test_an_ini_writes_the_format_with_doubled_percent_signs(tmp_path):
    # PasteDeploy's parser expands %(name)s itself: the README says to write %%.
    from wsgistack.pasteini import read_paste_ini

    (tmp_path / "site.ini").write_text(
        "[app:main]\nuse = egg:wsgistack#load_balance\nupstreams = http://127.0.0.1:9\n"
        "[server:main]\nuse = egg:wsgistack#main\nhost = 127.0.0.1\nport = 0\n"
        "access_log = -\naccess_log_format = %%(h)s %%(D)s\n"
    )
    options = read_paste_ini(str(tmp_path / "site.ini"), str(tmp_path)).server_options({})
    assert options["access_log_format"] == "%(h)s %(D)s"
