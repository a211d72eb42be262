"""The producer's ledger of orders and deliveries: a state machine over records.

Theory of operation
-------------------
Every order is keyed by its paymentReferenceID (ref) and moves through

    QUOTED --start_payment--> PAYING --charged--> PAID --begin/end...--> (dropped)
       ^                        |
       +------failed------------+        (the gateway said: nothing was charged)

Each change is a small record, a JSON-ready list whose first item says what
happened:

    ["q", ref, client, service, price, units, total, currency, at]  quoted
    ["p", ref, at, n, client_token]           payment attempt n started
    ["c", ref, order_code, key, issued, expiry, refund_on_expiry]  attempt n charged
    ["f", ref, reason]                        attempt n failed: nothing charged
    ["b", key, units, at]                     delivery began: units in flight
    ["e", key, units]                         delivery ended: units supplied
    ["R", ref, amount]                        refund of unused units asked for
    ["r", ref, amount]                        unused units refunded
    ["x", ref]                                order dropped (expired, or a stale quote)
    ["s", service, units]                     units sold so far (compaction only)
    ["d", key, ref, client, service, units, expiry]  a used-up or expired token (compaction only)

Payment attempts. Each attempt has its own identity at the gateway, its
customerOrderCode "<ref>.<n>" (attempt_code()), and carries the one-use
client token it charges. Its outcome is only ever learnt from the gateway:
its answer, its order search by that code, or its answer to a resend of
the very same attempt (safe: a one-use token is charged at most once).
While an attempt is PAYING no new attempt starts on the reference, so a
reference is charged at most once whatever the gateway's timing; a clock
never decides. A PAID order hands its token only to the client token that
paid it. Journals from before attempts ("p" of 3 items) read as attempt 0,
whose code is the bare reference.

Capacity. An order holds its units from quote to payment (held()): a
QUOTED order until its quote expires or an attempt is declined, a PAYING
order until the gateway settles it. So what is sold never exceeds what a
service can supply.

An "e" record that leaves no units drops its order and keeps the token in
`spent` as one string, "<expiry, 10 digits> <service> <units> <ref> <client>"
(used_up() reads it back): 115 B of heap on the 64-bit unix port where a
tuple of the same fields took 229 and the order 835, so a board serving
many purchases does not hold every finished order until its token expires.
A spent token is still answered as the order would be (409: no units left)
until it is one of more than max_orders spent tokens and the one that
expires first goes (the expiry leads the string, so it sorts first).

Public methods decide, build the record, apply it and return it; apply() is
the only code that changes state, and a journal's records fed through it
(FileJournal.load(ledger.apply)) rebuild the same ledger. The shell must store
"p" before it asks the gateway to charge, so an order found PAYING after a
reset is resolved with the gateway (unresolved()) and never charged twice.

Deliveries. A delivery begun and not ended within delivery_timeout
seconds is ended by the sweep (stalled()), every unit in flight counted as
supplied: the hardware was told to supply them and a consumer that went
away cannot end it. Expired tokens are kept like used-up ones, so they
are answered 410, not "unknown".

Invariants: delivered + in_flight <= units for every paid order; only a
QUOTED order can be charged; a PAID order answers a retried payment with
its earlier result. Never does I/O; times are Unix seconds passed in.
"""
from wpwithin import wire
from wpwithin.compat import const
from wpwithin.errors import ProtocolError, nth

QUOTED = const(0)
PAYING = const(1)
PAID = const(2)

# What a payment request should lead to.
CHARGE = const(0)  # ask the gateway to charge (after storing the "p" record)
ANSWER = const(1)  # already paid: answer with the earlier result, charge nothing

_QUOTE_GRACE = const(30)  # seconds a quote is safe from being dropped to make room: time to pay it

# The refusals, in one string said by number (errors.nth): a string object each costs ~90 B more heap.
_WHY = const("payment reference already in use|"
             "too many open orders; try again later|"
             "this order was paid; its delivery token is used up or has expired|"
             "Unable to find order for payment ref %s|"
             "Client ID does not match Order Client ID|"
             "this order is paid; its delivery token goes only to the client token that paid it|"
             "payment for this reference is in progress; retry shortly|"
             "payment declined: %s; pay with a new client token|"
             "the total price quote has expired; request a new total|"
             "unknown delivery token|"
             "delivery token was issued to another client|"
             "delivery token is for service %d, not %d|"
             "delivery token has expired|"
             "a delivery is already in progress on this token; end it first|"
             "Requested units (%d) not available for selected order. Units available = %d|"
             "no delivery in progress on this token; begin one first")
