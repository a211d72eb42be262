"""Fuzzing the request-head parser (hypothesis): strict answers, never a crash, same result in any chunking."""
from hypothesis import given, settings, strategies as st

from wpwithin.errors import ProtocolError
from wpwithin.http1 import RequestParser

STATUSES = {400, 411, 413, 414, 417, 431, 501, 505}

LINES = st.sampled_from([
    b"GET /service/discover HTTP/1.1", b"POST /payment HTTP/1.1", b"GET /../../etc/passwd HTTP/1.1",
    b"GET /service/%2e%2e/prices HTTP/1.1", b"GET http://x/ HTTP/1.1", b"BREW / HTTP/1.1", b"GET / HTTP/2.0",
    b"GET / HTTP/1.0", b"GET  / HTTP/1.1", b"G\xffT / HTTP/1.1", b"GET /\x00 HTTP/1.1", b"", b" ",
])
HEADERS = st.sampled_from([
    b"Host: 127.0.0.1:64521", b"Content-Length: 12", b"Content-Length: -1", b"Content-Length: 99999999999",
    b"Content-Length: 1, 2", b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip", b"Connection: close",
    b"Expect: 100-continue", b"Expect: sleep", b" folded", b"Bad Name: x", b"NoColon", b"X: \xff\xfe",
    b"Content-Type: application/json", b"X-" + b"a" * 3000 + b": y",
])


@st.composite
def heads(draw):
    lines = [draw(LINES)] + draw(st.lists(HEADERS, max_size=30))
    ending = draw(st.sampled_from([b"\r\n", b"\n", b"\r"]))
    return ending.join(lines) + ending + ending + draw(st.binary(max_size=20))


def parse_whole(data):
    parser = RequestParser()
    try:
        return ("ok", parser.parse(bytearray(data)), parser.consumed, parser.content_length)
    except ProtocolError as exc:
        assert exc.status in STATUSES, (exc.status, exc.message)
        assert exc.message
        return ("refused", exc.status)


def parse_bytewise(data):
    parser = RequestParser()
    buf = bytearray()
    try:
        for i in range(len(data)):
            buf.append(data[i])
            result = parser.parse(buf)
            if result is not None:
                return ("ok", result, parser.consumed, parser.content_length)
        return ("ok", None, parser.consumed, parser.content_length)
    except ProtocolError as exc:
        return ("refused", exc.status)


@settings(max_examples=400)
@given(heads())
def test_structured_heads_are_parsed_or_refused_the_same_way_in_any_chunking(data):
    whole = parse_whole(data)
    bytewise = parse_bytewise(data)
    if whole[0] == "refused" or whole[1] is not None:
        assert bytewise == whole
    else:
        assert bytewise[0] == "ok" and bytewise[1] is None


@settings(max_examples=400)
@given(st.binary(max_size=600))
def test_random_bytes_never_crash_the_parser(data):
    parse_whole(data)
