"""Fault schedules: random purchases against a producer while the gateway misbehaves and the
producer is killed, then every unit of money is reconciled.

In the spirit of Jepsen: a seeded random schedule of quotes, payments
(good, declined and erroring cards; retries with the same or a new client
token), deliveries (ended, or begun and left to time out), SIGKILLs of the
producer mid-payment and restarts, each payment with a gateway fault
injected beforehand: latency past the producer's gateway timeout, a 5xx,
the connection dropped before or after the gateway committed, on the
orders, search, order and refund endpoints. The buyer keeps a wallet as
our consumer does: a payment it got no answer for is retried with the same
reference and the same client token. At the end the faults are cleared,
the pending payments are retried until the producer answers them, the
refundable tokens are left to expire, and then:

  - no reference is charged twice at the gateway;
  - every charge has its delivery token in the buyer's wallet;
  - no order is refunded twice or above what its unused units are worth;
  - units charged never exceed the service's capacity (less what came back);
  - no token has more units delivered than were paid for.

Both runtimes. WPW_SCHEDULE_OPS sets the operations per runtime (CI: 120;
the full setting: 2000), WPW_SCHEDULE_SEED replays one schedule.
"""
import json
import os
import random
import signal
import threading
import time
import urllib.request

import pytest
from gatewaysim.faults import parse_fault_spec
from gatewaysim.merchants import DEFAULT_CLIENT_KEY as CLIENT_KEY
from gatewaysim.merchants import DEFAULT_SERVICE_KEY as SERVICE_KEY, Merchant
from gatewaysim.simulator import Simulator

from harness.process import free_port
from harness.things import RUNTIMES, THING_MAIN, Things, runtime_command, thing_files
from fixtures import replay

from wpwithin.journal import FileJournal

OPS = int(os.environ.get("WPW_SCHEDULE_OPS", "120"))
SEED = int(os.environ.get("WPW_SCHEDULE_SEED", "0")) or random.randrange(1, 10 ** 6)
CAPACITY = 60 + OPS // 4  # sold out about two thirds into a run: overselling gets its chance
PRICE = 7
TOKEN_LIFETIME = 60  # the shortest the config allows: refunds come due within the run
GATEWAY_TIMEOUT = 1  # s, the producer's; latency faults go past it
PAY_WAIT = 3 * GATEWAY_TIMEOUT + 5  # what a consumer must wait for POST /payment
CARDS = {"good": "4444333322221111", "declined": "4000000000000002", "error": "4000000000000119"}
FAULTS = (
    "orders:latency:1.6:x1", "orders:latency:4:x1", "orders:status:500:x1", "orders:status:503:x2",
    "orders:drop-before:x1", "orders:drop-after:x1", "orders:trickle:0.05:x1",
    "search:latency:1.6:x1", "search:status:500:x1", "search:drop-after:x1",
    "order:status:500:x1", "order:drop-after:x1", "refund:drop-after:x1", "refund:status:500:x1",
    "refund:latency:1.6:x1", "*:drop-before:x1",
)


def write_config(folder, gateway_url, port, **producer):
    """config.json and secrets.json of the schedule's producer; `producer` overrides its section."""
    settings = {"maxOrders": 4096, "tokenLifetime": TOKEN_LIFETIME, "refundOnExpiry": True, "deliveryTimeout": 10}
    settings.update(producer)
    thing_files(folder, "schedule", gateway_url, port=port, gateway={"timeout": GATEWAY_TIMEOUT}, producer=settings,
                services=[{"id": 1, "name": "Charge", "capacity": CAPACITY,
                           "prices": [{"id": 1, "amount": PRICE, "unitDescription": "kWh"}]}])


class Producer:
    """tools/thing_main.py with folder/config.json under one runtime, killed with SIGKILL and started again at will."""

    def __init__(self, runtime, folder, port):
        self.runtime, self.folder, self.port = runtime, folder, port
        self.things = Things(folder)
        self.process = None
        self.starts = 0

    def start(self):
        argv, env = runtime_command(self.runtime, THING_MAIN, "16m")  # no tools/thing in between: restarts are quick
        self.process = self.things.start("producer", argv + ["config.json", "secrets.json"], env, self.folder)
        self.process.expect("listening on")
        self.starts += 1

    def kill(self):
        if self.process is not None:
            self.process.stop(signal.SIGKILL)

    def restart(self):
        self.kill()
        self.start()


def post(url, body, timeout):
    """(status, JSON answer); (None, None) when no answer came in time or the connection broke."""
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    except OSError:
        return None, None


