"""Consumer (HCE) protocol core: one purchase from one producer, step by step.

Theory of operation: a Purchase builds each request from what the previous
response said and checks every response before the next step:

    services -> prices -> total_request / check_total
             -> (card to gateway token, outside this module)
             -> payment_request / check_payment
             -> begin_request / check_begin -> end_request / check_end (repeat)

Checks: the producer's serverID never changes; the service and price exist;
the units offered are at least one and no more than asked; the total is
exactly units x price per unit of the price the producer names; the total
paid is the total quoted; delivery answers echo our token and never report
more units supplied than were asked for. Our own count of units left is the
truth: an unitsRemaining larger than it (a producer built on the original
Go SDK reports "bought minus this session") is not taken, and check_end
sets `warning` the first time; a smaller one is taken. A failed check
raises PeerError naming the field. Never does I/O and never sees the card
number.
"""
from wpwithin import wire
from wpwithin.compat import const
from wpwithin.errors import PeerError, ProtocolError

SCHEMES = ("http://", "https://")
MAX_ITEMS = const(64)  # services in a list, prices in a list
# Objects and arrays in an answer from a producer or the gateway: MAX_ITEMS prices, 2 each.
MAX_ANSWER_CONTAINERS = const(136)


class NotOffered(Exception):
    """The producer does not sell the service or price asked for."""


# --- the wire format as a consumer meets it (DESIGN section 2) -------------------
# Builders of the requests a consumer sends (wire parses them back on a producer) and
# decoders of what producers send: keys in any case, as Go's JSON decoder takes them; a
# bad value raises ProtocolError(422) naming the field. Here, not in wire, so a
# producer-only image carries none of it.


def total_request(client_id, units, price_id):
    return {"clientID": client_id, "selectedNumberOfUnits": units, "selectedPriceID": price_id}


def payment_request(client_id, client_token, reference):
    return {"clientID": client_id, "clientToken": client_token, "paymentReferenceID": reference}


def begin_request(client_id, token, units):
    return {"clientID": client_id, "serviceDeliveryToken": token, "unitsToSupply": units}


def end_request(client_id, token, units_received):
    return {"clientID": client_id, "serviceDeliveryToken": token, "unitsReceived": units_received}


def _object(f, name):
    return wire.fields(wire.get(f, name), "field " + name)


def _list(f, name):
    value = wire.get(f, name)
    if value is None:  # Go marshals an empty slice it never appended to as null
        return []
    if not isinstance(value, list):
        raise ProtocolError(422, "field %s must be a list" % name)
    if len(value) > MAX_ITEMS:
        raise ProtocolError(422, "field %s has more than %d items" % (name, MAX_ITEMS))
    return value


def parse_broadcast(obj):
    f = wire.fields(obj, "broadcast")
    scheme = wire.get_str(f, "scheme", 8, default="http://")
    if scheme not in SCHEMES:
        raise ProtocolError(422, "field scheme must be http:// or https://")
    return wire.broadcast(
        wire.get_str(f, "serverID"),
        wire.get_str(f, "deviceDescription", wire.MAX_TEXT_LEN, default="", allow_empty=True),
        wire.get_str(f, "hostname", wire.MAX_HOST_LEN),
        wire.get_int(f, "portNumber", 1, 65535),
        parse_url_prefix(wire.get_str(f, "urlPrefix", wire.MAX_TEXT_LEN, default="", allow_empty=True)),
        scheme,
    )


def parse_url_prefix(prefix):
    """A URL prefix is empty or a path like /api/v1 (no dots, no spaces, no query)."""
    if not wire.is_url_prefix(prefix):
        raise ProtocolError(422, "field urlPrefix must be empty or a path like /api")
    return prefix


def parse_service_list(obj):
    f = wire.fields(obj, "service list")
    entries = []
    for item in _list(f, "services"):
        e = wire.fields(item, "service")
        entries.append(wire.service_entry(
            wire.get_int(e, "ServiceID", 0, wire.MAX_NUMBER_ID),
            wire.get_str(e, "ServiceName", wire.MAX_TEXT_LEN, default="", allow_empty=True),
            wire.get_str(e, "ServiceDescription", wire.MAX_TEXT_LEN, default="", allow_empty=True),
        ))
    return wire.service_list(wire.get_str(f, "serverID"), entries)


