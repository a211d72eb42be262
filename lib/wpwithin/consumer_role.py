"""The consumer (HCE) role: discover producers, buy units and take delivery over HTTP.

Each step is one HTTP call whose request the consumer core builds and
whose answer it checks. Errors: ProducerError (the producer said no, with
its status and message), PaymentPending (the payment's outcome is not
known: retry with the same reference and client token, never pay again),
GatewayError (the card was refused at the gateway), PeerError (an answer
that breaks the protocol), NetError (no answer). The card goes only to the
gateway; it is never logged, and repr() of this role shows no secret.

With a wallet (wpwithin.wallet, kept in a journal) every step that moves
money or units is journalled before its request goes out: the pending
payment with its one-use client token before POST /payment, the token
after, each begin and end. resume() settles what a reset or an interrupt
left unresolved: pending payments are retried with the same reference and
client token until the producer answers a token or a definite refusal
(4xx); begun deliveries are ended with the units the wallet says came (0
if it does not know). A producer's "no delivery in progress" (409) to such
an end means it has already ended it; the wallet keeps its own count.

Waiting for POST /payment: one payment request may cost the producer up
to three gateway calls (charge, order search, resend) before it answers,
so the role waits payment_wait(gateway timeout) = 3 x that + 5 s (35 s for
the producers' default 10 s); running out of time leaves the payment
pending, never failed.
"""
import asyncio
import random

from wpwithin import consumer, discovery, http_client, scanner, wire
from wpwithin.compat import const
from wpwithin.consumer import Purchase
from wpwithin.errors import PeerError, ProtocolError
from wpwithin.net_errors import NetError

# A producer at its connection cap answers 503 without reading the request,
# and its other 503s (clock not set, too many open orders) change nothing
# either: any request may be sent again. Waits about 0.1, 0.2, 0.4, 0.8, then
# 1.6 s at most (8 s in all), each between half and one and a half times
# that, so consumers turned away together do not all come back together.
BUSY_RETRIES = 8
BUSY_WAIT_MAX = 1.6
PRODUCER_GATEWAY_TIMEOUT = const(10)  # a producer's gateway.timeout unless it says otherwise


def payment_wait(gateway_timeout=PRODUCER_GATEWAY_TIMEOUT):
    """Seconds to wait for POST /payment at a producer whose gateway timeout is `gateway_timeout`."""
    return 3 * gateway_timeout + 5


def definite(status, message=""):
    """True for a refusal that settles a payment: a 4xx other than 408, 429 and 409 "in progress".

    A 5xx leaves it unknown (a 502 "not taken" is settled by the next try,
    which the producer refuses with 402 as that token's outcome).
    """
    if status == 409 and "in progress" in message:
        return False
    return 400 <= status < 500 and status not in (408, 429)


def maybe_charged(status, retried, message=""):
    """Whether the gateway may still hold a charge after a payment refused with `status`.

    The producer can charge only with the client token it was sent, so a
    refusal of the first try leaves nothing charged; on a retry, an earlier
    try may have reached it. Declined (402), "paid by another token" (409)
    and an expired quote (410) say outright that this token paid nothing;
    a 410 saying the order "was paid" (its token since used up or expired)
    says it did.
    """
    if status == 410 and "was paid" in message:
        return True
    return retried and status not in (402, 409, 410)


def broker_settings(section, secrets, server_id):
    """(url, CA file, user, password) of the consumer section's broker (consumer.broker), or None."""
    if "broker" not in section:
        return None
    return section["broker"], section["brokerCa"], secrets.broker_username or server_id, secrets.broker_password


def _now():
    import time

    return int(time.time())


class ProducerError(Exception):
    """A producer answered with an error status."""

    def __init__(self, status, message):
        super().__init__("%d: %s" % (status, message))
        self.status = status
        self.message = message


