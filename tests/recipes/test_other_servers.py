"""The middlewares inside gunicorn, uWSGI and waitress, each run for real (issue 9).

Each server is started on 127.0.0.1 port 0 and stopped by its PID
(``tests/recipes/foreign.py``); the apps it serves are in ``foreign_apps.py``.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib
import os
import re
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from wsgiref.validate import validator

import pytest

from tests.middlewares.forward_parts import RawUpstream
from tests.recipes.foreign import Served, serving
from wsgistack.server import Server

#: A response head whose body never comes whole.
HEAD_OF_10 = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n"

#: uWSGI as its users run it in production: a master, two processes of two threads.
UWSGI_PREFORK = ("--master", "--processes", "2", "--threads", "2")
#: The foreign servers ErrorCatcher's error page and cut responses are checked under.
ERROR_PAGE_SERVERS = [
    pytest.param("gunicorn", ("-k", "sync"), id="gunicorn-sync"),
    pytest.param("gunicorn", ("-k", "gthread", "--threads", "2"), id="gunicorn-gthread"),
    pytest.param("waitress", (), id="waitress"),
    pytest.param("uwsgi", UWSGI_PREFORK, id="uwsgi"),
]


def fetch(port: int, path: str, timeout: float = 30) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
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


@pytest.mark.parametrize("target", ["caught_download", "caught_buffered_download"])
@pytest.mark.parametrize(
    ("server", "options"),
    [
        pytest.param("uwsgi", UWSGI_PREFORK, id="uwsgi"),
        pytest.param("uwsgi", (*UWSGI_PREFORK, "--lazy-apps"), id="uwsgi-lazy-apps"),
        pytest.param("gunicorn", ("-w", "2"), id="gunicorn"),
    ],
)
def test_a_file_wrapper_body_is_still_sent_by_the_server_through_the_layers(
    server, options, target, blob, tmp_path
):
    # uWSGI's wsgi.file_wrapper is a function that hands back the file it was given
    # and sendfile()s a body that is that very file: a layer that wrapped it made
    # uWSGI iterate the file line by line instead (a binary file: one huge line).
    data, env = blob
    with serving(
        server, f"tests.recipes.foreign_apps:{target}", *options, home=tmp_path, env=env
    ) as run:
        status, body = fetch(run.port, "/")
    assert (status, body == data) == (200, True), run.log
    # The file refuses read() and iteration: a whole body came from its descriptor.
    assert "instead of sent from its descriptor" not in run.log


def fetch_error_page(port: int, path: str) -> tuple[int, http.client.HTTPMessage, bytes]:
    """The status, the headers and the body (as far as it came) of ``path``."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        try:
            body = response.read()
        except http.client.IncompleteRead as cut:
            body = cut.partial
        return response.status, response.headers, body
    finally:
        connection.close()


@pytest.mark.parametrize("path", ["/in-the-call", "/at-once"])
def test_under_uwsgi_error_catcher_answers_a_whole_500(path, tmp_path):
    # Given exc_info, uWSGI's start_response took the headers, then raised
    # SystemError (unbit/uwsgi#2278): every error page went out as its headers
    # alone, a Content-Length promised and nothing sent.  And a body with read()
    # passed for uWSGI's file wrapper, so one failing at once went unguarded: an
    # empty 200.
    with serving(
        "uwsgi", "tests.recipes.foreign_apps:caught_failing_rows", *UWSGI_PREFORK, home=tmp_path
    ) as run:
        status, headers, body = fetch_error_page(run.port, path)
        run.uwsgi_finished("GET", path)
    error_id = headers["X-Error-Id"]
    assert (status, f"Error id: {error_id}".encode() in body) == (500, True), run.log
    assert len(body) == int(headers["Content-Length"]), body
    # Logged once by ErrorCatcher, with its id (no logging set up: Python's
    # last-resort handler writes to uWSGI's stderr), and not again by uWSGI.
    assert f"error {error_id}: GET {path} from 127.0.0.1" in run.log, run.log
    assert "SystemError" not in run.log, run.log


def test_under_uwsgi_a_body_with_read_failing_midway_is_caught(tmp_path):
    # It passed for uWSGI's file wrapper, so ErrorCatcher let it through: uWSGI
    # logged it alone, with no error id and no on_error hook run.
    with serving(
        "uwsgi", "tests.recipes.foreign_apps:caught_failing_rows", *UWSGI_PREFORK, home=tmp_path
    ) as run:
        status, _, body = fetch_error_page(run.port, "/midway")
        run.uwsgi_finished("GET", "/midway")
    assert (status, body) == (200, b"row;"), run.log  # the headers went out: cut, not replaced
    assert re.search(r"error [0-9a-f]{16}: GET /midway from 127\.0\.0\.1", run.log), run.log


