"""Worldpay Online Payments JSON API messages: request builders and response parsers.

Pure functions over dicts (DESIGN section 2, "Gateway"): what a producer
sends and reads. The card and its token request are card.py's, on the
consumer only; nothing here ever sees a card number. Never does I/O.
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


def checked(where, call, obj):
    """call(obj), a gateway answer's parser; its ProtocolError becomes PeerError naming `where`."""
    try:
        return call(obj)
    except ProtocolError as exc:
        raise PeerError("gateway %s: %s" % (where, exc.message))


def parse_order_response(obj):
    """The fields of an order a producer acts on."""
    def parse(o):
        f = wire.fields(o, "order response")
        return {
            "orderCode": wire.get_str(f, "orderCode", printable=True),  # journalled: fits a line
            "amount": wire.get_int(f, "amount", 0, wire.MAX_AMOUNT),
            "currencyCode": wire.get_currency(f, "currencyCode"),
            "paymentStatus": wire.get_str(f, "paymentStatus", 32),
            "paymentStatusReason": wire.get_str(
                f, "paymentStatusReason", wire.MAX_TEXT_LEN, default="", allow_empty=True),
            "customerOrderCode": wire.get_str(f, "customerOrderCode", default="", allow_empty=True),
        }
    return checked("order response", parse, obj)


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
