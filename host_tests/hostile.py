"""Hostile HTTP requests for a producer, and a strict reader of what it answers.

request(rnd) builds one request from a random.Random-like `rnd`: hypothesis
drives it with st.randoms() on CPython, and corpus(seed, n) replays the
same generator with a seeded random.Random against the MicroPython
producer, so both runtimes meet the same kinds of input. The pieces:
malformed request lines and methods, path tricks, huge, endless or broken
headers, wrong, missing or contradictory Content-Length, chunked bodies,
invalid UTF-8, deep or huge JSON, every route's fields with wrong types,
negative, zero and huge numbers, and unknown IDs; sometimes two requests
in one write, sometimes one cut short.

answers(data) splits what a producer sent back into (status, body) pairs
and raises BadAnswer for anything that is not a well-formed HTTP/1.1
response with a JSON body (an error body in the reference's shape for
every status from 400 on).
"""
import json
import re

ROUTES = [
    ("GET", "/service/discover", None),
    ("GET", "/service/1/prices", None),
    ("POST", "/service/1/requestTotal", ("clientID", "selectedNumberOfUnits", "selectedPriceID")),
    ("POST", "/payment", ("clientID", "clientToken", "paymentReferenceID")),
    ("POST", "/service/1/delivery/begin", ("clientID", "serviceDeliveryToken", "unitsToSupply")),
    ("POST", "/service/1/delivery/end", ("clientID", "serviceDeliveryToken", "unitsReceived")),
]
METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "BREW", "get", "P\xd3ST", "", "GET GET"]
PATH_TRICKS = [
    "/service/../service/discover", "/service/%2e%2e/prices", "//service/discover", "/service/1/prices?x=1&y",
    "/service/99999999999999999999999/prices", "/service/-1/prices", "/service/0/prices", "/service/1.5/prices",
    "/service/\xff\xfe/prices", "/SERVICE/discover", "/service/discover/", "/" + "a" * 300, "/service//prices",
    "/service/1/delivery/begin/../end", "http://evil.example/service/discover", "*", "", "/payment/",
    "/service/2/requestTotal", "/service/7/delivery/end", "/service/1%00/prices", "/service/1/prices#x",
]
VERSIONS = ["HTTP/1.1"] * 40 + ["HTTP/1.0", "HTTP/2.0", "HTTP/9.9", "HTTP/1.1 extra", "", "http/1.1"]
HEADERS = [
    "Host: 127.0.0.1", "Connection: close", "Connection: keep-alive", "Content-Type: application/json",
    "Transfer-Encoding: chunked", "Transfer-Encoding: gzip, chunked", "Expect: 100-continue", "Expect: sleep",
    " folded continuation", "Bad Name: x", "NoColon", "X-Bytes: \xff\xfe\x00", "Content-Length: -1",
    "Content-Length: 99999999999999999999", "Content-Length: 1, 2", "Content-Length: abc", "Content-Length:",
    "Content-Length: 0x10", "X-Long: " + "y" * 3000, ": empty name",
]
NUMBERS = [0, -1, 1, 2, 7, 100, 101, 2 ** 31, 2 ** 63, 2 ** 64 + 1, 10 ** 40, -10 ** 40, 1.5, -0.0, 1e308, "1", "",
           None, True, False, [], {}]
