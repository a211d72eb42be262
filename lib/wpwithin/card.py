"""A consumer's card and the one-use gateway token made from it (POST /tokens).

Consumer-only: producer-only images leave this module out, so a producer
carries no code that handles a card number. A Card shows only its masked
number; the full number and CVC go to the gateway's token endpoint and
nowhere else. Never does I/O and never logs.
"""
from wpwithin import gateway_wire, wire


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


def from_secrets(obj):
    """A Card from secrets.json's checked "card" object (name, number, expiryMonth, expiryYear, cvc)."""
    return Card(obj["name"], obj["number"], obj["expiryMonth"], obj["expiryYear"], obj["cvc"])


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
    return gateway_wire.checked("token response", parse, obj)


async def token(gateway, client_key, card):
    """A one-use token (TEST_SU_...) for `card` from the GatewayClient `gateway` (its token())."""
    answer = await gateway.call("POST", "/tokens", token_request(client_key, card))
    return parse_token_response(answer)["token"]
