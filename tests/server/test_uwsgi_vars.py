"""The uwsgi variable block decoder: the C speedup and its Python twin answer alike."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsgistack.server import uwsgi
from wsgistack.server.request import Limits
from wsgistack.server.uwsgi import UwsgiParser, decode_vars_python

try:
    from wsgistack.server._uwsgi_vars import decode_vars as decode_vars_c
except ImportError:  # not compiled: the first test says so, and the rest fail with it
    decode_vars_c = None

NOT_BUILT = (
    "wsgistack/server/_uwsgi_vars.c is not compiled; `pip install -e .` builds it "
    "where a C compiler is installed (Debian: apt-get install gcc python3-dev)"
)

Decoder = Callable[[bytes], tuple[dict[str, str], int]]


def c_decoder() -> Decoder:
    assert decode_vars_c is not None, NOT_BUILT
    return decode_vars_c


def block(pairs: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(len(item).to_bytes(2, "little") + item for pair in pairs for item in pair)


def outcome(decode: Decoder, data: bytes) -> object:
    """What a decoder makes of ``data``: its answer, or the ValueError's message."""
    try:
        return decode(data)
    except ValueError as exc:
        return ("ValueError", str(exc))


def test_the_c_speedup_is_built_and_serves_uwsgi_requests():
    assert uwsgi.decode_vars is c_decoder()


@pytest.mark.parametrize("decode", [decode_vars_python, decode_vars_c], ids=["python", "c"])
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(b"", ({}, 0), id="empty"),
        pytest.param(
            block([(b"PATH_INFO", b"/caf\xe9"), (b"QUERY_STRING", b"")]),
            ({"PATH_INFO": "/café", "QUERY_STRING": ""}, 2),
            id="latin-1",
        ),
        pytest.param(
            block([(b"HTTP_X", b"a"), (b"HTTP_X", b"b")]),
            ({"HTTP_X": "b"}, 2),
            id="repeat-counted-last-kept",
        ),
        pytest.param(
            block([(b"K" * 65535, b"v" * 65535)]),
            ({"K" * 65535: "v" * 65535}, 1),
            id="largest-sizes",
        ),
        pytest.param(
            b"\x05", ("ValueError", "a variable's size runs past the packet"), id="half-a-size"
        ),
        pytest.param(
            b"\x03\x00KEY\x01",
            ("ValueError", "a variable's size runs past the packet"),
            id="value-size-cut",
        ),
        pytest.param(
            b"\x09\x00KEY",
            ("ValueError", "a variable's size runs past the packet"),
            id="key-past-the-end",
        ),
        pytest.param(
            b"\x03\x00KEY\x05\x00ab",
            ("ValueError", "the last value runs past the packet"),
            id="value-past-the-end",
        ),
    ],
)
def test_a_block_decodes_to_its_variables_or_says_what_runs_past(decode, data, expected):
    if decode is None:
        decode = c_decoder()
    assert outcome(decode, data) == expected


PAIRS = st.lists(st.tuples(st.binary(max_size=40), st.binary(max_size=300)), max_size=12)


@settings(max_examples=500, deadline=None)
@given(PAIRS, st.integers(min_value=0, max_value=5000), st.binary(max_size=6))
def test_c_and_python_agree_on_any_block_cut_anywhere(pairs, cut, tail):
    decode = c_decoder()
    data = block(pairs)
    for variant in (data, data[:cut], data + tail, data[:cut] + tail):
        assert outcome(decode, variant) == outcome(decode_vars_python, variant)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_c_and_python_agree_on_any_bytes(data):
    assert outcome(c_decoder(), data) == outcome(decode_vars_python, data)


@pytest.mark.parametrize("decode", [decode_vars_python, decode_vars_c], ids=["python", "c"])
def test_either_decoder_has_the_parser_refuse_a_block_that_runs_past(monkeypatch, decode):
    monkeypatch.setattr(uwsgi, "decode_vars", decode or c_decoder())
    variables = block([(b"REQUEST_METHOD", b"GET")]) + b"\x04\x00PATH\x09\x00/"
    parser = UwsgiParser(Limits())
    parser.feed(b"\x00" + len(variables).to_bytes(2, "little") + b"\x00" + variables)
    assert parser.next_request() is None
    assert str(parser.error) == "uwsgi: the last value runs past the packet"
