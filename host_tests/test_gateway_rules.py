"""The simulated gateway's rules without sockets: cards, fields, faults, merchants, ledger, TLS files.

Gateway.handle() is driven directly with a fixed clock and fixed uuids, so
whole replies can be compared byte for byte. CPython only (host tool).
"""
import datetime
import json
import os
import sqlite3
import stat
import uuid

import pytest
from cryptography import x509

from gatewaysim import api, cards, faults, fields, ledger as ledger_mod, merchants, tlsca
from gatewaysim.errors import GatewayError

MERCHANT = merchants.default_merchant()
NOW = datetime.datetime(2025, 6, 15, 12, 0, 0, tzinfo=datetime.timezone.utc).timestamp()
JSON = {"Content-Type": "application/json"}
AUTH = {"Authorization": MERCHANT.service_key}


# --- cards ---------------------------------------------------------------------------------


def live_key(kind, digit):
    """A key in the live format (L_C_/L_S_ + uuid), built here so no live-looking key sits in the source."""
    return "_".join(("L", kind, "%s-%s-4%s-8%s-%s" % (digit * 8, digit * 4, digit * 3, digit * 3, digit * 12)))

def test_every_test_card_is_luhn_valid_and_others_are_not():
    for number in cards.TEST_CARDS:
        assert cards.luhn_valid(number), number
    assert not cards.luhn_valid("4444333322221112")
    assert not cards.luhn_valid("1234567812345678")


def test_masks():
    assert cards.mask_pan("4444333322221111") == "444433******1111"
    assert cards.mask_pan("343434343434343") == "343434*****4343"
    assert cards.masked_card_number("6759649826438453") == "**** **** **** 8453"
    text = "pan 4444333322221111, key T_C_11111111-1111-4111-8111-111111111111, n=123456789012"
    assert cards.scrub_card_numbers(text) == (
        "pan 444433******1111, key T_C_11111111-1111-4111-8111-111111111111, n=123456**9012")


def test_classify():
    assert cards.classify("4444333322221111", "Bilbo") == ("VISA_CREDIT", cards.SUCCESS)
    assert cards.classify("4444333322221111", " refused ") == ("VISA_CREDIT", cards.REFUSED)
    assert cards.classify("5555555555554444", "Insufficient_Funds") == ("MASTERCARD_CREDIT",
                                                                         cards.INSUFFICIENT_FUNDS)
    assert cards.classify("4000000000009995", "Bilbo") == ("VISA_CREDIT", cards.INSUFFICIENT_FUNDS)
    assert cards.classify("4000000000000002", "ERROR") == ("VISA_CREDIT", cards.REFUSED)  # the card wins
    assert cards.classify("4111111111111111", "Bilbo") is None


def test_expiry_is_the_end_of_the_month():
    assert not cards.is_expired(6, 2025, 2025, 6)
    assert cards.is_expired(5, 2025, 2025, 6)
    assert cards.is_expired(12, 2024, 2025, 1)
    assert not cards.is_expired(1, 2026, 2025, 12)


# --- fields --------------------------------------------------------------------------------

@pytest.mark.parametrize("body, code", [
    (b"{", "ERROR_PARSING_JSON"),
    (b'{"a":1,"a":1}', "ERROR_PARSING_JSON"),
    (b'{"a":Infinity}', "ERROR_PARSING_JSON"),
    (b"[" * 100000 + b"]" * 100000, "ERROR_PARSING_JSON"),
    (b'"text"', "BAD_REQUEST"),
    (b"null", "BAD_REQUEST"),
])
def test_parse_json_object_refusals(body, code):
    with pytest.raises(GatewayError) as caught:
        fields.parse_json_object(body)
    assert caught.value.code == code


def test_parse_json_object_accepts_an_object_and_trailing_whitespace():
    assert fields.parse_json_object(b' {"a": [1, {"b": null}]} \n') == {"a": [1, {"b": None}]}
    assert fields.parse_json_object(b"") is None


