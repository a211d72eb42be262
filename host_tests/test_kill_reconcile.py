"""Power loss: SIGKILL a MicroPython producer at random points of many purchases, then reconcile.

A producer under the unix port keeps its journal in a directory; consumers
buy and redeem without pause while the producer is killed with SIGKILL at
random moments and started again from the same directory. A third of the
gateway's order answers trickle out slowly, so kills also land after the
gateway committed a charge and before the producer journalled it. Then:
every order the gateway charged has a redeemable token on the producer (or
was refunded), no paymentReferenceID is charged twice, and no order has
more units delivered than paid. WPW_KILLS sets the number of kills (CI:
30; the full run: WPW_KILLS=120).
"""
import asyncio
import json
import os
import random
import threading
import time

from gatewaysim.faults import parse_fault_spec
from gatewaysim.merchants import DEFAULT_CLIENT_KEY as CLIENT_KEY
from gatewaysim.merchants import DEFAULT_SERVICE_KEY as SERVICE_KEY, Merchant
from gatewaysim.simulator import Simulator

from harness.process import free_port
from harness.shopping import card
from harness.things import thing_files
from test_fault_schedule import Producer
from fixtures import replay

from wpwithin.consumer_role import ConsumerRole, Producer as Seller
from wpwithin.gateway_client import GatewayClient
from wpwithin.journal import FileJournal
from wpwithin.ledger import PAID, Ledger

KILLS = int(os.environ.get("WPW_KILLS", "30"))


def write_config(folder, gateway_url, port):
    # Room for every order of the run, so none is dropped and each can be checked
    # (hence the big heap: this is a host-side check, not a board's setting).
    thing_files(folder, "kill-test", gateway_url, port=port, producer={"maxOrders": 4096}, services=[
        {"id": 1, "name": "Charge", "prices": [{"id": 1, "amount": 7, "unitDescription": "kWh"}]}])


def open_payments(path):
    """References the journal shows being paid, read without touching the live file."""
    ledger = Ledger(max_orders=4096)
    with open(path, "rb") as f:
        for line in f:
            if line.endswith(b"\n"):
                ledger.apply(json.loads(line[9:]))
    return [order.ref for order in ledger.unresolved()]


async def shopper(name, producer, gateway, stop, tally):
    role = ConsumerRole(name, card(), gateway, timeout=3)
    while not stop.is_set():
        try:
            purchase = await role.buy(producer, 1, 1, random.randint(1, 5))
            tally["paid"] += 1
            while purchase.remaining:
                await role.deliver(producer, purchase, min(purchase.remaining, random.randint(1, 3)))
                tally["sessions"] += 1
        except Exception:  # the producer vanished mid-step: that is the point; try again
            tally["interrupted"] += 1
            await asyncio.sleep(0.05)


def test_kills_lose_no_paid_units_and_charge_nothing_twice(tmp_path):
    merchant = Merchant("kill-test", CLIENT_KEY, SERVICE_KEY)
    with Simulator(merchants=[merchant], db=str(tmp_path / "gateway.db"), log=lambda *a: None) as sim:
        port = free_port()
        write_config(str(tmp_path), sim.url, port)
        producer_process = Producer("micropython", str(tmp_path), port)
        producer_process.start()
        tally = {"paid": 0, "sessions": 0, "interrupted": 0}
        stop = threading.Event()

        async def shop():
            gateway = GatewayClient(sim.url, timeout=3)
            producer = Seller("127.0.0.1", port)
            tasks = [asyncio.create_task(shopper("car-%d" % i, producer, gateway, stop, tally)) for i in range(3)]
            while not stop.is_set():
                await asyncio.sleep(0.05)
            for task in tasks:
                await task

        shop_thread = threading.Thread(target=lambda: asyncio.run(shop()))
        shop_thread.start()
        rng = random.Random(7)
        try:
            for kill in range(KILLS):
                sim.faults.clear()
                if kill % 3 == 0:  # the answer crawls out after the charge is committed
                    sim.faults.add(parse_fault_spec("orders:trickle:0.05"))
                time.sleep(rng.uniform(0.05, 0.8))
                producer_process.restart()
        finally:
            stop.set()
            shop_thread.join(60)
        sim.faults.clear()
        # The last start settles what the kills left open (a search, maybe a resend of the same
        # token): wait until its journal holds no payment in flight, then stop it.
        deadline = time.monotonic() + 30
        while open_payments(tmp_path / "ledger.journal") and time.monotonic() < deadline:
            time.sleep(0.2)
        producer_process.kill()

        journal = FileJournal(str(tmp_path / "ledger.journal"))
        ledger = replay(journal.load(), max_orders=4096)
        journal.close()
        charged = {}
        for order in sim.ledger.orders():
            if order["status"] in ("SUCCESS", "PARTIALLY_REFUNDED", "REFUNDED"):
                # Grouped by reference: each attempt on one has its own code, "<ref>.<n>".
                charged.setdefault(order["customer_order_code"].partition(".")[0], []).append(order)
        twice = [code for code, orders in charged.items() if len(orders) > 1]
        assert twice == [], "charged twice: %s" % twice
        lost = []
        used_up = set(ledger.used_up(key)[0] for key in ledger.spent)  # delivered in full
        for code, (order,) in charged.items():
            mine = ledger.orders.get(code)
            if order["status"] == "REFUNDED" or (mine is None and code in used_up):
                continue
            if mine is None or mine.state != PAID or mine.order_code != order["order_code"]:
                lost.append((code, mine and mine.state))
        assert lost == [], "charged at the gateway without a token on the producer: %s" % lost
        for order in ledger.orders.values():
            assert order.delivered + order.in_flight <= order.units
        print("\nkills %d, restarts %d, purchases paid %d, delivery sessions %d, interrupted steps %d, "
              "gateway charges reconciled %d" % (KILLS, producer_process.starts, tally["paid"], tally["sessions"],
                                                 tally["interrupted"], len(charged)))
        assert tally["paid"] > KILLS // 3  # purchases did go on between the kills
