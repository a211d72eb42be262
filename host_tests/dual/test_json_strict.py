"""Strict JSON: both runtimes refuse the same texts with 422 and read the same values from the rest.

MicroPython's json.loads alone takes every INVALID text below but the last few;
wire.decode_json checks RFC 8259 and RFC 3629 first, so a MicroPython producer
answers as a CPython one does. Each case is fed whole, as a memoryview (the
gateway client's answers), cut short at every byte, and with trailing bytes.
"""
import sys

from expect import refused

from wpwithin import consumer, wire

MICROPYTHON = sys.implementation.name == "micropython"

# (text, what the message says): every refusal names the problem and the byte it is at.
INVALID = [
    (b'{"a" 1}', "expected ':' at byte 5"),  # missing colon
    (b'{"a"::1}', "expected a value at byte 5"),  # double colon
    (b'{"a":1 "b":2}', "expected ',' or '}' at byte 7"),  # missing comma
    (b'[1 2]', "expected ',' or ']' at byte 3"),
    (b'{"a":1,}', "unexpected } at byte 7"),  # trailing comma
    (b'[1,]', "unexpected ] at byte 3"),
    (b'[1,,2]', "expected a value at byte 3"),
    (b'[,1]', "expected a value at byte 1"),
    (b'{,}', "expected a string key at byte 1"),
    (b'{"a":}', "unexpected } at byte 5"),
    (b'{1:2}', "expected a string key at byte 1"),
    (b"{'a':1}", "expected a string key at byte 1"),
    (b'[}', "unexpected } at byte 1"),
    (b'{]', "unexpected ] at byte 1"),
    (b'01', "leading zero at byte 0"),
    (b'[-01]', "leading zero at byte 2"),
    (b'1.', "expected a digit at byte 2"),
    (b'.5', "expected a value at byte 0"),
    (b'1e', "expected a digit at byte 2"),
    (b'[1e+]', "expected a digit at byte 4"),
    (b'+1', "expected a value at byte 0"),
    (b'-', "expected a digit at byte 1"),
    (b'NaN', "expected a value at byte 0"),  # CPython's json takes these three
    (b'Infinity', "expected a value at byte 0"),
    (b'-Infinity', "expected a digit at byte 1"),
    (b'tru', "expected a value at byte 0"),
    (b'"a\nb"', "control character in a string at byte 2"),  # a raw newline
    (b'"a\x01"', "control character in a string at byte 2"),
    (b'"a\x1f"', "control character in a string at byte 2"),
    (b'"\\x"', "bad escape at byte 1"),
    (b'"\\u00"', "\\u without 4 hex digits at byte 1"),
    (b'"\\u00g0"', "\\u without 4 hex digits at byte 1"),
    (b'"\\ud800"', "lone surrogate escape at byte 1"),
    (b'"\\udc00\\ud800"', "lone surrogate escape at byte 1"),
    (b'"\\ud800\\u0041"', "lone surrogate escape at byte 1"),
    (b'"ab\\udbff"', "lone surrogate escape at byte 3"),
    (b'"abc', "unterminated string at byte 0"),
    (b'{}\x00', "more after the value at byte 2"),  # a trailing NUL
    (b'{} {}', "more after the value at byte 3"),
    (b'[1]]', "more after the value at byte 3"),
    (b'', "unexpected end at byte 0"),
    (b' \r\n', "unexpected end at byte 3"),
    (b'\xef\xbb\xbf{}', "expected a value at byte 0"),  # a byte order mark
    (b'[' * 25 + b']' * 25, "nested deeper than 24 at byte 24"),
    (b'"\xc0\xaf"', "UTF-8 at byte 1"),  # overlong "/"
    (b'"\xe0\x80\x80"', "UTF-8 at byte 1"),  # overlong U+0000
    (b'"\xf0\x80\x80\xaf"', "UTF-8 at byte 1"),
    (b'"\xed\xa0\x80"', "UTF-8 at byte 1"),  # a surrogate in UTF-8
    (b'"\xed\xbf\xbf"', "UTF-8 at byte 1"),
    (b'"\xf4\x90\x80\x80"', "UTF-8 at byte 1"),  # above U+10FFFF
    (b'"a\x80"', "UTF-8 at byte 2"),  # a stray continuation byte
    (b'"\xe2\x82"', "UTF-8 at byte 1"),  # cut short
    (b'"\xff\xfe"', "UTF-8 at byte 1"),
    (b'{"a\xf5":1}', "UTF-8 at byte 3"),
]