_IN_USE = const(0)
_FULL = const(1)
_USED_UP = const(2)
_NO_ORDER = const(3)
_NOT_YOURS = const(4)
_PAID_ELSEWHERE = const(5)
_IN_PROGRESS = const(6)
_DECLINED = const(7)
_QUOTE_EXPIRED = const(8)
_UNKNOWN_TOKEN = const(9)
_OTHER_CLIENT = const(10)
_OTHER_SERVICE = const(11)
_TOKEN_EXPIRED = const(12)
_DELIVERING = const(13)
_UNITS_LEFT = const(14)
_NOT_DELIVERING = const(15)


class Order:
    # Defaults live on the class: an instance stores only what differs from them, so a quote
    # (most orders in a busy ledger) takes 8 attributes of heap, not 19.
    state = QUOTED
    paying_since = 0
    attempt = 0  # the payment attempt in flight or last made
    token = ""  # its one-use client token
    failure = ""
    order_code = ""
    key = ""
    issued = 0
    expiry = 0
    refund_on_expiry = False
    delivered = 0
    in_flight = 0
    in_flight_since = 0
    refunding = 0  # a refund asked for and not yet known to be done
    refunded = 0
    # Not journalled: whether a request of the attempt in flight may still be at the gateway
    # (sent, and no answer came). Replayed orders are in doubt: a reset may have cut a request.
    doubt = True

    def __init__(self, ref, client_id, service_id, price_id, units, total, currency, quoted_at):
        self.ref = ref
        self.client_id = client_id
        self.service_id = service_id
        self.price_id = price_id
        self.units = units
        self.total = total
        self.currency = currency
        self.quoted_at = quoted_at

    def remaining(self):
        return self.units - self.delivered


def attempt_code(order):
    """The customerOrderCode of an order's current attempt: what the gateway knows it by."""
    return "%s.%d" % (order.ref, order.attempt) if order.attempt else order.ref


