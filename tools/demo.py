"""The main job: a marketplace of Things on this machine, on the simulated gateway.

Starts the simulated gateway (HTTPS with its own test CA), builds the
firmware image (tools/build), boots two producers from it as virtual boards
(tools/vboard: the MicroPython unix port with a chip-like heap cap and a
flash image of their own), and buys from them as a consumer: Discover
(fast probe), Select, Pay (card to token at the gateway, token to the
producer), Release in two delivery sessions; then a declined card. Prints
a timeline with the money and units at each step, draws the sequence
diagram (demo-purchase.svg in the current folder, or --trace FILE), checks
the gateway's ledger reconciles, stops everything it started (also on
Ctrl-C or failure) and exits non-zero if any step failed, printing that
step's last log lines and keeping the work folder for a look.
"""
import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "lib"), os.path.join(ROOT, "tools")]

from gatewaysim.ledger import Ledger  # noqa: E402
from harness.process import free_ports, stop_all  # noqa: E402
from harness.things import LOOPBACK_BROADCAST, Things, built, thing_files  # noqa: E402
from harness.vboard import VBoard  # noqa: E402
from vboardlib.cli import DEFAULT_HEAP  # noqa: E402  (tools/vboard's own default)
from wpwithin import consumer as wire_consumer, http_client, wire  # noqa: E402
from wpwithin.card import Card, mask_card  # noqa: E402
from wpwithin.consumer_role import ConsumerRole, ProducerError  # noqa: E402
from wpwithin.gateway_client import GatewayClient, parse_url  # noqa: E402
from wpwcli import trace  # noqa: E402

CLIENT_KEY = "T_C_03eaa1d3-4642-4079-b030-b543ee04b5af"
SERVICE_KEY = "T_S_f50ecb46-ca82-44a7-9c40-421818af5996"
METER_KEYS = ("T_C_6b1d3f4e-8a2c-4e5f-9b7a-1c2d3e4f5a6b", "T_S_0f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f")
CHARGER = {"description": "Car charger, bay 3 (virtual)", "serverId": "charger-bay-3", "keys": (CLIENT_KEY, SERVICE_KEY),
           "services": [{"id": 1, "name": "Car charge", "description": "Electric vehicle charging", "prices": [
               {"id": 1, "amount": 30, "currency": "GBP", "unitId": 1, "unitDescription": "kWh",
                "description": "Up to 10 kWh", "maxUnits": 10},
               {"id": 2, "amount": 25, "currency": "GBP", "unitId": 1, "unitDescription": "kWh",
                "description": "11 kWh and more", "minUnits": 11, "maxUnits": 100}]}]}
METER = {"description": "Parking meter, Mill Lane (virtual)", "serverId": "meter-mill-lane", "keys": METER_KEYS,
         "services": [{"id": 1, "name": "Parking", "description": "One parking bay", "capacity": 480, "prices": [
             {"id": 1, "amount": 5, "currency": "GBP", "unitId": 2, "unitDescription": "minute",
              "description": "Per minute, up to 4 hours", "maxUnits": 240}]}]}
GOOD_CARD = Card("Bilbo Baggins", "4444333322221111", 11, 2030, "9731")
DECLINED_CARD = Card("Frodo Baggins", "4000000000000002", 11, 2030, "123")
START = time.monotonic()
STEP = ["start the gateway"]  # the step under way, for a failure's report
LOG_LINES = 15  # of processes.log shown when a step fails


def say(phase, text):
    STEP[0] = phase
    print("%6.2fs  %-9s %s" % (time.monotonic() - START, phase, text), flush=True)