class PaymentPending(Exception):
    """The outcome of POST /payment is not known; `ref` is to be retried with the same client token."""

    def __init__(self, ref, reason):
        super().__init__("payment %s is pending: %s" % (ref, reason))
        self.ref = ref
        self.reason = reason


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
    def __init__(self, client_id, card, gateway, timeout=10, busy_retries=BUSY_RETRIES, wallet=None,
                 journal=None, payment_timeout=None, clock=None, log=None, broker=None):
        """`wallet` and `journal` (wpwithin.wallet.load(journal)) journal every step; `clock` gives Unix seconds;
        `broker` (broker_settings()) is where discover() also hears producers' adverts."""
        self.client_id = client_id
        self._card = card
        self.gateway = gateway
        self.timeout = timeout
        self.payment_timeout = payment_wait() if payment_timeout is None else payment_timeout
        self.busy_retries = busy_retries
        self.busy_answers = 0  # 503s met (and retried) so far
        self.wallet = wallet
        self.journal = journal
        self.clock = clock or _now
        self.log = log or (lambda message: None)
        self.broker = broker
        self._conns = http_client.Reuse(timeout)

    def __repr__(self):
        return "<ConsumerRole %s>" % self.client_id

    def _keep(self, record):
        if self.journal is not None:
            self.journal.append(record)
            if self.journal.needs_compaction():
                self.journal.compact(self.wallet.compact())

    async def discover(self, timeout_ms=6000, probe_to=None, enough=0, port=discovery.BROADCAST_PORT,
                       probe_port=discovery.PROBE_PORT, wanted=None):
        """Producers heard within timeout_ms, as Producer objects (fast with probe_to).

        Ends early once `enough` producers, or the one whose serverID is `wanted`, are heard. With a
        broker, its adverts count as broadcasts do.
        """
        client = None
        if self.broker is not None:  # a client (and TLS context) per scan, let go after it
            from wpwithin.mqtt import client_for

            url, ca, user, password = self.broker
            client = client_for(url, ca, self.client_id, user, password)
        found = await scanner.scan(timeout_ms, port, probe_to, probe_port, enough, wanted, None, client, self.log)
        return [Producer.from_broadcast(found[k]) for k in sorted(found)]

    async def _call(self, producer, method, route, body=None, timeout=None):
        if producer.scheme != "http://":
            raise ValueError("only http:// producers are supported")
        payload = None if body is None else wire.encode_json(body)
        headers = {"Content-Type": "application/json"} if payload is not None else None
        delay = 0.1
        for attempt in range(self.busy_retries + 1):
            conn = self._conns.take(producer.host, producer.port)
            conn.timeout = timeout or self.timeout
            try:
                status, _, data = await conn.request(method, producer.url_prefix + route, payload, headers,
                                                     close=True)
            finally:
                await conn.close()
                self._conns.give(conn)
            if status != 503 or attempt == self.busy_retries:
                break
            self.busy_answers += 1
            await asyncio.sleep(delay * (0.5 + random.getrandbits(8) / 256))
            delay = min(delay * 2, BUSY_WAIT_MAX)
        try:
            obj = wire.decode_json(data, "producer's answer", consumer.MAX_ANSWER_CONTAINERS)
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
        total = purchase.check_total(await self._call(
            producer, "POST", "/service/%d/requestTotal" % service_id, purchase.total_request()))
        if self.wallet is not None:
            self._keep(self.wallet.quoted(producer.host, producer.port, producer.url_prefix, total))
        return purchase

    async def pay(self, producer, purchase):
        """Card to one-use token at the gateway, token to the producer; returns the payment response.

        Raises PaymentPending when the producer's answer does not settle the payment.
        """
        total = purchase.total
        client_token = await self.gateway.token(total["merchantClientKey"], self._card)
        if self.wallet is not None:
            self._keep(self.wallet.paying(total, purchase.service_id, client_token, self.clock()))
        return await self._settle(producer, purchase, client_token, False)

    async def _settle(self, producer, purchase, client_token, retried):
        ref = purchase.total["paymentReferenceID"]
        try:
            answer = await self._call(producer, "POST", "/payment", purchase.payment_request(client_token),
                                      self.payment_timeout)
        except ProducerError as exc:
            if not definite(exc.status, exc.message):
                raise PaymentPending(ref, "the producer answered %d %s" % (exc.status, exc.message))
            if self.wallet is not None:
                self._keep(self.wallet.failed(ref, exc.status, maybe_charged(exc.status, retried, exc.message),
                                              exc.message))
            raise
        except NetError as exc:
            raise PaymentPending(ref, exc.message)
        receipt = purchase.check_payment(answer)
        if self.wallet is not None:
            self._keep(self.wallet.paid(ref, receipt["serviceDeliveryToken"]))
        return receipt

    async def begin(self, producer, purchase, units):
        body = purchase.begin_request(units)
        ref = purchase.total["paymentReferenceID"]
        if self.wallet is not None:
            self._keep(self.wallet.begun(ref, units))
        try:
            answer = await self._call(producer, "POST", "/service/%d/delivery/begin" % purchase.service_id, body)
        except ProducerError as exc:
            if self.wallet is not None and definite(exc.status):
                self._keep(self.wallet.ended(ref, 0, None))  # refused: nothing went in flight
            raise
        return purchase.check_begin(answer, units)

    async def end(self, producer, purchase, units_received):
        ref = purchase.total["paymentReferenceID"]
        if self.wallet is not None:
            self._keep(self.wallet.ending(ref, units_received))
        msg = purchase.check_end(await self._call(
            producer, "POST", "/service/%d/delivery/end" % purchase.service_id,
            purchase.end_request(units_received)))
        if self.wallet is not None:
            self._keep(self.wallet.ended(ref, msg["unitsJustSupplied"], msg["unitsRemaining"]))
        if purchase.warning:
            self.log(purchase.warning)
        return msg

    async def deliver(self, producer, purchase, units, received=None):
        """One delivery session: begin, then end with the units received (all by default)."""
        await self.begin(producer, purchase, units)
        return await self.end(producer, purchase, units if received is None else received)

    async def buy(self, producer, service_id, price_id, units):
        """Select and pay in one call; returns the paid Purchase."""
        purchase = await self.select(producer, service_id, price_id, units)
        await self.pay(producer, purchase)
        return purchase

    # --- resume ------------------------------------------------------------------------

    async def resume(self):
        """Settle what the wallet holds unresolved; a list of (entry, outcome, message).

        Outcomes: "paid", "failed" (a definite refusal; entry.maybe_charged
        says whether the gateway may still hold a charge), "pending" (still
        not known: the next resume tries again), "ended" (a delivery closed).
        """
        from wpwithin.wallet import PENDING

        results = []
        for entry in self.wallet.unresolved():
            producer = Producer(entry.host, entry.port, entry.prefix, server_id=entry.server_id)
            try:
                if entry.state == PENDING:
                    await self._settle(producer, entry.purchase(), entry.client_token, True)
                    results.append((entry, "paid", "token %s" % entry.key))
                else:
                    results.append((entry, "ended", await self._end_again(producer, entry)))
            except PaymentPending as exc:
                results.append((entry, "pending", exc.reason))
            except ProducerError as exc:
                results.append((entry, "failed", "the producer answered %d %s" % (exc.status, exc.message)))
            except NetError as exc:
                results.append((entry, "pending", exc.message))
            except PeerError as exc:
                results.append((entry, "pending", "a peer broke the protocol: %s" % exc))
        return results

    async def keep_resuming(self, every=30):
        """Resume until nothing is unresolved, every `every` seconds (a board's task at start), logging each outcome."""
        while self.wallet.unresolved():
            for entry, outcome, message in await self.resume():
                self.log("wallet: %s %s: %s" % (entry.ref, outcome, message))
            if self.wallet.unresolved():
                await asyncio.sleep(every)

    async def _end_again(self, producer, entry):
        purchase = entry.purchase()
        received = entry.ending
        if received is None:
            received = 0
            self._keep(self.wallet.ending(entry.ref, 0))  # nothing is known to have come
        try:
            msg = purchase.check_end(await self._call(
                producer, "POST", "/service/%d/delivery/end" % entry.service_id, purchase.end_request(received)))
        except ProducerError as exc:
            if not definite(exc.status):
                raise NetError("the producer answered %d %s" % (exc.status, exc.message))
            # 409: it had ended this delivery already (our earlier end, or its delivery timeout).
            self._keep(self.wallet.ended(entry.ref, received, None))
            return "%d units counted (the producer answered %d %s)" % (received, exc.status, exc.message)
        self._keep(self.wallet.ended(entry.ref, msg["unitsJustSupplied"], msg["unitsRemaining"]))
        if purchase.warning:
            self.log(purchase.warning)
        return "%d units counted, %d left" % (msg["unitsJustSupplied"], entry.remaining)


def start(thing):
    """The consumer of a Thing (thing.py) as one of its tasks, with its wallet on flash: what a
    reset cut off is settled at start (same reference, same token)."""
    from wpwithin import wallet
    from wpwithin.gateway_client import GatewayClient
    from wpwithin.journal import FileJournal

    cfg, secrets = thing.config, thing._secrets
    timeout = cfg.gateway["timeout"]
    thing.wallet_journal = journal = FileJournal(cfg.consumer["wallet"])
    thing.consumer = ConsumerRole(
        cfg.consumer["clientId"] or thing.server_id + "-consumer", secrets.card,
        GatewayClient(cfg.gateway["url"], ca=thing.gateway_ca, timeout=timeout),
        timeout=timeout, wallet=wallet.load(journal), journal=journal, payment_timeout=payment_wait(timeout),
        log=thing.log, broker=broker_settings(cfg.consumer, secrets, thing.server_id))
    thing.tasks.append(thing._spawn("wallet resume", thing.consumer.keep_resuming))