def test_amount_bounds():
    assert fields.get_amount({"amount": 1}, "amount") == 1
    assert fields.get_amount({"amount": 2**31 - 1}, "amount") == 2**31 - 1
    for bad in (0, -5, 2**31, 1.0, False, "1"):
        with pytest.raises(GatewayError) as caught:
            fields.get_amount({"refundAmount": bad}, "refundAmount")
        assert caught.value.code == "BAD_REQUEST" and caught.value.message.startswith("refundAmount ")
    assert fields.get_amount({}, "refundAmount", required=False) is None


# --- faults ---------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, kind, arg, count", [
    ("orders:latency:2.0", "latency", 2.0, None),
    ("orders:latency:2", "latency", 2.0, None),
    ("orders:status:503", "status", 503, None),
    ("orders:status", "status", 500, None),
    ("orders:status:503:x2", "status", 503, 2),
    ("orders:drop-before", "drop-before", None, None),
    ("refund:drop-after:x1", "drop-after", None, 1),
    ("order:trickle:0.5", "trickle", 0.5, None),
    ("order:trickle", "trickle", 0.1, None),
    ("*:latency:0.1:x3", "latency", 0.1, 3),
])
def test_parse_fault_spec(spec, kind, arg, count):
    fault = faults.parse_fault_spec(spec)
    assert (fault.kind, fault.arg, fault.remaining) == (kind, arg, count)
    assert faults.parse_fault_spec(faults.describe(fault)).as_dict() == fault.as_dict()


@pytest.mark.parametrize("spec", [
    "orders", "orders:boom", "nowhere:status", "orders:status:404", "orders:status:abc", "orders:latency",
    "orders:latency:-1", "orders:latency:1e9", "orders:drop-after:3", "orders:status:503:x0",
    "orders:status:503:x2:x3", "orders:latency:1:2",
])
def test_bad_fault_specs(spec):
    with pytest.raises(faults.FaultSpecError):
        faults.parse_fault_spec(spec)


def test_fault_board_counts_and_combines():
    board = faults.FaultBoard([faults.parse_fault_spec("orders:latency:0.5:x1"),
                               faults.parse_fault_spec("*:latency:0.25"),
                               faults.parse_fault_spec("orders:drop-after:x2"),
                               faults.parse_fault_spec("orders:trickle:0.2")])
    plan = board.plan("orders")
    assert (plan.delay, plan.drop, plan.status, plan.trickle) == (0.75, "after", None, 0.2)
    assert plan.labels == ["latency", "latency", "drop-after", "trickle"]
    plan = board.plan("orders")
    assert (plan.delay, plan.drop) == (0.25, "after")
    plan = board.plan("orders")
    assert (plan.delay, plan.drop) == (0.25, None)
    assert board.plan("refund").labels == ["latency"]
    assert not board.plan(None)
    assert [f["count"] for f in board.active()] == [None, None]
    assert board.clear() == 2 and not board.plan("orders")


def test_drop_before_wins_over_everything():
    board = faults.FaultBoard([faults.parse_fault_spec("orders:drop-after"),
                               faults.parse_fault_spec("orders:status:502"),
                               faults.parse_fault_spec("orders:drop-before")])
    plan = board.plan("orders")
    assert (plan.drop, plan.status) == ("before", 502)


# --- merchants ------------------------------------------------------------------------------

def test_merchant_specs_and_book(tmp_path):
    first = merchants.parse_merchant_spec(
        "T_C_aaaaaaaa-0000-4000-8000-000000000001:T_S_aaaaaaaa-0000-4000-8000-000000000002", 1)
    named = merchants.parse_merchant_spec(
        "T_C_bbbbbbbb-0000-4000-8000-000000000001:T_S_bbbbbbbb-0000-4000-8000-000000000002:car park", 2)
    assert (first.name, named.name) == ("merchant1", "car park")
    assert first.service_key not in repr(first) and "hidden" in repr(first)
    book = merchants.MerchantBook([first, named])
    assert book.by_service_key(named.service_key) is named
    assert book.by_service_key(named.client_key) is None
    assert book.by_client_key(first.client_key) is first
    with pytest.raises(merchants.MerchantConfigError):
        merchants.MerchantBook([first, first])
    path = tmp_path / "m.json"
    path.write_text(json.dumps([{"name": "x", "clientKey": first.client_key, "serviceKey": live_key("S", "1")}]))
    with pytest.raises(merchants.MerchantConfigError, match="entry 1: serviceKey"):
        merchants.load_merchants_file(str(path))
    path.write_text("{")
    with pytest.raises(merchants.MerchantConfigError, match="not valid JSON"):
        merchants.load_merchants_file(str(path))


