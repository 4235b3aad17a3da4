"""ClosingIterator: the inner close() once, every cleanup run, the first error kept."""

from __future__ import annotations

import pytest

from wsgistack.wsgi import ClosingIterator, run_cleanups


class Body:
    def __init__(self, chunks, fail_at=None, close_error=None):
        self.chunks = chunks
        self.fail_at = fail_at
        self.close_error = close_error
        self.closed = 0

    def __iter__(self):
        for index, chunk in enumerate(self.chunks):
            if index == self.fail_at:
                raise RuntimeError("boom while iterating")
            yield chunk

    def close(self):
        self.closed += 1
        if self.close_error:
            raise self.close_error


def test_iterates_and_closes_once():
    body = Body([b"a", b"b"])
    calls = []
    wrapped = ClosingIterator(body, lambda: calls.append("cleanup"))
    assert list(wrapped) == [b"a", b"b"]
    wrapped.close()
    wrapped.close()
    assert body.closed == 1 and calls == ["cleanup"]


def test_cleanups_run_even_when_the_inner_close_fails():
    body = Body([b"a"], close_error=OSError("close failed"))
    calls = []
    wrapped = ClosingIterator(body, lambda: calls.append("cleanup"))
    with pytest.raises(OSError, match="close failed"):
        wrapped.close()
    assert calls == ["cleanup"]


def test_close_after_iteration_raised():
    body = Body([b"a", b"b"], fail_at=1)
    wrapped = ClosingIterator(body)
    with pytest.raises(RuntimeError, match="boom while iterating"):
        list(wrapped)
    wrapped.close()
    assert body.closed == 1


def test_run_cleanups_reraises_the_first_error_after_all_ran():
    calls = []

    def fail(n):
        calls.append(n)
        raise ValueError(n)

    with pytest.raises(ValueError, match="1"):
        run_cleanups([lambda: fail(1), lambda: calls.append(2), lambda: fail(3)])
    assert calls == [1, 2, 3]


def test_cleanups_run_when_the_app_returned_something_not_iterable():
    # An app that returns None (a forgotten return): the layer's cleanup (a pooled
    # connection, a concurrency slot) must still run, as it does when iteration raises.
    class NotIterable:
        closed = 0

        def close(self):
            self.closed += 1

    body = NotIterable()
    calls = []
    with pytest.raises(TypeError):
        ClosingIterator(body, lambda: calls.append("cleanup"))  # type: ignore[arg-type]
    assert (body.closed, calls) == (1, ["cleanup"])