@pytest.fixture
def silent_upstream():
    """An upstream that takes connections (the kernel's backlog) and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_read_timeout_bounds_a_silent_upstream_under_gevent_workers(silent_upstream, tmp_path):
    # gevent's sockets keep their descriptor non-blocking and wait in gevent's
    # loop, so the kernel's SO_RCVTIMEO never fired: the client waited forever
    # (or until its own timeout) instead of getting the 504 read_timeout promises.
    env = {"FOREIGN_UPSTREAM": silent_upstream, "FOREIGN_READ_TIMEOUT": "0.5"}
    with serving(
        "gunicorn", "tests.recipes.foreign_apps:balanced()", "-k", "gevent",
        home=tmp_path, env=env,
    ) as run:  # fmt: skip
        status, _ = fetch(run.port, "/")
    assert status == 504, run.log


@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_under_gunicorn_an_upstream_cut_mid_body_is_one_line_not_a_traceback(worker, tmp_path):
    # The balancer logged its line, then re-raised what broke: gunicorn added
    # "Error handling request" and a traceback for what is no bug of the app.
    # ResponseCut is a connection reset to gunicorn: it cuts the connection quietly.
    upstream = RawUpstream(HEAD_OF_10, b"abc", close_after=True)
    try:
        with serving(
            "gunicorn", "tests.recipes.foreign_apps:balanced()", "-k", worker,
            home=tmp_path, env={"FOREIGN_UPSTREAM": upstream.url},
        ) as run:  # fmt: skip
            status, body = fetch(run.port, "/p")
    finally:
        upstream.close()
    assert (status, body) == (200, b"abc"), run.log
    assert run.log.count("closed mid-response") == 1, run.log
    assert "Traceback" not in run.log and "Error handling request" not in run.log, run.log


@pytest.mark.parametrize(
    ("server", "options"),
    [
        pytest.param("gunicorn", ("-k", "sync"), id="gunicorn-sync"),
        pytest.param("gunicorn", ("-k", "gthread"), id="gunicorn-gthread"),
        pytest.param("waitress", ("--call",), id="waitress"),
    ],
)
def test_an_upstream_cut_before_its_first_body_byte_answers_502_under_other_servers(
    server, options, tmp_path
):
    # The README promises 502 while no byte of the body went out: only our server
    # read ResponseCut's status; gunicorn closed the connection with no answer at
    # all (a reset to it), and waitress answered 500 and logged a traceback.
    upstream = RawUpstream(HEAD_OF_10, close_after=True)
    try:
        with serving(
            server, "tests.recipes.foreign_apps:balanced" + ("()" if server == "gunicorn" else ""),
            *options, home=tmp_path, env={"FOREIGN_UPSTREAM": upstream.url},
        ) as run:  # fmt: skip
            status, body = fetch(run.port, "/p")
    finally:
        upstream.close()
    assert (status, b"upstream failed" in body) == (502, True), (body, run.log)
    assert run.log.count("closed mid-response") == 1, run.log
    assert "to GET /p from 127.0.0.1; answering 502" in run.log, run.log
    assert "Traceback" not in run.log, run.log


@pytest.fixture
def meeting_upstream():
    """A real upstream: ``/together`` answers once two requests are in; ``/stream`` waits
    between its parts until the test says it saw the first one."""
    together = threading.Barrier(2, timeout=20)
    seen = threading.Event()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        if environ["PATH_INFO"] == "/together":
            try:
                together.wait()
            except threading.BrokenBarrierError:
                return [b"alone"]
            return [b"together"]

        def parts():
            yield b"first;"
            seen.wait(20)
            yield b"second"

        return parts()

    server = Server(validator(app), bind="127.0.0.1:0", workers=0, threads=4).start()
    try:
        yield server.url, seen
    finally:
        server.close()


def test_gevent_workers_forward_concurrently_and_stream(meeting_upstream, tmp_path):
    # One gevent worker: a blocking call anywhere in the forwarder would serialise
    # the two requests (the upstream then answers "alone"), and a buffered body
    # would never show its first part before the second was allowed.
    url, seen = meeting_upstream
    with serving(
        "gunicorn", "tests.recipes.foreign_apps:balanced()", "-k", "gevent", "-w", "1",
        home=tmp_path, env={"FOREIGN_UPSTREAM": url},
    ) as run:  # fmt: skip
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda _: fetch(run.port, "/together"), range(2)))
        connection = http.client.HTTPConnection("127.0.0.1", run.port, timeout=30)
        connection.request("GET", "/stream")
        response = connection.getresponse()
        first = response.read1()
        seen.set()
        rest = response.read()
        connection.close()
    assert answers == [(200, b"together")] * 2, run.log
    assert (first, rest) == (b"first;", b"second"), run.log


@pytest.fixture
def hello_upstream():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"hello"]

    server = Server(validator(app), bind="127.0.0.1:0", workers=0, threads=2).start()
    try:
        yield server.url
    finally:
        server.close()


def test_gunicorn_recycles_preloaded_workers_that_hold_the_layers_state(hello_upstream, tmp_path):
    # --preload builds the layers in the master; --max-requests then replaces each
    # worker every few requests. Each new worker must forward on its own (pool,
    # health threads, limiter store), and each old one must exit (the health
    # threads do not hold it) rather than wait out gunicorn's graceful timeout.
    with serving(
        "gunicorn", "tests.recipes.foreign_apps:checked_and_limited()", "--preload",
        "-w", "2", "--threads", "2", "--max-requests", "4", "--max-requests-jitter", "2",
        home=tmp_path, env={"FOREIGN_UPSTREAM": hello_upstream},
    ) as run:  # fmt: skip
        answers: list[tuple[int, bytes] | str] = []
        # Each worker serves 4-6 requests (the jitter), and the two alive at the end
        # may hold 5 each: 24 requests are sure of 3 exits only, so go on to 4.
        for _ in range(48):
            try:  # a worker that cannot exit keeps a share of the queue: 5 s at most
                answers.append(fetch(run.port, "/", timeout=5))
            except OSError as exc:
                answers.append(repr(exc))
                break
            if len(answers) >= 24 and len(re.findall("Worker exiting", run.log)) >= 4:
                break
        exited: list[str] = []
        for _ in range(200):  # waits for a state, at most 10 s: no timing is asserted
            exited = re.findall(r"Worker exiting \(pid: (\d+)\)", run.log)
            if len(exited) >= 4:
                break
            threading.Event().wait(0.05)
    assert answers == [(200, b"hello")] * len(answers) and len(answers) >= 24, run.log
    booted = re.findall(r"Booting worker with pid: (\d+)", run.log)
    assert len(exited) >= 4 and set(exited) <= set(booted), run.log


@contextlib.contextmanager
def served_by(server: str, options: tuple[str, ...], target: str, home) -> Iterator[Served]:
    """``target`` in ``foreign_apps`` served by ``server``: a foreign one, or ours in process."""
    if server != "wsgistack":
        with serving(server, f"tests.recipes.foreign_apps:{target}", *options, home=home) as run:
            yield run
        return
    app = getattr(importlib.import_module("tests.recipes.foreign_apps"), target)
    with Server(validator(app), bind="127.0.0.1:0", workers=0, threads=2) as ours:
        yield Served(ours.addresses[0][1])


@pytest.mark.parametrize(
    "target",
    [
        "caught_failing_first",
        "caught_empty_then_failing",
        "caught_flask_stream",
        "stacked_failing_first",
        "stacked_flask_stream",
    ],
)
@pytest.mark.parametrize(
    ("server", "options"), [*ERROR_PAGE_SERVERS, pytest.param("wsgistack", (), id="wsgistack")]
)
def test_a_body_failing_before_its_first_byte_gets_one_whole_error_page(
    server, options, target, tmp_path
):
    # The app set its head (200, text/csv, maybe a length), then its body failed
    # first thing.  ErrorCatcher replaced the head with start_response(exc_info),
    # and gunicorn appends a replacement's fields to the first ones: two
    # Content-Types (and two Content-Lengths), a 500 whose body the client cut short.
    with served_by(server, options, target, tmp_path) as run:
        status, headers, body = fetch_error_page(run.port, "/report.csv")
        if server == "uwsgi":
            run.uwsgi_finished("GET", "/report.csv")
    error_id = headers["X-Error-Id"]
    assert (status, headers.get_all("Content-Type")) == (
        500,
        ["text/plain; charset=UTF-8"],
    ), (headers.items(), run.log)
    assert headers.get_all("Content-Length") == [str(len(body))], (headers.items(), body)
    assert f"Error id: {error_id}".encode() in body, body
    assert run.log.count("Traceback") <= 1, run.log  # ErrorCatcher's record, once


@pytest.mark.parametrize(("server", "options"), ERROR_PAGE_SERVERS)
def test_a_body_failing_after_its_first_byte_is_cut_and_its_traceback_logged_once(
    server, options, tmp_path
):
    # ErrorCatcher logged it, then handed it back through start_response(exc_info):
    # gunicorn and waitress logged the same traceback again, and uWSGI added
    # "OSError: headers already sent" to it.  Now it is logged once, and the
    # server cuts the connection with at most a short traceback naming the error
    # id.  (Ours cuts it without a line: test_errors.py, over a real socket.)
    with serving(
        server, "tests.recipes.foreign_apps:caught_failing_rows", *options, home=tmp_path
    ) as run:
        status, headers, body = fetch_error_page(run.port, "/midway")
        if server == "uwsgi":
            run.uwsgi_finished("GET", "/midway")
    assert (status, body, "X-Error-Id" in headers) == (200, b"row;", False), run.log
    [error_id] = re.findall(
        r"error ([0-9a-f]{16}): GET /midway from 127\.0\.0\.1; the response was cut off",
        run.log,
    )
    assert run.log.count("RuntimeError: the rows failed while iterated") == 1, run.log
    assert "headers already sent" not in run.log and "SystemError" not in run.log, run.log
    assert run.log.count("Traceback") <= 2, run.log  # ours, and waitress's or uWSGI's
    if run.log.count("Traceback") == 2:
        assert f"ResponseCut: error {error_id}: the response was cut off" in run.log, run.log
