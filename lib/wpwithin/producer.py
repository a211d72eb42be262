"""Producer (HTE) protocol core: the six routes as pure request handling.

route() maps a method and path to a handler name; the handlers take the
decoded JSON body, the time and random bytes, and return the response
dict plus the ledger records the shell must journal. Payment is split in
two around the gateway call: payment() says CHARGE (with the order request
for the gateway and the "p" record to store first) or ANSWER (already
paid: the earlier result, nothing charged); then charged() or declined().
A quote holds its units against a service's capacity until it is paid,
declined or expired, so capacity is never sold twice.
Never does I/O, never sees card numbers, never returns the service key.
"""
from binascii import hexlify

from wpwithin import delivery_token, gateway_wire, wire
from wpwithin.compat import const
from wpwithin.errors import ProtocolError
from wpwithin.ledger import ANSWER, CHARGE, attempt_code

_WEEK = const(7 * 86400)  # the reference's token lifetime


def route(prefix, method, path):
    """(route, service id text or None) for a request; 404/405 otherwise.

    The route is its last path word: "discover", "prices", "requestTotal",
    "payment", "begin" or "end".

    Matching is exact: no dot segments, no doubled slashes, no percent
    escapes. A query string is ignored, as Go's router ignores it.
    """
    q = path.find("?")
    if q >= 0:
        path = path[:q]
    if not path.startswith(prefix):
        raise ProtocolError(404, "no such route")
    parts = path[len(prefix):].split("/")
    name = service = None
    if parts[0] == "" and len(parts) >= 2:  # the route part starts with a slash
        if len(parts) == 2 and parts[1] == "payment":
            name = "payment"
        elif parts[1] == "service":
            if len(parts) == 3 and parts[2] == "discover":
                name = "discover"
            elif len(parts) == 4 and parts[3] in ("prices", "requestTotal"):
                name, service = parts[3], parts[2]
            elif len(parts) == 5 and parts[3] == "delivery" and parts[4] in ("begin", "end"):
                name, service = parts[4], parts[2]
    if name is None:
        raise ProtocolError(404, "no such route")
    wanted = "GET" if name in ("discover", "prices") else "POST"
    if method != wanted:
        raise ProtocolError(405, "use %s for this route" % wanted)
    return name, service


def reference_id(random16):
    """A lower-case UUIDv4 string from 16 random bytes, as the reference's references look."""
    b = bytearray(random16)
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = hexlify(b).decode()
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