# requestTotal bodies that are not strict JSON (or not UTF-8), each with the end of the message a
# producer refuses it with (422) on either runtime. MicroPython's json alone takes all but the
# last (NaN, which CPython's takes).
NOT_STRICT_JSON = [
    (b'{"clientID" "c", "selectedNumberOfUnits": 1, "selectedPriceID": 1}', "expected ':' at byte 12"),
    (b'{"clientID":: "c", "selectedNumberOfUnits": 1, "selectedPriceID": 1}', "expected a value at byte 12"),
    (b'{"clientID": "c" "selectedNumberOfUnits": 1, "selectedPriceID": 1}', "expected ',' or '}' at byte 17"),
    (b'{"clientID": "c", "selectedNumberOfUnits": 1, "selectedPriceID": 1,}', "unexpected } at byte 67"),
    (b'{"clientID": "c", "selectedNumberOfUnits": 01, "selectedPriceID": 1}', "leading zero at byte 43"),
    (b'{"clientID": "c\n", "selectedNumberOfUnits": 1, "selectedPriceID": 1}',
     "control character in a string at byte 15"),
    (b'{"clientID": "c\x01", "selectedNumberOfUnits": 1, "selectedPriceID": 1}',
     "control character in a string at byte 15"),
    (b'{"clientID": "c", "selectedNumberOfUnits": 1, "selectedPriceID": 1}\x00', "more after the value at byte 67"),
    (b'{"clientID": "c\xc0\xaf", "selectedNumberOfUnits": 1, "selectedPriceID": 1}', "not valid UTF-8 at byte 15"),
    (b'{"clientID": "c\xed\xa0\x80", "selectedNumberOfUnits": 1, "selectedPriceID": 1}', "not valid UTF-8 at byte 15"),
    (b'{"clientID": "c\\ud800", "selectedNumberOfUnits": 1, "selectedPriceID": 1}', "lone surrogate escape at byte 15"),
    (b'{"clientID": "c", "selectedNumberOfUnits": NaN, "selectedPriceID": 1}', "expected a value at byte 43"),
]
STRINGS = ["", "x", "car-7", "T_C_not-a-key", "\u0000", "\u2603" * 40, "a" * 3000, "00000000-0000-4000-8000-000000000000",
           0, -1, None, True, [], {}, {"key": "x"}]


def _value(rnd, name):
    if rnd.random() < 0.15:
        return _nested(rnd, rnd.choice((2, 8, 40, 300)))
    if name in ("selectedNumberOfUnits", "selectedPriceID", "unitsToSupply", "unitsReceived"):
        return rnd.choice(NUMBERS)
    if name == "serviceDeliveryToken":
        token = {"key": rnd.choice(STRINGS), "issued": rnd.choice(STRINGS + ["2026-01-01T00:00:00Z"]),
                 "expiry": rnd.choice(STRINGS + ["2099-01-01T00:00:00Z", "1970-01-01T00:00:00Z"]),
                 "refundOnExpiry": rnd.choice([True, False, None, 1]), "signature": rnd.choice(STRINGS + ["AAAA"])}
        for key in list(token):
            if rnd.random() < 0.2:
                del token[key]
        return rnd.choice([token, token, rnd.choice(STRINGS)])
    return rnd.choice(STRINGS)


def _nested(rnd, depth):
    obj = rnd.choice([0, "x", None])
    for _ in range(depth):
        obj = [obj] if rnd.random() < 0.5 else {"a": obj}
    return obj


def _json_body(rnd, fields):
    obj = {}
    for name in fields or ("clientID",):
        if rnd.random() < 0.85:
            key = name if rnd.random() < 0.8 else rnd.choice([name.lower(), name.upper(), name + " ", "x" + name])
            obj[key] = _value(rnd, name)
    for _ in range(rnd.choice((0, 0, 0, 1, 40))):
        obj["extra%d" % rnd.randrange(10 ** 6)] = rnd.choice(NUMBERS)
    if rnd.random() < 0.05:
        return b'{"clientID": ' * 1000 + b"1" + b"}" * 1000  # deeper than json.dumps goes
    return json.dumps(rnd.choice([obj] * 6 + [[obj], rnd.choice(NUMBERS)])).encode()


def _body(rnd, fields):
    kind = rnd.random()
    if kind < 0.6:
        return _json_body(rnd, fields)
    if kind < 0.7:
        body = _json_body(rnd, fields)
        return body[:rnd.randrange(len(body) + 1)]  # cut short
    if kind < 0.8:
        return bytes(rnd.randrange(256) for _ in range(rnd.randrange(64)))
    if kind < 0.83:
        return b'{"clientID": "\xff\xfe\xc0\x80"}'  # invalid UTF-8
    if kind < 0.85:
        return rnd.choice(NOT_STRICT_JSON)[0]
    if kind < 0.9:
        return b"[" * 5000 + b"]" * 5000
    if kind < 0.95:
        return b'{"clientID": "' + b"z" * rnd.choice((1500, 2100, 9000)) + b'"}'
    return b""


