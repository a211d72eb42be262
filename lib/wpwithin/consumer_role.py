"""The consumer (HCE) role: discover producers, buy units and take delivery over HTTP.

Each step is one HTTP call whose request the consumer core builds and
whose answer it checks. Errors: ProducerError (the producer said no, with
its status and message), GatewayError (the card was refused at the
gateway), PeerError (an answer that breaks the protocol), NetError (no
answer). The card goes only to the gateway; it is never logged, and
repr() of this role shows no secret.
"""
import asyncio
import random

from wpwithin import consumer, discovery, http_client, scanner, wire
from wpwithin.consumer import Purchase
from wpwithin.errors import UNAVAILABLE, PeerError, ProtocolError

# A producer at its connection cap answers 503 without reading the request,
# and its other 503s (clock not set, too many open orders) change nothing
# either: any request may be sent again. Waits about 0.1, 0.2, 0.4, 0.8, then
# 1.6 s at most (8 s in all), each between half and one and a half times
# that, so consumers turned away together do not all come back together.
BUSY_RETRIES = 8
BUSY_WAIT_MAX = 1.6


class ProducerError(Exception):
    """A producer answered with an error status."""

    def __init__(self, status, message):
        super().__init__("%d: %s" % (status, message))
        self.status = status
        self.message = message


class Producer:
    """Where a producer is: from its broadcast message, or host and port."""

    def __init__(self, host, port, url_prefix="", scheme="http://", server_id=None, description=""):
        self.host = host
        self.port = port
        self.url_prefix = url_prefix
        self.scheme = scheme
        self.server_id = server_id
        self.description = description

    @classmethod
    def from_broadcast(cls, message):
        return cls(message["hostname"], message["portNumber"], message["urlPrefix"], message["scheme"],
                   message["serverID"], message["deviceDescription"])

    def __repr__(self):
        return "<Producer %s:%d%s>" % (self.host, self.port, self.url_prefix)


class ConsumerRole:
    def __init__(self, client_id, card, gateway, timeout=10, busy_retries=BUSY_RETRIES):
        self.client_id = client_id
        self._card = card
        self.gateway = gateway
        self.timeout = timeout
        self.busy_retries = busy_retries
        self.busy_answers = 0  # 503s met (and retried) so far
        self._conns = http_client.Reuse(timeout)

    def __repr__(self):
        return "<ConsumerRole %s>" % self.client_id

    async def discover(self, timeout_ms=6000, probe_to=None, enough=0, port=discovery.BROADCAST_PORT,
                       probe_port=discovery.PROBE_PORT, wanted=None):
        """Producers heard within timeout_ms, as Producer objects (fast with probe_to).

        Ends early once `enough` producers, or the one whose serverID is `wanted`, are heard.
        """
        found = await scanner.scan(timeout_ms, port, probe_to, probe_port, enough, wanted)
        return [Producer.from_broadcast(found[k]) for k in sorted(found)]

    async def _call(self, producer, method, route, body=None):
        if producer.scheme != "http://":
            raise ValueError("only http:// producers are supported")
        payload = None if body is None else wire.encode_json(body)
        headers = {"Content-Type": "application/json"} if payload is not None else None
        delay = 0.1
        for attempt in range(self.busy_retries + 1):
            status, data = await self._conns.request(producer.host, producer.port, method,
                                                     producer.url_prefix + route, payload, headers)
            if status != UNAVAILABLE or attempt == self.busy_retries:
                break
            self.busy_answers += 1
            await asyncio.sleep(delay * (0.5 + random.getrandbits(8) / 256))
            delay = min(delay * 2, BUSY_WAIT_MAX)
        try:
            obj = wire.decode_json(data, "producer's answer", wire.MAX_ANSWER_CONTAINERS)
        except ProtocolError as exc:
            if status == 200:
                raise PeerError(exc.message)
            obj = None
        if status != 200:
            message = consumer.parse_error(obj)["message"] if isinstance(obj, dict) else ""
            raise ProducerError(status, message or "no message")
        return obj

    async def services(self, producer):
        return consumer.parse_service_list(await self._call(producer, "GET", "/service/discover"))["services"]

    async def prices(self, producer, service_id):
        return consumer.parse_price_list(
            await self._call(producer, "GET", "/service/%d/prices" % service_id))["prices"]

    async def select(self, producer, service_id, price_id, units):
        """A Purchase with a checked total price (phases Discover and Select)."""
        purchase = Purchase(self.client_id, service_id, price_id, units)
        purchase.check_services(await self._call(producer, "GET", "/service/discover"))
        purchase.check_prices(await self._call(producer, "GET", "/service/%d/prices" % service_id))
        purchase.check_total(await self._call(
            producer, "POST", "/service/%d/requestTotal" % service_id, purchase.total_request()))
        return purchase

    async def pay(self, producer, purchase):
        """Card to one-use token at the gateway, token to the producer; returns the payment response."""
        client_token = await self.gateway.token(purchase.total["merchantClientKey"], self._card)
        return purchase.check_payment(await self._call(
            producer, "POST", "/payment", purchase.payment_request(client_token)))

    async def begin(self, producer, purchase, units):
        body = purchase.begin_request(units)
        return purchase.check_begin(await self._call(
            producer, "POST", "/service/%d/delivery/begin" % purchase.service_id, body), units)

    async def end(self, producer, purchase, units_received):
        return purchase.check_end(await self._call(
            producer, "POST", "/service/%d/delivery/end" % purchase.service_id,
            purchase.end_request(units_received)))

    async def deliver(self, producer, purchase, units, received=None):
        """One delivery session: begin, then end with the units received (all by default)."""
        await self.begin(producer, purchase, units)
        return await self.end(producer, purchase, units if received is None else received)

    async def buy(self, producer, service_id, price_id, units):
        """Select and pay in one call; returns the paid Purchase."""
        purchase = await self.select(producer, service_id, price_id, units)
        await self.pay(producer, purchase)
        return purchase
