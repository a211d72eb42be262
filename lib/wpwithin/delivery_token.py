"""Service delivery tokens: issue and verify, signed with HMAC-SHA256.

A token proves that a client paid for units of one service on one producer.
Its key is 128 random bits (the caller passes os.urandom bytes in); its
signature is HMAC-SHA256, under a per-device secret, over the key, server,
client, service, units and expiry. Verification recomputes the signature
from what the producer recorded and compares in constant time, so a token
cannot be forged, altered, moved to another client, service or producer,
or used after it expires. Its times are RFC 3339 text as Go marshals a
whole second in UTC ("2026-11-26T23:58:23Z", format_time()); nothing here
parses one: a presented token's times are checked against the text the
producer issued, which the signature binds. Never reads the clock or the
RNG itself, and never logs or returns the secret.
"""
import hashlib
from binascii import a2b_base64, b2a_base64, hexlify

from wpwithin import wire
from wpwithin.compat import const
from wpwithin.errors import ProtocolError

_KEY_BYTES = const(16)
_BLOCK = const(64)


def format_time(seconds):
    """Unix seconds (int, UTC) -> RFC 3339 string."""
    z, rest = divmod(seconds, 86400)
    # The date of day z since 1970-01-01, proleptic Gregorian (H. Hinnant's algorithm).
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    y = yoe + era * 400 + (m <= 2)
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, m, d, rest // 3600, rest // 60 % 60, rest % 60)


def hmac_sha256(secret, message):
    """HMAC (RFC 2104) over SHA-256; stock MicroPython firmware has no hmac module."""
    if len(secret) > _BLOCK:
        secret = hashlib.sha256(secret).digest()
    padded = bytearray(_BLOCK)
    padded[:len(secret)] = secret
    inner_pad = bytearray(_BLOCK)
    outer_pad = bytearray(_BLOCK)
    for i in range(_BLOCK):
        inner_pad[i] = padded[i] ^ 0x36
        outer_pad[i] = padded[i] ^ 0x5C
    inner = hashlib.sha256(inner_pad)
    inner.update(message)
    outer = hashlib.sha256(outer_pad)
    outer.update(inner.digest())
    return outer.digest()


def equal(a, b):
    """Compare two byte strings in time that depends only on their length."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


def sign(secret, key, server_id, client_id, service_id, units, expiry):
    """The token signature (bytes) over the fields it binds."""
    # Length-prefixed fields: no choice of values can make two payloads equal.
    parts = (key, server_id, client_id, str(service_id), str(units), expiry)
    return hmac_sha256(secret, "".join("%d:%s;" % (len(p), p) for p in parts).encode())


def new_key(random_bytes):
    """Token key text from 16 random bytes."""
    if len(random_bytes) != _KEY_BYTES:
        raise ValueError("a token key needs %d random bytes" % _KEY_BYTES)
    return hexlify(random_bytes).decode()


def issue(secret, key, server_id, client_id, service_id, units, issued, expiry, refund_on_expiry):
    """A signed token dict in the wire shape; issued and expiry are Unix seconds."""
    expiry_text = format_time(expiry)
    signature = sign(secret, key, server_id, client_id, service_id, units, expiry_text)
    return wire.delivery_token(
        key, format_time(issued), expiry_text, refund_on_expiry,
        b2a_base64(signature).decode().strip(),
    )


def verify(secret, token, server_id, client_id, service_id, units, expiry, now):
    """Check a presented token against what the producer recorded for its key.

    All fields but `token` and `now` are the recorded ones (expiry in Unix
    seconds; `now` None skips the expiry check); the caller has already matched the request's client and
    service against them. Raises ProtocolError saying which check failed.
    """
    signature = token["signature"]
    if not signature:
        raise ProtocolError(400, "delivery token is not signed")
    try:
        presented = a2b_base64(signature)
    except ValueError:
        raise ProtocolError(400, "delivery token signature is not base64")
    expected = sign(secret, token["key"], server_id, client_id, service_id, units, token["expiry"])
    if not equal(presented, expected):
        raise ProtocolError(400, "delivery token signature is invalid")
    if token["expiry"] != format_time(expiry):  # the text we issued, as the signature binds it
        raise ProtocolError(400, "delivery token expiry was altered")
    if now is not None and now >= expiry:
        raise ProtocolError(410, "delivery token expired at %s" % token["expiry"])
