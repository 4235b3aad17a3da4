"""Kernel-enforced socket timeouts (wsgistack.sockets), on real socket pairs."""

from __future__ import annotations

import socket

import pytest

from wsgistack.sockets import set_io_timeout


@pytest.mark.timeout(10)
@pytest.mark.parametrize("seconds", [0.05, 1e-9], ids=["50ms", "below-a-microsecond"])
def test_a_receive_with_nothing_to_read_fails_after_the_timeout(seconds):
    # 1e-9 rounds to zero microseconds, which the kernel reads as "wait forever".
    left, right = socket.socketpair()
    with left, right:
        left.settimeout(5.0)  # a Python timeout is replaced, not stacked
        set_io_timeout(left, seconds)
        assert left.gettimeout() is None
        with pytest.raises(BlockingIOError):
            left.recv(1)
        right.sendall(b"x")
        assert left.recv(1) == b"x"  # still a working, blocking socket
