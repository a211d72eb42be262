"""Delivery tokens: HMAC-SHA256 by RFC 4231, and every way a token can be wrong."""
from binascii import unhexlify

from expect import raises, refused

from wpwithin import delivery_token

NOW = 1795737600
SECRET = b"k" * 32
KEY = delivery_token.new_key(b"\x01" * 16)

# RFC 4231 test cases 1, 2, 3, 6 and 7 (HMAC-SHA-256).
VECTORS = [
    (b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\xaa" * 131,
     b"This is a test using a larger than block-size key and a larger than block-size data. "
     b"The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
]


def test_hmac_sha256_matches_rfc_4231():
    for key, message, digest in VECTORS:
        assert delivery_token.hmac_sha256(key, message) == unhexlify(digest), digest


def test_constant_time_equal():
    assert delivery_token.equal(b"abc", b"abc")
    assert not delivery_token.equal(b"abc", b"abd")
    assert not delivery_token.equal(b"abc", b"ab")


def test_key_is_128_bits_of_hex():
    assert len(KEY) == 32 and KEY == "01" * 16
    raises(ValueError, delivery_token.new_key, b"\x01" * 15)


def issue(**changes):
    fields = dict(secret=SECRET, key=KEY, server_id="srv", client_id="c1", service_id=1, units=5,
                  issued=NOW, expiry=NOW + 3600, refund_on_expiry=False)
    fields.update(changes)
    return delivery_token.issue(**fields)


def verify(token, now=NOW, **changes):
    recorded = dict(secret=SECRET, server_id="srv", client_id="c1", service_id=1, units=5, expiry=NOW + 3600)
    recorded.update(changes)
    delivery_token.verify(token=token, now=now, **recorded)


def test_issued_token_verifies_and_has_go_times():
    token = issue()
    assert token["issued"] == "2026-11-27T00:00:00Z"
    assert token["expiry"] == "2026-11-27T01:00:00Z"
    assert len(token["signature"]) == 44
    verify(token)


def test_forged_signature_is_refused():
    token = issue()
    token["signature"] = issue(secret=b"another device's secret").get("signature")
    assert refused(400, verify, token) == "delivery token signature is invalid"


def test_missing_or_garbled_signature_is_refused():
    token = issue()
    token["signature"] = None
    assert refused(400, verify, token) == "delivery token is not signed"
    token["signature"] = "***"
    assert "signature" in refused(400, verify, token)


def test_altered_expiry_is_refused():
    token = issue()
    token["expiry"] = delivery_token.format_time(NOW + 7200)
    assert refused(400, verify, token) == "delivery token signature is invalid"


def test_signature_binds_units_client_service_and_server():
    token = issue()
    for change in ({"units": 6}, {"client_id": "c2"}, {"service_id": 2}, {"server_id": "other"}):
        assert refused(400, verify, token, **change) == "delivery token signature is invalid"


def test_expired_token_is_refused_and_expiry_may_be_skipped():
    token = issue()
    assert "expired" in refused(410, verify, token, now=NOW + 3600)
    verify(token, now=None)


def test_unparseable_expiry_is_refused():
    token = issue()
    token["expiry"] = "tomorrow"
    refused(400, verify, token)
    token = issue()
    # a well-signed token whose recorded expiry differs from the text it carries
    assert refused(400, verify, token, expiry=NOW + 60) == "delivery token expiry was altered"
