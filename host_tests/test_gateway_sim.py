"""The simulated Worldpay gateway over real loopback sockets, and its command line.

Most tests share one in-process simulator (module fixture) and keep apart
by using fresh tokens and unique customerOrderCodes; tests that need exact
ledger totals start their own. The CLI tests run tools/gateway as a
subprocess. CPython only (the simulator is a host tool).
"""
import datetime
import http.client
import json
import os
import re
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import uuid

import pytest
import trustme

from gatewaysim import faults, tlsca
from gatewaysim.merchants import Merchant, default_merchant
from gatewaysim.simulator import Simulator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GATEWAY = os.path.join(ROOT, "tools", "gateway")

MERCHANT = default_merchant()
OTHER = Merchant("other", "T_C_33333333-3333-4333-8333-333333333333", "T_S_44444444-4444-4444-8444-444444444444")
FUTURE_YEAR = datetime.date.today().year + 3
VISA = "4444333322221111"

TOKEN_RE = re.compile(r"^TEST_SU_[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
CARD_KEYS = {"type", "name", "expiryMonth", "expiryYear", "cardType", "maskedCardNumber", "cardSchemeType",
             "cardSchemeName", "cardIssuer", "countryCode", "cardClass", "cardProductTypeDescNonContactless",
             "cardProductTypeDescContactless", "prepaid"}
ORDER_KEYS = {"orderCode", "token", "orderDescription", "amount", "currencyCode", "paymentStatus",
              "paymentResponse", "customerOrderCode", "environment", "riskScore"}
ERROR_KEYS = {"httpStatusCode", "customCode", "message", "description", "errorHelpUrl", "originalRequest"}


# --- a small client -----------------------------------------------------------------

class Resp:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    @property
    def json(self):
        return json.loads(self.body)



def live_key(kind, digit):
    """A key in the live format (L_C_/L_S_ + uuid), built here so no live-looking key sits in the source."""
    return "_".join(("L", kind, "%s-%s-4%s-8%s-%s" % (digit * 8, digit * 4, digit * 3, digit * 3, digit * 12)))

def _address(url):
    match = re.match(r"^https?://(\[[^\]]+\]|[^:/]+):(\d+)/v1$", url)
    return match.group(1).strip("[]"), int(match.group(2))


def connect(sim, timeout=5.0, context=None, server_hostname=None):
    host, port = _address(sim.url)
    if context is None:
        return http.client.HTTPConnection(host, port, timeout=timeout)
    conn = http.client.HTTPSConnection(server_hostname or host, port, timeout=timeout, context=context)
    return conn


def call(sim, method, path, body=None, key=None, content_type="application/json", headers=None,
         conn=None, timeout=5.0):
    """One request; a new connection unless `conn` is given."""
    own = conn is None
    if own:
        conn = connect(sim, timeout)
    sent = dict(headers or {})
    if content_type:
        sent["Content-Type"] = content_type
    if key:
        sent["Authorization"] = key
    payload = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    try:
        conn.request(method, path, body=payload, headers=sent)
        response = conn.getresponse()
        return Resp(response.status, response.headers, response.read())
    finally:
        if own:
            conn.close()


def card(number=VISA, name="Bilbo Baggins", month=12, year=FUTURE_YEAR, cvc="123"):
    return {"type": "Card", "name": name, "expiryMonth": month, "expiryYear": year,
            "cardNumber": number, "cvc": cvc}


def new_token(sim, merchant=MERCHANT, **card_fields):
    response = call(sim, "POST", "/v1/tokens",
                    {"clientKey": merchant.client_key, "paymentMethod": card(**card_fields), "reusable": False})
    assert response.status == 200, response.body
    return response.json["token"]


def order_body(token, amount=560, code=None, **extra):
    body = {"token": token, "amount": amount, "currencyCode": "GBP", "orderDescription": "Car charging",
            "customerOrderCode": code or str(uuid.uuid4())}
    body.update(extra)
    return body


def pay(sim, token, merchant=MERCHANT, **fields):
    return call(sim, "POST", "/v1/orders", order_body(token, **fields), key=merchant.service_key)


def assert_error(response, status, code, *words):
    assert response.status == status, response.body
    body = response.json
    assert set(body) == ERROR_KEYS
    assert body["httpStatusCode"] == status
    assert body["customCode"] == code
    for word in words:
        assert word in body["message"], body["message"]
    assert response.headers["Content-Type"] == "application/json;charset=UTF-8"
    return body


# --- fixtures ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    logs = []
    simulator = Simulator(merchants=[MERCHANT, OTHER], db=str(tmp_path_factory.mktemp("gw") / "ledger.db"),
                          log=logs.append)
    simulator.logs = logs
    with simulator:
        yield simulator


@pytest.fixture(autouse=True)
def no_faults_left(request):
    yield
    if "sim" in request.fixturenames:
        request.getfixturevalue("sim").faults.clear()


@pytest.fixture
def fresh():
    with Simulator(merchants=[MERCHANT, OTHER], log=lambda line: None) as simulator:
        yield simulator


# --- success ---------------------------------------------------------------------------

@pytest.mark.parametrize("number, card_type, scheme, card_class", [
    ("4444333322221111", "VISA_CREDIT", "VISA CREDIT", "credit"),
    ("5555555555554444", "MASTERCARD_CREDIT", "MCI CREDIT", "credit"),
    ("5163613613613613", "MASTERCARD_DEBIT", "MCI DEBIT", "debit"),
    ("6759649826438453", "MAESTRO", "MAESTRO", "debit"),
    ("34343434343434", "AMEX", "AMEX", "credit"),
])
def test_each_test_card_tokenises_and_pays(sim, number, card_type, scheme, card_class):
    response = call(sim, "POST", "/v1/tokens",
                    {"clientKey": MERCHANT.client_key, "paymentMethod": card(number), "reusable": False})
    assert response.status == 200
    token = response.json
    assert set(token) == {"token", "reusable", "paymentMethod"}
    assert TOKEN_RE.match(token["token"]) and token["reusable"] is False
    method = token["paymentMethod"]
    assert set(method) == CARD_KEYS
    assert method["type"] == "ObfuscatedCard"
    assert (method["cardType"], method["cardSchemeName"], method["cardClass"]) == (card_type, scheme, card_class)
    assert method["maskedCardNumber"] == "**** **** **** " + number[-4:]
    assert (method["expiryMonth"], method["expiryYear"], method["name"]) == (12, FUTURE_YEAR, "Bilbo Baggins")
    assert isinstance(method["prepaid"], str)

    code = "order-" + card_type
    response = pay(sim, token["token"], amount=560, code=code)
    assert response.status == 200
    order = response.json
    assert set(order) == ORDER_KEYS
    assert UUID_RE.match(order["orderCode"])
    assert order["paymentStatus"] == "SUCCESS"
    assert (order["amount"], order["currencyCode"], order["customerOrderCode"]) == (560, "GBP", code)
    assert order["token"] == token["token"]
    assert order["paymentResponse"] == method
    assert order["environment"] == "TEST" and order["riskScore"] == {"value": "1"}

    fetched = call(sim, "GET", "/v1/orders/" + order["orderCode"], key=MERCHANT.service_key)
    assert fetched.status == 200 and fetched.json == order


def test_go_sdk_token_request_with_null_optionals_is_accepted(sim):
    method = dict(card("5555555555554444"), issueNumber=None, startMonth=None, startYear=None)
    response = call(sim, "POST", "/v1/tokens", {"reusable": False, "paymentMethod": method,
                                                "clientKey": MERCHANT.client_key})
    assert response.status == 200 and response.json["paymentMethod"]["cardType"] == "MASTERCARD_CREDIT"


def test_get_token_is_scoped_to_its_merchant(sim):
    token = new_token(sim)
    mine = call(sim, "GET", "/v1/tokens/" + token, key=MERCHANT.service_key)
    assert mine.status == 200 and mine.json["token"] == token and set(mine.json["paymentMethod"]) == CARD_KEYS
    assert_error(call(sim, "GET", "/v1/tokens/" + token, key=OTHER.service_key), 404, "TKN_NOT_FOUND")
    assert_error(call(sim, "GET", "/v1/tokens/TEST_SU_nope", key=MERCHANT.service_key), 404, "TKN_NOT_FOUND")


def test_largest_amount_is_accepted(sim):
    response = pay(sim, new_token(sim), amount=2**31 - 1)
    assert response.status == 200 and response.json["amount"] == 2**31 - 1


# --- declines and scripted errors -----------------------------------------------------------

@pytest.mark.parametrize("card_fields, reason", [
    ({"name": "REFUSED"}, "Refused by the card issuer"),
    ({"name": "insufficient_funds"}, "Insufficient funds"),
    ({"number": "4000000000000002"}, "Refused by the card issuer"),
    ({"number": "4000000000009995"}, "Insufficient funds"),
])
def test_decline_is_http_200_failed_and_charges_nothing(sim, card_fields, reason):
    token = new_token(sim, **card_fields)
    code = str(uuid.uuid4())
    response = pay(sim, token, code=code)
    assert response.status == 200
    order = response.json
    assert order["paymentStatus"] == "FAILED" and order["paymentStatusReason"] == reason
    assert set(order) == ORDER_KEYS | {"paymentStatusReason"}
    [row] = sim.ledger.orders_by_customer_order_code(code)
    assert (row["status"], row["charged"]) == ("FAILED", 0)
    assert_error(pay(sim, token), 400, "TKN_EXPIRED")  # a decline spends the one-use token
    refund = call(sim, "POST", "/v1/orders/%s/refund" % order["orderCode"], key=MERCHANT.service_key)
    assert_error(refund, 400, "BAD_REQUEST", "FAILED")


@pytest.mark.parametrize("card_fields", [{"name": "ERROR"}, {"number": "4000000000000119"}])
def test_error_outcome_is_500_and_commits_nothing(sim, card_fields):
    token = new_token(sim, **card_fields)
    code = str(uuid.uuid4())
    assert_error(pay(sim, token, code=code), 500, "INTERNAL_SERVER_ERROR")
    assert sim.ledger.orders_by_customer_order_code(code) == []
    assert [e["kind"] for e in sim.ledger.events() if e["token"] == token] == ["token_created", "gateway_error"]
    assert_error(pay(sim, token), 500, "INTERNAL_SERVER_ERROR")  # the token was not spent


# --- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("amount", [1.0, 2.5, 1e3, -1, 0, "100", True, 2**31, 10**30, None, [], {}])
def test_bad_amounts_are_refused_naming_the_field(sim, amount):
    body = order_body(new_token(sim), code="bad-amount")
    if amount is None:
        del body["amount"]
    else:
        body["amount"] = amount
    assert_error(call(sim, "POST", "/v1/orders", body, key=MERCHANT.service_key), 400, "BAD_REQUEST", "amount")


@pytest.mark.parametrize("field, value, words", [
    ("currencyCode", "gbp", ("currencyCode",)),
    ("currencyCode", None, ("currencyCode",)),
    ("orderDescription", "", ("orderDescription",)),
    ("token", 12, ("token",)),
    ("authorizeOnly", "yes", ("authorizeOnly",)),
    ("customerOrderCode", 7, ("customerOrderCode",)),
])
def test_bad_order_fields_are_refused(sim, field, value, words):
    body = order_body("TEST_SU_x")
    if value is None:
        del body[field]
    else:
        body[field] = value
    assert_error(call(sim, "POST", "/v1/orders", body, key=MERCHANT.service_key), 400, "BAD_REQUEST", *words)


@pytest.mark.parametrize("changes, code, words", [
    ({"cardNumber": "4444333322221112"}, "INVALID_PAYMENT_DETAILS", ("cardNumber", "Luhn")),
    ({"cardNumber": "4111111111111111"}, "INVALID_PAYMENT_DETAILS",
     ("This card is not accepted for Test transactions",)),
    ({"cardNumber": "4444 3333 2222 1111"}, "BAD_REQUEST", ("cardNumber",)),
    ({"cardNumber": 4444333322221111}, "BAD_REQUEST", ("cardNumber",)),
    ({"cvc": "12"}, "BAD_REQUEST", ("cvc", "3 or 4")),
    ({"cvc": "12345"}, "BAD_REQUEST", ("cvc",)),
    ({"cvc": "12a"}, "BAD_REQUEST", ("cvc",)),
    ({"cvc": 123}, "BAD_REQUEST", ("cvc",)),
    ({"cvc": None}, "BAD_REQUEST", ("cvc",)),
    ({"expiryMonth": 13}, "BAD_REQUEST", ("expiryMonth",)),
    ({"expiryMonth": "12"}, "BAD_REQUEST", ("expiryMonth",)),
    ({"expiryYear": 30}, "BAD_REQUEST", ("expiryYear",)),
    ({"name": None}, "BAD_REQUEST", ("name",)),
    ({"type": "APM"}, "BAD_REQUEST", ("type",)),
])
def test_bad_card_details_are_refused_at_tokens(sim, changes, code, words):
    method = card()
    method.update(changes)
    response = call(sim, "POST", "/v1/tokens", {"clientKey": MERCHANT.client_key, "paymentMethod": method})
    body = assert_error(response, 400, code, *words)
    assert VISA not in response.body.decode() and "4111111111111111" not in response.body.decode()
    assert '"cvc":"****"' in body["originalRequest"] or method.get("cvc") is None


def test_expired_card_is_refused_naming_the_expiry_fields(sim):
    today = datetime.date.today()
    last_month = (today.replace(day=1) - datetime.timedelta(days=1))
    response = call(sim, "POST", "/v1/tokens", {"clientKey": MERCHANT.client_key, "paymentMethod": card(
        month=last_month.month, year=last_month.year)})
    assert_error(response, 400, "INVALID_PAYMENT_DETAILS", "expiryMonth", "expired")
    this_month = call(sim, "POST", "/v1/tokens", {"clientKey": MERCHANT.client_key, "paymentMethod": card(
        month=today.month, year=today.year)})
    assert this_month.status == 200  # valid through the end of its expiry month


@pytest.mark.parametrize("client_key, words", [
    (live_key("C", "5"), ("live",)),
    ("T_C_99999999-9999-4999-8999-999999999999", ("Unknown",)),
    (MERCHANT.service_key, ("client key",)),
    (None, ("clientKey",)),
])
def test_tokens_refuses_bad_client_keys(sim, client_key, words):
    body = {"paymentMethod": card()}
    if client_key:
        body["clientKey"] = client_key
    assert_error(call(sim, "POST", "/v1/tokens", body), 401, "UNAUTHORIZED", *words)


@pytest.mark.parametrize("key, words", [
    (None, ("required",)),
    ("T_S_99999999-9999-4999-8999-999999999999", ("Unknown",)),
    (live_key("S", "5"), ("live",)),
    (MERCHANT.client_key, ("client key",)),
    ("Bearer " + MERCHANT.service_key, ("not a service key",)),
])
def test_orders_refuses_bad_service_keys(sim, key, words):
    token = new_token(sim)
    response = call(sim, "POST", "/v1/orders", order_body(token), key=key)
    body = assert_error(response, 401, "UNAUTHORIZED", *words)
    assert MERCHANT.service_key not in json.dumps(body)
    assert pay(sim, token).status == 200  # a refused request does not spend the token


def test_token_of_another_merchant_is_a_token_conflict(sim):
    token = new_token(sim, merchant=MERCHANT)
    code = str(uuid.uuid4())
    assert_error(pay(sim, token, merchant=OTHER, code=code), 409, "TOKEN_CONFLICT", "another merchant")
    assert sim.ledger.orders_by_customer_order_code(code) == []
    assert pay(sim, token, merchant=MERCHANT).status == 200


def test_token_reuse_is_tkn_expired(sim):
    token = new_token(sim)
    assert pay(sim, token).status == 200
    assert_error(pay(sim, token), 400, "TKN_EXPIRED", "already been used")


def test_unknown_token_and_order(sim):
    assert_error(pay(sim, "TEST_SU_00000000-0000-4000-8000-000000000000"), 404, "TKN_NOT_FOUND")
    assert_error(call(sim, "GET", "/v1/orders/" + str(uuid.uuid4()), key=MERCHANT.service_key),
                 404, "ORDER_NOT_FOUND")
    order = pay(sim, new_token(sim)).json
    assert_error(call(sim, "GET", "/v1/orders/" + order["orderCode"], key=OTHER.service_key),
                 404, "ORDER_NOT_FOUND")


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/jsonx", "application/x-www-form-urlencoded"])
def test_post_without_json_media_type_is_415(sim, content_type):
    response = call(sim, "POST", "/v1/orders", order_body("TEST_SU_x"), key=MERCHANT.service_key,
                    content_type=content_type)
    assert_error(response, 415, "MEDIA_TYPE_NOT_SUPPORTED")


def test_json_media_type_with_charset_is_accepted(sim):
    token = new_token(sim)
    response = call(sim, "POST", "/v1/orders", order_body(token), key=MERCHANT.service_key,
                    content_type="Application/JSON; charset=UTF-8")
    assert response.status == 200


@pytest.mark.parametrize("body, words", [
    (b"{not json", ("not valid JSON",)),
    (b'{"amount": 1, "amount": 2}', ("duplicate",)),
    (b'{"amount": NaN}', ("not valid JSON",)),
    (b"\xff\xfe", ("UTF-8",)),
])
def test_unparsable_bodies_are_error_parsing_json(sim, body, words):
    response = call(sim, "POST", "/v1/orders", body, key=MERCHANT.service_key)
    assert assert_error(response, 400, "ERROR_PARSING_JSON", *words)["originalRequest"] == ""


def test_json_that_is_not_an_object_is_bad_request(sim):
    assert_error(call(sim, "POST", "/v1/orders", b"[1]", key=MERCHANT.service_key), 400, "BAD_REQUEST")


def test_unknown_path_and_wrong_method(sim):
    assert_error(call(sim, "GET", "/v1/nothing"), 404, "NOT_FOUND")
    assert_error(call(sim, "GET", "/v1/orders/"), 404, "NOT_FOUND")
    response = call(sim, "PUT", "/v1/tokens", {})
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["Allow"] == "POST"


def test_error_bodies_never_echo_card_numbers(sim):
    method = card(cvc="9876")
    method["cardNumber"] = "4111111111111111"
    response = call(sim, "POST", "/v1/tokens", {"clientKey": MERCHANT.client_key, "paymentMethod": method})
    echoed = assert_error(response, 400, "INVALID_PAYMENT_DETAILS")["originalRequest"]
    assert "4111111111111111" not in echoed and "9876" not in echoed
    assert json.loads(echoed)["paymentMethod"]["cardNumber"] == "**** **** **** 1111"
    assert json.loads(echoed)["clientKey"] == MERCHANT.client_key


# --- refunds, capture, cancel, search ---------------------------------------------------------

def refund(sim, order_code, body=None, merchant=MERCHANT):
    return call(sim, "POST", "/v1/orders/%s/refund" % order_code, body, key=merchant.service_key)


def status_of(sim, order_code):
    return call(sim, "GET", "/v1/orders/" + order_code, key=MERCHANT.service_key).json["paymentStatus"]


def test_full_refund_is_200_with_empty_body(sim):
    order = pay(sim, new_token(sim), amount=500).json
    response = refund(sim, order["orderCode"])
    assert response.status == 200 and response.body == b"" and response.headers["Content-Length"] == "0"
    assert status_of(sim, order["orderCode"]) == "REFUNDED"
    assert_error(refund(sim, order["orderCode"]), 400, "BAD_REQUEST", "already been fully refunded")
    assert_error(refund(sim, order["orderCode"], {"refundAmount": 1}), 400, "BAD_REQUEST", "refunded")
    assert [r["amount"] for r in sim.ledger.refunds(order["orderCode"])] == [500]


def test_partial_refunds_then_over_refund(sim):
    order = pay(sim, new_token(sim), amount=500).json
    code = order["orderCode"]
    assert refund(sim, code, {"refundAmount": 200}).status == 200
    assert status_of(sim, code) == "PARTIALLY_REFUNDED"
    assert_error(refund(sim, code, {"refundAmount": 301}), 400, "BAD_REQUEST",
                 "Refund amount exceeds the amount available to refund")
    assert refund(sim, code, {}).status == 200  # {} refunds the rest
    assert status_of(sim, code) == "REFUNDED"
    assert [r["amount"] for r in sim.ledger.refunds(code)] == [200, 300]
    row = sim.ledger.order(code)
    assert (row["charged"], row["refunded"]) == (500, 500)


@pytest.mark.parametrize("body, words", [
    ({"refundAmount": 0}, ("refundAmount",)),
    ({"refundAmount": 1.5}, ("refundAmount",)),
    ({"amount": 100}, ("amount", "refundAmount")),
])
def test_bad_refund_bodies_are_refused_and_refund_nothing(sim, body, words):
    code = pay(sim, new_token(sim), amount=500).json["orderCode"]
    assert_error(refund(sim, code, body), 400, "BAD_REQUEST", *words)
    assert sim.ledger.refunds(code) == []


def test_refund_of_another_merchants_order_is_not_found(sim):
    code = pay(sim, new_token(sim)).json["orderCode"]
    assert_error(refund(sim, code, merchant=OTHER), 404, "ORDER_NOT_FOUND")
    assert_error(refund(sim, str(uuid.uuid4())), 404, "ORDER_NOT_FOUND")


def test_authorize_capture_refund(sim):
    order = pay(sim, new_token(sim), amount=1000, authorizeOnly=True).json
    code = order["orderCode"]
    assert order["paymentStatus"] == "AUTHORIZED" and order["authorizedAmount"] == 1000
    assert_error(refund(sim, code), 400, "BAD_REQUEST", "AUTHORIZED")
    capture = lambda body: call(sim, "POST", "/v1/orders/%s/capture" % code, body, key=MERCHANT.service_key)
    assert_error(capture({"captureAmount": 1001}), 400, "BAD_REQUEST", "captureAmount")
    captured = capture({"captureAmount": 600})
    assert captured.status == 200 and captured.json["paymentStatus"] == "SUCCESS"
    assert_error(capture(None), 400, "BAD_REQUEST", "Only AUTHORIZED")
    assert_error(refund(sim, code, {"refundAmount": 601}), 400, "BAD_REQUEST", "exceeds")
    assert refund(sim, code).status == 200
    row = sim.ledger.order(code)
    assert (row["status"], row["authorized"], row["charged"], row["refunded"]) == ("REFUNDED", 1000, 600, 600)


def test_cancel_authorized_order(sim):
    code = pay(sim, new_token(sim), authorizeOnly=True).json["orderCode"]
    response = call(sim, "DELETE", "/v1/orders/" + code, key=MERCHANT.service_key)
    assert response.status == 200 and response.body == b""
    assert status_of(sim, code) == "CANCELLED"
    assert_error(call(sim, "DELETE", "/v1/orders/" + code, key=MERCHANT.service_key), 400, "BAD_REQUEST")
    assert_error(call(sim, "POST", "/v1/orders/%s/capture" % code, key=MERCHANT.service_key),
                 400, "BAD_REQUEST", "CANCELLED")
    paid = pay(sim, new_token(sim)).json["orderCode"]
    assert_error(call(sim, "DELETE", "/v1/orders/" + paid, key=MERCHANT.service_key), 400, "BAD_REQUEST")


def test_search_by_customer_order_code_is_per_merchant(sim):
    code = str(uuid.uuid4())
    declined = pay(sim, new_token(sim, name="REFUSED"), code=code).json
    paid = pay(sim, new_token(sim), code=code).json
    pay(sim, new_token(sim, merchant=OTHER), merchant=OTHER, code=code)
    found = call(sim, "GET", "/v1/orders?customerOrderCode=" + code, key=MERCHANT.service_key)
    assert found.status == 200
    assert [o["orderCode"] for o in found.json["orders"]] == [declined["orderCode"], paid["orderCode"]]
    assert [o["paymentStatus"] for o in found.json["orders"]] == ["FAILED", "SUCCESS"]
    none = call(sim, "GET", "/v1/orders?customerOrderCode=nothing-" + code, key=MERCHANT.service_key)
    assert none.json == {"orders": []}
    assert_error(call(sim, "GET", "/v1/orders", key=MERCHANT.service_key), 400, "BAD_REQUEST", "customerOrderCode")
    assert_error(call(sim, "GET", "/v1/orders?customerOrderCode=" + code), 401, "UNAUTHORIZED")


# --- HTTP behaviour ------------------------------------------------------------------------------

def test_keep_alive_and_content_length_on_every_response(sim):
    conn = connect(sim)
    try:
        token = call(sim, "POST", "/v1/tokens", {"clientKey": MERCHANT.client_key, "paymentMethod": card()},
                     conn=conn)
        first_socket = conn.sock
        order = call(sim, "POST", "/v1/orders", order_body(token.json["token"]), key=MERCHANT.service_key,
                     conn=conn)
        responses = [token, order,
                     call(sim, "POST", "/v1/orders/%s/refund" % order.json["orderCode"], key=MERCHANT.service_key,
                          conn=conn),
                     call(sim, "GET", "/v1/orders/nope", key=MERCHANT.service_key, conn=conn),
                     call(sim, "GET", "/_sim/health", conn=conn)]
        assert conn.sock is first_socket  # one connection served all five
    finally:
        conn.close()
    assert [r.status for r in responses] == [200, 200, 200, 404, 200]
    for response in responses:
        assert int(response.headers["Content-Length"]) == len(response.body)
        assert response.headers.get("Connection") != "close"


def test_chunked_and_oversized_bodies_are_refused_and_close(sim):
    host, port = _address(sim.url)
    with socket.create_connection((host, port), timeout=5) as raw:
        raw.sendall(b"POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
        data = _read_all(raw)
    assert data.startswith(b"HTTP/1.1 411 ") and b"Connection: close" in data
    big = call(sim, "POST", "/v1/orders", b"{" + b" " * (64 * 1024) + b"}", key=MERCHANT.service_key)
    assert_error(big, 413, "REQUEST_TOO_LARGE")


def _read_all(raw):
    chunks = []
    while True:
        chunk = raw.recv(4096)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_many_clients_at_once(fresh):
    results = []

    def buyer(number):
        token = new_token(fresh)
        results.append(pay(fresh, token, amount=100 + number, code="c%d" % number).json["paymentStatus"])

    threads = [threading.Thread(target=buyer, args=(n,)) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == ["SUCCESS"] * 24
    summary = fresh.ledger.reconcile()
    assert summary["consistent"], summary["problems"]
    assert summary["merchants"]["default"]["amounts"]["GBP"]["charged"] == sum(100 + n for n in range(24))


def test_concurrent_payments_with_one_token_charge_once(fresh):
    token = new_token(fresh)
    barrier = threading.Barrier(8)
    statuses = []

    def attempt():
        barrier.wait()
        statuses.append(pay(fresh, token, code="race").status)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(statuses) == [200] + [400] * 7
    assert len(fresh.ledger.orders_by_customer_order_code("race")) == 1


def test_request_log_has_one_line_per_request_and_no_secrets(sim):
    mark = len(sim.logs)
    token = new_token(sim, cvc="9753")
    pay(sim, token, code="logged")
    call(sim, "GET", "/v1/orders/nope", key=MERCHANT.service_key)
    deadline = time.monotonic() + 2  # a line is logged just after its answer is sent
    while len(sim.logs) < mark + 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    lines = sim.logs[mark:]
    assert len(lines) == 3
    assert re.match(r"^127\.0\.0\.1 POST /v1/tokens 200 [\d.]+ms$", lines[0])
    assert re.match(r"^127\.0\.0\.1 POST /v1/orders 200 ", lines[1])
    assert re.match(r"^127\.0\.0\.1 GET /v1/orders/nope 404 ", lines[2])
    text = "\n".join(sim.logs)
    for secret in (VISA, MERCHANT.service_key, OTHER.service_key):
        assert secret not in text
    # The CVC as a value of its own: random ids in logged paths may hold the digits 9753 by chance.
    assert not re.search(r"(?<![0-9A-Za-z_-])9753(?![0-9A-Za-z_-])", text), text


def test_ledger_file_holds_no_card_numbers(sim):
    new_token(sim, number="6759649826438453", cvc="8642")
    with open(sim.ledger.path, "rb") as handle:
        data = handle.read()
    if os.path.exists(sim.ledger.path + "-wal"):
        with open(sim.ledger.path + "-wal", "rb") as handle:
            data += handle.read()
    assert b"675964******8453" in data
    assert b"6759649826438453" not in data and VISA.encode() not in data
    # Random ids in the file may hold the digits 8642 by chance: look for the CVC as a stored value.
    import sqlite3
    db = sqlite3.connect(sim.ledger.path)
    try:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in db.execute("SELECT * FROM %s" % table):
                for value in row:
                    text = str(value)
                    assert text != "8642" and '"8642"' not in text and "'8642'" not in text, (table, row)
    finally:
        db.close()
    assert MERCHANT.service_key.encode() not in data


# --- faults ------------------------------------------------------------------------------------

def add_fault(sim, endpoint, kind, arg=None, count=None):
    response = call(sim, "POST", "/_sim/faults", {"endpoint": endpoint, "kind": kind, "arg": arg, "count": count})
    assert response.status == 200, response.body
    return response.json["fault"]


def test_latency_delays_the_answer(sim):
    token = new_token(sim)
    add_fault(sim, "orders", "latency", 0.4, 1)
    started = time.monotonic()
    response = pay(sim, token)
    assert response.status == 200 and time.monotonic() - started >= 0.4
    started = time.monotonic()
    assert pay(sim, new_token(sim)).status == 200 and time.monotonic() - started < 0.3  # x1 used up


def test_latency_beyond_client_timeout_commits_after_the_delay(sim):
    token, code = new_token(sim), str(uuid.uuid4())
    add_fault(sim, "orders", "latency", 0.5, 1)
    with pytest.raises(TimeoutError):
        call(sim, "POST", "/v1/orders", order_body(token, code=code), key=MERCHANT.service_key, timeout=0.15)
    assert sim.ledger.orders_by_customer_order_code(code) == []  # not yet: latency comes before processing
    deadline = time.monotonic() + 3
    while not sim.ledger.orders_by_customer_order_code(code) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim.ledger.orders_by_customer_order_code(code)[0]["status"] == "SUCCESS"


def test_status_fault_answers_5xx_without_doing_anything(sim):
    token, code = new_token(sim), str(uuid.uuid4())
    add_fault(sim, "orders", "status", 503, 1)
    body = assert_error(pay(sim, token, code=code), 503, "INTERNAL_SERVER_ERROR")
    assert body["httpStatusCode"] == 503
    assert sim.ledger.orders_by_customer_order_code(code) == []
    assert pay(sim, token, code=code).status == 200  # token unspent, fault used up


def test_drop_before_closes_without_answer_or_commit(sim):
    token, code = new_token(sim), str(uuid.uuid4())
    add_fault(sim, "orders", "drop-before", None, 1)
    with pytest.raises(http.client.RemoteDisconnected):
        pay(sim, token, code=code)
    assert sim.ledger.orders_by_customer_order_code(code) == []
    assert pay(sim, token, code=code).json["paymentStatus"] == "SUCCESS"


def test_drop_after_commits_then_closes_without_answer(sim):
    token, code = new_token(sim), str(uuid.uuid4())
    add_fault(sim, "orders", "drop-after", None, 1)
    with pytest.raises(http.client.RemoteDisconnected):
        pay(sim, token, code=code)
    [row] = sim.ledger.orders_by_customer_order_code(code)
    assert (row["status"], row["charged"]) == ("SUCCESS", 560)
    found = call(sim, "GET", "/v1/orders?customerOrderCode=" + code, key=MERCHANT.service_key).json["orders"]
    assert [o["orderCode"] for o in found] == [row["order_code"]]  # how a producer resolves the ambiguity
    assert_error(pay(sim, token, code=code), 400, "TKN_EXPIRED")


def test_drop_after_on_refund_commits_the_refund(sim):
    code = pay(sim, new_token(sim), amount=300).json["orderCode"]
    add_fault(sim, "refund", "drop-after", None, 1)
    with pytest.raises(http.client.RemoteDisconnected):
        refund(sim, code)
    assert sim.ledger.order(code)["status"] == "REFUNDED"
    assert_error(refund(sim, code), 400, "BAD_REQUEST", "already")


def test_trickle_sends_the_answer_a_few_bytes_at_a_time(sim):
    code = pay(sim, new_token(sim)).json["orderCode"]
    add_fault(sim, "order", "trickle", 0.005, 1)
    host, port = _address(sim.url)
    request = ("GET /v1/orders/%s HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nConnection: close\r\n\r\n"
               % (code, MERCHANT.service_key)).encode()
    with socket.create_connection((host, port), timeout=5) as raw:
        started = time.monotonic()
        raw.sendall(request)
        pieces = []
        while True:
            piece = raw.recv(4096)
            if not piece:
                break
            pieces.append(piece)
        elapsed = time.monotonic() - started
    data = b"".join(pieces)
    chunks = -(-len(data) // faults.TRICKLE_CHUNK)
    assert elapsed >= (chunks - 1) * 0.005 * 0.9
    assert len(pieces) >= chunks // 4 and max(len(p) for p in pieces) < len(data)
    head, body = data.split(b"\r\n\r\n", 1)
    assert b"HTTP/1.1 200 OK" in head and json.loads(body)["orderCode"] == code


def test_fault_count_endpoint_scope_and_control_endpoint(sim):
    token = new_token(sim)
    fault = add_fault(sim, "orders", "status", 500, 2)
    assert fault["count"] == 2 and fault["kind"] == "status"
    add_fault(sim, "refund", "status", 502)
    assert pay(sim, token).status == 500
    assert [f["count"] for f in call(sim, "GET", "/_sim/faults").json["faults"]] == [1, None]
    assert pay(sim, token).status == 500
    assert call(sim, "GET", "/v1/orders/nope", key=MERCHANT.service_key).status == 404  # other endpoint
    order = pay(sim, token)
    assert order.status == 200
    assert refund(sim, order.json["orderCode"]).status == 502
    assert refund(sim, order.json["orderCode"]).status == 502  # unlimited
    assert call(sim, "DELETE", "/_sim/faults").json == {"cleared": 1}
    assert refund(sim, order.json["orderCode"]).status == 200
    assert call(sim, "GET", "/_sim/health").json["status"] == "ok"


def test_wildcard_fault_applies_to_every_endpoint_but_not_control(sim):
    add_fault(sim, "*", "status", 503, 2)
    assert call(sim, "POST", "/v1/tokens", {"clientKey": MERCHANT.client_key, "paymentMethod": card()}).status == 503
    assert call(sim, "GET", "/_sim/health").status == 200
    assert call(sim, "GET", "/v1/orders/x", key=MERCHANT.service_key).status == 503
    assert call(sim, "GET", "/v1/orders/x", key=MERCHANT.service_key).status == 404


@pytest.mark.parametrize("body", [
    {"endpoint": "payments", "kind": "status"},
    {"endpoint": "orders", "kind": "explode"},
    {"endpoint": "orders", "kind": "status", "arg": 404},
    {"endpoint": "orders", "kind": "latency"},
    {"endpoint": "orders", "kind": "drop-after", "arg": 1},
    {"endpoint": "orders", "kind": "drop-after", "count": 0},
])
def test_bad_fault_requests_are_refused(sim, body):
    assert_error(call(sim, "POST", "/_sim/faults", body), 400, "BAD_REQUEST", "fault")
    assert call(sim, "GET", "/_sim/faults").json == {"faults": []}


# --- HTTPS -----------------------------------------------------------------------------------------

def tls_health(sim, context, server_hostname):
    """GET /_sim/health over TLS to the simulator's address, verifying as `server_hostname`."""
    host, port = _address(sim.url)
    with socket.create_connection((host, port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=server_hostname) as tls:
            tls.sendall(b"GET /_sim/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            version = tls.version()
            data = _read_all(tls)
    assert version in ("TLSv1.2", "TLSv1.3")
    return data


def test_https_with_the_local_ca(tmp_path):
    tls_dir = str(tmp_path / "tls")
    with Simulator(tls_dir=tls_dir, log=lambda line: None) as secure:
        assert secure.url.startswith("https://127.0.0.1:")
        assert secure.ca_path == os.path.join(tls_dir, "ca.pem")
        trusted = tlsca.client_context(secure.ca_path)
        for name in ("127.0.0.1", "localhost"):
            assert tls_health(secure, trusted, name).startswith(b"HTTP/1.1 200 OK")
        conn = connect(secure, context=trusted)
        try:  # http.client over TLS, keep-alive included
            assert call(secure, "GET", "/_sim/health", conn=conn).status == 200
            assert call(secure, "GET", "/_sim/health", conn=conn).status == 200
        finally:
            conn.close()
        stranger = ssl.create_default_context(cadata=trustme.CA().cert_pem.bytes().decode())
        with pytest.raises(ssl.SSLCertVerificationError):
            tls_health(secure, stranger, "127.0.0.1")
        with pytest.raises(ssl.SSLCertVerificationError):  # a name the certificate does not hold
            tls_health(secure, trusted, "example.com")
        with pytest.raises((ConnectionError, http.client.BadStatusLine)):  # plain HTTP gets no answer
            call(secure, "GET", "/_sim/health")
    with open(os.path.join(tls_dir, "ca.pem"), "rb") as handle:
        first_ca = handle.read()
    with Simulator(tls_dir=tls_dir, log=lambda line: None) as again:  # the CA is kept across runs
        with open(again.ca_path, "rb") as handle:
            assert handle.read() == first_ca
        assert tls_health(again, tlsca.client_context(again.ca_path), "localhost").startswith(b"HTTP/1.1 200 OK")


# --- the command line -----------------------------------------------------------------------------

class CliGateway:
    """tools/gateway running as a subprocess; `banner` holds its startup lines (URL first)."""

    def __init__(self, *args):
        self.process = subprocess.Popen([sys.executable, GATEWAY, "--port", "0", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.banner = []
        while True:  # read the whole banner here: communicate() would miss lines buffered by readline()
            line = self.process.stdout.readline()
            if not line:
                self.process.kill()
                raise AssertionError("gateway did not start: " + self.process.stderr.read())
            self.banner.append(line.rstrip("\n"))
            if line.startswith("ledger "):
                break
        self.url = self.banner[0]

    def stop(self, signum=signal.SIGTERM):
        """Send `signum`; returns (exit status, banner + rest of stdout, stderr)."""
        self.process.send_signal(signum)
        out, err = self.process.communicate(timeout=10)
        return self.process.returncode, "\n".join(self.banner) + "\n" + out, err


def test_cli_serves_logs_stops_on_sigterm_and_prints_the_ledger(tmp_path):
    db = str(tmp_path / "ledger.db")
    gw = CliGateway("--db", db, "--merchant", "%s:%s:shop" % (OTHER.client_key, OTHER.service_key))
    try:
        assert re.match(r"^http://127\.0\.0\.1:\d+/v1$", gw.url)
        shop = Merchant("shop", OTHER.client_key, OTHER.service_key)
        paid = pay(gw, new_token(gw, merchant=shop), merchant=shop, amount=560, code="cli-1").json
        pay(gw, new_token(gw, merchant=shop, name="REFUSED"), merchant=shop, amount=99, code="cli-2")
        assert refund(gw, paid["orderCode"], {"refundAmount": 100}, merchant=shop).status == 200
    finally:
        code, out, err = gw.stop()
    assert code == 0
    assert "merchant shop: clientKey " + OTHER.client_key in out
    assert OTHER.service_key not in out + err and VISA not in out + err
    request_lines = [line for line in err.splitlines() if " /v1/" in line]
    assert len(request_lines) == 5 and all(re.search(r" (200|400) [\d.]+ms$", l) for l in request_lines)

    printed = subprocess.run([sys.executable, GATEWAY, "ledger", "--db", db], capture_output=True, text=True,
                             timeout=10)
    assert printed.returncode == 0, printed.stderr
    text = printed.stdout
    assert "merchant shop: 2 tokens, 2 orders (1 paid, 1 failed, 0 authorized, 0 cancelled), 1 refunds" in text
    assert "GBP  charged 560  refunded 100  net 460" in text
    assert "consistent: yes" in text
    assert "444433******1111" in text and VISA not in text
    assert "Refused by the card issuer" in text and "order_refunded" in text

    as_json = subprocess.run([sys.executable, GATEWAY, "ledger", "--db", db, "--json"], capture_output=True,
                             text=True, timeout=10)
    summary = json.loads(as_json.stdout)
    assert summary["merchants"]["shop"]["amounts"] == {"GBP": {"charged": 560, "refunded": 100, "net": 460}}

    with sqlite3.connect(db) as tamper:  # a ledger that no longer adds up must say so
        tamper.execute("UPDATE orders SET refunded = 50 WHERE customer_order_code = 'cli-1'")
    broken = subprocess.run([sys.executable, GATEWAY, "ledger", "--db", db], capture_output=True, text=True,
                            timeout=10)
    assert broken.returncode == 1 and "consistent: NO" in broken.stdout
    assert "refunds sum to 100" in broken.stdout


def test_cli_default_merchant_fault_flag_and_ctrl_c(tmp_path):
    gw = CliGateway("--fault", "orders:status:503:x1", "--fault", "tokens:latency:0.2")
    try:
        started = time.monotonic()
        token = new_token(gw)
        assert time.monotonic() - started >= 0.2
        assert pay(gw, token).status == 503
        assert pay(gw, token).status == 200
    finally:
        code, out, err = gw.stop(signal.SIGINT)
    assert code == 0
    assert MERCHANT.client_key in out and MERCHANT.service_key in out  # the documented default is printed
    assert "Traceback" not in err


def test_cli_merchants_file_and_https(tmp_path):
    path = tmp_path / "merchants.json"
    path.write_text(json.dumps([{"name": "kiosk", "clientKey": OTHER.client_key, "serviceKey": OTHER.service_key}]))
    gw = CliGateway("--merchants", str(path), "--tls", str(tmp_path / "tls"), "--quiet")
    try:
        assert gw.url.startswith("https://127.0.0.1:")
        context = tlsca.client_context(str(tmp_path / "tls" / "ca.pem"))
        response = call(gw, "POST", "/v1/tokens", {"clientKey": OTHER.client_key, "paymentMethod": card()},
                        conn=connect(gw, context=context))
        assert response.status == 200
        default = call(gw, "POST", "/v1/tokens", {"clientKey": MERCHANT.client_key, "paymentMethod": card()},
                       conn=connect(gw, context=context))
        assert_error(default, 401, "UNAUTHORIZED")  # configured merchants replace the default one
    finally:
        code, out, err = gw.stop()
    assert code == 0 and err == ""


@pytest.mark.parametrize("args, words", [
    (["--fault", "orders:explode"], "unknown fault kind"),
    (["--merchant", "T_C_x:T_S_y"], "clientKey"),
    (["--merchant", live_key("C", "5") + ":" + MERCHANT.service_key], "test client key"),
])
def test_cli_refuses_bad_configuration(args, words):
    result = subprocess.run([sys.executable, GATEWAY, "--port", "0", *args], capture_output=True, text=True,
                            timeout=10)
    assert result.returncode == 2 and words in result.stderr and result.stdout == ""


def test_cli_ledger_of_missing_file_fails(tmp_path):
    result = subprocess.run([sys.executable, GATEWAY, "ledger", "--db", str(tmp_path / "none.db")],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 2 and "no such ledger file" in result.stderr
    assert not (tmp_path / "none.db").exists()


def test_tls_without_cryptography_says_how_to_install_it(tmp_path):
    script = ("import sys; sys.modules['cryptography'] = None; sys.path.insert(0, %r); "
              "sys.argv = ['gateway', '--tls', %r]; from gatewaysim.cli import main; sys.exit(main())"
              % (os.path.join(ROOT, "tools"), str(tmp_path / "tls")))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert "--tls needs the cryptography package, which `make venv` installs" in proc.stderr
    assert "Traceback" not in proc.stderr and not os.path.exists(tmp_path / "tls")
