"""The middlewares inside gunicorn, uWSGI and waitress, each run for real (issue 9).

Each server is started on 127.0.0.1 port 0 and stopped by its PID
(``tests/recipes/foreign.py``); the apps it serves are in ``foreign_apps.py``.
"""

from __future__ import annotations

import http.client
import os

import pytest

from tests.recipes.foreign import serving

#: uWSGI as its users run it in production: a master, two processes of two threads.
UWSGI_PREFORK = ("--master", "--processes", "2", "--threads", "2")


def fetch(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        try:
            return response.status, response.read()
        except http.client.IncompleteRead as cut:  # the server aborted the body
            return response.status, cut.partial
    finally:
        connection.close()


@pytest.fixture
def blob(tmp_path):
    data = os.urandom(200_000)  # no line structure: iterated by lines it is one huge line
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    return data, {"FOREIGN_BLOB": str(path)}


@pytest.mark.parametrize(
    ("server", "options"),
    [
        pytest.param("uwsgi", UWSGI_PREFORK, id="uwsgi"),
        pytest.param("uwsgi", (*UWSGI_PREFORK, "--lazy-apps"), id="uwsgi-lazy-apps"),
        pytest.param("gunicorn", ("-w", "2"), id="gunicorn"),
    ],
)
def test_a_file_wrapper_body_is_still_sent_by_the_server_through_the_layers(
    server, options, blob, tmp_path
):
    # uWSGI's wsgi.file_wrapper is a function that hands back the file it was given
    # and sendfile()s a body that is that very file: a layer that wrapped it made
    # uWSGI iterate the file line by line instead (a binary file: one huge line).
    data, env = blob
    with serving(
        server, "tests.recipes.foreign_apps:caught_download", *options, home=tmp_path, env=env
    ) as run:
        status, body = fetch(run.port, "/")
    assert (status, body == data) == (200, True), run.log
    # The file refuses read() and iteration: a whole body came from its descriptor.
    assert "instead of sent from its descriptor" not in run.log
