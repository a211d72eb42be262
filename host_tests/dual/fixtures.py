"""Shared test data for dual-runtime tests: a catalogue, a stand-in gateway, fixed randomness."""
from wpwithin import catalogue
from wpwithin.card import mask_card
from wpwithin.ledger import Ledger
from wpwithin.producer import Producer

SERVER_ID = "charger-7f3a"
SECRET = b"device-secret-0123456789abcdef!!"
CLIENT_KEY = "T_C_03eaa1d3-4642-4079-b030-b543ee04b5af"
NOW = 1795737600  # 2026-11-27T00:00:00Z


def replay(records, **settings):
    """A new Ledger with `records` applied, as a Thing rebuilds its own from the journal at start."""
    ledger = Ledger(**settings)
    for record in records:
        ledger.apply(record)
    return ledger


def snapshot(ledger):
    """Every field of every order, the units sold and the spent tokens: two ledgers compared."""
    orders = sorted((
        o.ref, o.client_id, o.service_id, o.price_id, o.units, o.total, o.currency, o.quoted_at, o.state,
        o.paying_since, o.attempt, o.token, o.failure, o.order_code, o.key, o.issued, o.expiry,
        o.refund_on_expiry, o.delivered, o.in_flight, o.in_flight_since, o.refunding, o.refunded)
        for o in ledger.orders.values())
    return orders, sorted(ledger.sold.items()), sorted((key, ledger.used_up(key)) for key in ledger.spent)


def charging():
    """A car charger: kWh at two volume tiers, and parking minutes with a capacity."""
    return catalogue.Catalogue([
        catalogue.Service(1, "Car charge", "Electric vehicle charging", [
            catalogue.Price(1, 30, "GBP", 1, "kWh", "Up to 10 kWh", 1, 10),
            catalogue.Price(2, 25, "GBP", 1, "kWh", "11 kWh and more", 11, 100),
        ]),
        catalogue.Service(2, "Parking", "Parking bay", [
            catalogue.Price(7, 5, "GBP", 2, "minute", "Per minute"),
        ], capacity=120),
    ])


class Randomness:
    """Deterministic stand-in for os.urandom: distinct 16-byte values."""

    def __init__(self, seed=1):
        self.n = seed

    def __call__(self, size=16):
        self.n += 1
        return bytes((self.n * 7 + i * 13) & 0xFF for i in range(size))


def producer(ledger=None, **kwargs):
    return Producer(SERVER_ID, charging(), ledger or Ledger(), SECRET, CLIENT_KEY, **kwargs)


class MemoryGateway:
    """In-memory stand-in for the payment gateway: tokens are one-use; cards named DECLINE fail."""

    def __init__(self):
        self.tokens = {}
        self.orders = []
        self.n = 0

    def token(self, request):
        self.n += 1
        token = "TEST_SU_%032d" % self.n
        self.tokens[token] = request["paymentMethod"]["name"]
        return {"token": token, "reusable": False,
                "paymentMethod": {"type": "ObfuscatedCard",
                                  "maskedCardNumber": mask_card(request["paymentMethod"]["cardNumber"])}}

    def order(self, request):
        name = self.tokens.pop(request["token"])  # KeyError: one-use token reused
        status = "FAILED" if name == "DECLINE" else "SUCCESS"
        self.orders.append((request["customerOrderCode"], request["amount"], status))
        return {"orderCode": "order-%d" % len(self.orders), "amount": request["amount"],
                "currencyCode": request["currencyCode"], "paymentStatus": status,
                "paymentStatusReason": "REFUSED" if status == "FAILED" else "",
                "customerOrderCode": request["customerOrderCode"]}
