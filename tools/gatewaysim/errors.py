"""Gateway errors: the custom-code table and the JSON error body.

GatewayError is the one error type the request handlers raise; it carries
the custom code (which fixes the HTTP status) and a message naming the bad
field. error_body() builds the Worldpay error shape. The echoed
originalRequest is masked here: it must never carry a card number, CVC or
expiry date, and nothing here may log.
"""
import json

from gatewaysim import cards

# customCode -> (HTTP status, description), as the Online Payments API uses them.
CODES = {
    "BAD_REQUEST": (400, "Some of request parameters are invalid, please check your request. "
                         "For more information please refer to Json schema."),
    "ERROR_PARSING_JSON": (400, "The JSON request could not be parsed, please check your request."),
    "INVALID_PAYMENT_DETAILS": (400, "The payment details are invalid or not accepted."),
    "TKN_EXPIRED": (400, "The token has expired. Non-reusable tokens expire after use in an order request."),
    "UNAUTHORIZED": (401, "Request can't be authorized, please validate your request"),
    "TKN_NOT_FOUND": (404, "The token could not be found."),
    "ORDER_NOT_FOUND": (404, "The order could not be found."),
    "TOKEN_CONFLICT": (409, "The token cannot be used by this order request."),
    "MEDIA_TYPE_NOT_SUPPORTED": (415, "Only application/json request bodies are supported."),
    "INTERNAL_SERVER_ERROR": (500, "Something went wrong on our side. Please let us know if this persists."),
    # Simulator extensions, for requests no Worldpay client makes on purpose.
    "NOT_FOUND": (404, "There is no such endpoint."),
    "METHOD_NOT_ALLOWED": (405, "The endpoint does not support the requested method."),
    "LENGTH_REQUIRED": (411, "Send the body with a Content-Length header."),
    "REQUEST_TOO_LARGE": (413, "The request body is too large."),
}

MAX_ORIGINAL_REQUEST = 2048  # characters of the echoed request kept in an error body

_MASKED_FIELDS = {"cardNumber", "cvc", "expiryMonth", "expiryYear", "startMonth", "startYear", "issueNumber"}


class GatewayError(Exception):
    """A refused request: `code` is the Worldpay customCode, `message` says which field and why."""

    def __init__(self, code, message, status=None):
        super().__init__(message)
        if code not in CODES:
            raise ValueError("unknown custom code %r" % code)
        self.code = code
        self.message = message
        self.status = status if status is not None else CODES[code][0]


def _mask_value(key, value):
    if key == "cardNumber" and isinstance(value, str) and len(value) >= 4:
        return cards.masked_card_number(value)
    if value is None:
        return None
    return "****"


def _masked(value):
    if isinstance(value, dict):
        return {k: (_mask_value(k, v) if k in _MASKED_FIELDS else _masked(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(item) for item in value]
    return value


def original_request_text(request):
    """The masked, truncated echo of a parsed request body (None: body unparsable or absent -> "")."""
    if request is None:
        return ""
    text = json.dumps(_masked(request), separators=(",", ":"), ensure_ascii=False)
    text = cards.scrub_card_numbers(text)
    if len(text) > MAX_ORIGINAL_REQUEST:
        text = text[:MAX_ORIGINAL_REQUEST] + "..."
    return text


def error_body(error, request=None):
    """The Worldpay error object for `error`; `request` is the parsed body (or None)."""
    return {
        "httpStatusCode": error.status,
        "customCode": error.code,
        "message": error.message,
        "description": CODES[error.code][1],
        "errorHelpUrl": None,
        "originalRequest": original_request_text(request),
    }
