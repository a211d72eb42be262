"""Power loss on the buying side: SIGKILL wpw and a MicroPython consumer at random points, then reconcile.

The twin of test_kill_reconcile.py. One MicroPython producer keeps
running; buyers are started one after another, each killed with SIGKILL
at a random moment of its buy or its deliveries: `wpw buy` and `wpw
redeem` (CPython, wallet in $WPW_HOME) and tools/consumer_main.py under
the unix port (buy and deliver in parts, wallet in --wallet). Every
other payment's gateway answer trickles out slowly, so kills land after
the gateway committed a charge and before the buyer stored the token.
Each buyer's next run settles what the last one left; a final resume
settles the rest. Then, against the gateway's SQLite ledger and the
producer's journal: every charged order has its token in a wallet, every
unit the producer counted as supplied is counted as received, nothing is
charged twice, nothing is left unresolved. WPW_CONSUMER_KILLS sets the
number of kills (CI: 30; the full run: WPW_CONSUMER_KILLS=100).
"""
import json
import os
import random
import signal
import sys
import time

from gatewaysim.faults import parse_fault_spec
from gatewaysim.merchants import DEFAULT_CLIENT_KEY as CLIENT_KEY
from gatewaysim.merchants import DEFAULT_SERVICE_KEY as SERVICE_KEY, Merchant
from gatewaysim.simulator import Simulator

from harness.process import free_port
from harness.things import CARD, CONSUMER, Things, runtime_command, thing_files
from relay import Relay
from fixtures import replay

from wpwithin.journal import FileJournal
from wpwithin.wallet import FAILED, PAID, PENDING, load

KILLS = int(os.environ.get("WPW_CONSUMER_KILLS", "30"))
GATEWAY_TIMEOUT = 5  # the producer's
PAYMENT_WAIT = 3 * GATEWAY_TIMEOUT + 5
WPW = os.path.join(os.path.dirname(sys.executable), "wpw")
RUN_LIMIT = 60  # seconds a buyer may take before the test calls it stuck


def write_config(folder, gateway_url, port):
    # Room for every order of the run, so each can be checked (a host-side check, not a board's setting).
    return thing_files(folder, "consumer-kill", gateway_url, port=port, gateway={"timeout": GATEWAY_TIMEOUT},
                       producer={"maxOrders": 4096}, services=[
                           {"id": 1, "name": "Charge", "prices": [{"id": 1, "amount": 7, "unitDescription": "kWh"}]}])


def read_wallet(path):
    journal = FileJournal(path)
    wallet = load(journal)
    journal.close()
    return wallet


class Buyers:
    """Starts the two kinds of buyer, each on its own wallet."""

    def __init__(self, things, folder, gateway_url, port):
        self.things = things
        self.port = port
        self.gateway_url = gateway_url
        self.card = os.path.join(folder, "card.json")
        with open(self.card, "w") as f:
            json.dump(CARD, f)
        self.home = os.path.join(folder, "wpw-home")
        self.wpw_wallet = os.path.join(self.home, "wallet.journal")
        self.mp_wallet = os.path.join(folder, "mp-wallet.journal")
        self.env = {"WPW_GATEWAY": gateway_url, "WPW_CARD": self.card, "WPW_HOME": self.home}

    def wpw(self, args):
        return self.things.start("wpw", [WPW] + args + ["--quiet", "--client-id", "kill-wpw", "--timeout", "5",
                                                        "--payment-timeout", str(PAYMENT_WAIT)], env=self.env)

    def wpw_buy(self, rng):
        return self.wpw(["buy", "127.0.0.1:%d" % self.port, "--service", "1", "--price", "1",
                         "--units", str(rng.randint(1, 5))])

    def wpw_redeem(self, rng):
        """A redeem of a token with units left, or a buy when there is none."""
        held = [e for e in read_wallet(self.wpw_wallet).tokens() if e.remaining and not e.in_flight] \
            if os.path.exists(self.wpw_wallet) else []
        if not held:
            return self.wpw_buy(rng)
        entry = rng.choice(held)
        units = rng.randint(1, entry.remaining)
        return self.wpw(["redeem", entry.key, "--units", str(units), "--parts", str(rng.randint(1, units))])

    def micropython(self, rng, action="buy"):
        argv, env = runtime_command("micropython", CONSUMER)
        units = rng.randint(1, 5)
        argv += ["--action", action, "--producer", "127.0.0.1:%d" % self.port, "--service", "1", "--price", "1",
                 "--units", str(units), "--parts", str(rng.randint(1, units)), "--gateway", self.gateway_url,
                 "--card", self.card, "--client-id", "kill-mp", "--wallet", self.mp_wallet, "--timeout", "5",
                 "--payment-timeout", str(PAYMENT_WAIT)]
        return self.things.start("consumer", argv, env=env)


def finish(process, limit=RUN_LIMIT):
    return process.wait(limit)