# (text, the value): edge cases of what is valid, read alike by both runtimes.
VALID = [
    (b'{}', {}),
    (b'[]', []),
    (b' \t\r\n{ "a" : [ 1 , -2 ] }\r\n', {"a": [1, -2]}),
    (b'{"a":{"b":[[],{}]},"c":[{"d":null}]}', {"a": {"b": [[], {}]}, "c": [{"d": None}]}),
    (b'[0,-0,10,1000000000,-1000000000]', [0, 0, 10, 1000000000, -1000000000]),
    (b'[0.5,-2.5e+3,1E5,1e-2,0.0E0]', [0.5, -2500.0, 100000.0, 0.01, 0.0]),
    (b'[true,false,null]', [True, False, None]),
    (b'"\\"\\\\\\/\\b\\f\\n\\r\\t"', '"\\/\b\f\n\r\t'),
    (b'"\\u00e9\\u20AC\\u0000\\uFFFF"', "\u00e9\u20ac\x00\uffff"),
    (b'"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf"', "caf\u00e9 \u20ac \U0001F600 \U0010FFFF"),
    (b'"\\ud83d\\ude00"', "\U0001F600"),  # CPython's json.dumps writes U+1F600 so
    (b'{"k\\ud800\\udc00":"a\\udbff\\udfffb"}', {"k\U00010000": "a\U0010FFFFb"}),
    (b'"\\\\ud800"', "\\ud800"),  # an escaped backslash, then text: no surrogate
    (b'"\x7f"', "\x7f"),
    (b'"[{"', "[{"),
]


def test_invalid_json_is_422_naming_the_problem_and_the_byte():
    for text, what in INVALID:
        msg = refused(422, wire.decode_json, text, "body", None)
        assert msg.startswith("body is not valid ") and msg.endswith(what), (text, msg)


def test_valid_edge_cases_read_the_same_on_both_runtimes():
    for text, value in VALID:
        got = wire.decode_json(text, "body", None)
        assert got == value and type(got) is type(value), (text, got)


def test_a_memoryview_is_checked_alike():
    for text, what in INVALID:
        assert refused(422, wire.decode_json, memoryview(text), "gateway answer", None).endswith(what)
    for text, value in VALID:
        assert wire.decode_json(memoryview(text), "gateway answer", None) == value, text


def test_cut_short_at_any_byte_or_with_bytes_after_it_is_refused():
    for text, _ in VALID:
        for end in range(len(text.rstrip())):  # every VALID text is a container or a string
            refused(422, wire.decode_json, text[:end], "body", None)
        for after in (b"x", b"\x00", b",", b"]", b"}", b'"', b"1"):
            refused(422, wire.decode_json, text + after, "body", None)


def test_surrogate_pairs_become_the_character_not_two_halves():
    # MicroPython's json alone makes "\ud83d\ude00" two surrogates: bytes no CPython journal
    # reader accepts. Decoded here it is the one character, 4 bytes of UTF-8 on both runtimes.
    got = wire.decode_json(b'{"clientID": "car-\\ud83d\\ude97-\\ud83d\\ude97"}')["clientID"]
    assert got == "car-\U0001F697-\U0001F697" and len(got) == 7
    assert got.encode() == b"car-\xf0\x9f\x9a\x97-\xf0\x9f\x9a\x97"


def test_the_messages_every_thing_sends_pass_the_check():
    token = wire.delivery_token("00112233445566778899aabbccddeeff", "2026-11-27T00:00:00Z",
                                "2026-12-04T00:00:00Z", True, None)
    for message in (consumer.total_request("adv-caf\u00e9-\u20ac", 5, 1), consumer.begin_request("c1", token, 2),
                    wire.error(404, "Service not found for id 9"),
                    wire.price_list("s", [wire.price_entry(1, "p", 30, "GBP", 1, "kWh")])):
        assert wire.decode_json(wire.encode_json(message), "body", None) == message


def test_the_check_allocates_nothing_on_micropython():
    body = (b'{"clientID": "adv-caf\xc3\xa9", "serviceDeliveryToken": {"key": "00112233", "issued": '
            b'"2026-11-27T00:00:00Z", "expiry": "\\u0032026", "refundOnExpiry": false, "signature": null},'
            b' "unitsToSupply": 12, "x": [-1.5e3, true]}')
    view = memoryview(body)
    assert wire._check_json(body, "body") == 0
    if MICROPYTHON:
        import micropython
        micropython.heap_lock()
        try:
            pairs = wire._check_json(body, "body")
            pairs += wire._check_json(view, "body")
        finally:
            micropython.heap_unlock()
        assert pairs == 0


def test_a_gateway_answer_goes_through_the_same_check():
    from wpwithin import gateway_client
    answer, problem = gateway_client._decoded(memoryview(b'{"paymentStatus": "SUCCESS",}'))
    assert answer is None and problem == "gateway answer is not valid JSON: unexpected } at byte 28", problem
    answer, problem = gateway_client._decoded(memoryview(b'{"name": "\\ud83d\\ude97"}'))
    assert answer == {"name": "\U0001F697"} and problem is None