class Buyer:
    """The consumer's side: quotes, a wallet of payments and tokens, and what it received."""

    def __init__(self, sim, producer, rng):
        self.sim, self.producer, self.rng = sim, producer, rng
        self.base = "http://127.0.0.1:%d" % producer.port
        self.orders = {}  # ref -> {client, units, pending token or None, paid token, delivery token, received}
        self.counts = {}
        self.kinds = {}  # client token -> the kind of card it stands for

    def count(self, what):
        self.counts[what] = self.counts.get(what, 0) + 1

    def card_token(self, kind):
        body = {"clientKey": CLIENT_KEY, "reusable": False, "paymentMethod": {
            "type": "Card", "name": "Schedule", "expiryMonth": 12, "expiryYear": 2031,
            "cardNumber": CARDS[kind], "cvc": "123"}}
        for _ in range(3):  # a fault left over for "*" may drop this request too
            status, answer = post(self.sim.url + "/tokens", body, 5)
            if status is not None:
                break
        assert status == 200, answer
        self.kinds[answer["token"]] = kind
        return answer["token"]

    def quote(self):
        client = "car-%d" % self.rng.randrange(3)
        status, answer = post(self.base + "/service/1/requestTotal",
                              {"clientID": client, "selectedNumberOfUnits": self.rng.randint(1, 4),
                               "selectedPriceID": 1}, 10)
        self.count("quote %s" % status)
        if status == 200:
            self.orders[answer["paymentReferenceID"]] = {
                "client": client, "units": answer["unitsToSupply"], "pending": None, "paid": None,
                "token": None, "received": 0, "tried": set(), "last": None}

    def pay(self, ref, token, kill_after=None):
        order = self.orders[ref]
        before = order["pending"]
        order["pending"] = token  # journalled before the request, as the consumer's wallet does
        order["tried"].add(token)
        body = {"clientID": order["client"], "clientToken": token, "paymentReferenceID": ref}
        if kill_after is None:
            status, answer = post(self.base + "/payment", body, PAY_WAIT)
        else:
            result = []
            thread = threading.Thread(target=lambda: result.append(post(self.base + "/payment", body, PAY_WAIT)))
            thread.start()
            time.sleep(kill_after)
            self.producer.restart()
            thread.join()
            status, answer = result[0]
        self.count("pay %s" % status)
        order["last"] = (status, answer)
        if status == 200:
            if order["token"] is not None:
                assert answer["serviceDeliveryToken"] == order["token"], "a second token for %s" % ref
            order["paid"], order["token"], order["pending"] = token, answer["serviceDeliveryToken"], None
        elif status == 409:
            # In progress, or paid by another token: the token in doubt before this one (if any)
            # may still be charged, so the wallet keeps it to retry, as the consumer's does.
            order["pending"] = before
        elif status in (400, 402, 404, 410, 502):
            order["pending"] = None  # a definite answer: this token bought nothing
            if order["paid"] is not None:
                assert status in (409, 410), (ref, status, answer)  # another token, or all used
        return status

    def pay_something(self):
        unpaid = [ref for ref, o in self.orders.items() if o["paid"] is None]
        if not unpaid:
            return self.quote()
        ref = self.rng.choice(unpaid)
        order = self.orders[ref]
        if order["pending"] is not None and self.rng.random() < 0.85:
            token = order["pending"]  # the consumer's rule: the same token until an answer
        else:
            token = self.card_token(self.rng.choice(("good",) * 7 + ("declined",) * 2 + ("error",)))
        if self.rng.random() < 0.6:
            self.sim.faults.add(parse_fault_spec(self.rng.choice(FAULTS)))
        kill_after = self.rng.uniform(0.05, 2.5) if self.rng.random() < 0.15 else None
        self.pay(ref, token, kill_after)

    def repay_paid(self):
        paid = [ref for ref, o in self.orders.items() if o["paid"] is not None]
        if paid:
            ref = self.rng.choice(paid)
            order = self.orders[ref]
            if self.rng.random() < 0.7:
                # 410 once its units are all delivered or its token has expired
                assert self.pay(ref, order["paid"]) in (200, 410), ref
            else:
                assert self.pay(ref, self.card_token("good")) in (409, 410), ref

    def deliver(self):
        open_ = [ref for ref, o in self.orders.items() if o["token"] is not None and o["received"] < o["units"]]
        if not open_:
            return
        ref = self.rng.choice(open_)
        order = self.orders[ref]
        units = self.rng.randint(1, order["units"] - order["received"])
        body = {"clientID": order["client"], "serviceDeliveryToken": order["token"], "unitsToSupply": units}
        status, answer = post(self.base + "/service/1/delivery/begin", body, 10)
        self.count("begin %s" % status)
        if status != 200 or self.rng.random() < 0.1:
            return  # begun and left: the producer ends it after its delivery timeout
        got = self.rng.randint(0, units)
        status, answer = post(self.base + "/service/1/delivery/end",
                              {"clientID": order["client"], "serviceDeliveryToken": order["token"],
                               "unitsReceived": got}, 10)
        self.count("end %s" % status)
        if status == 200:
            order["received"] += answer["unitsJustSupplied"]
            assert answer["unitsJustSupplied"] <= got

    def settle(self, deadline):
        """Retry every pending payment with its token until the producer answers it.

        An attempt with a token of the card the gateway always fails with 500 stays open when a
        request of it went unanswered: that request may still be at the gateway, so the producer
        answers 504 for the reference rather than guess (the gateway never charges such a token).
        A reference that tried such a token may stay pending, but only once it has been retried
        as often as the others needed and at least 3 times: its pending token may be another one,
        charged, whose delivery token the wallet must still get.
        """
        rounds = 0
        while True:
            pending = [ref for ref, o in self.orders.items() if o["pending"] is not None]
            owed = [ref for ref in pending if not any(self.kinds[t] == "error" for t in self.orders[ref]["tried"])]
            if not owed and (rounds >= 3 or not pending):
                return
            if time.monotonic() > deadline:
                raise AssertionError("payments still pending after the faults ended: %s"
                                     % [(ref, self.orders[ref]["last"]) for ref in owed])
            for ref in pending:
                self.pay(ref, self.orders[ref]["pending"])
            rounds += 1
            time.sleep(0.5)


