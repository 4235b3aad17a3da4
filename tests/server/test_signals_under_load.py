"""Signals sent to a master while client threads keep it busy: no request may fail.

Each test starts ``wsgistack serve`` in a subprocess (the ``serve`` fixture,
stopped by PID), runs ``Load`` (tests/server/load.py: keep-alive and
one-request connections, a bounded count) and sends the signal mid-way.
"""

from __future__ import annotations

import signal
import socket
import threading

from .live import RawClient
from .load import Load
from .served import poll


def test_max_requests_with_jitter_recycles_under_load_without_a_failed_request(serve):
    # Each recycle closed the keep-alive connections idle in the old worker, and
    # one whose next request had just arrived was closed unread: a reset before
    # any byte, which a client cannot safely retry (it may have been a POST).
    server = serve("--workers", "2", "--threads", "4", "--max-requests", "40")
    with Load(server.port, requests=800, threads=6) as load:
        load.wait()
    assert load.ok + load.outcomes["retried"] == 800, load.outcomes
    assert load.failures() == {}
    assert len(load.pids) > 6  # recycled: many workers served


#: Streams ``start``, a dot every 50 ms for QUERY_STRING seconds, then ``end``.
STREAM = """
import time
from wsgiref.validate import validator

def stream(environ, start_response):
    seconds = float(environ["QUERY_STRING"] or "1")
    start_response("200 OK", [("Content-Type", "text/plain")])
    def body():
        yield b"start\\n"
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(0.05)
            yield b"."
        yield b"end\\n"
    return body()

app = validator(stream)
"""


def _streaming(serve, tmp_path, *options: str, seconds: float):
    """A server of STREAM, and a client whose stream has begun."""
    (tmp_path / "streamapp.py").write_text(STREAM)
    server = serve("--workers", "1", *options, target=("streamapp:app",))
    client = RawClient(("127.0.0.1", server.port), timeout=15)
    client.send(f"GET /?{seconds} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    poll(lambda: client._fill() and b"start" in client.buffer)
    return server, client


def test_a_stream_in_flight_at_sighup_finishes_in_the_old_worker(serve, tmp_path):
    server, client = _streaming(serve, tmp_path, "--graceful-timeout", "10", seconds=1.5)
    with client:
        old = server.workers()
        server.proc.send_signal(signal.SIGHUP)
        body = client.read_to_close()
        assert body.endswith(b"end\n\r\n0\r\n\r\n") and not client.was_reset
    poll(lambda: (pids := server.workers()) and not pids & old)


def test_a_stream_longer_than_the_graceful_timeout_is_cut_with_a_reset_and_logged(serve, tmp_path):
    # The worker used to leave at the deadline with an orderly close, so a client
    # reading to the close (HTTP/1.0, uwsgi) took the fragment for the whole
    # answer, and no line said a request had been cut.
    server, client = _streaming(serve, tmp_path, "--graceful-timeout", "1", seconds=8)
    with client:
        server.proc.send_signal(signal.SIGTERM)
        body = client.read_to_close()
        assert client.was_reset and b"end" not in body
    assert server.proc.wait(timeout=10) == 0
    assert "--graceful-timeout (1 s) passed with 1 request in flight" in server.log.read_text()


def test_new_clients_are_refused_while_a_stop_drains_not_queued_and_reset(serve):
    # The master and the draining worker kept their listening sockets open until
    # they exited, so the kernel went on queueing connections nobody would
    # accept: each hung for the whole drain, then was reset.
    server = serve("--workers", "2", "--graceful-timeout", "10")
    slow: dict[str, str] = {}
    thread = threading.Thread(target=lambda: slow.update(body=server.get("/slow?3")))
    thread.start()
    poll(server.marker.exists)  # the slow request is inside the app
    server.proc.send_signal(signal.SIGTERM)

    def refused() -> bool:
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
        except ConnectionRefusedError:
            return True
        return False

    poll(refused)
    assert "body" not in slow  # still draining: refused while a request is in flight
    thread.join(timeout=15)
    assert slow["body"].isdigit()
    assert server.proc.wait(timeout=10) == 0
