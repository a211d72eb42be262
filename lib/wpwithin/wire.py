"""Wire messages between Things: build, decode and validate (DESIGN section 2).

Builders emit exactly the keys the reference Go SDK emits; decoders accept
keys in any case, as Go's JSON decoder does, and return a dict with the
exact keys. Every value is type- and range-checked: a bad value raises
ProtocolError(422) naming the field. Amounts are integers in minor units.
Here are the builders of what a producer sends, the decoders of what it
receives and the field readers; the builders of a consumer's requests and
the decoders of a producer's answers are consumer.py's, so a producer-only
image does not carry them. JSON is
checked strictly before it is parsed, so both runtimes refuse the same
texts; scrub() hides card numbers and keys in a gateway's messages. Never
does I/O and never sees card data.
"""
import json

from wpwithin.compat import MICROPYTHON, const
from wpwithin.errors import ProtocolError, nth

# Limits: below 2**30 so numbers stay small ints on a 32-bit MicroPython.
MAX_UNITS = const(1000000000)
MAX_AMOUNT = const(1000000000)
MAX_NUMBER_ID = const(1000000000)
_MAX_ID_LEN = const(64)  # serverID, clientID, paymentReferenceID, token key
MAX_TEXT_LEN = const(256)  # names and descriptions
MAX_CLIENT_TOKEN_LEN = const(128)
MAX_HOST_LEN = const(253)
_MAX_FIELDS = const(32)
# Objects and arrays in one body: each costs tens of bytes of heap once parsed (a 2 KB
# body of "[{},{},..." would take ~30 KB), and the count bounds the nesting depth too.
_MAX_CONTAINERS = const(8)  # a request to a producer has at most 2 (consumer.MAX_ANSWER_CONTAINERS: answers)

_MISSING = object()


# --- JSON text -------------------------------------------------------------
#
# Theory of operation (_check_json): MicroPython's json.loads takes much that is not JSON
# (a missing or doubled ':' or ',', a trailing ',', 01, raw control characters in strings,
# bytes after the value) and text that is not UTF-8 (overlong forms, encoded surrogates,
# lone \u surrogates); CPython's takes NaN and Infinity. So one pass over the bytes checks
# RFC 8259 and RFC 3629 first, the same on both runtimes: `state` says what may come next,
# `stack` holds a bit per open container (1: an object) to pick the closer and what follows
# a ',', and strings, numbers and literals are read by inner loops. It indexes the bytes
# where they are and allocates nothing (every int stays small) until it refuses.
# Heap: one function with its scanners inlined and the refusals' phrases in one string
# (each function costs ~100 B of heap from .mpy, each long string ~100 B); measured on the
# 64-bit unix port, the check costs ~3.6 KB of heap once imported (5.2 KB as eight
# functions with a string per phrase); 26 us for a 272-byte delivery request, 4 times
# what json.loads takes.

_VALUE = const(0)  # a value must come: at the start, after ':', after ',' in an array
_FIRST = const(1)  # just after '{' or '[': a key (object) or a value (array), or the closer
_KEY = const(2)  # after ',' in an object
_COLON = const(3)
_NEXT = const(4)  # after a value inside a container: ',' or the closer
_END = const(5)  # after the whole value: only whitespace
_MAX_DEPTH = const(24)  # open containers (_WHY says 24 too); requests are bounded far lower by _MAX_CONTAINERS
# What a refusal says, by number (_refuse's `why`): 2-3 and 4-5 are object, array.
_WHY = const("unexpected end|more after the value|unexpected }|unexpected ]|expected ',' or '}'|"
             "expected ',' or ']'|expected ':'|unterminated string|control character in a string|bad escape|"
             "\\u without 4 hex digits|lone surrogate escape|expected a string key|nested deeper than 24|"
             "expected a value|leading zero|expected a digit")
_UTF8 = const(17)
_LITERALS = const(b"true false null ")


def _refuse(where, why, at):
    raise ProtocolError(422, "%s is not valid %s at byte %d" % (
        where, "UTF-8" if why == _UTF8 else "JSON: " + nth(_WHY, why), at))


