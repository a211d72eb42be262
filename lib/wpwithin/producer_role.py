"""The producer (HTE) role: the core's six routes served over HTTP, with the gateway and hooks.

handle() is the HTTP server's handler. It routes, decodes, calls the
producer core, writes every ledger record to the journal before answering
(and the "p" record before charging), calls the gateway, and fires the
application's hooks. Payment is exactly-once: concurrent requests for one
paymentReferenceID wait for the attempt in flight and get its result; a
gateway that does not answer leaves the order PAYING until resolve() asks
the gateway what happened. Hooks run as tasks with a time limit, so a slow
or failing hook never holds up or breaks the protocol. Never logs the
client token, card data or the service key: what the gateway says goes
through wire.scrub() before it is logged, journalled or answered. Logs one
line per sale, delivery and refund (order, units, amount in currency).
"""
import asyncio

from wpwithin import producer, wire
from wpwithin.compat import const, forget
from wpwithin.errors import PeerError, ProtocolError
from wpwithin.gateway_wire import SUCCESS, GatewayError
from wpwithin.net_errors import NetError
from wpwithin.ledger import ANSWER, PAYING

_TURN_POLL = const(0.01)  # s between looks at a turn held by another request


def money(minor, currency):
    """An amount in minor units as a person reads it: GBP 3.00 (two decimals, as GBP, EUR, USD)."""
    return "%s %d.%02d" % (currency, minor // 100, minor % 100)


class ListJournal:
    """Keeps records in memory (tests, or a Thing without flash storage)."""

    def __init__(self):
        self.records = []

    def append(self, record):
        self.records.append(record)


class ProducerRole:
    def __init__(self, core, gateway, clock, random, journal=None, hooks=None, log=None,
                 url_prefix="", hook_timeout=30, clock_problem=None):
        self.core = core
        self.gateway = gateway
        self.clock = clock  # () -> Unix seconds (int)
        self.random = random  # (n) -> n random bytes
        self.journal = journal or ListJournal()
        # The application's hooks: an object with any of the async methods payment_received(service_id,
        # units, total), delivery_begin(service_id, units) and delivery_end(service_id, units_supplied).
        self.hooks = hooks
        self.log = log or (lambda message: None)
        self.url_prefix = url_prefix
        self.hook_timeout = hook_timeout
        self.clock_problem = clock_problem or (lambda: None)  # () -> None once the clock is set, else why not
        # Turns held: a paymentReferenceID while a request for it runs, None while a gateway
        # request runs. One gateway request at a time: each opens a TLS session (16-20 KB of
        # an ESP32's RAM, the ESP-IDF heap the WiFi stack also lives on), and the gateway
        # client has one connection object to reuse. Waiters poll (_TURN_POLL): no Lock or
        # Event, whose asyncio modules cost 2 KB of heap on a board.
        self._busy = set()
        self.last_errors = []

    def _now(self):
        return int(self.clock())

    def _write(self, records):
        for record in records:
            self.journal.append(record)

    async def handle(self, method, path, headers, body):
        """(status, body bytes) for one HTTP request."""
        core = self.core
        try:
            name, service = producer.route(self.url_prefix, method, path)
            if name == "discover":
                response = core.services()
            elif name == "prices":
                response = core.prices(service)
            elif self.clock_problem():
                # Quotes and tokens carry expiry times: without a real clock, sell nothing.
                raise ProtocolError(503, "the producer's clock is not set yet (%s); try again shortly"
                                    % self.clock_problem())
            elif name == "requestTotal":
                response, records = core.request_total(service, wire.decode_json(body), self._now(),
                                                       self.random(16))
                self._write(records)
            elif name == "payment":
                response = await self._payment(wire.decode_json(body))
            elif name == "begin":
                response, record, order = core.delivery_begin(service, wire.decode_json(body), self._now())
                self._write([record])
                self._fire("delivery_begin", order.service_id, response["unitsToSupply"])
            else:
                response, record, order = core.delivery_end(service, wire.decode_json(body), self._now())
                self._write([record])
                units = response["unitsJustSupplied"]
                self.log("delivered %d units of service %d on %s (%d left)"
                         % (units, order.service_id, order.ref[:8], order.remaining()))
                self._fire("delivery_end", order.service_id, units)
            return 200, wire.encode_json(response)
        except ProtocolError as exc:
            return exc.status, wire.encode_json(wire.error(exc.status, exc.message))

    # --- payment -------------------------------------------------------------------
    #
    # An attempt's outcome comes from the gateway, never from a clock. A request for a reference
    # holds the reference's turn from start to answer, so requests for one order queue and share
    # its outcome. An attempt left PAYING (a timeout, a 5xx, a lost answer, a reset) is settled
    # before anything else happens on its order: search by its customerOrderCode; if the gateway
    # knows no order by it, send the same attempt again (its one-use token cannot be charged
    # twice); a 4xx refusal of the resend is final once a second search still shows no order.
    # Until then every request for the order answers 504 and no new attempt starts. When every
    # request of the attempt was answered (none can still be at the gateway) and the search shows
    # no order, a 5xx answer is final too: nothing was charged (502).

    async def _payment(self, request):
        request = wire.parse_payment_request(request)
        ref = request["paymentReferenceID"]
        order = self.core.ledger.order(ref, request["clientID"])
        await self._turn(ref)
        try:
            order = self.core.ledger.order(ref, request["clientID"])  # may have gone while we waited
            if order.state == PAYING:
                await self._rare("settle", order)
            step, answer, record, _ = self.core.payment(request, self._now())
            if step == ANSWER:
                return answer
            self._write([record])
            return await self._charge(order)
        finally:
            self._busy.discard(ref)

    async def _turn(self, key):
        """Wait until nothing holds the turn of `key` (a reference; None: the gateway), then take it.

        The caller gives it back with self._busy.discard(key). A waiter cancelled here holds nothing.
        """
        while key in self._busy:
            await asyncio.sleep(_TURN_POLL)
        self._busy.add(key)

    async def _gateway(self, call, *args):
        await self._turn(None)
        try:
            return await call(*args)
        finally:
            self._busy.discard(None)

    async def _send(self, order):
        """POST /orders for the attempt; a request that got no answer leaves the attempt in doubt for good."""
        earlier = order.doubt
        order.doubt = True
        try:
            result = await self._gateway(self.gateway.place_order, self.core.order_request(order))
        except GatewayError:
            order.doubt = earlier
            raise
        order.doubt = earlier
        return result

    async def _charge(self, order):
        """The payment response once the gateway charged the new attempt; 402, 500, 502 or 504 otherwise."""
        order.doubt = False  # a new attempt: nothing of it has been sent yet
        try:
            result = await self._send(order)
        except GatewayError as exc:
            if exc.http_status >= 500:
                return await self._rare("unknown", order, "gateway error %d" % exc.http_status)
            # The gateway refused this attempt's request itself: nothing was charged by it.
            self._write([self.core.ledger.failed(order.ref, exc.custom_code)])
            if exc.custom_code == "UNAUTHORIZED":
                self._remember("the gateway refused this producer's merchant keys: %s" % wire.scrub(exc.message))
                raise ProtocolError(500, "the producer cannot take payments now (merchant account refused)")
            raise ProtocolError(402, "gateway refused the payment: %s %s"
                                % (exc.custom_code, wire.scrub(exc.message)))
        except (NetError, PeerError) as exc:
            return await self._rare("unknown", order, wire.scrub(str(exc)))
        if self._outcome(order, result):
            return self.core.payment_response(order)
        raise ProtocolError(402, "payment declined: %s" % order.failure)

    def _outcome(self, order, result):
        """Journal a gateway order's verdict on the attempt: True if charged."""
        if result["paymentStatus"] == SUCCESS:
            response, record = self.core.charged(order.ref, result, self._now(), self.random(16))
            self._write([record])
            self.log("sold %d units of service %d for %s on %s" % (order.units, order.service_id,
                                                                  money(order.total, order.currency), order.ref[:8]))
            self._fire("payment_received", order.service_id, order.units, order.total)
            return True
        reason = wire.scrub(result["paymentStatusReason"] or result["paymentStatus"])
        self._write([self.core.ledger.failed(order.ref, reason)])
        return False

    async def _rare(self, name, *args):
        """settle.<name>(self, *args): the rare paths' module, loaded for the call and dropped after."""
        from wpwithin import settle

        try:
            return await getattr(settle, name)(self, *args)
        finally:
            forget("wpwithin.settle")

    async def resolve(self, order):
        """Settle an order left PAYING (a lost answer, a reset): True if it turned out paid.

        Raises ProtocolError(504) while the gateway cannot tell; the order
        stays PAYING and a later retry or sweep asks again.
        """
        return await self._rare("resolve", order)

    async def expire(self):
        """The sweep (settle.expire), when anything is due: a stuck payment no request is settling,
        a stalled delivery, a stale quote or an expired token."""
        ledger, now = self.core.ledger, self._now()
        if [o for o in ledger.unresolved() if o.ref not in self._busy] or ledger.stalled(now) or ledger.due(now):
            await self._rare("expire")

    # --- hooks -------------------------------------------------------------------

    def _fire(self, name, *args):
        """The application's hook `name`, if it has one, as a task with a time limit (none: no task)."""
        hook = getattr(self.hooks, name, None)
        if hook is not None:
            asyncio.create_task(self._run_hook(hook(*args)))

    async def _run_hook(self, hook):
        try:
            await asyncio.wait_for(hook, self.hook_timeout)
        except Exception as exc:  # the application's bug must not stop the producer
            self._remember("hook failed: %r" % exc)

    def _remember(self, message):
        self.log(message)
        self.last_errors.append(message)
        del self.last_errors[:-5]
