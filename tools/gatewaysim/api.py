"""Request handling of the simulated gateway: (method, target, headers, body) -> Reply.

Theory of operation: route() maps a request to an endpoint name (the name
faults are keyed by) and a handler. handle() checks the media type, parses
the body strictly, authenticates the merchant, and runs the handler; every
refusal is a GatewayError turned into the Worldpay error shape. Handlers
that change state do their read-decide-write inside one ledger
transaction, so concurrent requests cannot spend a token twice or refund
more than was charged. fault_plan() tells the server which injected
faults a request suffers; the server carries them out.

It never touches sockets, never sleeps and never logs. Card numbers and
CVCs go no further than the token handler's locals: only masks reach the
ledger, and error bodies echo a masked request.
"""
import datetime
import json
import time
import urllib.parse
import uuid

from gatewaysim import cards, faults, fields, ledger as ledger_mod
from gatewaysim.errors import GatewayError, error_body
from gatewaysim.merchants import key_kind

JSON_TYPE = "application/json;charset=UTF-8"
MAX_BODY = 64 * 1024  # bytes; the server refuses longer bodies before reading them
ENVIRONMENT = "TEST"
RISK_SCORE = "1"  # a string on the wire (the reference decodes it into a Go string)

_SINGLE_HEADERS = ("authorization", "content-type", "content-length")