def _check_json(data, where):
    """Refuse (422) unless data is one JSON value in UTF-8; return how many \\u surrogate pairs it has."""
    n = len(data)
    i = 0
    stack = 1  # the lowest bit is the innermost container; 1 alone: none open
    state = _VALUE
    pairs = 0
    while True:
        while i < n and (data[i] == 32 or data[i] == 10 or data[i] == 13 or data[i] == 9):
            i += 1
        if i == n:
            if state != _END:
                _refuse(where, 0, i)
            return pairs
        if state == _END:
            _refuse(where, 1, i)
        c = data[i]
        obj = stack & 1
        if c == 0x7D or c == 0x5D:  # } ]
            if (state != _NEXT and state != _FIRST) or stack == 1 or obj != (c == 0x7D):
                _refuse(where, 2 + (c == 0x5D), i)
            stack >>= 1
            i += 1
            state = _END if stack == 1 else _NEXT
            continue
        if state == _NEXT:
            if c != 0x2C:
                _refuse(where, 5 - obj, i)
            i += 1
            state = _KEY if obj else _VALUE
            continue
        if state == _COLON:
            if c != 0x3A:
                _refuse(where, 6, i)
            i += 1
            state = _VALUE
            continue
        key = state == _KEY or (state == _FIRST and obj)
        if c == 0x22:
            at = i
            i += 1
            while True:
                if i >= n:
                    _refuse(where, 7, at)
                c = data[i]
                if c == 0x22:
                    i += 1
                    break
                if c < 0x20:
                    _refuse(where, 8, i)
                if c >= 0x80:  # UTF-8: no stray continuation byte, overlong form, surrogate or value over U+10FFFF
                    low = 0x80
                    high = 0xBF
                    more = -1
                    if 0xC2 <= c <= 0xDF:
                        more = 1
                    elif 0xE0 <= c <= 0xEF:
                        more = 2
                        if c == 0xE0:
                            low = 0xA0
                        elif c == 0xED:
                            high = 0x9F
                    elif 0xF0 <= c <= 0xF4:
                        more = 3
                        if c == 0xF0:
                            low = 0x90
                        elif c == 0xF4:
                            high = 0x8F
                    j = i + 1
                    while more:
                        if more < 0 or j >= n or not low <= data[j] <= high:
                            _refuse(where, _UTF8, i)
                        low = 0x80
                        high = 0xBF
                        j += 1
                        more -= 1
                    i = j
                    continue
                if c != 0x5C:
                    i += 1
                    continue
                e = data[i + 1] if i + 1 < n else 0
                if e != 0x75:  # not \u
                    if e not in b'"\\/bfnrt':
                        _refuse(where, 9, i)
                    i += 2
                    continue
                u = _hex4(data, i + 2, n)
                if u < 0:
                    _refuse(where, 10, i)
                if 0xD800 <= u <= 0xDFFF:  # a surrogate: only a high one followed by a low one is a character
                    if u >= 0xDC00 or _hex4(data, i + 8, n) >> 10 != 0x37 or data[i + 6] != 0x5C or data[i + 7] != 0x75:
                        _refuse(where, 11, i)
                    pairs += 1
                    i += 6
                i += 6
            if key:
                state = _COLON
                continue
        elif key:
            _refuse(where, 12, i)
        elif c == 0x7B or c == 0x5B:  # { [
            if stack >> _MAX_DEPTH:
                _refuse(where, 13, i)
            stack = (stack << 1) | (c == 0x7B)
            i += 1
            state = _FIRST
            continue
        elif c == 0x2D or 0x30 <= c <= 0x39:  # a number: its integer part, then maybe . and e parts
            if c == 0x2D:
                i += 1
            digits = not (i < n and data[i] == 0x30)  # a 0 must stand alone
            if not digits:
                i += 1
                if i < n and 0x30 <= data[i] <= 0x39:
                    _refuse(where, 15, i - 1)
            part = 0
            while True:
                if digits:
                    j = i
                    while i < n and 0x30 <= data[i] <= 0x39:
                        i += 1
                    if i == j:
                        _refuse(where, 16, i)
                digits = True
                if i < n and part < 1 and data[i] == 0x2E:  # .
                    part = 1
                    i += 1
                elif i < n and part < 2 and (data[i] | 0x20) == 0x65:  # e E
                    part = 2
                    i += 1
                    if i < n and (data[i] == 0x2B or data[i] == 0x2D):
                        i += 1
                else:
                    break
        else:  # true, false or null, read from _LITERALS up to the space after the word
            k = 0 if c == 0x74 else 5 if c == 0x66 else 11 if c == 0x6E else -1
            at = i
            while k < 0 or _LITERALS[k] != 32:
                if k < 0 or i >= n or data[i] != _LITERALS[k]:
                    _refuse(where, 14, at)
                i += 1
                k += 1
        state = _END if stack == 1 else _NEXT


def _hex4(data, i, n):
    """The value of the 4 hex digits at data[i], or -1."""
    if i + 4 > n:
        return -1
    value = 0
    for j in range(i, i + 4):
        c = data[j]
        if 0x30 <= c <= 0x39:
            c -= 0x30
        elif 0x61 <= (c | 0x20) <= 0x66:
            c = (c | 0x20) - 0x57
        else:
            return -1
        value = (value << 4) | c
    return value


