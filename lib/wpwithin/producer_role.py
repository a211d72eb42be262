"""The producer (HTE) role: the core's six routes served over HTTP, with the gateway and hooks.

handle() is the HTTP server's handler. It routes, decodes, calls the
producer core, writes every ledger record to the journal before answering
(and the "p" record before charging), calls the gateway, and fires the
application's hooks. Payment is exactly-once: concurrent requests for one
paymentReferenceID wait for the attempt in flight and get its result; a
gateway that does not answer leaves the order PAYING until resolve() asks
the gateway what happened. Hooks run as tasks with a time limit, so a slow
or failing hook never holds up or breaks the protocol. Never logs the
client token, card data or the service key.
"""
import asyncio

from wpwithin import producer, wire
from wpwithin.errors import (
    BAD_GATEWAY, GATEWAY_TIMEOUT, INTERNAL, PAYMENT_DECLINED, UNAVAILABLE, PeerError, ProtocolError)
from wpwithin.gateway_wire import FAILED, SUCCESS, GatewayError
from wpwithin.net_errors import NetError
from wpwithin.ledger import ANSWER, PAID, PAYING


class Hooks:
    """Application callbacks; override the ones you need. All are async."""

    async def payment_received(self, service_id, units, total):
        pass

    async def delivery_begin(self, service_id, units):
        pass

    async def delivery_end(self, service_id, units_supplied):
        pass


class ListJournal:
    """Keeps records in memory (tests, or a Thing without flash storage)."""

    def __init__(self):
        self.records = []

    def append(self, record):
        self.records.append(record)


