"""Strict readers for request bodies: JSON object parsing and typed field access.

Every reader either returns a value of exactly the expected type and range
or raises GatewayError(BAD_REQUEST / ERROR_PARSING_JSON) with a message
that starts with the field's path (e.g. "paymentMethod.cvc"). Booleans are
never integers and floats are never amounts. No I/O, no logging.
"""
import json

from gatewaysim.errors import GatewayError

MAX_AMOUNT = 2**31 - 1  # amounts are int32 in the Worldpay schema
MAX_TEXT = 255  # names, descriptions and codes


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise _Duplicate("duplicate key %r" % key)
        seen[key] = value
    return seen


def _no_constants(name):
    raise ValueError("%s is not JSON" % name)


def parse_json_object(body):
    """Parse a request body (bytes) that must be one JSON object; b"" -> None."""
    if not body:
        return None
    try:
        text = body.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise GatewayError("ERROR_PARSING_JSON", "Request body is not valid UTF-8")
    except _Duplicate as exc:
        raise GatewayError("ERROR_PARSING_JSON", "Request body has a %s" % exc)
    except (ValueError, RecursionError) as exc:
        raise GatewayError("ERROR_PARSING_JSON", "Request body is not valid JSON: %s" % exc)
    if not isinstance(value, dict):
        raise GatewayError("BAD_REQUEST", "Request body must be a JSON object")
    return value


def _path(prefix, key):
    return prefix + key if not prefix else "%s.%s" % (prefix, key)


def _lookup(obj, key, prefix, required):
    """(the field's path, its value); GatewayError if it is required and absent or null."""
    field = _path(prefix, key)
    value = obj.get(key)
    if value is None and required:
        raise GatewayError("BAD_REQUEST", "%s is required" % field)
    return field, value


def _check_int(field, value, kind):
    if isinstance(value, bool) or not isinstance(value, int):
        raise GatewayError("BAD_REQUEST", "%s must be %s" % (field, kind))


def get_object(obj, key, prefix=""):
    """A required nested JSON object."""
    field, value = _lookup(obj, key, prefix, True)
    if not isinstance(value, dict):
        raise GatewayError("BAD_REQUEST", "%s must be a JSON object" % field)
    return value


def get_string(obj, key, prefix="", required=True, max_len=MAX_TEXT):
    """A string of 1..max_len characters; None if optional and absent or null."""
    field, value = _lookup(obj, key, prefix, required)
    if value is None:
        return None
    if not isinstance(value, str):
        raise GatewayError("BAD_REQUEST", "%s must be a string" % field)
    if not value.strip():
        raise GatewayError("BAD_REQUEST", "%s must not be empty" % field)
    if len(value) > max_len:
        raise GatewayError("BAD_REQUEST", "%s is longer than %d characters" % (field, max_len))
    return value


def get_int(obj, key, low, high, prefix="", required=True):
    """An integer in low..high (JSON booleans and floats refused); None if optional and absent."""
    field, value = _lookup(obj, key, prefix, required)
    if value is None:
        return None
    _check_int(field, value, "an integer")
    if not low <= value <= high:
        raise GatewayError("BAD_REQUEST", "%s must be between %d and %d" % (field, low, high))
    return value


def get_amount(obj, key, prefix="", required=True):
    """A positive amount in minor units, at most 2**31-1."""
    field, value = _lookup(obj, key, prefix, required)
    if value is None:
        return None
    _check_int(field, value, "an integer number of minor units")
    if value <= 0:
        raise GatewayError("BAD_REQUEST", "%s must be greater than zero" % field)
    if value > MAX_AMOUNT:
        raise GatewayError("BAD_REQUEST", "%s must not exceed %d" % (field, MAX_AMOUNT))
    return value


def get_bool(obj, key, default, prefix=""):
    """A JSON boolean, or `default` when absent or null."""
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise GatewayError("BAD_REQUEST", "%s must be true or false" % _path(prefix, key))
    return value


def get_digits(obj, key, min_len, max_len, prefix="", what="digits"):
    """A required string of min_len..max_len ASCII digits."""
    field = _path(prefix, key)
    value = obj.get(key)
    if value is None or value == "":
        raise GatewayError("BAD_REQUEST", "%s is required" % field)
    if not isinstance(value, str):
        raise GatewayError("BAD_REQUEST", "%s must be a string of %s" % (field, what))
    if not (min_len <= len(value) <= max_len and value.isascii() and value.isdigit()):
        if min_len == max_len - 1:
            span = "%d or %d" % (min_len, max_len)
        else:
            span = "%d to %d" % (min_len, max_len)
        raise GatewayError("BAD_REQUEST", "%s must be %s digits" % (field, span))
    return value