def _join_pairs(data):
    """data with each \\uD8xx\\uDCxx escape pair written as the character's 4 bytes of UTF-8.

    MicroPython's json.loads makes two surrogates of a pair, text no other runtime reads
    back; CPython's json.dumps writes every character above U+FFFF so. Only for checked
    JSON, where a backslash is always inside a string.
    """
    out = bytearray()
    i = last = 0
    n = len(data)
    while i < n:
        if data[i] != 0x5C:
            i += 1
            continue
        high = _hex4(data, i + 2, n) if data[i + 1] == 0x75 else -1
        if high >> 10 != 0x36:  # not a high surrogate: \\, \" or another escape
            i += 2
            continue
        cp = 0x10000 + ((high - 0xD800) << 10) + (_hex4(data, i + 8, n) - 0xDC00)
        out += data[last:i]
        out += bytes((0xF0 | cp >> 18, 0x80 | (cp >> 12) & 0x3F, 0x80 | (cp >> 6) & 0x3F, 0x80 | cp & 0x3F))
        i = last = i + 12
    out += data[last:]
    return out


def decode_json(body, where="body", containers=_MAX_CONTAINERS):
    """Parse a body (bytes, or on MicroPython a memoryview) into a JSON value; 422 unless it is strict JSON.

    containers: the most objects and arrays it may hold (bytes only; None: not counted).
    Both runtimes refuse the same texts: _check_json decides, not the runtime's json.
    """
    if containers is not None and body.count(b"{") + body.count(b"[") > containers:  # in strings too: a bound
        _bad(0, (where, containers))  # X has more than N objects and arrays
    pairs = _check_json(body, where)
    if MICROPYTHON and pairs:
        body = _join_pairs(body)
    try:
        # MicroPython parses the bytes where they are (no copy of the body); CPython would
        # guess UTF-16 or -32 from bytes, so it gets text (checked UTF-8: it decodes).
        return json.loads(body if MICROPYTHON else str(body, "utf-8"))
    except ValueError:  # CPython: an integer of more than 4300 digits
        _bad(1, where)  # X holds a number too long to convert


def encode_json(message):
    """Serialise a message for the wire (UTF-8 bytes)."""
    return json.dumps(message).encode()



# --- text from a gateway ---------------------------------------------------------

_SECRET_PREFIXES = const((b"TEST_SU_", b"T_S_", b"T_C_"))  # tokens, service keys, client keys
_HIDDEN = const(b"[hidden]")


def ascii_text(text, limit):
    """`text`'s first `limit` characters as printable ASCII without " or \\, one "?" for any other
    character: fits a journal line as it is. Reads bytes: iterating a str makes each character a
    name MicroPython never frees (a continuation byte 0b10xxxxxx is part of the one before)."""
    kept = bytearray()
    for byte in text[:limit].encode("utf-8", "surrogatepass"):  # CPython: a lone surrogate too
        if byte & 0xC0 != 0x80:
            kept.append(byte if 32 <= byte <= 126 and byte != 34 and byte != 92 else 63)
    return kept.decode()


def scrub(text):
    """`text` with card-number-like digits and gateway tokens and keys replaced by "[hidden]".

    For a gateway's message before it reaches a consumer or a log: it may echo the token
    or card number it was sent. Hidden: a run of 12 or more digits, counted across single
    spaces or dashes ("4444 3333 2222 1111"), and a word from TEST_SU_, T_S_ or T_C_ on.
    """
    data = text.encode()
    n = len(data)
    out = bytearray()
    i = last = 0  # data[last:i] is kept as it is
    while i < n:
        c = data[i]
        if c == 84 and (data.startswith(_SECRET_PREFIXES[0], i) or data.startswith(_SECRET_PREFIXES[1], i)
                        or data.startswith(_SECRET_PREFIXES[2], i)):  # "T"
            j = i
            while j < n:
                b = data[j]
                if not (48 <= b <= 57 or 65 <= b <= 90 or 97 <= b <= 122 or b == 95 or b == 45):  # 0-9 A-Z a-z _ -
                    break
                j += 1
        elif 48 <= c <= 57:
            j = end = i  # data[i:end] holds the digits counted so far
            digits = 0
            while j < n:
                if 48 <= data[j] <= 57:
                    digits += 1
                    j += 1
                    end = j
                elif (data[j] == 32 or data[j] == 45) and j + 1 < n and 48 <= data[j + 1] <= 57:
                    j += 1
                else:
                    break
            j = end
            if digits < 12:
                i = j
                continue
        else:
            i += 1
            continue
        out += data[last:i]
        out += _HIDDEN
        i = last = j
    if not last:
        return text
    out += data[last:]
    return str(out, "utf-8")