@pytest.mark.parametrize("key, kind", [
    ("T_C_11111111-1111-4111-8111-111111111111", ("T", "C")),
    (live_key("S", "1")[:-1] + "A", ("L", "S")),
    ("T_X_11111111-1111-4111-8111-111111111111", None),
    ("T_C_11111111-1111-4111-8111-11111111111", None),
    ("T_C_11111111-1111-4111-8111-111111111111\n", None),
    (None, None),
])
def test_key_kind(key, kind):
    assert merchants.key_kind(key) == kind


# --- the gateway without sockets --------------------------------------------------------------

def _uuids():
    counter = iter(range(1, 1000))
    return lambda: uuid.UUID(int=(0x4000 << 64) | (0x8 << 60) | next(counter))


@pytest.fixture
def gateway():
    book = ledger_mod.Ledger(clock=lambda: NOW)
    yield api.Gateway(book, merchants.MerchantBook([MERCHANT]), clock=lambda: NOW, new_uuid=_uuids())
    book.close()


def _token(gateway, number="4444333322221111", name="Bilbo Baggins"):
    body = {"clientKey": MERCHANT.client_key, "reusable": False, "paymentMethod": {
        "type": "Card", "name": name, "expiryMonth": 2, "expiryYear": 2026, "cardNumber": number, "cvc": "123"}}
    return gateway.handle("POST", "/v1/tokens", JSON, json.dumps(body).encode())


def test_recorded_token_and_order_replies(gateway):
    reply = _token(gateway, "5555555555554444")
    assert reply.status == 200
    assert reply.body == (
        b'{"token":"TEST_SU_00000000-0000-4000-8000-000000000001","reusable":false,"paymentMethod":'
        b'{"type":"ObfuscatedCard","name":"Bilbo Baggins","expiryMonth":2,"expiryYear":2026,'
        b'"cardType":"MASTERCARD_CREDIT","maskedCardNumber":"**** **** **** 4444","cardSchemeType":"consumer",'
        b'"cardSchemeName":"MCI CREDIT","cardIssuer":"LLOYDS BANK PLC","countryCode":"GB","cardClass":"credit",'
        b'"cardProductTypeDescNonContactless":"MasterCard Credit Personal",'
        b'"cardProductTypeDescContactless":"CL MasterCard Credit Pers","prepaid":"false"}}')
    order = gateway.handle("POST", "/v1/orders", dict(JSON, **AUTH), json.dumps({
        "token": "TEST_SU_00000000-0000-4000-8000-000000000001", "amount": 560, "currencyCode": "GBP",
        "orderDescription": "Car charge - 8 units @ GBP 0.70 per unit.",
        "customerOrderCode": "e7c18800-706d-4f0c-933c-19f8d5be72da"}).encode())
    assert order.status == 200
    assert order.json() == {
        "orderCode": "00000000-0000-4000-8000-000000000002",
        "token": "TEST_SU_00000000-0000-4000-8000-000000000001",
        "orderDescription": "Car charge - 8 units @ GBP 0.70 per unit.",
        "amount": 560, "currencyCode": "GBP", "paymentStatus": "SUCCESS",
        "paymentResponse": json.loads(reply.body)["paymentMethod"],
        "customerOrderCode": "e7c18800-706d-4f0c-933c-19f8d5be72da",
        "environment": "TEST", "riskScore": {"value": "1"}}
    assert ("Content-Type", "application/json;charset=UTF-8") in order.headers
    assert [e["ts"] for e in gateway.ledger.events()] == ["2025-06-15T12:00:00.000000Z"] * 3


