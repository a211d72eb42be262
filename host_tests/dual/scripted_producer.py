"""A producer stand-in over real sockets for consumer tests, scripted per test (both runtimes).

Our HTTP server on 127.0.0.1 answering the producer's six routes for one
service, and the gateway's POST /v1/tokens too (so one address serves a
whole purchase). A test tells it what its next payments and ends answer:
an error status, a stall past the consumer's timeout, or an end counted
whose answer never comes. It counts what it supplied as a producer does.
With go_sdk it behaves as the original Go SDK producer: unitsRemaining is
"bought minus this session" (it never saves consumed units) and error
bodies carry HTTPStatusCode 0.
"""
import asyncio
import json

from wpwithin import wire
from wpwithin.consumer_role import Producer
from wpwithin.http_server import Server

HOST = "127.0.0.1"
SERVER_ID = "scripted-charger"
TOKEN_EXPIRY = "2099-01-01T00:00:00Z"


class Seller:
    """A producer stand-in that does what each test scripts; it counts what it supplied as a producer does."""

    def __init__(self, go_sdk=False):
        self.go_sdk = go_sdk
        self.server = Server(self.handle, HOST, 0, max_connections=8)
        self.pay_script = []  # next payment answers: an int status, or a float: seconds to stall, then 200
        self.end_script = []  # next end answers: "lost" (counted, answer stalls)
        self.payments = []  # (ref, clientToken) of every POST /payment
        self.tokens_made = 0
        self.orders = {}  # ref -> units bought
        self.paid = {}  # ref -> client token that paid
        self.delivered = {}  # ref -> units counted as supplied
        self.in_flight = {}

    def address(self):
        return Producer(HOST, self.server.port)

    def error(self, status, message):
        return status, wire.encode_json(wire.error(0 if self.go_sdk else status, message))

    def ok(self, obj):
        return 200, wire.encode_json(obj)

    async def handle(self, method, path, headers, body):
        req = json.loads(body) if body else None
        if path == "/v1/tokens":
            self.tokens_made += 1
            return self.ok({"token": "TEST_SU_%04d" % self.tokens_made, "reusable": False,
                            "paymentMethod": {"type": "ObfuscatedCard", "maskedCardNumber": "**** 1111"}})
        if path == "/service/discover":
            return self.ok(wire.service_list(SERVER_ID, [wire.service_entry(1, "Charge", "kWh")]))
        if path == "/service/1/prices":
            return self.ok(wire.price_list(SERVER_ID, [wire.price_entry(1, "per kWh", 30, "GBP", 1, "kWh")]))
        if path == "/service/1/requestTotal":
            ref = "ref-%d" % (len(self.orders) + 1)
            units = req["selectedNumberOfUnits"]
            self.orders[ref] = units
            return self.ok(wire.total_response(SERVER_ID, req["clientID"], 1, units, units * 30, "GBP", ref,
                                               "T_C_key"))
        if path == "/payment":
            ref, token = req["paymentReferenceID"], req["clientToken"]
            self.payments.append((ref, token))
            step = self.pay_script.pop(0) if self.pay_script else 200
            if isinstance(step, float):
                await asyncio.sleep(step)
            elif step != 200:
                return self.error(step, "scripted answer %d" % step)
            self.paid.setdefault(ref, token)
            return self.ok(wire.payment_response(SERVER_ID, req["clientID"], self.orders[ref] * 30,
                                                 self.token(ref)))
        ref = req["serviceDeliveryToken"]["key"][len("token-"):]
        if path == "/service/1/delivery/begin":
            self.in_flight[ref] = req["unitsToSupply"]
            return self.ok(wire.begin_response(SERVER_ID, req["clientID"], self.token(ref), req["unitsToSupply"]))
        if path == "/service/1/delivery/end":
            if not self.in_flight.get(ref):
                return self.error(409, "no delivery in progress on this token; begin one first")
            just = min(req["unitsReceived"], self.in_flight.pop(ref))
            self.delivered[ref] = self.delivered.get(ref, 0) + just
            left = self.orders[ref] - (just if self.go_sdk else self.delivered[ref])
            if self.end_script and self.end_script.pop(0) == "lost":
                await asyncio.sleep(5.0)
            return self.ok(wire.end_response(SERVER_ID, req["clientID"], self.token(ref), just, left))
        return self.error(404, "no such route")

    def token(self, ref):
        return wire.delivery_token("token-" + ref, "2026-11-27T00:00:00Z", TOKEN_EXPIRY, False, None)
