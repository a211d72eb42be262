"""Wire messages between Things: build, decode and validate (DESIGN section 2).

Builders emit exactly the keys the reference Go SDK emits; decoders accept
keys in any case, as Go's JSON decoder does, and return a dict with the
exact keys. Every value is type- and range-checked: a bad value raises
ProtocolError(422) naming the field. Amounts are integers in minor units.
Here are every message's builder, the decoders of what a producer
receives and the field readers; the decoders of a producer's answers are
consumer.py's, so a producer-only image does not carry them. Never does
I/O and never sees card data.
"""
import json

from wpwithin.compat import MICROPYTHON, const
from wpwithin.errors import BAD_REQUEST, UNPROCESSABLE, ProtocolError

# Limits: below 2**30 so numbers stay small ints on a 32-bit MicroPython.
MAX_UNITS = const(1000000000)
MAX_AMOUNT = const(1000000000)
MAX_NUMBER_ID = const(1000000000)
MAX_ID_LEN = const(64)  # serverID, clientID, paymentReferenceID, token key
MAX_TEXT_LEN = const(256)  # names and descriptions
MAX_CLIENT_TOKEN_LEN = const(128)
MAX_HOST_LEN = const(253)
MAX_FIELDS = const(32)
MAX_ITEMS = const(64)  # services in a list, prices in a list
# Objects and arrays in one body: each costs tens of bytes of heap once parsed (a 2 KB
# body of "[{},{},..." would take ~30 KB), and the count bounds the nesting depth too.
MAX_CONTAINERS = const(8)  # a request to a producer has at most 2
MAX_ANSWER_CONTAINERS = const(136)  # answers from a producer or the gateway: MAX_ITEMS prices, 2 each

_MISSING = object()


# --- JSON text -------------------------------------------------------------

def decode_json(body, where="body", containers=MAX_CONTAINERS):
    """Parse a body (bytes, or on MicroPython a memoryview) into a JSON value.

    containers: the most objects and arrays it may hold (bytes only; None: not counted).
    """
    if containers is not None and body.count(b"{") + body.count(b"[") > containers:  # in strings too: a bound
        raise ProtocolError(UNPROCESSABLE, "%s has more than %d objects and arrays" % (where, containers))
    try:
        # MicroPython parses the bytes where they are (no copy of the body) and refuses bad
        # UTF-8 with UnicodeError; CPython would guess UTF-16 or -32 from bytes, so it gets text.
        return json.loads(body if MICROPYTHON else str(body, "utf-8"))
    except UnicodeError:
        raise ProtocolError(UNPROCESSABLE, "%s is not valid UTF-8" % where)
    except ValueError:
        raise ProtocolError(UNPROCESSABLE, "%s is not valid JSON" % where)
    except RuntimeError:  # CPython: nesting deeper than the recursion limit
        raise ProtocolError(UNPROCESSABLE, "%s is nested too deeply" % where)


def encode_json(message):
    """Serialise a message for the wire (UTF-8 bytes)."""
    return json.dumps(message).encode()


# --- field access -----------------------------------------------------------

def fields(obj, where="body"):
    """Index a decoded JSON object by lower-cased key; refuse non-objects and duplicates."""
    if not isinstance(obj, dict):
        raise ProtocolError(UNPROCESSABLE, "%s must be a JSON object" % where)
    if len(obj) > MAX_FIELDS:
        raise ProtocolError(UNPROCESSABLE, "%s has too many fields" % where)
    indexed = {}
    for key in obj:
        lowered = key.lower()
        if lowered in indexed:
            raise ProtocolError(UNPROCESSABLE, "%s has field %s twice" % (where, key))
        indexed[lowered] = obj[key]
    return indexed


def _get(f, name, default):
    value = f.get(name.lower(), _MISSING)
    if value is _MISSING:
        if default is _MISSING:
            raise ProtocolError(UNPROCESSABLE, "missing field %s" % name)
        return default
    return value


def get_int(f, name, low=0, high=MAX_UNITS, default=_MISSING):
    """An integer field within [low, high]; bools and floats are refused."""
    value = _get(f, name, default)
    if type(value) is not int:
        raise ProtocolError(UNPROCESSABLE, "field %s must be an integer" % name)
    if value < low or value > high:
        raise ProtocolError(UNPROCESSABLE, "field %s must be between %d and %d" % (name, low, high))
    return value