def test_recorded_error_reply(gateway):
    reply = gateway.handle("POST", "/v1/orders", JSON, b'{"token":"x"}')
    assert reply.status == 401
    assert reply.body == (
        b'{"httpStatusCode":401,"customCode":"UNAUTHORIZED",'
        b'"message":"Authorization header with a service key is required",'
        b'"description":"Request can\'t be authorized, please validate your request",'
        b'"errorHelpUrl":null,"originalRequest":"{\\"token\\":\\"x\\"}"}')


def test_expiry_uses_the_injected_clock(gateway):
    assert _token(gateway).status == 200  # 02/2026 is valid in 06/2025
    body = {"clientKey": MERCHANT.client_key, "paymentMethod": {
        "type": "Card", "name": "B", "expiryMonth": 5, "expiryYear": 2025, "cardNumber": "4444333322221111",
        "cvc": "123"}}
    reply = gateway.handle("POST", "/v1/tokens", JSON, json.dumps(body).encode())
    assert reply.status == 400 and "05/2025" in reply.json()["message"]


@pytest.mark.parametrize("method, target", [
    ("GET", "/"), ("GET", "//v1/tokens"), ("GET", "/v1/tokens/"), ("POST", "/v1/orders/x/refund/"),
    ("BREW", "/v1/orders"), ("GET", "/v1/orders/a/b/c/d"), ("GET", "/v1/orders/%00"),
])
def test_handle_answers_every_malformed_request_with_json(gateway, method, target):
    reply = gateway.handle(method, target, {}, b"\x00\xff")
    assert reply.status in (401, 404, 405, 415)
    assert set(reply.json()) == {"httpStatusCode", "customCode", "message", "description", "errorHelpUrl",
                                 "originalRequest"}


def test_duplicate_authorization_headers_are_refused(gateway):
    class Headers:
        def items(self):
            return [("Authorization", MERCHANT.service_key), ("authorization", "T_S_other")]
    reply = gateway.handle("GET", "/v1/orders/x", Headers(), b"")
    assert reply.status == 400 and "more than once" in reply.json()["message"]


# --- reconciliation ------------------------------------------------------------------------------

def _paid_order(gateway, amount=500):
    token = _token(gateway).json()["token"]
    reply = gateway.handle("POST", "/v1/orders", dict(JSON, **AUTH), json.dumps({
        "token": token, "amount": amount, "currencyCode": "GBP", "orderDescription": "d",
        "customerOrderCode": "c"}).encode())
    return reply.json()["orderCode"]


def test_reconcile_totals(gateway):
    first = _paid_order(gateway, 500)
    _paid_order(gateway, 250)
    assert gateway.handle("POST", "/v1/orders/%s/refund" % first, dict(JSON, **AUTH),
                          b'{"refundAmount":120}').status == 200
    summary = gateway.ledger.reconcile()
    assert summary == {
        "merchants": {"default": {"tokens": 2, "orders": 2, "paid": 2, "failed": 0, "authorized": 0,
                                  "cancelled": 0, "refunds": 1,
                                  "amounts": {"GBP": {"charged": 750, "refunded": 120, "net": 630}}}},
        "totals": {"GBP": {"charged": 750, "refunded": 120, "net": 630}},
        "problems": [], "consistent": True}
    assert [o["order_code"] for o in gateway.ledger.orders_by_customer_order_code("c", "default")] == [
        first, gateway.ledger.orders()[1]["order_code"]]