def request(rnd):
    """One hostile request as bytes."""
    method, path, fields = rnd.choice(ROUTES)
    if rnd.random() < 0.2:
        method = rnd.choice(METHODS)
    if rnd.random() < 0.3:
        path = rnd.choice(PATH_TRICKS)
    version = rnd.choice(VERSIONS)
    body = _body(rnd, fields) if method == "POST" or rnd.random() < 0.1 else b""
    headers = ["Host: 127.0.0.1"]
    length = rnd.random()
    if length < 0.7:
        headers.append("Content-Length: %d" % len(body))
    elif length < 0.8:
        headers.append("Content-Length: %d" % max(0, len(body) + rnd.choice((-5, -1, 1, 50))))
    elif length < 0.85:
        headers += ["Content-Length: %d" % len(body)] * 2
    # else: no Content-Length at all
    for _ in range(rnd.choice((0, 0, 1, 2, 40))):
        headers.append(rnd.choice(HEADERS))
    end = rnd.choice(["\r\n"] * 16 + ["\n", "\r"])
    line = " ".join(part for part in (method, path, version) if part or rnd.random() < 0.5)
    head = end.join([line] + headers) + end
    if rnd.random() > 0.05:  # else: a head that never ends
        head += end
    data = head.encode("latin-1") + body
    if rnd.random() < 0.05:
        data = data[:rnd.randrange(len(data) + 1)]
    if rnd.random() < 0.05:
        data += b"GET /service/discover HTTP/1.1\r\nHost: x\r\n\r\n"  # a second request in the same write
    return data


def corpus(seed, count):
    """`count` hostile requests from a seeded generator: the same bytes on every run."""
    import random

    rnd = random.Random(seed)
    return [request(rnd) for _ in range(count)]


class BadAnswer(AssertionError):
    pass


_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([1-5][0-9][0-9]) [^\r\n]*\r\n")


def answers(data, head=False):
    """[(status, body object)] of every response in `data`; BadAnswer if any is malformed or cut short.

    head: the first request was a HEAD, whose answer has a Content-Length but no body (body None);
    unless the head was refused as malformed, when the method is not to be trusted and the error
    (with its body) ends the connection.
    """
    out = []
    while data:
        match = _STATUS_LINE.match(data)
        if not match:
            raise BadAnswer("not a status line: %r" % data[:80])
        status = int(match.group(1))
        end = data.find(b"\r\n\r\n", match.end() - 2)
        if end < 0:
            raise BadAnswer("a head that never ends: %r" % data[:200])
        if status < 200:  # an interim answer (100 Continue): a head alone
            data = data[end + 4:]
            continue
        length = None
        for line in data[match.end():end].split(b"\r\n"):
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise BadAnswer("a bad header line %r" % line)
            if name.lower() == b"content-length":
                length = int(value.strip())
        if length is None:
            raise BadAnswer("no Content-Length: %r" % data[:end])
        if head and not out and len(data) != end + 4 + length:
            out.append((status, None))
            data = data[end + 4:]
            continue
        body = data[end + 4:end + 4 + length]
        if len(body) != length:
            raise BadAnswer("body cut short: %d of %d bytes" % (len(body), length))
        try:
            obj = json.loads(body)
        except ValueError:
            raise BadAnswer("a body that is not JSON: %r" % body[:200])
        if status >= 400 and not (isinstance(obj, dict) and obj.get("HTTPStatusCode") == status
                                  and isinstance(obj.get("message"), str) and obj["message"]):
            raise BadAnswer("%d without an error body naming the problem: %r" % (status, body[:200]))
        out.append((status, obj))
        data = data[end + 4 + length:]
    return out
