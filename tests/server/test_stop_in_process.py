"""An in-process server's stop (``Server.close()``, ``--workers 0``): what a cut request's client sees.

A thread cannot be killed: a request still in the app at the graceful
deadline runs on in its thread after ``close()`` returns.  Its client must
see the cut then, as it does when a prefork worker exits, not the rest of
the body later, followed by a reset.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from wsgiref.validate import validator

import pytest

from wsgistack.server import Server, stopping
from wsgistack.server.bind import parse_bind
from wsgistack.server.config import ServerConfig
from wsgistack.server.listener import close_listeners, open_listeners
from wsgistack.server.worker import Worker

from .live import HeldApp, RawClient, uwsgi_packet
from .served import poll

PACKET = uwsgi_packet(
    {
        "REQUEST_METHOD": "GET",
        "REQUEST_URI": "/slow",
        "PATH_INFO": "/slow",
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.0",
        "SERVER_NAME": "example.org",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "203.0.113.9",
    }
)


@pytest.mark.parametrize(
    ("bind", "request_bytes"),
    [
        ("127.0.0.1:0", b"GET /slow HTTP/1.0\r\nHost: a\r\n\r\n"),  # ended by the close
        ("uwsgi://127.0.0.1:0", PACKET),  # a worker whose threads accept (uwsgi only)
    ],
)
def test_a_request_cut_at_the_deadline_is_reset_then_and_sends_nothing_more(
    bind, request_bytes, tmp_path, caplog
):
    # close() logged "cutting it" and returned, but the request ran on: its
    # client got the rest of the body whenever the app produced it, then a
    # reset (which could also drop the end of it), and the thread's access
    # log line failed on the closed file with an "unexpected error" traceback.
    entered, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            try:
                yield b"first part, "
                entered.set()
                release.wait(30)
                yield b"the part after the deadline"
            finally:
                finished.set()

        return body()

    access_log = tmp_path / "access.log"
    server = Server(
        slow, bind=bind, workers=0, graceful_timeout=0.2, access_log=str(access_log)
    ).start()
    worker = server._worker
    assert worker is not None
    try:
        with RawClient(server.addresses[0], timeout=10) as client:
            client.send(request_bytes)
            assert entered.wait(10)
            with caplog.at_level(logging.INFO, logger="wsgistack.server"):
                server.close()
                data = client.read_to_close()  # before the app goes on
                assert client.was_reset
                assert data.endswith(b"first part, ")
                release.set()
                assert finished.wait(10)  # the app's thread went on, and ended
                for thread in worker.threads:  # then the server's part of it
                    thread.join(10)
    finally:
        release.set()
        server.close()
    messages = [record.getMessage() for record in caplog.records]
    assert any("in flight, cutting it" in message for message in messages), messages
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], messages
    assert "/slow" not in access_log.read_text()  # cut: said by the warning, as a worker's exit


def test_a_stop_with_no_descriptor_left_for_the_cut_still_stops(monkeypatch, caplog):
    # The cut swaps the connection for a new unconnected socket; a process out of
    # descriptors (EMFILE) cannot make one, and the stop must still finish (the
    # reset then comes when the app's thread closes the connection).
    def no_descriptor(*args, **kwargs):
        raise OSError(24, "Too many open files")

    held = HeldApp(wait=30)
    server = Server(held, bind="127.0.0.1:0", workers=0, graceful_timeout=0.2).start()
    try:
        with RawClient(server.addresses[0], timeout=10) as client:
            client.send(b"GET /held HTTP/1.1\r\nHost: a\r\n\r\n")
            assert held.entered.wait(10)
            monkeypatch.setattr(stopping.socket, "socket", no_descriptor)
            with caplog.at_level(logging.INFO, logger="wsgistack.server"):
                server.close()  # raised OSError, leaving the worker half stopped
            monkeypatch.undo()
            held.release.set()
            client.read_to_close()
            assert client.was_reset
    finally:
        held.release.set()
        server.close()
    messages = [record.getMessage() for record in caplog.records]
    assert any("in flight, cutting it" in message for message in messages), messages


def refused(address) -> bool:
    """Whether a new client is refused (not queued by the kernel for nobody)."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(address)
        except (ConnectionRefusedError, FileNotFoundError):
            return True
        except ConnectionResetError:
            return False  # queued as the listener closed: the next probe tells
    return False


def test_a_stopping_in_process_server_refuses_new_clients_while_it_drains(tmp_path):
    # With --workers 0 the listeners stayed open until the drain ended: new
    # clients were queued for nobody for up to --graceful-timeout, then reset,
    # where a prefork master's are refused at once and can go elsewhere.
    slow = HeldApp(b"ok", wait=30)
    entered, release = slow.entered, slow.release
    path = tmp_path / "app.sock"
    server = Server(
        slow, bind=["127.0.0.1:0", f"unix:{path}"], workers=0, graceful_timeout=30
    ).start()
    tcp = server.addresses[0]
    try:
        with RawClient(tcp, timeout=10) as client:
            client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert entered.wait(10)
            server.stop()  # graceful: the request in flight is answered
            poll(lambda: refused(tcp) and refused(str(path)))
            assert not path.exists()  # ours, removed as the listener closed
            release.set()
            status, headers, body = client.response()
            assert (status, headers["connection"], body) == (200, "close", b"ok")
    finally:
        release.set()
        server.close()  # the listeners are closed already: nothing fails, nothing twice


