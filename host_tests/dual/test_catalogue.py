"""Catalogue: volume tiers, capacity and configuration errors."""
from expect import raises, refused
from fixtures import charging

from wpwithin import catalogue, config


def quote(service_id, price_id, units, sold=0):
    price, supply, total = charging().quote(service_id, price_id, units, sold)
    return price.price_id, supply, total


def test_units_within_the_selected_tier():
    assert quote(1, 1, 4) == (1, 4, 120)
    assert quote(1, 2, 11) == (2, 11, 275)


def test_units_outside_the_selected_tier_get_the_covering_tier():
    assert quote(1, 1, 20) == (2, 20, 500)
    assert quote(1, 2, 3) == (1, 3, 90)


def test_units_above_every_tier_are_capped():
    assert quote(1, 1, 1000) == (2, 100, 2500)


def test_capacity_caps_units_and_sold_out_is_409():
    assert quote(2, 7, 500) == (7, 120, 600)
    assert quote(2, 7, 500, sold=100) == (7, 20, 100)
    assert "no units left" in refused(409, quote, 2, 7, 1, 120)


def test_unknown_service_and_price_use_the_reference_messages():
    assert refused(404, quote, 9, 1, 1) == "Service not found for id 9"
    assert refused(404, quote, 1, 9, 1) == "Price not found for id 9"


def test_below_every_tier_is_refused():
    cat = catalogue.Catalogue([catalogue.Service(1, "s", "", [catalogue.Price(1, 10, "GBP", 1, "u", "", 5, 10)])])
    assert "at least 5" in refused(422, cat.quote, 1, 1, 2)


def test_total_beyond_the_amount_limit_is_refused():
    cat = catalogue.Catalogue([catalogue.Service(1, "s", "", [catalogue.Price(1, 1000000, "GBP", 1, "u")])])
    assert "total price" in refused(422, cat.quote, 1, 1, 10000)


def test_entries_are_in_id_order_with_reference_keys():
    entries = charging().service_entries()
    assert [e["ServiceID"] for e in entries] == [1, 2]
    assert [p["priceID"] for p in charging().service(1).price_entries()] == [1, 2]


CONFIG = [{"id": 1, "name": "Car charge", "description": "EV",
           "prices": [{"id": 1, "amount": 30, "currency": "GBP", "unitId": 1, "unitDescription": "kWh",
                       "description": "Up to 10", "maxUnits": 10},
                      {"id": 2, "amount": 25, "minUnits": 11}]},
          {"id": 2, "name": "Parking", "capacity": 60, "prices": [{"id": 7, "amount": 5}]}]


def test_configuration_builds_the_catalogue():
    cat = config.catalogue_from(CONFIG)
    assert cat.quote(1, 1, 20)[0].price_id == 2
    assert cat.service(2).capacity == 60
    assert cat.service(1).price(2).currency == "GBP"


def test_configuration_errors_name_the_field():
    def broken(path, value):
        import json
        services = json.loads(json.dumps(CONFIG))
        target = services
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
        return str(raises(ValueError, config.catalogue_from, services))

    assert broken([0, "prices", 0, "amount"], -1).startswith("services[0].prices[0].amount")
    assert broken([0, "prices", 1, "currency"], "pounds").startswith("services[0].prices[1].currency")
    assert broken([1, "capacity"], "lots").startswith("services[1].capacity")
    assert broken([1, "id"], 1) == "services has two services with the same id"
    assert broken([0, "prices"], []) == "services[0].prices must be a non-empty list"
    assert broken([0, "prices", 0, "maxUnits"], 0).startswith("services[0].prices[0].maxUnits")
