"""Signals sent to a master while client threads keep it busy: no request may fail.

Each test starts ``wsgistack serve`` in a subprocess (the ``serve`` fixture,
stopped by PID), runs ``Load`` (tests/server/load.py: keep-alive and
one-request connections, a bounded count) and sends the signal mid-way.
"""

from __future__ import annotations

from .load import Load


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