class Reply:
    """An HTTP answer: status, extra headers (list of pairs) and body bytes."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status, body=b"", headers=()):
        self.status = status
        self.body = body
        self.headers = list(headers)
        if body:
            self.headers.append(("Content-Type", JSON_TYPE))

    def json(self):
        """The body parsed as JSON (None if empty)."""
        return json.loads(self.body) if self.body else None


def json_reply(status, obj, headers=()):
    """A Reply carrying `obj` as compact UTF-8 JSON."""
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Reply(status, body, headers)


# --- routing ----------------------------------------------------------------

def route(method, target):
    """(endpoint name or None for control, handler name, path args, query); raises NOT_FOUND / 405."""
    split = urllib.parse.urlsplit(target)
    parts = split.path.split("/")[1:]
    if not parts or "" in parts:
        raise GatewayError("NOT_FOUND", "No endpoint at %s" % split.path)
    table = None
    args = ()
    if parts[0] == "v1":
        rest = parts[1:]
        if rest == ["tokens"]:
            table = {"POST": ("tokens", "create_token")}
        elif len(rest) == 2 and rest[0] == "tokens":
            table, args = {"GET": ("token", "get_token")}, (rest[1],)
        elif rest == ["orders"]:
            table = {"POST": ("orders", "create_order"), "GET": ("search", "search_orders")}
        elif len(rest) == 2 and rest[0] == "orders":
            table, args = {"GET": ("order", "get_order"), "DELETE": ("cancel", "cancel_order")}, (rest[1],)
        elif len(rest) == 3 and rest[0] == "orders" and rest[2] == "refund":
            table, args = {"POST": ("refund", "refund_order")}, (rest[1],)
        elif len(rest) == 3 and rest[0] == "orders" and rest[2] == "capture":
            table, args = {"POST": ("capture", "capture_order")}, (rest[1],)
    elif parts == ["_sim", "health"]:
        table = {"GET": (None, "sim_health")}
    elif parts == ["_sim", "faults"]:
        table = {"GET": (None, "sim_list_faults"), "POST": (None, "sim_add_fault"),
                 "DELETE": (None, "sim_clear_faults")}
    if table is None:
        raise GatewayError("NOT_FOUND", "No endpoint at %s" % split.path)
    if method not in table:
        error = GatewayError("METHOD_NOT_ALLOWED", "%s is not allowed on %s" % (method, split.path))
        error.allow = ", ".join(sorted(table))
        raise error
    endpoint, handler = table[method]
    return endpoint, handler, args, split.query


def _header_map(headers):
    """Lower-cased header names -> value; duplicates of key headers are refused."""
    result = {}
    for name, value in headers.items():
        name = name.lower()
        if name in result and name in _SINGLE_HEADERS:
            raise GatewayError("BAD_REQUEST", "%s header sent more than once" % name)
        result[name] = value
    return result


def _is_json_media_type(value):
    return value is not None and value.split(";", 1)[0].strip().lower() == "application/json"


# --- response shapes ------------------------------------------------------------

def obfuscated_card(token_row):
    """The ObfuscatedCard object for a token row (from the ledger: masked data only)."""
    profile = cards.PROFILES[token_row["card_profile"]]
    return {
        "type": "ObfuscatedCard",
        "name": token_row["name"],
        "expiryMonth": token_row["expiry_month"],
        "expiryYear": token_row["expiry_year"],
        "cardType": profile.card_type,
        "maskedCardNumber": cards.masked_card_number(token_row["masked_pan"]),
        "cardSchemeType": profile.scheme_type,
        "cardSchemeName": profile.scheme_name,
        "cardIssuer": profile.issuer,
        "countryCode": profile.country,
        "cardClass": profile.card_class,
        "cardProductTypeDescNonContactless": profile.product_noncontactless,
        "cardProductTypeDescContactless": profile.product_contactless,
        "prepaid": profile.prepaid,
    }


def token_response(token_row):
    """The POST /tokens and GET /tokens/{token} body."""
    return {"token": token_row["token"], "reusable": token_row["reusable"],
            "paymentMethod": obfuscated_card(token_row)}


def order_response(order_row, token_row):
    """The order object, in its current status."""
    body = {
        "orderCode": order_row["order_code"],
        "token": order_row["token"],
        "orderDescription": order_row["description"],
        "amount": order_row["amount"],
        "currencyCode": order_row["currency"],
        "paymentStatus": order_row["status"],
    }
    if order_row["status"] == "FAILED":
        body["paymentStatusReason"] = order_row["reason"]
    body["paymentResponse"] = obfuscated_card(token_row)
    body["customerOrderCode"] = order_row["customer_order_code"]
    body["environment"] = ENVIRONMENT
    body["riskScore"] = {"value": RISK_SCORE}
    if order_row["authorize_only"]:
        body["authorizedAmount"] = order_row["authorized"]
    return body


def _reject_unknown(obj, allowed):
    for key in obj:
        if key not in allowed:
            raise GatewayError("BAD_REQUEST", "%s is not a field of this request (expected %s)"
                               % (key, " or ".join(allowed)))


# --- the gateway -----------------------------------------------------------------

class Gateway:
    """The simulated gateway's rules over a ledger, a merchant book and a fault board."""

    def __init__(self, ledger, merchants, fault_board=None, clock=time.time, new_uuid=uuid.uuid4):
        self.ledger = ledger
        self.merchants = merchants
        self.faults = fault_board if fault_board is not None else faults.FaultBoard()
        self._clock = clock
        self._new_uuid = new_uuid

    # --- entry points used by the server ---

    def fault_plan(self, method, target):
        """The FaultPlan for this request (control and unknown endpoints never get faults)."""
        try:
            endpoint = route(method, target)[0]
        except GatewayError:
            endpoint = None
        return self.faults.plan(endpoint)

    def fault_reply(self, status):
        """The answer of an injected `status` fault: an INTERNAL_SERVER_ERROR body, nothing done."""
        error = GatewayError("INTERNAL_SERVER_ERROR", "Injected fault: HTTP %d" % status, status=status)
        return json_reply(status, error_body(error))

    def handle(self, method, target, headers, body):
        """Answer one request; never raises for bad input."""
        request = None
        try:
            _, handler, args, query = route(method, target)
            header_map = _header_map(headers)
            if method == "POST":
                if not _is_json_media_type(header_map.get("content-type")):
                    raise GatewayError("MEDIA_TYPE_NOT_SUPPORTED",
                                       "Content-Type must be application/json")
                request = fields.parse_json_object(body)
            return getattr(self, "_" + handler)(header_map, request, query, *args)
        except GatewayError as error:
            extra = [("Allow", error.allow)] if hasattr(error, "allow") else []
            return json_reply(error.status, error_body(error, request), extra)

    # --- helpers ---

    def _merchant(self, headers):
        key = headers.get("authorization")
        if key is None or not key.strip():
            raise GatewayError("UNAUTHORIZED", "Authorization header with a service key is required")
        kind = key_kind(key.strip())
        if kind is None:
            raise GatewayError("UNAUTHORIZED", "Authorization is not a service key")
        if kind[0] == "L":
            raise GatewayError("UNAUTHORIZED", "A live service key cannot be used with test keys and tokens")
        if kind[1] != "S":
            raise GatewayError("UNAUTHORIZED", "Authorization must be a service key, not a client key")
        merchant = self.merchants.by_service_key(key.strip())
        if merchant is None:
            raise GatewayError("UNAUTHORIZED", "Unknown service key")
        return merchant

    def _own_order(self, merchant, order_code):
        order = self.ledger.order(order_code)
        if order is None or order["merchant"] != merchant.name:
            raise GatewayError("ORDER_NOT_FOUND", "Order %s not found" % order_code)
        return order

    def _order_reply(self, order):
        return json_reply(200, order_response(order, self.ledger.token(order["token"])))

    # --- /v1/tokens ---

    def _create_token(self, headers, request, query):
        if request is None:
            raise GatewayError("BAD_REQUEST", "Request body is required")
        client_key = request.get("clientKey")
        if not isinstance(client_key, str) or not client_key:
            raise GatewayError("UNAUTHORIZED", "clientKey is required")
        kind = key_kind(client_key)
        if kind is None or kind[1] != "C":
            raise GatewayError("UNAUTHORIZED", "clientKey is not a client key")
        if kind[0] == "L":
            raise GatewayError("UNAUTHORIZED", "A live clientKey cannot be used in the TEST environment")
        merchant = self.merchants.by_client_key(client_key)
        if merchant is None:
            raise GatewayError("UNAUTHORIZED", "Unknown clientKey")
        reusable = fields.get_bool(request, "reusable", False)
        method = fields.get_object(request, "paymentMethod")
        kind = fields.get_string(method, "type", "paymentMethod")
        if kind != "Card":
            raise GatewayError("BAD_REQUEST", "paymentMethod.type: Unsupported Payment Method %r" % kind)
        name = fields.get_string(method, "name", "paymentMethod")
        month = fields.get_int(method, "expiryMonth", 1, 12, "paymentMethod")
        year = fields.get_int(method, "expiryYear", 1000, 9999, "paymentMethod")
        number = fields.get_digits(method, "cardNumber", 12, 19, "paymentMethod")
        fields.get_digits(method, "cvc", 3, 4, "paymentMethod")  # checked, then forgotten
        for optional in ("issueNumber", "startMonth", "startYear"):
            fields.get_int(method, optional, 0, 9999, "paymentMethod", required=False)
        if not cards.luhn_valid(number):
            raise GatewayError("INVALID_PAYMENT_DETAILS",
                               "paymentMethod.cardNumber is not a valid card number (Luhn check failed)")
        now = datetime.datetime.fromtimestamp(self._clock(), datetime.timezone.utc)
        if cards.is_expired(month, year, now.year, now.month):
            raise GatewayError("INVALID_PAYMENT_DETAILS",
                               "paymentMethod.expiryMonth/expiryYear: the card expired in %02d/%d"
                               % (month, year))
        accepted = cards.classify(number, name)
        if accepted is None:
            raise GatewayError("INVALID_PAYMENT_DETAILS", "This card is not accepted for Test transactions")
        profile, outcome = accepted
        token = ("TEST_RU_" if reusable else "TEST_SU_") + str(self._new_uuid())
        self.ledger.add_token(token, merchant.name, reusable, name, month, year,
                              cards.mask_pan(number), profile, outcome)
        return json_reply(200, token_response(self.ledger.token(token)))

    def _get_token(self, headers, request, query, token):
        merchant = self._merchant(headers)
        row = self.ledger.token(token)
        if row is None or row["merchant"] != merchant.name:
            raise GatewayError("TKN_NOT_FOUND", "Token %s not found" % token)
        return json_reply(200, token_response(row))

    # --- /v1/orders ---

    def _create_order(self, headers, request, query):
        merchant = self._merchant(headers)
        if request is None:
            raise GatewayError("BAD_REQUEST", "Request body is required")
        token = fields.get_string(request, "token")
        amount = fields.get_amount(request, "amount")
        currency = fields.get_string(request, "currencyCode", max_len=3)
        if not (len(currency) == 3 and currency.isascii() and currency.isalpha() and currency.isupper()):
            raise GatewayError("BAD_REQUEST", "currencyCode must be 3 upper-case letters (ISO 4217)")
        description = fields.get_string(request, "orderDescription")
        customer_code = fields.get_string(request, "customerOrderCode", required=False)
        authorize_only = fields.get_bool(request, "authorizeOnly", False)
        failure = None
        with self.ledger.transaction():
            row = self.ledger.token(token)
            if row is None:
                raise GatewayError("TKN_NOT_FOUND", "Token %s not found" % token)
            if row["merchant"] != merchant.name:
                raise GatewayError("TOKEN_CONFLICT", "Token was issued for another merchant's client key")
            if not row["reusable"] and row["used_by"] is not None:
                raise GatewayError("TKN_EXPIRED", "Token has already been used in an order request")
            outcome = row["outcome"]
            if outcome == cards.ERROR:
                # Nothing is charged and the token stays unused: every retry errors the same way.
                self.ledger.add_event(ledger_mod.GATEWAY_ERROR, merchant.name, token=token,
                                      amount=amount, currency=currency, detail="test outcome ERROR")
                failure = GatewayError("INTERNAL_SERVER_ERROR", "Payment could not be processed (test outcome ERROR)")
            else:
                if outcome == cards.SUCCESS:
                    status, reason = ("AUTHORIZED" if authorize_only else "SUCCESS"), None
                else:
                    status, reason = "FAILED", cards.DECLINE_REASONS[outcome]
                order_code = str(self._new_uuid())
                self.ledger.add_order(
                    order_code, merchant.name, token, amount, currency, description, customer_code,
                    authorize_only, status, reason,
                    authorized=amount if status == "AUTHORIZED" else 0,
                    charged=amount if status == "SUCCESS" else 0)
                if not row["reusable"]:
                    self.ledger.use_token(token, order_code, merchant.name)
                order = self.ledger.order(order_code)
        if failure is not None:
            raise failure
        return json_reply(200, order_response(order, row))

    def _get_order(self, headers, request, query, order_code):
        merchant = self._merchant(headers)
        return self._order_reply(self._own_order(merchant, order_code))

    def _search_orders(self, headers, request, query):
        """Simulator extension: GET /v1/orders?customerOrderCode=X lists that merchant's orders."""
        merchant = self._merchant(headers)
        params = urllib.parse.parse_qs(query, keep_blank_values=True)
        values = params.get("customerOrderCode", [])
        if len(values) != 1 or not values[0]:
            raise GatewayError("BAD_REQUEST", "customerOrderCode query parameter is required (once)")
        orders = self.ledger.orders_by_customer_order_code(values[0], merchant.name)
        return json_reply(200, {"orders": [
            order_response(order, self.ledger.token(order["token"])) for order in orders]})

    def _refund_order(self, headers, request, query, order_code):
        merchant = self._merchant(headers)
        amount = None
        if request:
            _reject_unknown(request, ("refundAmount",))
            amount = fields.get_amount(request, "refundAmount", required=False)
        with self.ledger.transaction():
            order = self._own_order(merchant, order_code)
            status = order["status"]
            if status == "REFUNDED":
                raise GatewayError("BAD_REQUEST", "Order has already been fully refunded")
            if status not in ("SUCCESS", "PARTIALLY_REFUNDED"):
                raise GatewayError("BAD_REQUEST", "Order in status %s cannot be refunded" % status)
            available = order["charged"] - order["refunded"]
            if amount is None:
                amount = available
            if amount > available:
                raise GatewayError("BAD_REQUEST", "Refund amount exceeds the amount available to refund (%d)"
                                   % available)
            new_status = "REFUNDED" if amount == available else "PARTIALLY_REFUNDED"
            self.ledger.refund_order(order_code, amount, new_status)
        return Reply(200)

    def _capture_order(self, headers, request, query, order_code):
        merchant = self._merchant(headers)
        amount = None
        if request:
            _reject_unknown(request, ("captureAmount",))
            amount = fields.get_amount(request, "captureAmount", required=False)
        with self.ledger.transaction():
            order = self._own_order(merchant, order_code)
            if order["status"] != "AUTHORIZED":
                raise GatewayError("BAD_REQUEST", "Only AUTHORIZED orders can be captured (order is %s)"
                                   % order["status"])
            if amount is None:
                amount = order["authorized"]
            if amount > order["authorized"]:
                raise GatewayError("BAD_REQUEST", "captureAmount exceeds the authorized amount (%d)"
                                   % order["authorized"])
            self.ledger.capture_order(order_code, amount)
            order = self.ledger.order(order_code)
        return self._order_reply(order)

    def _cancel_order(self, headers, request, query, order_code):
        merchant = self._merchant(headers)
        with self.ledger.transaction():
            order = self._own_order(merchant, order_code)
            if order["status"] != "AUTHORIZED":
                raise GatewayError("BAD_REQUEST", "Only AUTHORIZED orders can be cancelled (order is %s)"
                                   % order["status"])
            self.ledger.cancel_order(order_code)
        return Reply(200)

    # --- /_sim control endpoints (simulator only) ---

    def _sim_health(self, headers, request, query):
        return json_reply(200, {"status": "ok", "environment": ENVIRONMENT,
                                "merchants": len(self.merchants)})

    def _sim_list_faults(self, headers, request, query):
        return json_reply(200, {"faults": self.faults.active()})

    def _sim_add_fault(self, headers, request, query):
        try:
            fault = faults.fault_from_json(request)
        except faults.FaultSpecError as exc:
            raise GatewayError("BAD_REQUEST", "fault: %s" % exc)
        return json_reply(200, {"fault": self.faults.add(fault).as_dict()})

    def _sim_clear_faults(self, headers, request, query):
        return json_reply(200, {"cleared": self.faults.clear()})
