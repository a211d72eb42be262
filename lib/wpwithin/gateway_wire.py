"""Worldpay Online Payments JSON API messages: request builders and response parsers.

Pure functions over dicts (DESIGN section 2, "Gateway"). Card numbers and
CVCs pass through token_request() only, on the consumer; nothing here
stores, prints or puts them into an exception message. Never does I/O.
"""
from wpwithin import wire
from wpwithin.errors import PeerError, ProtocolError

SUCCESS = "SUCCESS"
FAILED = "FAILED"


class GatewayError(Exception):
    """The gateway answered with an error body (4xx/5xx) or something unreadable."""

    def __init__(self, http_status, custom_code, message, description=""):
        super().__init__("%s %s: %s" % (http_status, custom_code, message))
        self.http_status = http_status
        self.custom_code = custom_code
        self.message = message
        self.description = description


def mask_card(number):
    """Card number as shown anywhere: only the last four digits survive."""
    digits = "".join(c for c in str(number) if c.isdigit())
    return "**** **** **** " + digits[-4:] if len(digits) >= 4 else "****"


class Card:
    """A consumer's card. repr() and str() show only the masked number."""

    def __init__(self, name, number, expiry_month, expiry_year, cvc):
        self.name = name
        self.number = number
        self.expiry_month = expiry_month
        self.expiry_year = expiry_year
        self.cvc = cvc

    def __repr__(self):
        return "<Card %s>" % mask_card(self.number)

    __str__ = __repr__


def token_request(client_key, card):
    """POST /tokens body: turns a card into a one-use token for the merchant's client key."""
    return {
        "clientKey": client_key,
        "paymentMethod": {
            "type": "Card",
            "name": card.name,
            "expiryMonth": card.expiry_month,
            "expiryYear": card.expiry_year,
            "cardNumber": card.number,
            "cvc": card.cvc,
        },
        "reusable": False,
    }


def order_request(token, amount, currency, description, customer_order_code):
    """POST /orders body; customerOrderCode is the producer's paymentReferenceID."""
    return {
        "token": token,
        "amount": amount,
        "currencyCode": currency,
        "orderDescription": description,
        "customerOrderCode": customer_order_code,
    }


def refund_request(amount=None):
    """POST /orders/{code}/refund body: None refunds in full."""
    return {} if amount is None else {"refundAmount": amount}


def _peer(where, call, obj):
    try:
        return call(obj)
    except ProtocolError as exc:
        raise PeerError("gateway %s: %s" % (where, exc.message))


def parse_token_response(obj):
    """{token, maskedCardNumber, cardType} from a POST /tokens answer."""
    def parse(o):
        f = wire.fields(o, "token response")
        method = wire.fields(f.get("paymentmethod") or {}, "field paymentMethod")
        return {
            "token": wire.get_str(f, "token", wire.MAX_CLIENT_TOKEN_LEN),
            "maskedCardNumber": wire.get_str(method, "maskedCardNumber", 32, default="", allow_empty=True),
            "cardType": wire.get_str(method, "cardType", 32, default="", allow_empty=True),
        }
    return _peer("token response", parse, obj)


def parse_order_response(obj):
    """The fields of an order a producer acts on."""
    def parse(o):
        f = wire.fields(o, "order response")
        return {
            "orderCode": wire.get_str(f, "orderCode"),
            "amount": wire.get_int(f, "amount", 0, wire.MAX_AMOUNT),
            "currencyCode": wire.get_currency(f, "currencyCode"),
            "paymentStatus": wire.get_str(f, "paymentStatus", 32),
            "paymentStatusReason": wire.get_str(
                f, "paymentStatusReason", wire.MAX_TEXT_LEN, default="", allow_empty=True),
            "customerOrderCode": wire.get_str(f, "customerOrderCode", default="", allow_empty=True),
        }
    return _peer("order response", parse, obj)


def parse_error(http_status, obj):
    """A GatewayError from an error answer; tolerant of odd bodies (it is only for reporting)."""
    try:
        f = wire.fields(obj, "error")
    except ProtocolError:
        return GatewayError(http_status, "UNREADABLE_ERROR", "gateway answered %d" % http_status)
    code = f.get("customcode")
    message = f.get("message")
    description = f.get("description")
    return GatewayError(
        http_status,
        code[:64] if isinstance(code, str) else "UNKNOWN",
        message[:wire.MAX_TEXT_LEN] if isinstance(message, str) else "",
        description[:wire.MAX_TEXT_LEN] if isinstance(description, str) else "",
    )
