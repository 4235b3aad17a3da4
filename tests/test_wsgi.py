"""ClosingIterator: the inner close() once, every cleanup run, the first error kept;
is_file_wrapper: the server's file-wrapper body known, any other body not."""

from __future__ import annotations

import io
import wsgiref.util

import gunicorn.http.wsgi
import pytest
import waitress.buffers

from wsgistack.server.environ import FileWrapper
from wsgistack.wsgi import ClosingIterator, is_file_wrapper, note_file_wrapper, run_cleanups


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


def uwsgi_file_wrapper(filelike, chunk=4096):
    """As uWSGI's ``wsgi.file_wrapper``: a function that hands back the file it was given."""
    return filelike


class Readable:
    """A body with ``read()`` that no file wrapper returned (a stream of rows, say)."""

    def read(self, size=-1):
        return b""

    def __iter__(self):
        return iter([b"row"])


def test_under_uwsgi_only_the_body_its_file_wrapper_returned_is_one():
    # Any body with read() counted, so ErrorCatcher let a failing stream through
    # unguarded and uWSGI answered its failure with an empty 200.
    environ = {"wsgi.file_wrapper": uwsgi_file_wrapper}
    note_file_wrapper(environ)
    sent = io.BytesIO(b"file")
    assert environ["wsgi.file_wrapper"](sent, 65536) is sent
    assert is_file_wrapper(sent, environ)
    assert not is_file_wrapper(Readable(), environ)
    assert not is_file_wrapper(io.BytesIO(b"another file"), environ)


def test_under_uwsgi_the_note_reaches_a_layer_that_copied_the_environ():
    environ = {"wsgi.file_wrapper": uwsgi_file_wrapper}
    note_file_wrapper(environ)
    below = dict(environ)  # a layer below that hands the app a copy
    note_file_wrapper(below)  # and notes again: the outer note stays the one
    sent = io.BytesIO(b"file")
    body = below["wsgi.file_wrapper"](sent)
    assert is_file_wrapper(body, environ) and is_file_wrapper(body, below)


def test_under_uwsgi_a_block_size_left_out_is_left_to_uwsgi():
    given = []
    environ = {"wsgi.file_wrapper": lambda *args: given.append(args) or args[0]}
    note_file_wrapper(environ)
    sent = io.BytesIO()
    environ["wsgi.file_wrapper"](sent)
    assert given == [(sent,)]


def test_without_a_file_wrapper_no_body_is_one():
    environ: dict = {}
    note_file_wrapper(environ)
    assert environ == {} and not is_file_wrapper(io.BytesIO(), environ)


@pytest.mark.parametrize(
    "wrapper",
    [FileWrapper, gunicorn.http.wsgi.FileWrapper, waitress.buffers.ReadOnlyFileBasedBuffer,
     wsgiref.util.FileWrapper],
    ids=["wsgistack", "gunicorn", "waitress", "wsgiref"],
)  # fmt: skip
def test_a_servers_file_wrapper_class_is_known_by_type_and_left_alone(wrapper):
    environ = {"wsgi.file_wrapper": wrapper}
    note_file_wrapper(environ)
    assert environ == {"wsgi.file_wrapper": wrapper}  # nothing added on the hot path
    assert is_file_wrapper(wrapper(io.BytesIO(b"file"), 4096), environ)
    assert not is_file_wrapper(Readable(), environ)
    assert not is_file_wrapper(io.BytesIO(b"file"), environ)