def test_consumer_kills_lose_no_paid_token_or_unit_and_charge_nothing_twice(tmp_path):
    merchant = Merchant("consumer-kill", CLIENT_KEY, SERVICE_KEY)
    with Simulator(merchants=[merchant], db=str(tmp_path / "gateway.db"), log=lambda *a: None) as sim:
        port = free_port()
        things = Things(tmp_path)
        relay = producer = None
        try:
            producer = things.thing(write_config(str(tmp_path), sim.url, port), "micropython", "16m")["process"]
            # Buyers reach the producer through a relay that holds each delivery end back a moment,
            # so kills land in deliveries too.
            holds = random.Random(5)
            relay = Relay(port, hold=lambda: holds.uniform(0, 1.5))
            buyers = Buyers(things, str(tmp_path), sim.url, relay.port)
            rng = random.Random(11)
            tally = {"killed": 0, "finished": 0, "exits": {}}
            seen_pending, seen_open = set(), set()  # payments left pending, deliveries left open by a kill
            starts = (buyers.wpw_buy, buyers.wpw_redeem, buyers.micropython, buyers.wpw_redeem)
            runs = 0
            while tally["killed"] < KILLS:  # kills that landed: a run that ends first does not count
                kill = runs
                runs += 1
                assert runs <= 3 * KILLS, "runs end before the kills land: %s" % tally
                sim.faults.clear()
                if kill % 2 == 0:  # the answer crawls out after the charge is committed
                    sim.faults.add(parse_fault_spec("orders:trickle:0.05"))
                process = starts[kill % len(starts)](rng)
                time.sleep(rng.uniform(0.05, 2.5))
                if process.proc.poll() is None:
                    process.stop(signal.SIGKILL)
                    tally["killed"] += 1
                    path = buyers.mp_wallet if process.name == "consumer" else buyers.wpw_wallet
                    for entry in read_wallet(path).unresolved() if os.path.exists(path) else ():
                        if entry.state == PENDING:
                            seen_pending.add(entry.ref)
                        else:
                            seen_open.add((entry.ref, entry.received))
                else:
                    tally["finished"] += 1
                    code = process.proc.returncode
                    tally["exits"][code] = tally["exits"].get(code, 0) + 1
                    assert code in (0, 6), "".join(process.output)  # paid, or pending for the next run
            sim.faults.clear()
            resumed = {}
            for _ in range(3):  # the last buyers' runs settle; a payment still at the gateway settles on a later try
                wpw = buyers.wpw(["resume", "--json"])
                finish(wpw)
                for item in json.loads("".join(l for l in wpw.output if not l.startswith("wpw:")))["resumed"]:
                    resumed[item["outcome"]] = resumed.get(item["outcome"], 0) + 1
                mp = buyers.micropython(rng, "resume")
                finish(mp)
                for text in mp.output:
                    if text.startswith('{"step": "resume"'):
                        outcome = json.loads(text)["outcome"]
                        resumed[outcome] = resumed.get(outcome, 0) + 1
                if not [e for path in (buyers.wpw_wallet, buyers.mp_wallet) for e in read_wallet(path).unresolved()]:
                    break
        finally:
            if producer is not None:
                producer.stop(signal.SIGKILL)  # as power is lost: what the journal holds is what counts
            things.close()
            if relay is not None:
                relay.close()

        wallets = [read_wallet(buyers.wpw_wallet), read_wallet(buyers.mp_wallet)]
        entries = {}
        for wallet in wallets:
            for ref, entry in wallet.entries.items():
                assert ref not in entries
                entries[ref] = entry
        left = [(e.ref, e.state, e.in_flight) for e in entries.values() if e.state == PENDING or e.in_flight]
        assert left == [], "unresolved after resume: %s" % left

        charged = {}
        for order in sim.ledger.orders():
            if order["status"] in ("SUCCESS", "PARTIALLY_REFUNDED", "REFUNDED"):
                charged.setdefault(order["customer_order_code"].split(".")[0], []).append(order)
        twice = [ref for ref, orders in charged.items() if len(orders) > 1]
        assert twice == [], "charged twice: %s" % twice
        tokenless = [ref for ref in charged if ref not in entries or entries[ref].state != PAID]
        assert tokenless == [], "charged with no token in a wallet: %s" % [
            (ref, entries[ref].state if ref in entries else None) for ref in tokenless]

        journal = FileJournal(str(tmp_path / "ledger.journal"))
        ledger = replay(journal.load(), max_orders=4096)
        journal.close()
        supplied = {}
        for order in ledger.orders.values():
            assert order.in_flight == 0, "a delivery left open on the producer: %s" % order.ref
            supplied[order.ref] = (order.key, order.delivered)
        for key in ledger.spent:  # used up: every unit supplied
            spent = ledger.used_up(key)
            supplied[spent[0]] = (key, spent[3])
        mismatched = []
        units_received = 0
        for ref, entry in entries.items():
            if entry.state != PAID:
                continue
            key, delivered = supplied.get(ref, (None, None))
            units_received += entry.received
            if key != entry.key or delivered != entry.received:
                mismatched.append((ref, entry.key[:8], entry.received, key and key[:8], delivered))
        assert mismatched == [], "producer supplied != wallet received: %s" % mismatched
        paid = sum(1 for e in entries.values() if e.state == PAID)
        failed = [(e.status, e.note) for e in entries.values() if e.state == FAILED]
        print("\nconsumer kills %d (leaving a payment pending %d, a delivery open %d; runs that finished first %d, "
              "exits %s), gateway charges %d, tokens in wallets %d, refused payments %s, units received %d = "
              "supplied, final resume %s"
              % (tally["killed"], len(seen_pending), len(seen_open), tally["finished"],
                 tally["exits"], len(charged), paid, failed, units_received, resumed))
        assert paid > KILLS // 4  # purchases did go on between the kills
