"""The producer's money defects found by hostile testing, each replayed against a real producer
(both runtimes) and the simulated gateway: none may come back.

Each test is one schedule of the issue that found it, with the producer's gateway timeout at 1 s
so that a latency fault of 1.6 s or more goes past it. After each, the gateway's ledger must hold
at most one charge for the reference, and the buyer who paid must hold its delivery token.
"""
import threading
import time

import pytest
from gatewaysim.faults import parse_fault_spec
from gatewaysim.merchants import DEFAULT_CLIENT_KEY as CLIENT_KEY
from gatewaysim.merchants import DEFAULT_SERVICE_KEY as SERVICE_KEY, Merchant
from gatewaysim.simulator import Simulator

from harness.process import free_port
from harness.things import RUNTIMES
from test_fault_schedule import Buyer, Producer, post, write_config


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    merchant = Merchant("regressions", CLIENT_KEY, SERVICE_KEY)
    with Simulator(merchants=[merchant], db=str(tmp_path_factory.mktemp("gw") / "gateway.db"),
                   log=lambda *a: None) as sim:
        yield sim


class Shop:
    """A producer started for one test and a buyer of it; stopped whatever happens."""

    def __init__(self, sim, runtime, folder, **producer):
        sim.faults.clear()
        self.sim = sim
        self.producer = Producer(runtime, str(folder), free_port())
        write_config(str(folder), sim.url, self.producer.port, **producer)
        self.producer.start()
        self.buyer = Buyer(sim, self.producer, None)
        self.base = self.buyer.base

    def quote(self, units, client="car-1"):
        return post(self.base + "/service/1/requestTotal",
                    {"clientID": client, "selectedNumberOfUnits": units, "selectedPriceID": 1}, 10)

    def pay(self, ref, token, client="car-1"):
        return post(self.base + "/payment", {"clientID": client, "clientToken": token, "paymentReferenceID": ref},
                    15)

    def fault(self, spec):
        self.sim.faults.add(parse_fault_spec(spec))

    def charges(self, ref):
        return [o for o in self.sim.ledger.orders() if o["charged"]
                and o["customer_order_code"].partition(".")[0] == ref]


@pytest.fixture(params=RUNTIMES)
def shop(request, sim, tmp_path):
    shops = []

    def start(**producer):
        shops.append(Shop(sim, request.param, tmp_path, **producer))
        return shops[-1]
    yield start
    for one in shops:
        one.producer.kill()
    sim.faults.clear()


def quoted(shop, units=4, client="car-1"):
    status, total = shop.quote(units, client)
    assert status == 200, total
    return total["paymentReferenceID"]


def test_a_decline_then_a_gateway_past_its_timeout_charges_once(shop):
    shop = shop()
    ref = quoted(shop)
    status, body = shop.pay(ref, shop.buyer.card_token("declined"))
    assert status == 402, body
    shop.fault("orders:latency:1.6:x1")
    good = shop.buyer.card_token("good")
    status, body = shop.pay(ref, good)
    assert status == 200, body  # the earlier decline does not settle this attempt
    time.sleep(1.0)  # the slow first request reaches the gateway's ledger now: its token is spent
    status, body = shop.pay(ref, shop.buyer.card_token("good"))
    assert status == 409, body
    assert len(shop.charges(ref)) == 1


def test_a_kill_during_a_slow_charge_then_the_same_token_gets_its_delivery_token(shop):
    shop = shop()
    ref = quoted(shop)
    assert shop.pay(ref, shop.buyer.card_token("declined"))[0] == 402
    shop.fault("orders:latency:3:x1")
    token = shop.buyer.card_token("good")
    answers = []
    payer = threading.Thread(target=lambda: answers.append(shop.pay(ref, token)))
    payer.start()
    time.sleep(1.0)
    shop.producer.restart()  # SIGKILL mid-charge
    payer.join()
    time.sleep(2.5)  # the gateway commits the charge it was holding
    status, body = shop.pay(ref, token)
    assert status == 200 and body["totalPaid"] == 28, body
    assert shop.pay(ref, shop.buyer.card_token("good"))[0] == 409
    assert len(shop.charges(ref)) == 1


def test_a_gateway_slower_than_every_timeout_is_504_until_it_commits_and_never_charges_twice(shop):
    shop = shop()
    ref = quoted(shop)
    shop.fault("orders:latency:2.5")
    first = shop.buyer.card_token("good")
    status, body = shop.pay(ref, first)
    assert status == 504 and "same paymentReferenceID and clientToken" in body["message"], body
    status, body = shop.pay(ref, shop.buyer.card_token("good"))  # a new token changes nothing
    assert status in (504, 409), body
    shop.sim.faults.clear()
    time.sleep(3.0)  # the first request commits; the resends find its token spent
    status, body = shop.pay(ref, first)
    assert status == 200, body
    assert len(shop.charges(ref)) == 1


def test_capacity_quoted_to_one_client_is_not_sold_to_another(shop):
    shop = shop(services=[{"id": 1, "name": "Charge", "capacity": 10,
                           "prices": [{"id": 1, "amount": 7, "unitDescription": "kWh"}]}])
    ref = quoted(shop, 10, "car-1")
    status, body = shop.quote(10, "car-2")
    assert status == 409 and "no units left" in body["message"], body
    shop.fault("orders:latency:0.5:x1")
    assert shop.pay(ref, shop.buyer.card_token("good"))[0] == 200
    assert shop.quote(1, "car-2")[0] == 409


def test_one_gateway_500_costs_a_retry_not_a_minute(shop):
    shop = shop()
    ref = quoted(shop)
    shop.fault("orders:status:500:x1")
    started = time.monotonic()
    status, body = shop.pay(ref, shop.buyer.card_token("good"))
    assert status == 200, body  # the same attempt sent again, at once
    assert len(shop.charges(ref)) == 1
    print("\n500 then paid in %.2f s" % (time.monotonic() - started))
