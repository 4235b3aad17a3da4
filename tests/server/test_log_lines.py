"""The server's own log lines (stderr), as ``wsgistack serve`` writes them."""

from __future__ import annotations

import contextlib
import http.client
import re
import time

import pytest

from .served import poll

#: An app that moves its process to another time zone as it loads, as Django does
#: with its TIME_ZONE setting (America/Chicago unless the project says otherwise).
TZ_APP = """
import logging, os, time

os.environ["TZ"] = "America/Chicago"
time.tzset()


def app(environ, start_response):
    logging.getLogger("tzapp").warning("the app was asked")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""

STAMPED = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ([+-]\d{4}) \[\d+\] [A-Z]+ ")


def test_each_line_names_its_utc_offset_when_the_app_changes_the_time_zone(serve, tmp_path):
    # A Django worker wrote its lines in Chicago time and the master in the
    # machine's, with no offset: the worker's lines seemed hours older.
    (tmp_path / "tzapp.py").write_text(TZ_APP)
    server = serve("--workers", "1", target=("tzapp:app",))
    assert server.get("/") == "ok"
    poll(lambda: "the app was asked" in server.log.read_text())
    lines = [line for line in server.log.read_text().splitlines() if line[:1].isdigit()]
    offsets = {}
    for line in lines:
        found = STAMPED.match(line)
        assert found, line
        offsets[line[found.end() :]] = found.group(1)
    assert offsets[next(m for m in offsets if m.startswith("listening on"))] == time.strftime("%z")
    asked = next(offset for message, offset in offsets.items() if "the app was asked" in message)
    assert asked in ("-0600", "-0500")  # Chicago, in winter or in summer


#: An app with a bug on each path, as a programmer leaves one.
BUGGY_APP = """
class Closes:
    def __iter__(self):
        return iter([b"ok"])

    def close(self):
        raise KeyError("in close")


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/view":
        raise KeyError("in the view")
    if path == "/status":
        start_response("abc", [("Content-Type", "text/plain")])
        return [b"x"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    if path == "/twice":
        start_response("200 OK", [("Content-Type", "text/plain")])
    if path == "/iterate":
        def body():
            yield b"part"
            raise KeyError("while iterating")
        return body()
    if path == "/close":
        return Closes()
    return [b"ok"]
"""


def fetch(port: int, path: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path + "?q=%0Aforged")
        response = connection.getresponse()
        with contextlib.suppress(http.client.IncompleteRead, ConnectionResetError):  # cut off
            response.read()
        return response.status
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("path", "status", "what"),
    [
        ("/view", 500, "the application raised"),
        ("/status", 500, "the application raised"),
        ("/twice", 500, "the application raised"),
        ("/iterate", 200, "the application raised while iterating"),
        ("/close", 200, "the application's close() raised"),
    ],
)
def test_an_app_bug_is_one_error_line_naming_the_request_then_its_traceback(
    serve, tmp_path, path, status, what
):
    # The line said only "the application raised": with many requests in
    # flight, the operator could not tell which request hit the bug (gunicorn
    # names it: "Error handling request /path").
    (tmp_path / "buggy.py").write_text(BUGGY_APP)
    server = serve("--workers", "0", target=("buggy:app",))
    assert fetch(server.port, path) == status
    poll(lambda: "Traceback" in server.log.read_text())
    lines = server.log.read_text().splitlines()
    errors = [i for i, line in enumerate(lines) if " ERROR " in line]
    assert len(errors) == 1, lines
    assert lines[errors[0]].endswith(f"] ERROR GET {path} from 127.0.0.1: {what}"), lines
    assert lines[errors[0] + 1] == "Traceback (most recent call last):", lines


#: A Django site as ``startproject`` leaves its logging: with DEBUG on, the
#: "django" logger writes to the console itself and lets records go on up.
DJANGO_SITE = """
import os

import django
from django.conf import settings

settings.configure(
    DEBUG=os.environ.get("SITE_DEBUG") == "1", SECRET_KEY="tests-only", ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__, INSTALLED_APPS=[], MIDDLEWARE=[],
)
django.setup()

from django.core.wsgi import get_wsgi_application
from django.urls import path


def boom(request):
    raise RuntimeError("on purpose")


urlpatterns = [path("boom", boom)]
application = get_wsgi_application()
"""


@pytest.mark.parametrize("debug", ["1", "0"])
def test_a_django_site_s_log_lines_are_written_once(serve, tmp_path, monkeypatch, debug):
    # With DEBUG on, Django's console handler wrote "Not Found" and each traceback,
    # and the server's handler on the root logger wrote them again.
    (tmp_path / "djsite.py").write_text(DJANGO_SITE)
    monkeypatch.setenv("SITE_DEBUG", debug)
    server = serve("--workers", "1", target=("djsite:application",))
    statuses = []
    for path in ("/missing", "/boom"):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        with contextlib.closing(conn):
            conn.request("GET", path)
            statuses.append(conn.getresponse().status)
    assert statuses == [404, 500]
    poll(lambda: "RuntimeError: on purpose" in server.log.read_text())
    server.proc.terminate()
    server.proc.wait(timeout=10)
    log = server.log.read_text()
    assert log.count("Not Found: /missing") == 1, log
    assert log.count("Internal Server Error: /boom") == 1, log
    assert log.count("RuntimeError: on purpose") == 1, log
    # Without DEBUG, Django's console stays quiet and the server's line says it.
    stamped = debug == "0"
    assert bool(re.search(r"\] WARNING Not Found: /missing", log)) == stamped, log