def run_schedule(buyer, producer, rng, ops):
    actions = ((buyer.quote, 4), (buyer.pay_something, 6), (buyer.repay_paid, 1), (buyer.deliver, 4),
               (producer.restart, 1), (lambda: time.sleep(rng.uniform(0.05, 0.5)), 1))
    table = [action for action, weight in actions for _ in range(weight)]
    for _ in range(ops):
        rng.choice(table)()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_random_fault_schedule_charges_once_loses_nothing_and_never_oversells(runtime, tmp_path):
    print("\n%s schedule seed %d (WPW_SCHEDULE_SEED=%d replays it)" % (runtime, SEED, SEED))
    rng = random.Random(SEED)
    merchant = Merchant("schedule", CLIENT_KEY, SERVICE_KEY)
    with Simulator(merchants=[merchant], db=str(tmp_path / "gateway.db"), log=lambda *a: None) as sim:
        producer = Producer(runtime, str(tmp_path), free_port())
        write_config(str(tmp_path), sim.url, producer.port)
        producer.start()
        buyer = Buyer(sim, producer, rng)
        started = time.monotonic()
        try:
            run_schedule(buyer, producer, rng, OPS)
            sim.faults.clear()
            buyer.settle(time.monotonic() + 60)
            # Refundable tokens expire TOKEN_LIFETIME after their purchase; the sweep (every 5 s
            # after a start) refunds their unused units. Let it run twice after the last one
            # expired (kills may have kept it from running), then stop the producer for the count.
            time.sleep(max(0, started + TOKEN_LIFETIME - time.monotonic()) + 12)
        finally:
            producer.kill()
        journal = FileJournal(str(tmp_path / "ledger.journal"))
        ledger = replay(journal.load(), max_orders=4096)
        journal.close()
        check_reconciled(sim, ledger, buyer)
        charged = [o for o in sim.ledger.orders() if o["charged"]]
        print("\n%s seed %d: %d operations, %d starts, %d references, %d charged, %d refunds; %s"
              % (runtime, SEED, OPS, producer.starts, len(buyer.orders), len(charged),
                 len(sim.ledger.refunds()), ", ".join("%s: %d" % kv for kv in sorted(buyer.counts.items()))))
        assert len(charged) >= 3 and producer.starts >= 2  # the schedule did buy, and did kill


def check_reconciled(sim, ledger, buyer):
    report = sim.ledger.reconcile()
    assert report["consistent"], report["problems"]
    by_ref = {}
    for order in sim.ledger.orders():
        if order["charged"]:
            by_ref.setdefault(order["customer_order_code"].partition(".")[0], []).append(order)
    twice = [ref for ref, orders in by_ref.items() if len(orders) > 1]
    assert twice == [], "charged twice: %s" % twice
    tokenless = [ref for ref in by_ref if buyer.orders.get(ref, {}).get("token") is None]
    assert tokenless == [], "charged with no delivery token in the wallet: %s" % [
        (ref, buyer.orders.get(ref), by_ref[ref]) for ref in tokenless]
    for ref, (order,) in by_ref.items():
        assert buyer.orders[ref]["paid"] == order["token"], "%s: paid by another token" % ref
    sold = sum(o["charged"] for orders in by_ref.values() for o in orders) // PRICE
    refunded_units = sum(r["amount"] for r in sim.ledger.refunds()) // PRICE
    assert sold - refunded_units <= CAPACITY, "sold %d units, %d refunded, of %d" % (sold, refunded_units, CAPACITY)
    for order in sim.ledger.orders():
        refunds = sim.ledger.refunds(order["order_code"])
        assert len(refunds) <= 1, "%s refunded %d times" % (order["order_code"], len(refunds))
    for ref, (order,) in by_ref.items():
        mine = buyer.orders[ref]
        assert mine["received"] <= mine["units"]
        # The producer counts no fewer units than the buyer received (more when it ended a
        # delivery the buyer left open), so what is owed back is at most the buyer's unused units.
        assert order["refunded"] <= (mine["units"] - mine["received"]) * PRICE, (ref, order["refunded"])
    for order in ledger.orders.values():
        assert order.delivered + order.in_flight <= order.units
