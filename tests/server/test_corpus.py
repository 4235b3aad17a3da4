"""The raw-request corpus (tests/corpus/{valid,invalid}/*.http + .toml), over real sockets.

Each file is delivered whole, one byte at a time, and in random splits: the
parser must give the same answer however TCP cuts the bytes.
"""

from __future__ import annotations

import random
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from wsgistack.server import Server

from .conftest import echo_app
from .live import RawClient, live_server

CORPUS = Path(__file__).parent.parent / "corpus"


def _cases(kind: str) -> list[pytest.param]:
    cases = []
    for path in sorted((CORPUS / kind).glob("*.http")):
        expected = tomllib.loads(path.with_suffix(".toml").read_text("utf-8"))
        cases.append(pytest.param(path.read_bytes(), expected, id=path.stem))
    return cases


def _whole(data: bytes) -> list[bytes]:
    return [data]


def _bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def _random(data: bytes) -> list[bytes]:
    rng = random.Random(len(data))
    cuts = sorted(rng.sample(range(1, len(data)), min(5, len(data) - 1)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


DELIVERIES = [
    pytest.param(_whole, id="whole"),
    pytest.param(_bytewise, id="by-byte"),
    pytest.param(_random, id="random-splits"),
]


REACHED: list[str] = []


def recording_echo(environ, start_response):
    """The echo app, noting each request that reached it."""
    REACHED.append(environ["PATH_INFO"])
    return echo_app(environ, start_response)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with live_server(recording_echo) as server:
        yield server


def _deliver(client: RawClient, pieces: list[bytes]) -> None:
    for piece in pieces:
        try:
            client.send(piece)
        except OSError:
            return  # the server refused early and closed: the answer is already there


# wsgiref's validator warns of a method outside its short list (PURGE); PEP 3333 has none.
@pytest.mark.filterwarnings("ignore:Unknown REQUEST_METHOD")
@pytest.mark.parametrize("deliver", DELIVERIES)
@pytest.mark.parametrize(("raw", "expected"), _cases("valid"))
def test_valid_request_is_served_and_kept_alive(server, raw, expected, deliver):
    with RawClient(server.address) as client:
        _deliver(client, deliver(raw))
        status, _headers, body = client.response()
        assert status == expected["status"]
        assert body.decode("utf-8") == expected["echo"]
        if raw.startswith(b"GET /old HTTP/1.0"):
            assert client.closed_by_peer()  # HTTP/1.0 without keep-alive closes
            return
        # The connection stays usable: a second request on it is answered.
        status, _, _ = client.request(b"GET /again HTTP/1.1\r\nHost: a\r\n\r\n")
        assert status == 200


@pytest.mark.parametrize("deliver", DELIVERIES)
@pytest.mark.parametrize(("raw", "expected"), _cases("invalid"))
def test_invalid_request_is_refused_and_closed(server, raw, expected, deliver):
    REACHED.clear()
    with RawClient(server.address) as client:
        _deliver(client, deliver(raw))
        status, headers, _ = client.response()
        assert status == expected["status"]
        assert headers["connection"] == "close"
        assert client.closed_by_peer()
    if not expected.get("body_error"):
        assert REACHED == []  # a refused request head never reaches the app