def parse_price_list(obj):
    f = wire.fields(obj, "price list")
    entries = []
    for item in _list(f, "prices"):
        p = wire.fields(item, "price")
        per_unit = _object(p, "pricePerUnit")
        entries.append(wire.price_entry(
            wire.get_int(p, "priceID", 0, wire.MAX_NUMBER_ID),
            wire.get_str(p, "priceDescription", wire.MAX_TEXT_LEN, default="", allow_empty=True),
            wire.get_int(per_unit, "amount", 0, wire.MAX_AMOUNT),
            wire.get_currency(per_unit, "currencyCode"),
            wire.get_int(p, "unitID", 0, wire.MAX_NUMBER_ID),
            wire.get_str(p, "unitDescription", wire.MAX_TEXT_LEN, default="", allow_empty=True),
        ))
    return wire.price_list(wire.get_str(f, "serverID"), entries)


def parse_total_response(obj):
    f = wire.fields(obj, "total price response")
    return wire.total_response(
        wire.get_str(f, "serverID"),
        wire.get_str(f, "clientID"),
        wire.get_int(f, "priceID", 0, wire.MAX_NUMBER_ID),
        wire.get_int(f, "unitsToSupply", 1, wire.MAX_UNITS),
        wire.get_int(f, "totalPrice", 0, wire.MAX_AMOUNT),
        wire.get_currency(f, "currencyCode"),
        wire.get_str(f, "paymentReferenceID"),
        wire.get_str(f, "merchantClientKey", wire.MAX_CLIENT_TOKEN_LEN),
    )


def parse_payment_response(obj):
    f = wire.fields(obj, "payment response")
    return wire.payment_response(
        wire.get_str(f, "serverID"),
        wire.get_str(f, "clientID"),
        wire.get_int(f, "totalPaid", 0, wire.MAX_AMOUNT),
        wire.get_token(f),
    )


def parse_begin_response(obj):
    f = wire.fields(obj, "delivery begin response")
    return wire.begin_response(
        wire.get_str(f, "serverID"),
        wire.get_str(f, "clientID"),
        wire.get_token(f),
        wire.get_int(f, "unitsToSupply", 0, wire.MAX_UNITS),
    )


def parse_end_response(obj):
    f = wire.fields(obj, "delivery end response")
    return wire.end_response(
        wire.get_str(f, "serverID"),
        wire.get_str(f, "clientID"),
        wire.get_token(f),
        wire.get_int(f, "unitsJustSupplied", 0, wire.MAX_UNITS),
        wire.get_int(f, "unitsRemaining", 0, wire.MAX_UNITS),
    )


def parse_error(obj):
    """An error body from any producer; the reference sends HTTPStatusCode 0, so it is advisory."""
    f = wire.fields(obj, "error")
    message = f.get("message", "")
    return wire.error(
        wire.get_int(f, "HTTPStatusCode", 0, 999, default=0),
        message[:wire.MAX_TEXT_LEN] if isinstance(message, str) else "",
        wire.get_int(f, "errorCode", -wire.MAX_NUMBER_ID, wire.MAX_NUMBER_ID, default=0),
    )


# --- one purchase ---------------------------------------------------------------


def _decode(parse, obj, what):
    try:
        return parse(obj)
    except ProtocolError as exc:
        raise PeerError("producer's %s: %s" % (what, exc.message))


