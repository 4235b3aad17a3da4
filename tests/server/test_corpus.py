"""The raw-request corpus: each file one test id, delivered whole, by byte and in random splits.

``tests/corpus/valid/*.http`` must reach the app as the sidecar says;
``tests/corpus/invalid/*.http`` must be refused with the sidecar's status
and leave the server serving; the app never gets a malformed request.  (A
body that turns out malformed after a valid head was already handed to the
app, as bodies stream: its read raises, and the client still gets the 400.)
"""

from __future__ import annotations

import io
import random
import tomllib
from pathlib import Path

import pytest

from tests.server.conftest import echo_app, exchange, split_response

CORPUS = Path(__file__).resolve().parents[1] / "corpus"


def cases(kind: str) -> list:
    params = []
    for path in sorted((CORPUS / kind).glob("*.http")):
        expected = tomllib.loads(path.with_suffix(".toml").read_text(encoding="utf-8"))
        for delivery in ("whole", "bytes", "random"):
            params.append(
                pytest.param(path.read_bytes(), expected, delivery, id=f"{path.stem}-{delivery}")
            )
    return params


def pieces(raw: bytes, delivery: str) -> list[bytes]:
    if delivery == "whole":
        return [raw]
    if delivery == "bytes":
        return [raw[i : i + 1] for i in range(min(len(raw), 2000))] + (
            [raw[2000:]] if len(raw) > 2000 else []
        )
    rng = random.Random(raw)
    cuts = sorted(rng.sample(range(1, len(raw)), min(8, len(raw) - 1)))
    return [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]


@pytest.fixture(scope="module")
def server():
    from tests.server.conftest import live

    calls = []

    def counting(environ, start_response):
        body = environ["wsgi.input"].read()  # a malformed body raises here, uncounted
        calls.append(environ["PATH_INFO"])
        environ["wsgi.input"] = io.BytesIO(body)
        return echo_app(environ, start_response)

    with live(counting, threads=4) as running:
        running.calls = calls  # type: ignore[attr-defined]
        yield running


@pytest.mark.parametrize(("raw", "expected", "delivery"), cases("valid"))
def test_valid_requests_reach_the_app_as_sent(server, raw, expected, delivery):
    close = raw.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
    status, _, body = split_response(exchange(server, *pieces(close, delivery)))
    assert status == expected["status"]
    assert body.decode("latin-1") == expected["body"]


@pytest.mark.parametrize(("raw", "expected", "delivery"), cases("invalid"))
def test_invalid_requests_are_refused_before_the_app(server, raw, expected, delivery):
    before = len(server.calls)
    data = exchange(server, *pieces(raw, delivery))
    status, headers, _ = split_response(data)
    assert status == expected["status"]
    assert headers["connection"] == "close"
    assert len(server.calls) == before
    # ... and the server still serves.
    assert split_response(exchange(server, b"GET /ok HTTP/1.0\r\n\r\n"))[0] == 200
