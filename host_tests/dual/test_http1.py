"""HTTP/1.1 framing: request heads, response heads, chunked bodies, response-head bytes.

Every parser input is fed three ways: whole, one byte at a time (in a buffer
whose bytes past `end` are junk the parser must not see), and with trailing
data after it; each refusal is checked for its status all three ways.
"""
import sys

from expect import raises, refused

from wpwithin import http1, http_client
from wpwithin.errors import ProtocolError

MICROPYTHON = sys.implementation.name == "micropython"
NEXT = b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n"
GO_POST = (b"POST /service/1/requestTotal HTTP/1.1\r\nHost: 127.0.0.1:64521\r\n"
           b"User-Agent: Go-http-client/1.1\r\nContent-Length: 61\r\n"
           b"Content-Type: application/json\r\nAccept-Encoding: gzip\r\n\r\n")
SMALL = http1.Limits(request_line=32, header_block=64, headers=3, body=10)


def _junk_buffer(size):
    return bytearray(b"\n\r:" * (size // 3 + 1))


def _bytewise(make, data, junk=True):
    """Feed data one byte at a time; returns (result, parser) at the first non-None result."""
    parser = make()
    buf = _junk_buffer(len(data) + 8) if junk else bytearray(len(data))
    for end in range(1, len(data) + 1):
        buf[end - 1] = data[end - 1]
        result = parser.parse(buf, 0, end)
        if result is not None:
            assert end == len(data), (end, len(data))
            return result, parser
    raise AssertionError("head never completed")


def three_ways(make, data, trailing=NEXT):
    """Parse data whole, byte by byte and followed by trailing data; all must agree."""
    whole = make()
    first = whole.parse(data)
    assert first is not None
    assert whole.consumed == len(data), (whole.consumed, len(data))
    second, bytewise = _bytewise(make, data)
    assert second == first, (second, first)
    assert bytewise.consumed == len(data)
    padded = make()
    offset = b"xyz"
    third = padded.parse(offset + data + trailing, len(offset))
    assert third == first, (third, first)
    assert padded.consumed == len(data)
    return first, whole


def refused_three_ways(status, make, data, trailing=NEXT):
    """The same refusal whole, byte by byte and with trailing data; returns the message."""
    message = refused(status, make().parse, data)
    exc = raises(ProtocolError, _bytewise, make, data)
    assert exc.status == status, (exc.status, exc.message)
    exc = raises(ProtocolError, make().parse, data + trailing)
    assert exc.status == status, (exc.status, exc.message)
    return message


def request(limits=None):
    return lambda: http1.RequestParser(limits)


def response(limits=None, head=False):
    def make():
        parser = http_client.ResponseParser(limits)
        parser.head_request = head
        return parser
    return make


# --- request heads: accepted ---------------------------------------------------------

def test_go_client_post_is_parsed():
    (method, target, headers), p = three_ways(request(), GO_POST)
    assert method == "POST" and target == "/service/1/requestTotal"
    assert headers == {"host": "127.0.0.1:64521", "content-type": "application/json"}
    assert p.content_length == 61 and p.keep_alive and not p.http10 and not p.expect_continue


def test_get_without_length_has_empty_body_and_keeps_alive():
    (method, target, headers), p = three_ways(request(), b"GET /service/discover?x=1 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (method, target) == ("GET", "/service/discover?x=1")
    assert p.content_length == 0 and p.keep_alive


def test_header_names_are_case_insensitive_and_values_trimmed():
    data = b"POST / HTTP/1.1\r\nhOsT:h\r\nCONTENT-LENGTH: \t 3 \t\r\ncontent-TYPE:  a/b  \r\nAuthorization: T_S_1\r\n\r\n"
    (_, _, headers), p = three_ways(request(), data)
    assert headers == {"host": "h", "content-type": "a/b", "authorization": "T_S_1"}
    assert p.content_length == 3


def test_connection_close_and_http10_do_not_keep_alive():
    _, p = three_ways(request(), b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Close\r\n\r\n")
    assert not p.keep_alive
    (_, _, headers), p = three_ways(request(), b"GET / HTTP/1.0\r\n\r\n")
    assert p.http10 and not p.keep_alive and headers == {}


def test_other_http1_minor_versions_are_served_as_1_1():
    _, p = three_ways(request(), b"GET / HTTP/1.7\r\nHost: h\r\n\r\n")
    assert p.keep_alive and not p.http10


def test_identical_repeated_content_length_is_accepted():
    _, p = three_ways(request(), b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n")
    assert p.content_length == 4


def test_expect_100_continue_is_noted():
    _, p = three_ways(request(), b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 4\r\n\r\n")
    assert p.expect_continue


def test_other_methods_are_tokens():
    (method, _, _), _ = three_ways(request(), b"M-SEARCH / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert method == "M-SEARCH"


def test_unknown_headers_are_skipped_even_with_odd_bytes():
    data = b"GET / HTTP/1.1\r\nHost: h\r\nX-Odd: \x01\xff\r\n\r\n"
    (_, _, headers), _ = three_ways(request(), data)
    assert headers == {"host": "h"}


def test_limits_allow_exactly_their_size():
    line = b"GET /" + b"a" * (32 - len(b"GET / HTTP/1.1")) + b" HTTP/1.1\r\n"
    assert len(line) == 34
    block = b"Host: h\r\nA: 1\r\nB: " + b"b" * 42 + b"\r\n\r\n"
    assert len(block) == 64, len(block)
    _, p = three_ways(request(SMALL), line + block)
    assert p.consumed == 98
    refused_three_ways(414, request(SMALL), line.replace(b"/", b"/a") + block)
    refused_three_ways(431, request(SMALL), line + block.replace(b"B: ", b"B: b"))


def test_parser_is_reused_after_reset():
    p = http1.RequestParser()
    data = GO_POST + b"x" * 61 + NEXT
    assert p.parse(data)[0] == "POST"
    start = p.consumed + 61
    p.reset()
    assert p.parse(data, start) == ("GET", "/next", {"host": "a"})
    assert p.consumed == len(NEXT)


# --- request heads: refused ---------------------------------------------------------------

def test_request_line_too_long_is_414():
    data = b"GET /" + b"a" * 40 + b" HTTP/1.1\r\nHost: h\r\n\r\n"
    assert "32" in refused_three_ways(414, request(SMALL), data)


def test_request_line_too_long_is_refused_before_its_end_arrives():
    assert refused(414, http1.RequestParser(SMALL).parse, b"GET /" + b"a" * 29) is not None
    assert http1.RequestParser(SMALL).parse(b"GET /" + b"a" * 28) is None


def test_header_block_too_large_is_431():
    data = b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"x" * 60 + b"\r\n\r\n"
    refused_three_ways(431, request(SMALL), data)


def test_too_many_headers_is_431():
    data = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"
    assert "3" in refused_three_ways(431, request(SMALL), data)


def test_body_larger_than_limit_is_413():
    refused_three_ways(413, request(SMALL), b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n")


def test_post_without_content_length_is_411():
    message = refused_three_ways(411, request(), b"POST /payment HTTP/1.1\r\nHost: h\r\n\r\n")
    assert "Content-Length" in message


def test_chunked_request_is_411_saying_content_length_is_required():
    data = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert "Content-Length" in refused_three_ways(411, request(), data)


def test_other_transfer_coding_is_501():
    data = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n"
    assert "Content-Length" in refused_three_ways(501, request(), data)


def test_transfer_encoding_with_content_length_is_400():
    data = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    refused_three_ways(400, request(), data)


def test_conflicting_content_lengths_are_400():
    data = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"
    assert "conflicting" in refused_three_ways(400, request(), data)


def test_bad_content_length_values_are_400():
    for value in (b"-1", b"+1", b"abc", b"1 2", b"", b"0x10", b"12345678901", b"3,3", b"\xd9\xa3"):
        data = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: " + value + b"\r\n\r\n"
        refused_three_ways(400, request(), data)


def test_obs_fold_is_400():
    data = b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  continued\r\n\r\n"
    assert "obs-fold" in refused_three_ways(400, request(), data)


def test_whitespace_before_first_header_is_400():
    refused_three_ways(400, request(), b"GET / HTTP/1.1\r\n Host: h\r\n\r\n")


def test_bare_lf_is_400():
    refused_three_ways(400, request(), b"GET / HTTP/1.1\nHost: h\r\n\r\n")
    refused_three_ways(400, request(), b"GET / HTTP/1.1\r\nHost: h\n\r\n")
    refused_three_ways(400, request(), b"GET / HTTP/1.1\r\nHost: h\r\n\n")


def test_stray_cr_is_400():
    refused_three_ways(400, request(), b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n")
    refused_three_ways(400, request(), b"GET /\r HTTP/1.1\r\nHost: h\r\n\r\n")


def test_header_without_colon_is_400():
    assert "colon" in refused_three_ways(400, request(), b"GET / HTTP/1.1\r\nHost h\r\n\r\n")


def test_whitespace_before_colon_is_400():
    assert "before the colon" in refused_three_ways(400, request(), b"GET / HTTP/1.1\r\nHost : h\r\n\r\n")
    refused_three_ways(400, request(), b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length\t: 1\r\n\r\n")


def test_whitespace_inside_name_and_empty_name_are_400():
    refused_three_ways(400, request(), b"GET / HTTP/1.1\r\nHost: h\r\nX Y: 1\r\n\r\n")
    refused_three_ways(400, request(), b"GET / HTTP/1.1\r\nHost: h\r\n: 1\r\n\r\n")


def test_invalid_method_is_400():
    for method in (b"G@T", b"GE(T", b"G\x01T", b"G\xc3\xa9T"):
        refused_three_ways(400, request(), method + b" / HTTP/1.1\r\nHost: h\r\n\r\n")


def test_malformed_request_lines_are_400():
    for line in (b"GET /", b"GET / HTTP/1.1 extra", b"GET  / HTTP/1.1", b" / HTTP/1.1", b"GET / http/1.1",
                 b"GET / HTTP/1", b"GET / HTTP/1.10", b"GET / HTTP/x.1", b"GET / HTTPS1.1", b""):
        refused_three_ways(400, request(), line + b"\r\nHost: h\r\n\r\n")


def test_non_http1_versions_are_505():
    for version in (b"HTTP/2.0", b"HTTP/0.9", b"HTTP/3.0"):
        refused_three_ways(505, request(), b"GET / " + version + b"\r\nHost: h\r\n\r\n")


def test_only_printable_path_targets_are_served():
    for target in (b"*", b"http://h/", b"/a\x7fb", b"/caf\xc3\xa9", b"/a\x00"):
        refused_three_ways(400, request(), b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n")


def test_missing_or_repeated_host_is_400():
    refused_three_ways(400, request(), b"GET / HTTP/1.1\r\n\r\n")
    refused_three_ways(400, request(), b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")


def test_control_characters_in_kept_values_are_400():
    refused_three_ways(400, request(), b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n")
    refused_three_ways(400, request(), b"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: \xc3\xa9\r\n\r\n")


def test_unsupported_expectation_is_417():
    refused_three_ways(417, request(), b"POST / HTTP/1.1\r\nHost: h\r\nExpect: magic\r\nContent-Length: 1\r\n\r\n")


def test_limits_must_be_sane():
    raises(ValueError, http1.Limits, request_line=0)
    raises(ValueError, http1.Limits, body="10")
    raises(ValueError, http1.Limits, request_line=8)


# --- response heads ------------------------------------------------------------------------

def test_response_with_length():
    data = b"HTTP/1.1 200 OK\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: 5\r\n\r\n"
    (status, headers), p = three_ways(response(), data, trailing=b"hello")
    assert status == 200 and p.length == 5 and p.keep_alive
    assert headers == {"content-type": "application/json;charset=UTF-8"}


def test_response_framings():
    cases = [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", -1, True),  # chunked,
        (b"HTTP/1.1 200 OK\r\n\r\n", -2, False),  # until close,
        (b"HTTP/1.1 204 No Content\r\n\r\n", 0, True),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", 0, True),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", 2, False),
        (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 2\r\n\r\n", 2, False),
        (b"HTTP/1.1 201\r\nContent-Length: 0\r\n\r\n", 0, True),
        (b"HTTP/1.1 100 Continue\r\n\r\n", 0, True),
    ]
    for data, length, keep_alive in cases:
        _, p = three_ways(response(), data)
        assert (p.length, p.keep_alive) == (length, keep_alive), data


def test_response_to_head_has_no_body():
    _, p = three_ways(response(head=True), b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n")
    assert p.length == 0


def test_bad_responses_are_502():
    limits = http1.Limits(body=100)
    for data in (
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 099 Low\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: 1\r\n folded\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 25 + b"\r\n",
    ):
        refused_three_ways(502, response(limits), data)


def test_long_status_line_is_502():
    refused_three_ways(502, response(), b"HTTP/1.1 200 " + b"O" * 300 + b"\r\n\r\n")


# --- chunked bodies ------------------------------------------------------------------------

CHUNKED = b"5\r\nhello\r\n6;name=value\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"


def _decode_steps(data, step, limit=100):
    """Feed `step` bytes more each time, keeping what the decoder left unused."""
    decoder = http_client.ChunkedBody(limit)
    pending = b""
    pos = 0
    while not decoder.done:
        if pos >= len(data):
            raise AssertionError("decoder never finished")
        pending += data[pos:pos + step]
        pos += step
        used = decoder.feed(pending, 0, len(pending))
        pending = pending[used:]
    return bytes(decoder.body), pending + data[pos:]


def test_chunked_body_whole_bytewise_and_with_trailing_data():
    assert _decode_steps(CHUNKED, len(CHUNKED)) == (b"hello world", b"")
    assert _decode_steps(CHUNKED, 1) == (b"hello world", b"")
    assert _decode_steps(CHUNKED + b"HTTP/1.1", len(CHUNKED) + 8) == (b"hello world", b"HTTP/1.1")
    assert _decode_steps(b"A\r\n0123456789\r\n0\r\n\r\n", 3) == (b"0123456789", b"")


def test_bad_chunked_bodies_are_502():
    for data in (b"x\r\n", b"5\nhello\r\n", b"5\r\nhelloXX\r\n", b"\r\n", b"123456789\r\n",
                 b"65\r\n", b"1" * 200, b"0\r\n" + b"T: v\r\n" * 400):
        exc = raises(ProtocolError, _decode_steps, data + b"\r\n" * 3, len(data) + 6)
        assert exc.status == 502, data
        exc = raises(ProtocolError, _decode_steps, data + b"\r\n" * 3, 1)
        assert exc.status == 502, data


# --- response-head bytes ------------------------------------------------------------------------

def test_response_head_bytes_are_exact():
    assert http1.response_head(200, 12) == (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: 12\r\n\r\n")
    assert http1.response_head(503, 0, close=True) == (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json;charset=UTF-8\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n")
    assert http1.response_head(299, 1234567890) == (
        b"HTTP/1.1 299 \r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: 1234567890\r\n\r\n")
    assert http1.response_head(413, 9).startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n")
    raises(ValueError, http1.response_head, 99, 0)
    raises(ValueError, http1.response_head, 200, -1)


# Go's net/http StatusText for every status a Thing may send.
GO_REASONS = {
    200: "OK", 400: "Bad Request", 402: "Payment Required", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 409: "Conflict", 410: "Gone", 411: "Length Required", 413: "Request Entity Too Large",
    414: "Request URI Too Long", 417: "Expectation Failed", 422: "Unprocessable Entity",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
}


def test_every_status_a_thing_sends_has_gos_reason_phrase():
    # test_status_table.py reads the statuses sent from the code and checks they are these keys.
    for status in GO_REASONS:
        head = http1.response_head(status, 0)
        assert head.startswith(b"HTTP/1.1 %d %s\r\n" % (status, GO_REASONS[status].encode())), head


def test_response_heads_parse_back():
    for status in (200, 400, 404, 411, 413, 422, 431, 500, 503, 505):
        data = http1.response_head(status, 7, close=status >= 500)
        (got, headers), p = three_ways(response(), data)
        assert got == status and p.length == 7 and p.keep_alive == (status < 500)


def test_writing_a_response_head_allocates_nothing():
    buf = bytearray(http1.HEAD_ROOM)
    n = http1.write_response_head(buf, 422, 77, True)  # first call may intern
    if MICROPYTHON:
        import micropython
        micropython.heap_lock()
        try:
            n = http1.write_response_head(buf, 422, 77, True)
        finally:
            micropython.heap_unlock()
    assert bytes(buf[:n]) == http1.response_head(422, 77, True)


def test_parsing_a_go_request_head_allocates_little():
    if not MICROPYTHON:
        return  # gc.mem_alloc() is MicroPython's
    import gc
    buf = bytearray(http1.DEFAULT_LIMITS.buffer)
    buf[0:len(GO_POST)] = GO_POST
    parser = http1.RequestParser()
    parser.parse(buf, 0, len(GO_POST))
    gc.collect()
    before = gc.mem_alloc()
    parser.reset()
    parser.parse(buf, 0, len(GO_POST))
    used = gc.mem_alloc() - before
    # path + two header values + the dict, on the 64-bit unix port
    assert used <= 640, used


def test_the_client_refuses_a_request_it_could_not_send_as_given():
    import asyncio

    def refusal(method, path, headers=None):
        conn = http_client.Connection("127.0.0.1", 9)  # checked before connecting: nothing listens there
        try:
            asyncio.run(conn.request(method, path, None, headers))
        except ValueError as exc:
            return str(exc)
        return None

    assert refusal("GE T", "/") == refusal("", "/") == refusal("G\u00e9T", "/") == "method must be an HTTP token"
    assert "printable ASCII" in refusal("GET", "/a\u00e9")
    assert "printable ASCII" in refusal("GET", "/a\x01b")
    for name, value in (("X Y", "1"), ("X-Y", "1\r\nInjected: yes"), ("X-\u00e9", "1"), ("X-Y", "caf\u00e9")):
        assert refusal("GET", "/", {name: value}) == "header %s has a bad name or value" % name, (name, value)
    # legal ones get as far as connecting (refused there: a NetError, not a ValueError)
    for method, headers in (("PATCH", {"X-Key_1~!": "a\tb \"c\" ;=,"}), ("M-SEARCH", {"Accept": ""})):
        try:
            said = refusal(method, "/ok?q=1", headers)
        except http_client.NetError:
            said = None
        assert said is None, (method, headers, said)
