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
from wpwithin.errors import ProtocolError


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
            raise ProtocolError(404, "Price not found for id %d" % price_id)
        return price

    def price_entries(self):
        return [self.prices[k].entry() for k in sorted(self.prices)]


class Catalogue:
    def __init__(self, services=()):
        self.services = {}
        for service in services:
            self.services[service.service_id] = service

    def service(self, service_id):
        service = self.services.get(service_id)
        if service is None:
            raise ProtocolError(404, "Service not found for id %d" % service_id)
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
            raise ProtocolError(422, "field selectedNumberOfUnits must be at least 1")
        supply = units
        if service.capacity is not None:
            left = service.capacity - sold
            if left <= 0:
                raise ProtocolError(409, "Service %d has no units left" % service_id)
            supply = min(supply, left)
        if not price.covers(supply):
            # Another tier of the same unit: the cheapest covering the units, else the units capped at
            # the highest tier's maximum; below every tier, refused naming the minimum.
            best = top = low = None
            for p in service.prices.values():
                if p.unit_id != price.unit_id:
                    continue
                if p.covers(supply) and (best is None or p.amount < best.amount):
                    best = p
                if top is None or p.max_units > top.max_units:
                    top = p
                if low is None or p.min_units < low.min_units:
                    low = p
            if best is not None:
                price = best
            elif supply > top.max_units:
                price, supply = top, top.max_units
            else:
                raise ProtocolError(422, "selectedNumberOfUnits must be at least %d" % low.min_units)
        total = supply * price.amount
        if total > wire.MAX_AMOUNT:
            raise ProtocolError(422, "total price exceeds %d; select fewer units" % wire.MAX_AMOUNT)
        return price, supply, total

