"""wire.decode_json against CPython's json: the same texts taken, the same values read.

Mutations of valid JSON (bytes inserted, deleted or replaced from an
alphabet of JSON's own characters, control bytes and pieces of UTF-8) are
fed to both. They must agree on every text, once CPython's json is made
strict where it is lenient by design: it takes NaN and Infinity, and lone
surrogate escapes. host_tests/dual/test_json_strict.py shows MicroPython
refusing the same texts with the same messages.
"""
import json
import random

from wpwithin import wire
from wpwithin.errors import ProtocolError

SEEDS = [
    b'{"a": [1, -2.5e+3, "x\\u00e9\\ud83d\\ude00", true, null, {}], "b": {"c": false}}',
    b'[0, 1.0, "\xc3\xa9\xf0\x9f\x98\x80", "\\"\\\\"]',
    b' "s" ',
    b'-0.5E-7',
    b'{"k\\udbff\\udfff": "\\ud800\\udc00"}',
]
ALPHABET = b'{}[]:,"\\ 0123456789.eE+-tfnrulaNIy\x00\x01\n\t\x7f\xc3\xa9\xed\xa0\x80\xf0\x9f\xc0\xff'
COUNT = 20000


def mutations(seed, count):
    rnd = random.Random(seed)
    for _ in range(count):
        text = bytearray(rnd.choice(SEEDS))
        for _ in range(rnd.randrange(1, 4)):
            i = rnd.randrange(len(text) + 1)
            op = rnd.randrange(3)
            if op == 0:
                text[i:i] = bytes([rnd.choice(ALPHABET)])
            elif i < len(text):
                if op == 1:
                    del text[i]
                else:
                    text[i] = rnd.choice(ALPHABET)
        yield bytes(text)


def _no_constants(name):
    raise ValueError("%s is not JSON" % name)


def cpython_reads(text):
    """(True, value) or (False, None): CPython's json made strict where it is lenient by design."""
    try:
        value = json.loads(text.decode("utf-8"), parse_constant=_no_constants)  # NaN, Infinity
        json.dumps(value, ensure_ascii=False).encode("utf-8")  # a lone surrogate cannot be encoded
    except ValueError:  # UnicodeDecodeError, UnicodeEncodeError and JSONDecodeError all
        return False, None
    return True, value


def test_the_check_agrees_with_cpythons_json_on_mutated_texts():
    refused = 0
    for text in mutations(20261202, COUNT):
        try:
            got = True, wire.decode_json(text, "body", None)
        except ProtocolError as exc:
            assert exc.status == 422 and exc.message.startswith("body is not valid "), exc.message
            got = False, None
        assert got == cpython_reads(text), (text, got, cpython_reads(text))
        refused += not got[0]
    assert 0 < refused < COUNT, refused  # both kinds were met
