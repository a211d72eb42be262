"""The producer's catalogue: services, their prices, volume tiers and capacity.

A price may hold only for a range of units (a volume tier); a service may
have a limited capacity (units it can still sell). quote() answers a total
price request with what the producer can actually supply:

1. units are capped by the capacity left (none left: 409);
2. if the selected price's range covers them, that price applies;
3. otherwise the tier of the same unit whose range covers them applies
   (cheapest if several), and the answer names that tier's priceID;
4. above every tier the units are capped at the highest tier's maximum;
   below every tier the request is refused (422) naming the minimum.

Never does I/O; amounts are integers in minor units.
"""
from wpwithin import wire
from wpwithin.errors import CONFLICT, NOT_FOUND, UNPROCESSABLE, ProtocolError


class Price:
    def __init__(self, price_id, amount, currency, unit_id, unit_description="",
                 description="", min_units=1, max_units=wire.MAX_UNITS):
        self.price_id = price_id
        self.amount = amount
        self.currency = currency
        self.unit_id = unit_id
        self.unit_description = unit_description
        self.description = description
        self.min_units = min_units
        self.max_units = max_units

    def covers(self, units):
        return self.min_units <= units <= self.max_units

    def entry(self):
        return wire.price_entry(self.price_id, self.description, self.amount, self.currency,
                                self.unit_id, self.unit_description)


class Service:
    def __init__(self, service_id, name, description="", prices=(), capacity=None):
        self.service_id = service_id
        self.name = name
        self.description = description
        self.prices = {}
        for price in prices:
            self.prices[price.price_id] = price
        self.capacity = capacity

    def price(self, price_id):
        price = self.prices.get(price_id)
        if price is None:
            raise ProtocolError(NOT_FOUND, "Price not found for id %d" % price_id)
        return price

    def price_entries(self):
        return [self.prices[k].entry() for k in sorted(self.prices)]

    def _tiers(self, unit_id):
        return [p for p in self.prices.values() if p.unit_id == unit_id]


class Catalogue:
    def __init__(self, services=()):
        self.services = {}
        for service in services:
            self.services[service.service_id] = service

    def service(self, service_id):
        service = self.services.get(service_id)
        if service is None:
            raise ProtocolError(NOT_FOUND, "Service not found for id %d" % service_id)
        return service

    def service_entries(self):
        return [
            wire.service_entry(s.service_id, s.name, s.description)
            for s in (self.services[k] for k in sorted(self.services))
        ]

    def quote(self, service_id, price_id, units, sold=0):
        """(price, units_to_supply, total) for a request; `sold` counts units already sold."""
        service = self.service(service_id)
        price = service.price(price_id)
        if units < 1:
            raise ProtocolError(UNPROCESSABLE, "field selectedNumberOfUnits must be at least 1")
        supply = units
        if service.capacity is not None:
            left = service.capacity - sold
            if left <= 0:
                raise ProtocolError(CONFLICT, "Service %d has no units left" % service_id)
            supply = min(supply, left)
        if not price.covers(supply):
            price, supply = _tier_for(service._tiers(price.unit_id), supply)
        total = supply * price.amount
        if total > wire.MAX_AMOUNT:
            raise ProtocolError(UNPROCESSABLE, "total price exceeds %d; select fewer units" % wire.MAX_AMOUNT)
        return price, supply, total


def _tier_for(tiers, units):
    covering = [p for p in tiers if p.covers(units)]
    if covering:
        best = covering[0]
        for p in covering:
            if p.amount < best.amount:
                best = p
        return best, units
    top = tiers[0]
    low = tiers[0]
    for p in tiers:
        if p.max_units > top.max_units:
            top = p
        if p.min_units < low.min_units:
            low = p
    if units > top.max_units:
        return top, top.max_units
    raise ProtocolError(UNPROCESSABLE, "selectedNumberOfUnits must be at least %d" % low.min_units)


# --- configuration ------------------------------------------------------------

def _config_int(obj, key, where, low, high, default=None):
    value = obj.get(key, default)
    if type(value) is not int or value < low or value > high:
        raise ValueError("%s.%s must be an integer between %d and %d" % (where, key, low, high))
    return value


def _config_str(obj, key, where, default=None):
    value = obj.get(key, default)
    if not isinstance(value, str) or len(value) > wire.MAX_TEXT_LEN:
        raise ValueError("%s.%s must be a string of at most %d characters" % (where, key, wire.MAX_TEXT_LEN))
    return value


def from_config(services):
    """Build a Catalogue from the "services" list of a configuration file.

    Raises ValueError naming the bad entry, e.g. "services[0].prices[1].amount ...".
    """
    if not isinstance(services, list) or not services:
        raise ValueError("services must be a non-empty list")
    built = []
    for i, item in enumerate(services):
        where = "services[%d]" % i
        if not isinstance(item, dict):
            raise ValueError("%s must be an object" % where)
        prices = []
        raw_prices = item.get("prices")
        if not isinstance(raw_prices, list) or not raw_prices:
            raise ValueError("%s.prices must be a non-empty list" % where)
        for j, p in enumerate(raw_prices):
            pwhere = "%s.prices[%d]" % (where, j)
            if not isinstance(p, dict):
                raise ValueError("%s must be an object" % pwhere)
            currency = _config_str(p, "currency", pwhere, "GBP")
            if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
                raise ValueError("%s.currency must be a 3-letter ISO 4217 code" % pwhere)
            min_units = _config_int(p, "minUnits", pwhere, 1, wire.MAX_UNITS, 1)
            prices.append(Price(
                _config_int(p, "id", pwhere, 0, wire.MAX_NUMBER_ID),
                _config_int(p, "amount", pwhere, 0, wire.MAX_AMOUNT),
                currency,
                _config_int(p, "unitId", pwhere, 0, wire.MAX_NUMBER_ID, 1),
                _config_str(p, "unitDescription", pwhere, "unit"),
                _config_str(p, "description", pwhere, ""),
                min_units,
                _config_int(p, "maxUnits", pwhere, min_units, wire.MAX_UNITS, wire.MAX_UNITS),
            ))
        ids = [p.price_id for p in prices]
        if len(set(ids)) != len(ids):
            raise ValueError("%s.prices has two prices with the same id" % where)
        capacity = item.get("capacity")
        if capacity is not None:
            capacity = _config_int(item, "capacity", where, 0, wire.MAX_UNITS)
        built.append(Service(
            _config_int(item, "id", where, 0, wire.MAX_NUMBER_ID),
            _config_str(item, "name", where),
            _config_str(item, "description", where, ""),
            prices, capacity,
        ))
    ids = [s.service_id for s in built]
    if len(set(ids)) != len(ids):
        raise ValueError("services has two services with the same id")
    return Catalogue(built)