class Purchase:
    def __init__(self, client_id, service_id, price_id, units):
        self.client_id = client_id
        self.service_id = service_id
        self.price_id = price_id
        self.units = units
        self.server_id = None
        self.prices = {}
        self.total = None  # the checked total price response
        self.token = None  # the delivery token, once paid
        self.remaining = 0  # units left on the token: our own count, or less when the producer says less
        self.in_flight = 0
        self.warned = False  # told once that the producer reports more units left than we count
        self.warning = None  # what the last check_end has to say about that, or None

    def _server(self, message, what):
        if self.server_id is None:
            self.server_id = message["serverID"]
        elif message["serverID"] != self.server_id:
            raise PeerError("producer's %s: serverID changed from %s to %s"
                            % (what, self.server_id, message["serverID"]))

    def _client(self, message, what):
        if message["clientID"] != self.client_id:
            raise PeerError("producer's %s: clientID is not ours" % what)

    # --- discover and select -----------------------------------------------------

    def check_services(self, obj):
        msg = _decode(parse_service_list, obj, "service list")
        self._server(msg, "service list")
        for entry in msg["services"]:
            if entry["ServiceID"] == self.service_id:
                return entry
        raise NotOffered("producer does not offer service %d" % self.service_id)

    def check_prices(self, obj):
        msg = _decode(parse_price_list, obj, "price list")
        self._server(msg, "price list")
        self.prices = {}
        for entry in msg["prices"]:
            self.prices[entry["priceID"]] = entry
        if self.price_id not in self.prices:
            raise NotOffered("producer has no price %d for service %d" % (self.price_id, self.service_id))
        return msg["prices"]

    def total_request(self):
        return total_request(self.client_id, self.units, self.price_id)

    def check_total(self, obj):
        msg = _decode(parse_total_response, obj, "total price response")
        self._server(msg, "total price response")
        self._client(msg, "total price response")
        price = self.prices.get(msg["priceID"]) if self.prices else None
        selected = self.prices.get(self.price_id)
        if price is None:
            raise PeerError("producer's total price response: priceID %d is not in its price list" % msg["priceID"])
        if selected is not None and price["unitID"] != selected["unitID"]:
            raise PeerError("producer's total price response: priceID %d sells another unit" % msg["priceID"])
        units = msg["unitsToSupply"]
        if units > self.units:
            raise PeerError("producer's total price response: unitsToSupply %d is more than the %d asked for"
                            % (units, self.units))
        per_unit = price["pricePerUnit"]
        if msg["totalPrice"] != units * per_unit["amount"]:
            raise PeerError("producer's total price response: totalPrice %d is not %d units x %d"
                            % (msg["totalPrice"], units, per_unit["amount"]))
        if msg["currencyCode"] != per_unit["currencyCode"]:
            raise PeerError("producer's total price response: currencyCode %s is not the price's %s"
                            % (msg["currencyCode"], per_unit["currencyCode"]))
        self.total = msg
        return msg

    # --- pay -----------------------------------------------------------------------------

    def payment_request(self, client_token):
        if self.total is None:
            raise ValueError("request a total before paying")
        return payment_request(self.client_id, client_token, self.total["paymentReferenceID"])

    def check_payment(self, obj):
        msg = _decode(parse_payment_response, obj, "payment response")
        self._server(msg, "payment response")
        self._client(msg, "payment response")
        if msg["totalPaid"] != self.total["totalPrice"]:
            raise PeerError("producer's payment response: totalPaid %d is not the quoted %d"
                            % (msg["totalPaid"], self.total["totalPrice"]))
        self.token = msg["serviceDeliveryToken"]
        self.remaining = self.total["unitsToSupply"]
        return msg

    # --- release ----------------------------------------------------------------------

    def begin_request(self, units):
        if self.token is None:
            raise ValueError("pay before asking for delivery")
        if units < 1 or units > self.remaining:
            raise ValueError("can begin delivery of 1 to %d units, not %d" % (self.remaining, units))
        return begin_request(self.client_id, self.token, units)

    def check_begin(self, obj, units):
        msg = _decode(parse_begin_response, obj, "delivery begin response")
        self._server(msg, "delivery begin response")
        self._client(msg, "delivery begin response")
        self._same_token(msg, "delivery begin response")
        if msg["unitsToSupply"] > units:
            raise PeerError("producer's delivery begin response: unitsToSupply %d is more than the %d asked for"
                            % (msg["unitsToSupply"], units))
        self.in_flight = msg["unitsToSupply"]
        return msg

    def end_request(self, units_received):
        return end_request(self.client_id, self.token, units_received)

    def check_end(self, obj):
        msg = _decode(parse_end_response, obj, "delivery end response")
        self._server(msg, "delivery end response")
        self._client(msg, "delivery end response")
        self._same_token(msg, "delivery end response")
        just = msg["unitsJustSupplied"]
        if just > self.in_flight:
            raise PeerError("producer's delivery end response: unitsJustSupplied %d is more than the %d in flight"
                            % (just, self.in_flight))
        own = self.remaining - just
        reported = msg["unitsRemaining"]
        self.warning = None
        if reported > own and not self.warned:
            self.warned = True
            self.warning = ("producer %s reports %d units left on token %s, we count %d: keeping %d "
                            "(a producer built on the original SDK counts only this session)"
                            % (self.server_id, reported, self.token["key"][:8], own, own))
        self.remaining = reported if reported < own else own
        self.in_flight = 0
        return msg

    def _same_token(self, msg, what):
        if msg["serviceDeliveryToken"]["key"] != self.token["key"]:
            raise PeerError("producer's %s: serviceDeliveryToken is not ours" % what)