@pytest.mark.parametrize("sql, words", [
    ("UPDATE orders SET charged = 400", "events charge 500"),
    ("UPDATE orders SET status = 'REFUNDED'", "status REFUNDED"),
    ("UPDATE orders SET refunded = 600, status = 'REFUNDED'", "exceeds charged"),
    ("INSERT INTO refunds (order_code, merchant, amount, currency, created)"
     " SELECT order_code, merchant, 10, currency, created FROM orders", "refunds sum to 10"),
    ("INSERT INTO orders SELECT 'dup', merchant, token, amount, currency, description, customer_order_code,"
     " authorize_only, 'FAILED', reason, 0, 0, 0, created, updated FROM orders", "paid for 2 orders"),
    ("UPDATE tokens SET used_by = 'ghost'", "unknown order ghost"),
])
def test_reconcile_finds_tampering(gateway, sql, words):
    _paid_order(gateway, 500)
    assert gateway.ledger.reconcile()["consistent"]
    gateway.ledger._db.execute(sql)  # simulate a bug or a hand edit of the ledger
    summary = gateway.ledger.reconcile()
    assert not summary["consistent"]
    assert any(words in problem for problem in summary["problems"]), summary["problems"]


def test_ledger_refuses_an_unmasked_card_number_and_a_foreign_file(tmp_path):
    book = ledger_mod.Ledger()
    with pytest.raises(ValueError):
        book.add_token("TEST_SU_x", "m", False, "n", 1, 2030, "4444333322221111", "VISA_CREDIT", "SUCCESS")
    book.close()
    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(ledger_mod.LedgerError, match="not a gateway simulator ledger"):
        ledger_mod.Ledger(str(foreign), create=False)


# --- TLS files -----------------------------------------------------------------------------------

def _names(path):
    with open(path, "rb") as handle:
        cert = x509.load_pem_x509_certificate(handle.read())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} | set(
        sans.get_values_for_type(x509.DNSName)), cert


def test_tls_files_are_created_kept_and_reissued(tmp_path):
    directory = str(tmp_path / "tls")
    files = tlsca.ensure_credentials(directory)
    names, cert = _names(files.server_cert)
    assert names == {"127.0.0.1", "::1", "localhost"}
    assert stat.S_IMODE(os.stat(files.server_key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.join(directory, "ca-key.pem")).st_mode) == 0o600
    with open(files.ca_cert, "rb") as handle:
        ca = handle.read()
    with open(files.ca_der, "rb") as handle:
        assert x509.load_der_x509_certificate(handle.read()) == x509.load_pem_x509_certificate(ca)

    again = tlsca.ensure_credentials(directory)  # nothing to do
    assert _names(again.server_cert)[1] == cert

    wider = tlsca.ensure_credentials(directory, ["192.168.1.20", "gateway.local"])
    names, reissued = _names(wider.server_cert)
    assert names == {"127.0.0.1", "::1", "localhost", "192.168.1.20", "gateway.local"}
    assert reissued.serial_number != cert.serial_number
    with open(files.ca_cert, "rb") as handle:
        assert handle.read() == ca  # same CA: clients keep trusting it
    reissued.verify_directly_issued_by(x509.load_pem_x509_certificate(ca))

    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=380)
    renewed = _names(tlsca.ensure_credentials(directory, ["192.168.1.20", "gateway.local"], now=later).server_cert)[1]
    assert renewed.not_valid_after_utc > later + datetime.timedelta(days=30)
    with open(files.ca_cert, "rb") as handle:
        assert handle.read() == ca


def test_reusable_token_pays_more_than_once(gateway):
    body = {"clientKey": MERCHANT.client_key, "reusable": True, "paymentMethod": {
        "type": "Card", "name": "B", "expiryMonth": 2, "expiryYear": 2026, "cardNumber": "6759649826438453",
        "cvc": "1234"}}
    token = gateway.handle("POST", "/v1/tokens", JSON, json.dumps(body).encode()).json()
    assert token["token"].startswith("TEST_RU_") and token["reusable"] is True
    order = json.dumps({"token": token["token"], "amount": 100, "currencyCode": "EUR", "orderDescription": "d"})
    for _ in range(2):
        reply = gateway.handle("POST", "/v1/orders", dict(JSON, **AUTH), order.encode())
        assert reply.json()["paymentStatus"] == "SUCCESS" and reply.json()["customerOrderCode"] is None
    assert gateway.ledger.reconcile()["totals"] == {"EUR": {"charged": 200, "refunded": 0, "net": 200}}