class Producer:
    def __init__(self, server_id, catalogue, ledger, secret, merchant_client_key,
                 token_ttl=_WEEK, refund_on_expiry=False):
        self.server_id = server_id
        self.catalogue = catalogue
        self.ledger = ledger
        self._secret = secret
        self.merchant_client_key = merchant_client_key
        self.token_ttl = token_ttl
        self.refund_on_expiry = refund_on_expiry

    def __repr__(self):
        return "<Producer %s>" % self.server_id

    # --- discover and select ---------------------------------------------------

    def services(self):
        return wire.service_list(self.server_id, self.catalogue.service_entries())

    def prices(self, service_text):
        service = self.catalogue.service(wire.parse_path_id(service_text, "service"))
        return wire.price_list(self.server_id, service.price_entries())

    def request_total(self, service_text, body, now, random16):
        """(response, records) for a total price request."""
        service_id = wire.parse_path_id(service_text, "service")
        self.catalogue.service(service_id)
        req = wire.parse_total_request(body)
        ledger = self.ledger
        price, units, total = self.catalogue.quote(
            service_id, req["selectedPriceID"], req["selectedNumberOfUnits"],
            ledger.sold.get(service_id, 0) + ledger.held(service_id, now))
        ref = reference_id(random16)
        records = self.ledger.quote(ref, req["clientID"], service_id, price.price_id, units, total,
                                    price.currency, now)
        response = wire.total_response(self.server_id, req["clientID"], price.price_id, units, total,
                                       price.currency, ref, self.merchant_client_key)
        return response, records

    # --- pay -----------------------------------------------------------------------

    def payment(self, req, now):
        """(CHARGE, order request, "p" record, ref) or (ANSWER, response, None, ref).

        req: the request as wire.parse_payment_request() returns it (the shell parses it first, to
        queue payments of one order behind each other and settle an attempt in flight first).
        """
        ref, token = req["paymentReferenceID"], req["clientToken"]
        step = self.ledger.payment_step(ref, req["clientID"], now, token)
        order = self.ledger.orders[ref]
        if step == ANSWER:
            return ANSWER, self.payment_response(order), None, ref
        service = self.catalogue.service(order.service_id)
        if service.capacity is not None:
            held = self.ledger.sold.get(order.service_id, 0) + self.ledger.held(order.service_id, now, order)
            if held + order.units > service.capacity:
                raise ProtocolError(409, "the units quoted are no longer available; request a new total")
        record = self.ledger.start_payment(ref, now, token)
        return CHARGE, self.order_request(order), record, ref

    def order_request(self, order):
        """The gateway's POST /orders body for the order's current attempt (sent again to settle it)."""
        service = self.catalogue.service(order.service_id)
        return gateway_wire.order_request(order.token, order.total, order.currency,
                                          "%s - %d units" % (service.name, order.units), attempt_code(order))

    def charged(self, ref, gateway_order, now, random16):
        """(response, "c" record) once the gateway says the order is paid."""
        order = self.ledger.orders[ref]
        if (gateway_order["paymentStatus"] != gateway_wire.SUCCESS
                or gateway_order["amount"] != order.total
                or gateway_order["currencyCode"] != order.currency):
            raise ProtocolError(502, "gateway answer does not match the order")
        key = delivery_token.new_key(random16)
        record = self.ledger.charged(ref, gateway_order["orderCode"], key, now, now + self.token_ttl,
                                     self.refund_on_expiry)
        return self.payment_response(order), record

    def declined(self, ref, reason):
        """The "f" record for a definite failure (nothing charged) and the error to answer with."""
        record = self.ledger.failed(ref, reason)
        return record, ProtocolError(402, "payment declined: %s" % reason)

    def payment_response(self, order):
        return wire.payment_response(self.server_id, order.client_id, order.total, self._token(order))

    def _token(self, order):
        return delivery_token.issue(
            self._secret, order.key, self.server_id, order.client_id, order.service_id,
            order.units, order.issued, order.expiry, order.refund_on_expiry)

    # --- release ---------------------------------------------------------------------

    def _paid_order(self, service_text, req, now, check_expiry):
        service_id = wire.parse_path_id(service_text, "service")
        self.catalogue.service(service_id)
        token = req["serviceDeliveryToken"]
        order = self.ledger.paid_order(token["key"], req["clientID"], service_id)
        delivery_token.verify(self._secret, token, self.server_id, order.client_id, order.service_id,
                              order.units, order.expiry, now if check_expiry else None)
        return order

    def delivery_begin(self, service_text, body, now):
        """(response, "b" record, order): units go in flight for the hardware to supply."""
        req = wire.parse_begin_request(body)
        order = self._paid_order(service_text, req, now, True)
        record = self.ledger.begin_delivery(order, req["unitsToSupply"], now)
        response = wire.begin_response(self.server_id, req["clientID"], req["serviceDeliveryToken"],
                                       req["unitsToSupply"])
        return response, record, order

    def delivery_end(self, service_text, body, now, supplied=None):
        """(response, "e" record, order).

        The units counted are what the consumer says it received, or what
        the producer's meter says it supplied when `supplied` is given,
        never more than were in flight.
        """
        req = wire.parse_end_request(body)
        order = self._paid_order(service_text, req, now, False)
        counted = req["unitsReceived"] if supplied is None else supplied
        record, just = self.ledger.end_delivery(order, counted)
        response = wire.end_response(self.server_id, req["clientID"], req["serviceDeliveryToken"],
                                     just, order.remaining())
        return response, record, order