def test_a_forked_worker_closing_its_copies_leaves_the_socket_file(tmp_path):
    # A prefork worker lets go of its copies as it stops (also on a reload, while
    # the master and the new workers serve on): the file is the master's to remove.
    path = tmp_path / "app.sock"
    listeners = open_listeners((parse_bind(f"unix:{path}"),), backlog=16)
    try:
        pid = os.fork()
        if pid == 0:
            try:
                close_listeners(listeners)
            finally:
                os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0
        assert path.exists()
    finally:
        close_listeners(listeners)
    assert not path.exists()


@pytest.mark.parametrize("as_file", [True, False], ids=["sendfile", "one-large-chunk"])
def test_a_large_send_at_the_deadline_is_cut_then_not_finished(as_file, tmp_path):
    # The thread was inside one os.sendfile() (or send()) call for the rest of
    # the body, and a call in progress holds the connection: swapping the
    # descriptor did not stop it, so a client that went on reading after
    # close() got almost all of it, at full speed, before its reset.
    size = 64 * 1024 * 1024
    big = tmp_path / "big.bin"
    with open(big, "wb") as out:
        out.truncate(size)
    started = threading.Event()

    def send_big(environ, start_response):
        start_response("200 OK", [("Content-Length", str(size))])
        started.set()
        if as_file:
            return environ["wsgi.file_wrapper"](open(big, "rb"))  # the server closes it
        return [bytes(size)]

    server = Server(send_big, bind="127.0.0.1:0", workers=0, graceful_timeout=0.2).start()
    worker = server._worker
    assert worker is not None
    try:
        with socket.socket() as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before the window
            client.settimeout(60)
            client.connect(server.addresses[0])
            client.sendall(b"GET /big HTTP/1.0\r\nHost: a\r\n\r\n")
            assert started.wait(10)
            assert client.recv(4096)  # the answer began; the rest waits for this client
            server.close()
            received = 0
            with pytest.raises(ConnectionResetError):
                while data := client.recv(65536):
                    received += len(data)
            assert received < size // 2, received
        for thread in worker.threads:  # the thread ends too, and closes what it held
            thread.join(10)
            assert not thread.is_alive()
    finally:
        server.close()


def test_addresses_and_url_name_the_bound_sockets_after_stop_and_close(tmp_path):
    # The listeners close as a stop begins: ``addresses`` and ``url`` raised
    # (EBADF) after stop(), and after close() url blamed the bind ("no HTTP TCP
    # listener"), so a test or program logging "served on URL" at the end crashed.
    sock = tmp_path / "app.sock"
    server = Server(HeldApp(), bind=["127.0.0.1:0", f"unix:{sock}"], workers=0)
    with pytest.raises(RuntimeError, match="not bound yet"):
        server.url  # noqa: B018
    with server:
        bound, url = server.addresses, server.url
        assert bound == [("127.0.0.1", int(url.rsplit(":", 1)[1])), (str(sock), 0)]
        server.stop()
        assert (server.addresses, server.url) == (bound, url)
    assert (server.addresses, server.url) == (bound, url)  # closed: as it was bound
    with server:  # bound afresh: its own port
        assert server.url == f"http://127.0.0.1:{server.addresses[0][1]}"


@pytest.mark.parametrize("owns", [None, False], ids=["default", "owns_listeners=False"])
def test_a_worker_closes_the_listeners_it_was_given_as_it_stops(owns):
    # Every worker the server builds closes its listeners as it stops; a Worker
    # built with the defaults (embedded, or in a test) left them open, so its
    # clients were queued for nobody.  owns_listeners=False keeps them for the caller.
    config = ServerConfig.from_options(bind="127.0.0.1:0", threads=2)
    listeners = open_listeners(config.bind, 16)
    options = {} if owns is None else {"owns_listeners": owns}
    worker = Worker(validator(HeldApp()), config, listeners, **options)
    runner = threading.Thread(target=worker.run)
    try:
        runner.start()
        assert worker.ready.wait(10)
        worker.stop()
        runner.join(20)
        assert not runner.is_alive()
        assert (listeners[0].fileno() == -1) is (owns is None)
    finally:
        worker.stop(graceful=False)
        runner.join(20)
        close_listeners(listeners)


def test_a_request_sent_on_an_idle_keep_alive_connection_as_a_stop_begins_is_answered():
    # A stop (a --max-requests recycle, SIGTERM, a reload) closed idle keep-alive
    # connections at once, so a client whose next request crossed the close
    # (a busy client sends without waiting) failed: about one request in a
    # hundred across a recycle, where gunicorn 27 answers it with Connection: close.
    held = HeldApp(b"slow", wait=30)

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            return held(environ, start_response)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    server = Server(validator(app), bind="127.0.0.1:0", workers=0, graceful_timeout=30).start()
    tcp = server.addresses[0]
    try:
        with RawClient(tcp, timeout=10) as idle, RawClient(tcp, timeout=10) as busy:
            status, headers, _ = idle.request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert (status, headers.get("connection")) == (200, None)  # kept alive
            busy.send(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
            assert held.entered.wait(10)  # keeps the worker draining
            server.stop()
            poll(lambda: refused(tcp))  # the stop has begun
            status, headers, body = idle.request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert (status, headers["connection"], body) == (200, "close", b"ok")
            assert idle.read_to_close() == b"" and not idle.was_reset
            held.release.set()
            assert busy.response()[0] == 200
    finally:
        held.release.set()
        server.close()