# --- field access -----------------------------------------------------------
# The refusals' phrases in one string, by number (a string object each cost 0.7 KB more heap).
_FIELD_WHY = const("%s has more than %d objects and arrays|%s holds a number too long to convert|"
                   "%s must be a JSON object|%s has too many fields|%s has field %s twice|missing field %s|"
                   "field %s must be an integer|field %s must be between %d and %d|field %s must be a string|"
                   "field %s is not valid Unicode|field %s is longer than %d bytes of UTF-8|"
                   "field %s must not hold control characters|field %s must not be empty|"
                   "field %s must be true or false|field %s must be a 3-letter ISO 4217 code|"
                   "Unable to parse input %s id")


def _bad(n, arg, status=422):
    raise ProtocolError(status, nth(_FIELD_WHY, n) % arg)


def fields(obj, where="body"):
    """Index a decoded JSON object by lower-cased key; refuse non-objects and duplicates."""
    if not isinstance(obj, dict):
        _bad(2, where)  # X must be a JSON object
    if len(obj) > _MAX_FIELDS:
        _bad(3, where)  # X has too many fields
    indexed = {}
    for key in obj:
        lowered = key.lower()
        if lowered in indexed:
            _bad(4, (where, key))  # X has field X twice
        indexed[lowered] = obj[key]
    return indexed


def get(f, name, default=_MISSING):
    """A field's value; 422 naming it when it is missing and there is no default."""
    value = f.get(name.lower(), _MISSING)
    if value is _MISSING:
        if default is _MISSING:
            _bad(5, name)  # missing field X
        return default
    return value


def get_int(f, name, low=0, high=MAX_UNITS, default=_MISSING):
    """An integer field within [low, high]; bools and floats are refused."""
    value = get(f, name, default)
    if type(value) is not int:
        _bad(6, name)  # field X must be an integer
    if value < low or value > high:
        _bad(7, (name, low, high))  # field X must be between N and N
    return value


def get_str(f, name, max_len=_MAX_ID_LEN, default=_MISSING, allow_empty=False, printable=False):
    """A string field of at most max_len bytes of UTF-8.

    Bytes, not characters: a journal line holds what the producer stores, and its limit is in
    bytes. `printable` refuses control characters (U+0000-U+001F, U+007F) too: JSON writes each
    as 6 bytes, any other character in at most 3 per byte of UTF-8, so a field checked so fits
    the journal's lines (host_tests/dual/test_journal_limits.py shows the largest records).
    """
    value = get(f, name, default)
    if not isinstance(value, str):
        _bad(8, name)  # field X must be a string
    try:
        data = value.encode() if len(value) <= max_len else None
    except UnicodeError:  # CPython: a lone surrogate ("\\ud800" in the JSON)
        _bad(9, name)  # field X is not valid Unicode
    if data is None or len(data) > max_len:
        _bad(10, (name, max_len))  # field X is longer than N bytes of UTF-8
    if printable:
        for byte in data:
            if byte < 0x20 or byte == 0x7F:
                _bad(11, name)  # field X must not hold control characters
    if not value and not allow_empty:
        _bad(12, name)  # field X must not be empty
    return value


def get_bool(f, name, default=_MISSING):
    value = get(f, name, default)
    if value is not True and value is not False:
        _bad(13, name)  # field X must be true or false
    return value


def get_currency(f, name):
    value = get_str(f, name, 3)
    if len(value) != 3 or not value.isalpha() or not value.isupper():
        _bad(14, name)  # field X must be a 3-letter ISO 4217 code
    return value


def parse_path_id(text, what):
    """A numeric id from the URL path, as the reference parses it (400 if not a number).

    1 to 10 of 0-9 only: str.isdigit would take other scripts' digits too. Reads bytes:
    iterating a str makes each character a name MicroPython never frees (a path is hostile input).
    """
    ok = 0 < len(text) <= 10
    for byte in text.encode():
        if byte < 48 or byte > 57:
            ok = False
    if not ok or int(text) > MAX_NUMBER_ID:
        _bad(15, what, 400)  # Unable to parse input X id
    return int(text)


# --- discovery ----------------------------------------------------------------

