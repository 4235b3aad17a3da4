"""The sans-IO parser alone: the corpus fed whole, by line and by byte, no sockets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsgistack.server.http import RequestParser
from wsgistack.server.request import Limits
from wsgistack.server.response import error_response, response_head

from .test_corpus import _bytewise, _cases, _random, _whole


def _by_line(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


FEEDS = [
    pytest.param(_whole, id="whole"),
    pytest.param(_by_line, id="by-line"),
    pytest.param(_bytewise, id="by-byte"),
    pytest.param(_random, id="random-splits"),
]


def _parse(raw: bytes, split) -> RequestParser:
    parser = RequestParser(Limits())
    for piece in split(raw):
        parser.feed(piece)
    return parser


@pytest.mark.parametrize("split", FEEDS)
@pytest.mark.parametrize(("raw", "expected"), _cases("valid"))
def test_valid_corpus_parses_to_one_complete_request(raw, expected, split):
    parser = _parse(raw, split)
    request = parser.next_request()
    assert parser.error is None and request is not None and request.error is None
    assert request.complete
    assert expected["echo"].startswith(request.method + " ")
    assert parser.next_request() is None


@pytest.mark.parametrize("split", FEEDS)
@pytest.mark.parametrize(("raw", "expected"), _cases("invalid"))
def test_invalid_corpus_is_a_protocol_error_with_its_status(raw, expected, split):
    parser = _parse(raw, split)
    request = parser.next_request()
    error = request.error if request is not None else parser.error
    assert error is not None
    assert error.status_hint == expected["status"]
    assert expected.get("message", "") in str(error)  # what the log says of it


def test_pipelined_heads_come_out_in_order():
    parser = RequestParser(Limits())
    parser.feed(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [parser.next_request().url, parser.next_request().url] == [b"/1", b"/2"]


def test_body_limit_applies_to_chunked_bodies_as_they_arrive():
    parser = RequestParser(Limits(max_body_size=4))
    parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    request = parser.next_request()
    assert request.error is None
    parser.feed(b"3\r\ndef\r\n")
    assert request.error.status_hint == 413


HEAD_LIMITS = Limits(max_request_line=64, max_header_size=256)


@pytest.mark.parametrize(
    "before",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" * 100, id="pipelined-gets"),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 900\r\n\r\n" + b"x" * 900, id="body"
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"1\r\nx\r\n" * 300
            + b"0\r\n\r\n",
            id="chunked-body",
        ),
    ],
)
def test_requests_before_a_split_head_do_not_count_toward_its_limit(before):
    parser = RequestParser(HEAD_LIMITS)
    parser.feed(before + b"GET /last HTTP/1.1\r\nHost: a\r\nX-Pad: ")
    parser.feed(b"p" * 100 + b"\r\n\r\n")
    requests = list(iter(parser.next_request, None))
    assert parser.error is None and requests[-1].url == b"/last"


@pytest.mark.parametrize(
    "pieces",
    [
        pytest.param([b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 400], id="one-read"),
        pytest.param([b"GET / HTTP/1.1\r\nX-Big: ", b"b" * 200, b"b" * 200], id="later-reads"),
        pytest.param(
            [b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 400],
            id="after-a-pipelined-request",
        ),
    ],
)
def test_a_head_that_does_not_end_is_refused_at_its_limit(pieces):
    parser = RequestParser(HEAD_LIMITS)
    for piece in pieces:
        parser.feed(piece)
    assert parser.error is not None and parser.error.status_hint == 431


CHUNKED = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"


@pytest.mark.parametrize(
    "pieces",
    [
        pytest.param([CHUNKED + b"X-T: " + b"t" * 300], id="one-read"),
        pytest.param([CHUNKED, b"X-T: ", b"t" * 150, b"t" * 150], id="later-reads"),
        pytest.param([CHUNKED + b"X-T: t\r\n" * 20, b"X-T: t\r\n" * 20], id="many-fields"),
        pytest.param([CHUNKED + b"X-T: " + b"t" * 300 + b"\r\n\r\n"], id="ended-one-read"),
    ],
)
def test_a_trailer_section_is_held_to_the_header_limit(pieces):
    # httptools buffers a trailer field whole before it reports it: without this
    # limit a client could make it hold any amount.
    parser = RequestParser(HEAD_LIMITS)
    for piece in pieces:
        parser.feed(piece)
    request = parser.next_request()
    assert request.error is not None and request.error.status_hint == 431
    assert parser.error is request.error


def test_a_trailer_section_within_the_limit_is_dropped():
    parser = RequestParser(HEAD_LIMITS)
    for piece in [CHUNKED, b"X-T: " + b"t" * 100, b"\r\n\r\n"]:
        parser.feed(piece)
    request = parser.next_request()
    assert parser.error is None and request.complete
    assert b"".join(request.body) == b"abc"
    assert [name for name, _ in request.headers] == [b"Host", b"Transfer-Encoding"]


CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    "pieces",
    [
        pytest.param([CHUNKED_HEAD + b"3;x=" + b"e" * 300], id="extension-one-read"),
        pytest.param([CHUNKED_HEAD, b"3;x=", b"e" * 150, b"e" * 150], id="extension-later-reads"),
        pytest.param(
            [CHUNKED_HEAD + b"3\r\nabc\r\n3;x=" + b"e" * 150, b"e" * 150],
            id="extension-of-a-later-chunk",
        ),
        pytest.param([CHUNKED_HEAD, b"0" * 150, b"0" * 150], id="leading-zeros"),
        # Ended within the data: the line is past the limit all the same.
        pytest.param(
            [CHUNKED_HEAD + b"3;x=" + b"e" * 300 + b"\r\nabc\r\n0\r\n\r\n"], id="ended-one-read"
        ),
        pytest.param(
            [CHUNKED_HEAD, b"3;x=" + b"e" * 150, b"e" * 150 + b"\r\nabc\r\n0\r\n\r\n"],
            id="ended-in-a-later-read",
        ),
        pytest.param(
            [CHUNKED_HEAD + b"3\r\nabc\r\n0;x=" + b"e" * 300 + b"\r\n\r\n"],
            id="last-chunk-one-read",
        ),
    ],
)
def test_a_chunk_size_line_is_held_to_the_header_limit(pieces):
    # RFC 9112 7.1.1: llhttp skips chunk extensions without reporting them, so a
    # size line that never ends would hold the connection however long it grew.
    parser = RequestParser(HEAD_LIMITS)
    request = None
    for piece in pieces:
        parser.feed(piece)
        request = request or parser.next_request()
    assert request.error is not None and request.error.status_hint == 413
    assert parser.error is request.error


def test_chunk_extensions_within_the_limit_are_skipped():
    parser = RequestParser(HEAD_LIMITS)
    for piece in [CHUNKED_HEAD, b"3;x=" + b"e" * 200, b"\r\nabc\r\n0;y=" + b"f" * 200, b"\r\n\r\n"]:
        parser.feed(piece)
    request = parser.next_request()
    assert parser.error is None and request.complete
    assert b"".join(request.body) == b"abc"


def test_response_head_and_refusal_bytes():
    head = response_head("200 OK", [("Content-Type", "text/plain")], b"Connection: close\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: ")
    assert head.endswith(b"\r\nServer: wsgistack\r\nConnection: close\r\n\r\n")
    refusal = error_response(431)
    assert refusal.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"Connection: close\r\n" in refusal


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_feed_never_raises_whatever_the_bytes(pieces):
    parser = RequestParser(Limits(max_request_line=256, max_header_size=512))
    for piece in [b"POST / HTTP/1.1\r\nHost: a\r\n", *pieces]:
        parser.feed(piece)
    error = parser.error
    assert error is None or 400 <= error.status_hint <= 505


GOOD = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
POSTED = b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"


@pytest.mark.parametrize(
    ("before", "method", "status"),
    [
        pytest.param(b"", b"BREW", 501, id="unknown"),
        pytest.param(b"", b"MOVEX", 501, id="unknown-after-a-known-prefix"),
        pytest.param(b"", b"GE T", 400, id="space-inside"),
        pytest.param(GOOD, b"BREW", 501, id="after-a-get"),
        pytest.param(GOOD + b"\r\n", b"BREW", 501, id="after-a-get-and-an-empty-line"),
        pytest.param(POSTED + GOOD, b"FOO", 501, id="after-a-post-and-a-get"),
        pytest.param(GOOD, b"G\x01T", 400, id="control-byte-after-a-get"),
    ],
)
def test_a_method_is_judged_the_same_wherever_the_bytes_are_cut(before, method, status):
    """However TCP cuts them, the requests before are served and the method gets its status."""
    raw = before + method + b" / HTTP/1.1\r\nHost: a\r\n\r\n"
    for cut in range(len(before), len(raw)):
        parser = _parse(raw, lambda data, cut=cut: [data[:cut], data[cut:]])
        assert parser.error is not None and parser.error.status_hint == status, cut
        served = 0
        while (request := parser.next_request()) is not None:
            assert request.error is None
            served += 1
        assert served == before.count(b"HTTP/1.1"), cut


def test_an_unknown_method_waits_for_its_request_line_to_end():
    """Until its line ends, an unknown method may yet be malformed: no answer, a head in progress."""
    parser = RequestParser(Limits())
    parser.feed(b"BREW / HT")
    assert parser.error is None and parser.mid_request  # a client that stops now gets 408
    parser.feed(b"TP/1.1\r\n")
    assert parser.error is not None and parser.error.status_hint == 501


def test_an_unknown_method_whose_line_never_ends_is_held_to_the_request_line_limit():
    parser = RequestParser(Limits(max_request_line=64))
    parser.feed(b"BREW /")
    for _ in range(10):
        parser.feed(b"a" * 16)
    assert parser.error is not None and parser.error.status_hint == 414


def test_a_method_refused_after_a_request_that_began_in_an_earlier_read_stays_400():
    """Where that message began is not known, so neither is its method: refused as malformed."""
    parser = RequestParser(Limits())
    parser.feed(POSTED[:-1])
    parser.feed(POSTED[-1:] + b"BREW / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert parser.next_request().url == b"/2"
    assert parser.error is not None and parser.error.status_hint == 400