def money(minor, currency="GBP"):
    return "%s %d.%02d" % (currency, minor // 100, minor % 100)


async def show_offer(consumer, producer):
    for service in await consumer.services(producer):
        say("Select", "%s: service %d %s (%s)" % (producer.server_id, service["ServiceID"], service["ServiceName"],
                                                 service["ServiceDescription"]))
        for price in await consumer.prices(producer, service["ServiceID"]):
            per = price["pricePerUnit"]
            say("Select", "  price %d: %s per %s (%s)" % (
                price["priceID"], money(per["amount"], per["currencyCode"]), price["unitDescription"],
                price["priceDescription"]))


async def buy(consumer, producer, price_id, units, unit):
    purchase = await consumer.select(producer, 1, price_id, units)
    total = purchase.total
    say("Select", "asked %s for %d %s at price %d; quote: %d %s at price %d = %s" % (
        producer.server_id, units, unit, price_id, total["unitsToSupply"], unit, total["priceID"],
        money(total["totalPrice"])))
    say("Pay", "card %s -> one-use token at the gateway; token -> producer, who charges it"
        % mask_card(GOOD_CARD.number))
    paid = await consumer.pay(producer, purchase)
    say("Pay", "paid %s; delivery token %s... for %d %s, expires %s" % (
        money(paid["totalPaid"]), paid["serviceDeliveryToken"]["key"][:8], purchase.remaining, unit,
        paid["serviceDeliveryToken"]["expiry"]))
    return purchase


async def deliver(consumer, producer, purchase, units, unit):
    await consumer.begin(producer, purchase, units)
    say("Release", "%s: delivery began, %d %s" % (producer.server_id, units, unit))
    end = await consumer.end(producer, purchase, units)
    say("Release", "%s: delivery ended, %d %s supplied, %d %s left on the token" % (
        producer.server_id, end["unitsJustSupplied"], unit, end["unitsRemaining"], unit))


async def shop(gateway_url, ca, ports, recorder):
    with open(ca, "rb") as f:
        gateway = GatewayClient(gateway_url, ca=f.read())
    consumer = ConsumerRole("car-7", GOOD_CARD, gateway)
    say("Discover", "probing for producers on %s:%d" % (LOOPBACK_BROADCAST, ports[1]))
    found = await consumer.discover(3000, probe_to=LOOPBACK_BROADCAST, enough=2,
                                    port=ports[0], probe_port=ports[1])
    producers = dict((p.server_id, p) for p in found)
    for producer in found:
        say("Discover", "found %s \"%s\" at %s:%d" % (producer.server_id, producer.description,
                                                      producer.host, producer.port))
    if sorted(producers) != sorted([CHARGER["serverId"], METER["serverId"]]):
        raise RuntimeError("expected the charger and the meter, found %s" % sorted(producers))
    charger, meter = producers[CHARGER["serverId"]], producers[METER["serverId"]]
    for producer in found:
        recorder.names[(producer.host, producer.port)] = producer.server_id
    await show_offer(consumer, charger)
    await show_offer(consumer, meter)

    charge = await buy(consumer, charger, 1, 12, "kWh")
    for units in (5, 7):  # a partial consumption: two delivery sessions on one token
        await deliver(consumer, charger, charge, units, "kWh")
    # Our consumer core would not even ask; send the request by hand to see the producer refuse it.
    status, _, body = await http_client.request(
        "POST", charger.host, charger.port, "/service/1/delivery/begin",
        wire.encode_json(wire_consumer.begin_request(consumer.client_id, charge.token, 1)),
        {"Content-Type": "application/json"})
    if status == 200:
        raise RuntimeError("the producer delivered beyond what was paid")
    say("Release", "one more kWh refused, as it must be: %d %s" % (status, json.loads(body)["message"]))

    parking = await buy(consumer, meter, 1, 45, "minutes")
    await deliver(consumer, meter, parking, 45, "minutes")

    declined = ConsumerRole("van-2", DECLINED_CARD, gateway)
    purchase = await declined.select(meter, 1, 1, 30)
    say("Select", "second consumer van-2: 30 minutes for %s" % money(purchase.total["totalPrice"]))
    try:
        await declined.pay(meter, purchase)
        raise RuntimeError("a declined card was charged")
    except ProducerError as exc:
        say("Pay", "card %s declined, nothing charged: %d %s" % (mask_card(DECLINED_CARD.number),
                                                                   exc.status, exc.message))


def show_log(path, workdir):
    """The last lines every child wrote, and where the rest is."""
    with open(path, errors="replace") as f:
        lines = f.readlines()[-LOG_LINES:]
    print("last %d lines of %s:" % (len(lines), path), file=sys.stderr)
    for line in lines:
        print("  " + line.rstrip("\n"), file=sys.stderr)
    print("the work folder %s is kept (boards' console.log, flash images, gateway.db)" % workdir, file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    __import__("version").add_option(parser)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--workdir", help="work in this (new or empty) directory; implies --keep")
    parser.add_argument("--trace", metavar="FILE.svg", default="demo-purchase.svg",
                        help="write the sequence diagram here (default: demo-purchase.svg in the current folder)")
    parser.add_argument("--heap", default=DEFAULT_HEAP,
                        help="the virtual boards' heap cap (default %s; a smaller chip's is less)" % DEFAULT_HEAP)
    args = parser.parse_args()
    if args.workdir:
        os.makedirs(args.workdir, exist_ok=True)
        args.keep = True
    workdir = args.workdir or tempfile.mkdtemp(prefix="wpw-demo-")
    log = open(os.path.join(workdir, "processes.log"), "w")  # every child's output, line by line
    things = Things(workdir, log=log)
    ports = free_ports(2, socket.SOCK_DGRAM)  # broadcasts, probes
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    ok = False
    try:
        db = os.path.join(workdir, "gateway.db")
        gateway = things.gateway(db=db, merchants=["%s:%s:charger" % CHARGER["keys"], "%s:%s:meter" % METER["keys"]])
        url, ca = gateway.url, gateway.ca_path
        say("Start", "simulated gateway at %s (test CA, SQLite ledger)" % url)
        build = os.path.join(workdir, "build")
        STEP[0] = "build the firmware image"
        built(ROOT, build)
        image = os.path.join(build, "littlefs.img")
        say("Build", "firmware image %s (%d KiB LittleFS: boot.py, main.py, lib/*.mpy)"
            % (image, os.path.getsize(image) // 1024))
        for thing in (CHARGER, METER):
            STEP[0] = "boot the producer %s" % thing["serverId"]
            folder = os.path.join(workdir, thing["serverId"])
            config = thing_files(folder, thing["serverId"], url, os.path.join(os.path.dirname(ca), "ca.der"), ports,
                                 services=thing["services"], keys=thing["keys"], description=thing["description"],
                                 ca_beside=True)  # the board reads the CA from its own flash
            board = VBoard(folder, "--image", image, "--flash", os.path.join(folder, "flash.img"), "--heap",
                           args.heap, "--config", config, log=log)
            say("Start", "producer %s on a virtual board (serial %s, heap %s), booted from the image, at %s"
                % (thing["serverId"], board.port, args.heap, board.wait_running()))
        recorder = trace.Recorder(parse_url(url)[1:3])
        recorder.install()
        try:
            asyncio.run(shop(url, ca, ports, recorder))
        finally:
            recorder.uninstall()
            with open(args.trace, "w") as f:
                f.write(recorder.render("make demo: a car buys charging and parking"))
        say("Trace", "sequence diagram: %s" % args.trace)
        STEP[0] = "reconcile the ledger"
        summary = Ledger(db, create=False).reconcile()
        totals = summary["totals"]
        say("Ledger", "gateway ledger: %s" % json.dumps(totals, sort_keys=True))
        if not summary["consistent"]:
            raise RuntimeError("the gateway ledger does not reconcile: %s" % summary["problems"])
        ok = True
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    except Exception as exc:
        lines = str(exc).rstrip().split("\n")
        print("demo failed in step \"%s\": %s" % (STEP[0], lines[0]), file=sys.stderr)
        for line in lines[1:][-LOG_LINES:]:  # a board's console, a build's errors
            print("  " + line, file=sys.stderr)
        args.keep = True  # its logs are what tells why
    finally:
        stop_all()
        log.close()
        if not ok and args.keep:
            show_log(os.path.join(workdir, "processes.log"), workdir)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print("demo %s" % ("passed" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
