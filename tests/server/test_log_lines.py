"""The server's own log lines (stderr), as ``wsgistack serve`` writes them."""

from __future__ import annotations

import re
import time

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