def is_url_prefix(prefix):
    """True for "" or a path like /api/v1: the one rule for a producer's config and its consumers."""
    return prefix == "" or (isinstance(prefix, str) and prefix[0] == "/" and prefix[-1] != "/" and not (
        ".." in prefix or "//" in prefix or " " in prefix or "?" in prefix or "#" in prefix or "%" in prefix))


def broadcast(server_id, description, hostname, port, url_prefix="", scheme="http://"):
    return {
        "deviceDescription": description,
        "hostname": hostname,
        "portNumber": port,
        "serverID": server_id,
        "urlPrefix": url_prefix,
        "scheme": scheme,
    }


# --- service list and price list -------------------------------------------

def service_entry(service_id, name, description):
    # Capitalised keys: the reference's ServiceDetails has no JSON tags.
    return {"ServiceID": service_id, "ServiceName": name, "ServiceDescription": description}


def service_list(server_id, entries):
    return {"serverID": server_id, "services": entries}


def price_entry(price_id, description, amount, currency, unit_id, unit_description):
    return {
        "priceID": price_id,
        "priceDescription": description,
        "pricePerUnit": {"amount": amount, "currencyCode": currency},
        "unitID": unit_id,
        "unitDescription": unit_description,
    }


def price_list(server_id, entries):
    return {"serverID": server_id, "prices": entries}


# --- select -------------------------------------------------------------------

def parse_total_request(obj):
    f = fields(obj)
    return {
        "clientID": get_str(f, "clientID", printable=True),  # journalled: see get_str
        "selectedNumberOfUnits": get_int(f, "selectedNumberOfUnits", 1, MAX_UNITS),
        "selectedPriceID": get_int(f, "selectedPriceID", 0, MAX_NUMBER_ID),
    }


def total_response(server_id, client_id, price_id, units, total, currency, reference, merchant_client_key):
    return {
        "serverID": server_id,
        "clientID": client_id,
        "priceID": price_id,
        "unitsToSupply": units,
        "totalPrice": total,
        "currencyCode": currency,
        "paymentReferenceID": reference,
        "merchantClientKey": merchant_client_key,
    }


# --- pay ----------------------------------------------------------------------

def parse_payment_request(obj):
    f = fields(obj)
    return {
        "clientID": get_str(f, "clientID"),
        "clientToken": get_str(f, "clientToken", MAX_CLIENT_TOKEN_LEN, printable=True),
        "paymentReferenceID": get_str(f, "paymentReferenceID"),
    }


def payment_response(server_id, client_id, total_paid, delivery_token):
    return {
        "serverID": server_id,
        "clientID": client_id,
        "totalPaid": total_paid,
        "serviceDeliveryToken": delivery_token,
    }


# --- release ----------------------------------------------------------------

def delivery_token(key, issued, expiry, refund_on_expiry, signature):
    """The token the consumer presents at delivery; times are RFC 3339 strings."""
    return {
        "key": key,
        "issued": issued,
        "expiry": expiry,
        "refundOnExpiry": refund_on_expiry,
        "signature": signature,
    }


def get_token(f):
    """The serviceDeliveryToken field of a request or an answer."""
    return parse_delivery_token(get(f, "serviceDeliveryToken"))


def parse_delivery_token(obj):
    f = fields(obj, "field serviceDeliveryToken")
    signature = get(f, "signature", None)
    if signature is not None:
        signature = get_str(f, "signature", 88)
    return delivery_token(
        get_str(f, "key"),
        get_str(f, "issued", 40),
        get_str(f, "expiry", 40),
        get_bool(f, "refundOnExpiry", False),
        signature,
    )


def parse_begin_request(obj):
    f = fields(obj)
    return {
        "clientID": get_str(f, "clientID"),
        "serviceDeliveryToken": get_token(f),
        "unitsToSupply": get_int(f, "unitsToSupply", 1, MAX_UNITS),
    }


def begin_response(server_id, client_id, token, units):
    return {
        "serverID": server_id,
        "clientID": client_id,
        "serviceDeliveryToken": token,
        "unitsToSupply": units,
    }


def parse_end_request(obj):
    f = fields(obj)
    return {
        "clientID": get_str(f, "clientID"),
        "serviceDeliveryToken": get_token(f),
        "unitsReceived": get_int(f, "unitsReceived", 0, MAX_UNITS),
    }


def end_response(server_id, client_id, token, just_supplied, remaining):
    return {
        "serverID": server_id,
        "clientID": client_id,
        "serviceDeliveryToken": token,
        "unitsJustSupplied": just_supplied,
        "unitsRemaining": remaining,
    }


# --- errors -------------------------------------------------------------------

def error(status, message, code=0):
    return {"HTTPStatusCode": status, "message": message, "errorCode": code}
