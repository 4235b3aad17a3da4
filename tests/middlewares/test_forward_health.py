"""LoadBalancer's active health checks on demand and at close: check_now() and close()."""

from __future__ import annotations

import socket
import threading

import pytest

from tests.middlewares.forward_parts import _RawServer

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Together(_RawServer):
    """Answers a check 200 only if the other upstream's check came in meanwhile, else 503.

    Checked one after another, the first waits for the second in vain (up to 10 s)
    and answers 503, and the barrier is broken for the second too: both down.
    """

    def __init__(self, barrier: threading.Barrier) -> None:
        self.barrier = barrier
        super().__init__(lambda sock: threading.Thread(target=self._answer, args=(sock,)).start())

    def _answer(self, sock: socket.socket) -> None:
        with sock:
            try:
                self.barrier.wait()
                sock.sendall(OK)
            except threading.BrokenBarrierError:
                sock.sendall(BUSY)


def test_check_now_checks_every_upstream_at_once(lb):
    # With a black-holed upstream a status page calling check_now() waited
    # read_timeout for each such upstream in turn; now one round is all at once.
    barrier = threading.Barrier(2, timeout=10)
    first, second = _Together(barrier), _Together(barrier)
    try:
        balancer = lb([first.url, second.url], read_timeout=30)
        balancer.check_now()
        assert [row["up"] for row in balancer.status()] == [True, True]
    finally:
        first.close()
        second.close()


def test_check_now_still_counts_each_answer(lb, upstreams):
    a, b = upstreams.start("a"), upstreams.start("b")
    balancer = lb([a, b, "http://127.0.0.1:9"], health_rise=1)  # nothing listens on port 9
    balancer.check_now()
    assert [row["up"] for row in balancer.status()] == [True, True, False]


def test_check_now_raises_what_a_check_raised(lb, upstreams, monkeypatch):
    balancer = lb([upstreams.start("a"), upstreams.start("b")])
    checker = balancer._health

    def broken(upstream, whole):
        raise RuntimeError(f"a bug checking {upstream.url}")

    monkeypatch.setattr(checker, "_probe", broken)
    with pytest.raises(RuntimeError, match="a bug checking"):
        balancer.check_now()


def test_close_cuts_a_check_in_progress_and_frees_its_connection(lb):
    # An upstream that takes the check's connection and never answers: after
    # close() the checker thread held it for up to read_timeout (60 s).
    accepted: list[socket.socket] = []
    came = threading.Event()

    def hold(sock: socket.socket) -> None:
        accepted.append(sock)
        came.set()

    silent = _RawServer(hold)
    try:
        balancer = lb([silent.url], health_path="/health", health_interval=0.01, read_timeout=60)
        balancer.status()  # starts the checks
        assert came.wait(10)
        checker = [t for t in threading.enumerate() if t.name == f"wsgistack-health {silent.url}"]
        balancer.close()
        accepted[0].settimeout(10)  # a bound on the wait, not a timing asserted
        while accepted[0].recv(65536):
            pass  # the check's request; then its end of stream
        for thread in checker:
            thread.join(10)
        assert not any(thread.is_alive() for thread in checker)
        assert balancer.status()[0]["up"]  # a check cut short counts neither way
    finally:
        for sock in accepted:
            sock.close()
        silent.close()