class ProducerRole:
    def __init__(self, core, gateway, clock, random, journal=None, hooks=None, log=None,
                 url_prefix="", hook_timeout=30, time_known=None, settle_after=60):
        self.core = core
        self.gateway = gateway
        self.clock = clock  # () -> Unix seconds (int)
        self.random = random  # (n) -> n random bytes
        self.journal = journal or ListJournal()
        self.hooks = hooks or Hooks()
        self.log = log or (lambda message: None)
        self.url_prefix = url_prefix
        self.hook_timeout = hook_timeout
        self.time_known = time_known or (lambda: True)
        self.settle_after = settle_after  # s a charge may take to show at the gateway
        self._paying = {}  # ref -> Event set when the attempt in flight ends
        # One gateway request at a time. Each opens a TLS session: 16-20 KB of
        # an ESP32's RAM (the ESP-IDF heap the WiFi stack also lives on), and
        # the gateway client has one connection object to reuse. Payments
        # queue here for a moment instead.
        self._gateway_turn = asyncio.Lock()
        self.last_errors = []

    def _now(self):
        return int(self.clock())

    def _write(self, records):
        for record in records:
            self.journal.append(record)

    async def handle(self, method, path, headers, body):
        """(status, body bytes) for one HTTP request."""
        try:
            name, service = producer.route(self.url_prefix, method, path)
            return 200, wire.encode_json(await self._dispatch(name, service, body))
        except ProtocolError as exc:
            return exc.status, wire.encode_json(wire.error(exc.status, exc.message))

    async def _dispatch(self, name, service, body):
        core = self.core
        if name == producer.DISCOVER:
            return core.services()
        if name == producer.PRICES:
            return core.prices(service)
        if not self.time_known():
            # Quotes and tokens carry expiry times: without a real clock, sell nothing.
            raise ProtocolError(UNAVAILABLE, "the producer's clock is not set yet; try again shortly")
        request = wire.decode_json(body)
        if name == producer.TOTAL:
            response, records = core.request_total(service, request, self._now(), self.random(16))
            self._write(records)
            return response
        if name == producer.PAYMENT:
            return await self._payment(request)
        if name == producer.BEGIN:
            response, record, order = core.delivery_begin(service, request, self._now())
            self._write([record])
            self._fire(self.hooks.delivery_begin(order.service_id, response["unitsToSupply"]))
            return response
        response, record, order = core.delivery_end(service, request, self._now())
        self._write([record])
        self._fire(self.hooks.delivery_end(order.service_id, response["unitsJustSupplied"]))
        return response

    # --- payment -------------------------------------------------------------------

    async def _payment(self, request):
        request = wire.parse_payment_request(request)
        ref = request["paymentReferenceID"]
        await self._wait_turn(ref)
        order = self.core.ledger.orders.get(ref)
        if order is not None and order.state == PAYING:
            await self.resolve(order)  # left PAYING by a lost answer or a reset
        step, answer, record, ref = self.core.payment(request, self._now())
        if step == ANSWER:
            return answer
        done = self._take_turn(ref)
        try:
            self._write([record])
            return await self._charge(ref, answer)
        finally:
            self._end_turn(ref, done)

    # One attempt at a time per order: later requests wait for it and share its outcome.

    async def _wait_turn(self, ref):
        while ref in self._paying:
            await self._paying[ref].wait()

    def _take_turn(self, ref):
        done = asyncio.Event()
        self._paying[ref] = done
        return done

    def _end_turn(self, ref, done):
        del self._paying[ref]
        done.set()

    async def _charge(self, ref, order_request):
        try:
            async with self._gateway_turn:
                result = await self.gateway.place_order(order_request)
        except GatewayError as exc:
            if exc.http_status >= 500:
                return await self._unknown(ref, "gateway error %d" % exc.http_status)
            # The gateway refused the request itself: nothing was charged.
            self._write([self.core.ledger.failed(ref, exc.custom_code)])
            if exc.custom_code == "UNAUTHORIZED":
                self._remember("the gateway refused this producer's merchant keys: %s" % exc.message)
                raise ProtocolError(INTERNAL, "the producer cannot take payments now (merchant account refused)")
            raise ProtocolError(PAYMENT_DECLINED, "gateway refused the payment: %s %s"
                                % (exc.custom_code, exc.message))
        except (NetError, PeerError) as exc:
            return await self._unknown(ref, str(exc))
        return self._settle(ref, result)

    def _settle(self, ref, result):
        if result["paymentStatus"] == SUCCESS:
            response, record = self.core.charged(ref, result, self._now(), self.random(16))
            self._write([record])
            order = self.core.ledger.orders[ref]
            self._fire(self.hooks.payment_received(order.service_id, order.units, order.total))
            return response
        record, error = self.core.declined(ref, result["paymentStatusReason"] or result["paymentStatus"])
        self._write([record])
        raise error

    async def _unknown(self, ref, why):
        # The charge may or may not have happened: ask the gateway rather than guess.
        self.log("payment %s: outcome unknown (%s); asking the gateway" % (ref, why))
        order = self.core.ledger.orders[ref]
        if await self._ask_gateway(order):
            return self.core.payment_response(order)
        raise ProtocolError(BAD_GATEWAY, "payment not taken (%s); retry with a new card token" % order.failure)

    async def resolve(self, order):
        """Settle an order left PAYING (a lost answer, a reset): True if it turned out paid.

        Never charges. Raises ProtocolError(504) while the outcome cannot be
        known yet; the order stays PAYING and a later retry asks again.
        """
        await self._wait_turn(order.ref)
        if order.state != PAYING:
            return order.state == PAID
        done = self._take_turn(order.ref)
        try:
            return await self._ask_gateway(order)
        finally:
            self._end_turn(order.ref, done)

    async def _ask_gateway(self, order):
        try:
            async with self._gateway_turn:
                found = await self.gateway.find_orders(order.ref)
        except (NetError, GatewayError, PeerError) as exc:
            self.log("payment %s: gateway cannot be asked (%s)" % (order.ref, exc))
            raise ProtocolError(GATEWAY_TIMEOUT, "payment outcome unknown: the gateway is not answering; "
                                "retry later with the same paymentReferenceID")
        for result in found:
            if result["paymentStatus"] == SUCCESS and result["amount"] == order.total:
                self._settle(order.ref, result)
                return True
        if not found and self._now() < order.paying_since + self.settle_after:
            # A slow gateway may still commit the order it has not shown yet: do not call it failed.
            raise ProtocolError(GATEWAY_TIMEOUT, "payment outcome not known yet; retry later with the "
                                "same paymentReferenceID (it will not be charged twice)")
        reason = found[0]["paymentStatusReason"] if found else "no order at the gateway"
        self._write([self.core.ledger.failed(order.ref, reason or FAILED)])
        return False

    # --- hooks -------------------------------------------------------------------

    def _fire(self, hook):
        asyncio.create_task(self._run_hook(hook))

    async def _run_hook(self, hook):
        try:
            await asyncio.wait_for(hook, self.hook_timeout)
        except Exception as exc:  # the application's bug must not stop the producer
            self._remember("hook failed: %r" % exc)

    def _remember(self, message):
        self.log(message)
        self.last_errors.append(message)
        del self.last_errors[:-5]

    async def expire(self):
        """Settle stuck payments; drop stale quotes and expired tokens, refunding unused units as promised."""
        for order in self.core.ledger.unresolved():
            if order.ref not in self._paying:
                try:
                    await self.resolve(order)
                except ProtocolError:
                    pass  # still unknown: the next sweep asks again
        for order, owed in self.core.ledger.due(self._now()):
            if owed:
                try:
                    async with self._gateway_turn:
                        await self.gateway.refund(order.order_code, owed)
                except (NetError, GatewayError, PeerError) as exc:
                    self._remember("refund of %s failed (%s); will retry" % (order.ref, exc))
                    continue
                self._write([self.core.ledger.refunded(order.ref, owed)])
            self._write([self.core.ledger.drop(order.ref)])