def get_str(f, name, max_len=MAX_ID_LEN, default=_MISSING, allow_empty=False, printable=False):
    """A string field of at most max_len bytes of UTF-8.

    Bytes, not characters: a journal line holds what the producer stores, and its limit is in
    bytes. `printable` refuses control characters (U+0000-U+001F, U+007F) too: JSON writes each
    as 6 bytes, any other character in at most 3 per byte of UTF-8, so a field checked so fits
    the journal's lines (host_tests/dual/test_journal_limits.py shows the largest records).
    """
    value = _get(f, name, default)
    if not isinstance(value, str):
        raise ProtocolError(UNPROCESSABLE, "field %s must be a string" % name)
    try:
        data = value.encode() if len(value) <= max_len else None
    except UnicodeError:  # CPython: a lone surrogate ("\\ud800" in the JSON)
        raise ProtocolError(UNPROCESSABLE, "field %s is not valid Unicode" % name)
    if data is None or len(data) > max_len:
        raise ProtocolError(UNPROCESSABLE, "field %s is longer than %d bytes of UTF-8" % (name, max_len))
    if printable:
        for byte in data:
            if byte < 0x20 or byte == 0x7F:
                raise ProtocolError(UNPROCESSABLE, "field %s must not hold control characters" % name)
    if not value and not allow_empty:
        raise ProtocolError(UNPROCESSABLE, "field %s must not be empty" % name)
    return value


def get_bool(f, name, default=_MISSING):
    value = _get(f, name, default)
    if value is not True and value is not False:
        raise ProtocolError(UNPROCESSABLE, "field %s must be true or false" % name)
    return value


def get_object(f, name):
    return fields(_get(f, name, _MISSING), "field " + name)


def get_list(f, name):
    value = _get(f, name, _MISSING)
    if value is None:  # Go marshals an empty slice it never appended to as null
        return []
    if not isinstance(value, list):
        raise ProtocolError(UNPROCESSABLE, "field %s must be a list" % name)
    if len(value) > MAX_ITEMS:
        raise ProtocolError(UNPROCESSABLE, "field %s has more than %d items" % (name, MAX_ITEMS))
    return value


def get_currency(f, name):
    value = get_str(f, name, 3)
    if len(value) != 3 or not value.isalpha() or not value.isupper():
        raise ProtocolError(UNPROCESSABLE, "field %s must be a 3-letter ISO 4217 code" % name)
    return value


def ascii_digits(text):
    """True for a non-empty string of 0-9 only (str.isdigit also takes other scripts' digits)."""
    if not text:
        return False
    for char in text:
        if char < "0" or char > "9":
            return False
    return True


def parse_path_id(text, what):
    """A numeric id from the URL path, as the reference parses it (400 if not a number)."""
    if len(text) > 10 or not ascii_digits(text):
        raise ProtocolError(BAD_REQUEST, "Unable to parse input %s id" % what)
    value = int(text)
    if value > MAX_NUMBER_ID:
        raise ProtocolError(BAD_REQUEST, "Unable to parse input %s id" % what)
    return value


# --- discovery ----------------------------------------------------------------

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

def total_request(client_id, units, price_id):
    return {"clientID": client_id, "selectedNumberOfUnits": units, "selectedPriceID": price_id}


def parse_total_request(obj):
    f = fields(obj)
    return total_request(
        get_str(f, "clientID", printable=True),  # journalled: see get_str
        get_int(f, "selectedNumberOfUnits", 1, MAX_UNITS),
        get_int(f, "selectedPriceID", 0, MAX_NUMBER_ID),
    )


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

def payment_request(client_id, client_token, reference):
    return {"clientID": client_id, "clientToken": client_token, "paymentReferenceID": reference}


def parse_payment_request(obj):
    f = fields(obj)
    return payment_request(
        get_str(f, "clientID"),
        get_str(f, "clientToken", MAX_CLIENT_TOKEN_LEN, printable=True),
        get_str(f, "paymentReferenceID"),
    )


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
    return parse_delivery_token(_get(f, "serviceDeliveryToken", _MISSING))


def parse_delivery_token(obj):
    f = fields(obj, "field serviceDeliveryToken")
    signature = _get(f, "signature", None)
    if signature is not None:
        signature = get_str(f, "signature", 88)
    return delivery_token(
        get_str(f, "key"),
        get_str(f, "issued", 40),
        get_str(f, "expiry", 40),
        get_bool(f, "refundOnExpiry", False),
        signature,
    )


def begin_request(client_id, token, units):
    return {"clientID": client_id, "serviceDeliveryToken": token, "unitsToSupply": units}


def parse_begin_request(obj):
    f = fields(obj)
    return begin_request(
        get_str(f, "clientID"),
        get_token(f),
        get_int(f, "unitsToSupply", 1, MAX_UNITS),
    )


def begin_response(server_id, client_id, token, units):
    return {
        "serverID": server_id,
        "clientID": client_id,
        "serviceDeliveryToken": token,
        "unitsToSupply": units,
    }


def end_request(client_id, token, units_received):
    return {"clientID": client_id, "serviceDeliveryToken": token, "unitsReceived": units_received}


def parse_end_request(obj):
    f = fields(obj)
    return end_request(
        get_str(f, "clientID"),
        get_token(f),
        get_int(f, "unitsReceived", 0, MAX_UNITS),
    )


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
