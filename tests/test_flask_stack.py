"""A real Flask app behind the whole stack, served over real sockets: what its users rely on.

The stack is the README's: ErrorCatcher, IPFilter (trusting the loopback
proxy), RateLimiter, and a PrefixDispatcher mounting the app under ``/app``,
served by the reference server on port 0.  The Flask app is wrapped in
wsgiref's validator, except where a test needs the server to see the app's
own ``wsgi.file_wrapper`` (the validator hides it behind its own iterator).
"""

from __future__ import annotations

import io
import os
from wsgiref.validate import validator

import flask
import werkzeug.utils

from tests.server.live import RawClient, live_server
from wsgistack import compose, use
from wsgistack.middlewares import ErrorCatcher, IPFilter, PrefixDispatcher, RateLimiter

PROXY = "127.0.0.1"  # the test client plays the trusted proxy in front
DENIED = "192.0.2.66"


def build_stack(wsgi_app, *, checked: bool = True, per_minute: int = 1000):
    """The README's pipeline around ``wsgi_app``, mounted under /app."""
    return compose(
        use(ErrorCatcher),
        use(IPFilter, deny=[DENIED], trusted_proxies=[PROXY]),
        use(RateLimiter, f"{per_minute}/minute", trusted_proxies=[PROXY]),
        PrefixDispatcher({"/app": validator(wsgi_app) if checked else wsgi_app}),
    )


def get(path: str, **headers: str) -> bytes:
    fields = "".join(f"{name.replace('_', '-')}: {value}\r\n" for name, value in headers.items())
    return f"GET {path} HTTP/1.1\r\nHost: shop.example\r\n{fields}\r\n".encode()


class CountingFile(io.FileIO):
    """A real file that counts the bytes read from it through Python."""

    def __init__(self, path: os.PathLike[str] | str) -> None:
        super().__init__(path, "rb")
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        block = super().read(size)
        self.bytes_read += len(block)
        return block


def test_a_range_request_for_send_file_seeks_to_the_range_and_closes_the_file(
    tmp_path, monkeypatch
):
    # A player seeking near the end of a video sends Range: werkzeug builds the
    # 206 around the server's wsgi.file_wrapper.  A wrapper that cannot seek made
    # it read and drop every byte before the range, and closing the 206 closed
    # only an iterator, leaving the file open until garbage collection.
    video = tmp_path / "video.mp4"
    video.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    opened: list[CountingFile] = []

    def counting_open(path, mode="r", *args, **kwargs):
        assert mode == "rb"
        opened.append(CountingFile(path))
        return opened[-1]

    monkeypatch.setattr(werkzeug.utils, "open", counting_open, raising=False)  # send_file's
    app = flask.Flask(__name__)

    @app.get("/video")
    def serve_video():
        return flask.send_file(video, conditional=True)

    stack = build_stack(app.wsgi_app)
    with live_server(stack) as server, RawClient(server.address) as client:
        status, headers, body = client.request(get("/app/video", Range="bytes=1048566-"))
        assert (status, headers["content-range"]) == (206, "bytes 1048566-1048575/1048576")
        assert body == video.read_bytes()[-10:]
        assert client.request(get("/app/video"))[0] == 200  # the connection goes on
    assert opened[0].bytes_read < 1024 * 1024 // 4  # a block from the range, not the file
    assert opened[0].closed