class Ledger:
    def __init__(self, max_orders=64, quote_ttl=600, delivery_timeout=600):
        self.max_orders = max_orders
        self.quote_ttl = quote_ttl
        self.delivery_timeout = delivery_timeout
        self.orders = {}  # ref -> Order
        self.by_key = {}  # token key -> Order
        self.sold = {}  # service id -> units sold and not refunded
        self.spent = {}  # token key -> (ref, client, service, units, expiry) of a used-up token

    # --- state changes: the only place state is written -------------------

    def apply(self, record):
        """Apply one record (live or replayed). Unknown or inconsistent records raise ValueError."""
        kind = record[0]
        if kind == "q":
            _, ref, client, service, price, units, total, currency, at = record
            self.orders[ref] = Order(ref, client, service, price, units, total, currency, at)
            return
        if kind == "s":
            self.sold[record[1]] = record[2]
            return
        if kind == "d":
            _, key, ref, client, service, units, expiry = record
            self._spend(key, ref, client, service, units, expiry)
            return
        if kind in ("b", "e"):
            order = self.by_key.get(record[1])
            if order is None or order.state != PAID:
                raise ValueError("record for unknown token")
            if kind == "b":
                order.in_flight = record[2]
                order.in_flight_since = record[3] if len(record) > 3 else 0
            else:
                order.delivered += record[2]
                order.in_flight = order.in_flight_since = 0
                if not order.remaining():
                    del self.orders[order.ref]
                    del self.by_key[order.key]
                    self._spend(order.key, order.ref, order.client_id, order.service_id, order.units,
                                order.expiry)
            return
        order = self.orders.get(record[1])
        if order is None:
            if kind == "x":
                return  # used up already: a journal written before spent tokens drops it later
            raise ValueError("record for unknown order")
        if kind == "p":
            order.state = PAYING
            order.paying_since = record[2]
            order.failure = ""
            if len(record) > 3:
                order.attempt, order.token = record[3], record[4]
        elif kind == "c":
            _, _, order.order_code, order.key, order.issued, order.expiry, order.refund_on_expiry = record
            order.state = PAID
            self.by_key[order.key] = order
            self.sold[order.service_id] = self.sold.get(order.service_id, 0) + order.units
        elif kind == "f":
            order.state = QUOTED
            order.failure = record[2]
        elif kind == "R":
            order.refunding = record[2]
        elif kind == "r":
            order.refunding = 0
            order.refunded += record[2]
            unused = order.units - order.delivered - order.in_flight
            self.sold[order.service_id] = self.sold.get(order.service_id, 0) - unused
        elif kind == "x":
            del self.orders[order.ref]
            if order.key:  # an expired token: kept to be answered 410, not "unknown"
                del self.by_key[order.key]
                self._spend(order.key, order.ref, order.client_id, order.service_id, order.units,
                            order.expiry)
        else:
            raise ValueError("unknown record kind %r" % kind)

    def _spend(self, key, ref, client, service, units, expiry):
        self.spent[key] = "%010d %d %d %s %s" % (expiry, service, units, ref, client)
        if len(self.spent) > self.max_orders:
            del self.spent[min(self.spent, key=lambda k: (self.spent[k], k))]

    def used_up(self, key):
        """(ref, client, service, units, expiry) of a used-up or expired token kept in `spent`, or None."""
        spent = self.spent.get(key)
        if spent is None:
            return None
        expiry, service, units, ref, client = spent.split(" ", 4)  # a ref has no space; a client may
        return ref, client, int(service), int(units), int(expiry)

    def _do(self, record):
        self.apply(record)
        return record

    def records(self):
        """Records that rebuild the current state (what compaction writes), one at a time.

        A generator: compaction writes each as it comes, so it holds one record, not the
        whole state (11.7 KB for 32 used-up tokens and 8 orders, 64-bit). Consume it
        before the ledger changes (compaction does: it never awaits).
        """
        for ref in sorted(self.orders):
            o = self.orders[ref]
            yield ["q", o.ref, o.client_id, o.service_id, o.price_id, o.units, o.total, o.currency, o.quoted_at]
            if o.attempt or o.state != QUOTED:
                yield ["p", o.ref, o.paying_since, o.attempt, o.token]
            if o.failure:
                yield ["f", o.ref, o.failure]
            if o.state == PAID:
                yield ["c", o.ref, o.order_code, o.key, o.issued, o.expiry, o.refund_on_expiry]
                if o.refunded:
                    yield ["r", o.ref, o.refunded]
                if o.refunding:
                    yield ["R", o.ref, o.refunding]
                if o.delivered:
                    yield ["b", o.key, o.delivered, 0]
                    yield ["e", o.key, o.delivered]
                if o.in_flight:
                    yield ["b", o.key, o.in_flight, o.in_flight_since]
        for key in sorted(self.spent):
            yield ["d", key] + list(self.used_up(key))
        # Last, so it overrides what the "c" and "r" records above added up.
        for service in sorted(self.sold):
            yield ["s", service, self.sold[service]]

    # --- select --------------------------------------------------------------

    def quote(self, ref, client_id, service_id, price_id, units, total, currency, now):
        """Record a quote; returns the records (drops of stale quotes first, if full)."""
        if ref in self.orders:
            raise ProtocolError(409, nth(_WHY, _IN_USE))
        out = []
        if len(self.orders) >= self.max_orders:
            # The oldest unpaid quote goes, if it is at least _QUOTE_GRACE old: a fresher one may be
            # being paid right now, and dropping it would fail that purchase; better the new quote
            # waits (503, which consumers retry). An order with units left never goes.
            oldest = None
            for o in self.orders.values():
                if o.state == QUOTED and now - o.quoted_at >= _QUOTE_GRACE and (
                        oldest is None or o.quoted_at < oldest.quoted_at):
                    oldest = o
            if oldest is None:
                raise ProtocolError(503, nth(_WHY, _FULL))
            out.append(self._do(["x", oldest.ref]))
        out.append(self._do(["q", ref, client_id, service_id, price_id, units, total, currency, now]))
        return out

    def held(self, service_id, now, but=None):
        """Units of a service held by orders not yet paid (all but the order `but`)."""
        n = 0
        for o in self.orders.values():
            if o.service_id == service_id and o is not but and (
                    o.state == PAYING
                    or (o.state == QUOTED and not o.failure and now < o.quoted_at + self.quote_ttl)):
                n += o.units
        return n

    # --- pay ------------------------------------------------------------------

    def order(self, ref, client_id):
        order = self.orders.get(ref)
        if order is None:
            for key in self.spent:
                spent = self.used_up(key)
                if spent[0] == ref and spent[1] == client_id:
                    raise ProtocolError(410, nth(_WHY, _USED_UP))
            raise ProtocolError(404, nth(_WHY, _NO_ORDER) % ref)
        if order.client_id != client_id:
            raise ProtocolError(400, nth(_WHY, _NOT_YOURS))
        return order

    def payment_step(self, ref, client_id, now, token=""):
        """CHARGE or ANSWER for a payment with `token`; refusals raise ProtocolError."""
        order = self.order(ref, client_id)
        if order.state == PAID:
            if order.token and token != order.token:
                raise ProtocolError(409, nth(_WHY, _PAID_ELSEWHERE))
            return ANSWER
        if order.state == PAYING:  # the shell settles an attempt in flight with the gateway first
            raise ProtocolError(409, nth(_WHY, _IN_PROGRESS))
        if order.failure and order.token and token == order.token:
            raise ProtocolError(402, nth(_WHY, _DECLINED) % order.failure)
        if now >= order.quoted_at + self.quote_ttl:
            raise ProtocolError(410, nth(_WHY, _QUOTE_EXPIRED))
        return CHARGE

    def start_payment(self, ref, now, token=""):
        """The "p" record of a new attempt (store it before asking the gateway to charge)."""
        order = self.orders[ref]
        if order.state != QUOTED:
            raise ValueError("only a quoted order can be charged")
        return self._do(["p", ref, now, order.attempt + 1, token])

    def charged(self, ref, order_code, key, issued, expiry, refund_on_expiry):
        order = self.orders[ref]
        if order.state != PAYING:
            raise ValueError("only an order being paid can be charged")
        return self._do(["c", ref, order_code, key, issued, expiry, refund_on_expiry])

    def failed(self, ref, reason):
        if self.orders[ref].state != PAYING:
            raise ValueError("only an order being paid can fail")
        # Whatever the gateway said, the record fits a journal line: printable ASCII, 100 at most.
        return self._do(["f", ref, wire.ascii_text(reason, 100)])

    def unresolved(self):
        """Orders whose attempt's outcome is unknown (PAYING): ask the gateway."""
        return [o for o in self.orders.values() if o.state == PAYING]

    # --- release ----------------------------------------------------------------

    def paid_order(self, key, client_id, service_id):
        """The paid order of a delivery token, checked against the request."""
        order = self.by_key.get(key)
        if order is None:
            spent = self.used_up(key)
            if spent is None:
                raise ProtocolError(400, nth(_WHY, _UNKNOWN_TOKEN))
            ref, client, service, units, expiry = spent
            order = Order(ref, client, service, 0, units, 0, "", 0)  # answered as the used-up order was
            order.state = PAID
            order.key = key
            order.expiry = expiry
            order.delivered = units
        if order.client_id != client_id:
            raise ProtocolError(400, nth(_WHY, _OTHER_CLIENT))
        if order.service_id != service_id:
            raise ProtocolError(
                400, nth(_WHY, _OTHER_SERVICE) % (order.service_id, service_id))
        return order

    def begin_delivery(self, order, units, now):
        """Put `units` in flight; returns the record. More than is left is refused (409)."""
        if now >= order.expiry:
            raise ProtocolError(410, nth(_WHY, _TOKEN_EXPIRED))
        if order.in_flight:
            raise ProtocolError(409, nth(_WHY, _DELIVERING))
        left = order.remaining()
        if units > left:
            raise ProtocolError(
                409, nth(_WHY, _UNITS_LEFT) % (units, left))
        return self._do(["b", order.key, units, now])

    def end_delivery(self, order, units_supplied):
        """Close the delivery in progress; returns (record, units counted as supplied)."""
        if not order.in_flight:
            raise ProtocolError(409, nth(_WHY, _NOT_DELIVERING))
        supplied = units_supplied if units_supplied < order.in_flight else order.in_flight
        return self._do(["e", order.key, supplied]), supplied

    # --- expiry -----------------------------------------------------------------

    def stalled(self, now):
        """Paid orders whose delivery began more than delivery_timeout ago and was never ended."""
        return [o for o in self.orders.values()
                if o.in_flight and now >= o.in_flight_since + self.delivery_timeout]

    def due(self, now):
        """Orders past their time: (order, refund owed in minor units)."""
        out = []
        for o in self.orders.values():
            if o.state == QUOTED and now >= o.quoted_at + self.quote_ttl:
                out.append((o, 0))
            elif o.state == PAID and now >= o.expiry and not o.in_flight:
                owed = 0
                if o.refund_on_expiry and not o.refunded:
                    owed = o.refunding or o.remaining() * o.total // o.units
                out.append((o, owed))
        return out

    def refund_asked(self, ref, amount):
        """The "R" record to store before asking the gateway for a refund."""
        return self._do(["R", ref, amount])

    def refunded(self, ref, amount):
        return self._do(["r", ref, amount])

    def drop(self, ref):
        return self._do(["x", ref])
