"""wpw: the command line of Within for MicroPython (host, CPython).

Scans for producers, lists their services and prices, buys units (paying
through the gateway with a configured card), redeems them in one go or in
parts, lists the tokens held, and starts Things from a configuration. Human
output by default, --json for scripts, progress on stderr, and exit codes a
script can rely on (see EXIT). Expected failures print one line saying what
went wrong and what to do, never a traceback. Never prints a card number,
a CVC or a key.
"""
import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys

from wpwithin import discovery
from wpwithin.card import Card, mask_card
from wpwithin.config import ConfigError
from wpwithin.consumer_role import ConsumerRole, Producer, ProducerError
from wpwithin.errors import NotOffered, PeerError
from wpwithin.gateway_client import GatewayClient, parse_url
from wpwithin.gateway_wire import GatewayError
from wpwithin.net_errors import NetError

from wpwcli import trace
from wpwcli.wallet import Wallet, home

EXIT = {"ok": 0, "refused": 1, "usage": 2, "unreachable": 3, "declined": 4, "protocol": 5}
EPILOG = """exit codes: 0 ok, 1 refused by the producer or gateway, 2 bad arguments or settings,
3 producer or gateway unreachable, 4 payment declined, 5 a peer broke the protocol.
Settings: --gateway/--ca/--card or $WPW_GATEWAY, $WPW_GATEWAY_CA, $WPW_CARD; tokens in $WPW_HOME (~/.wpw)."""


class Failure(Exception):
    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


class Out:
    """Human lines or one JSON document; progress on stderr."""

    def __init__(self, as_json, quiet):
        self.as_json = as_json
        self.quiet = quiet

    def progress(self, text):
        if not self.quiet:
            print("... " + text, file=sys.stderr, flush=True)

    def result(self, data, lines):
        if self.as_json:
            print(json.dumps(data, indent=2, sort_keys=True))
        else:
            for line in lines:
                print(line)


def money(minor, currency):
    return "%s %d.%02d" % (currency, minor // 100, minor % 100)


def host_port(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError("expected HOST:PORT, e.g. 127.0.0.1:64521, not %r" % text)
    return host, int(port)


def read_card(path):
    if not path:
        raise Failure("usage", "no card: give --card FILE (JSON with name, number, expiryMonth, expiryYear, cvc) "
                               "or set WPW_CARD")
    try:
        with open(path) as f:
            c = json.load(f)
        return Card(c["name"], str(c["number"]), int(c["expiryMonth"]), int(c["expiryYear"]), str(c["cvc"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Failure("usage", "card file %s is not usable (%s); it needs name, number, expiryMonth, "
                               "expiryYear, cvc" % (path, type(exc).__name__))


def gateway_client(args):
    if not args.gateway:
        raise Failure("usage", "no gateway: give --gateway URL (e.g. the simulator's https://127.0.0.1:8443/v1) "
                               "or set WPW_GATEWAY")
    ca = None
    if args.ca:
        try:
            with open(args.ca, "rb") as f:
                ca = f.read()
        except OSError:
            raise Failure("usage", "cannot read the gateway CA file %s" % args.ca)
    try:
        return GatewayClient(args.gateway, ca=ca, timeout=args.timeout)
    except ValueError as exc:
        raise Failure("usage", "--gateway: %s" % exc)


def consumer(args, card=None):
    client_id = args.client_id or "wpw-%s" % socket.gethostname()
    return ConsumerRole(client_id, card, gateway_client(args) if card else None, timeout=args.timeout)


def producer_at(args):
    host, port = args.producer
    return Producer(host, port, args.prefix)


# --- commands ------------------------------------------------------------------

async def cmd_scan(args, out):
    probe = None if args.no_probe else args.probe_address
    out.progress("listening %.1f s for producers on UDP %d%s" % (
        args.seconds, args.broadcast_port, "" if args.no_probe else ", probing %s:%d" % (probe, args.probe_port)))
    found = await consumer(args).discover(int(args.seconds * 1000), probe, 0, args.broadcast_port, args.probe_port)
    data = [{"serverID": p.server_id, "description": p.description, "host": p.host, "port": p.port,
             "urlPrefix": p.url_prefix} for p in found]
    lines = ["%-24s %-21s %s" % (p["serverID"], "%s:%d%s" % (p["host"], p["port"], p["urlPrefix"]),
                                 p["description"]) for p in data] or ["no producers found"]
    out.result({"producers": data}, lines)


async def cmd_services(args, out):
    role, producer = consumer(args), producer_at(args)
    out.progress("asking %s:%d for its services" % args.producer)
    services = await role.services(producer)
    data, lines = [], []
    for service in services:
        prices = await role.prices(producer, service["ServiceID"])
        data.append({"service": service, "prices": prices})
        lines.append("service %d: %s - %s" % (service["ServiceID"], service["ServiceName"],
                                              service["ServiceDescription"]))
        for p in prices:
            per = p["pricePerUnit"]
            lines.append("  price %d: %s per %s (%s)" % (p["priceID"], money(per["amount"], per["currencyCode"]),
                                                        p["unitDescription"], p["priceDescription"]))
    out.result({"services": data}, lines or ["no services"])


async def cmd_buy(args, out):
    card = read_card(args.card)
    role, producer = consumer(args, card), producer_at(args)
    out.progress("asking for %d units of service %d at price %d" % (args.units, args.service, args.price))
    purchase = await role.select(producer, args.service, args.price, args.units)
    total = purchase.total
    out.progress("paying %s with card %s" % (money(total["totalPrice"], total["currencyCode"]), mask_card(card.number)))
    receipt = await role.pay(producer, purchase)
    entry = Wallet(args.wallet).add(producer, purchase, receipt)
    data = {"serverID": purchase.server_id, "serviceID": args.service, "priceID": total["priceID"],
            "units": total["unitsToSupply"], "totalPaid": receipt["totalPaid"], "currency": total["currencyCode"],
            "paymentReferenceID": total["paymentReferenceID"], "token": entry["key"],
            "expiry": purchase.token["expiry"], "card": mask_card(card.number)}
    out.result(data, [
        "receipt from %s" % purchase.server_id,
        "  units      %d (price %d)" % (data["units"], data["priceID"]),
        "  amount     %s" % money(data["totalPaid"], data["currency"]),
        "  order      %s" % data["paymentReferenceID"],
        "  card       %s" % data["card"],
        "  token      %s (expires %s)" % (data["token"], data["expiry"]),
        "redeem with: wpw redeem %s --units N" % data["token"][:8],
    ])


async def cmd_redeem(args, out):
    wallet = Wallet(args.wallet)
    try:
        entry = wallet.find(args.token)
    except LookupError as exc:
        raise Failure("usage", "%s; `wpw tokens` lists them" % exc)
    if args.units > entry["remaining"]:
        raise Failure("refused", "token %s has %d units left, not %d" % (entry["key"][:8], entry["remaining"],
                                                                         args.units))
    from wpwithin.consumer import Purchase

    purchase = Purchase(entry["clientID"], entry["serviceID"], entry["priceID"], entry["units"])
    purchase.token, purchase.remaining, purchase.server_id = entry["token"], entry["remaining"], \
        entry["producer"]["serverID"]
    role = ConsumerRole(entry["clientID"], None, None, timeout=args.timeout)
    p = entry["producer"]
    producer = Producer(p["host"], p["port"], p["urlPrefix"])
    parts = [args.units // args.parts + (1 if i < args.units % args.parts else 0) for i in range(args.parts)]
    sessions = []
    for units in [u for u in parts if u]:
        out.progress("delivery of %d units" % units)
        end = await role.deliver(producer, purchase, units)
        sessions.append({"supplied": end["unitsJustSupplied"], "remaining": end["unitsRemaining"]})
        entry["remaining"] = end["unitsRemaining"]
        wallet.save()
    out.result({"token": entry["key"], "sessions": sessions, "remaining": entry["remaining"]},
               ["session %d: %d units supplied, %d left" % (i + 1, s["supplied"], s["remaining"])
                for i, s in enumerate(sessions)])


async def cmd_tokens(args, out):
    entries = Wallet(args.wallet).entries
    data = [{"token": e["key"], "serverID": e["producer"]["serverID"], "serviceID": e["serviceID"],
             "units": e["units"], "remaining": e["remaining"], "expiry": e["token"]["expiry"],
             "totalPaid": e["totalPaid"], "currency": e["currency"]} for e in entries]
    out.result({"tokens": data}, ["%s  %-20s service %d  %d/%d units left  paid %s  expires %s" % (
        d["token"][:12], d["serverID"], d["serviceID"], d["remaining"], d["units"],
        money(d["totalPaid"], d["currency"]), d["expiry"]) for d in data] or ["no tokens"])


def cmd_thing(args):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    tool = os.path.join(root, "tools", "thing")
    if not os.path.exists(tool):
        raise Failure("usage", "tools/thing is not beside this wpw (run wpw from the project's checkout)")
    return subprocess.call([sys.executable, tool, "--config", args.config, "--runtime", args.runtime])


# --- parsing and errors -----------------------------------------------------------

def parser():
    p = argparse.ArgumentParser(prog="wpw", description="Buy and sell services between Things.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document (for scripts)")
    common.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    common.add_argument("--timeout", type=float, default=10, help="seconds to wait for any answer (default 10)")
    common.add_argument("--trace", metavar="FILE.svg", help="write a sequence diagram of the messages")
    common.add_argument("--gateway", default=os.environ.get("WPW_GATEWAY"), help="payment gateway URL")
    common.add_argument("--ca", default=os.environ.get("WPW_GATEWAY_CA"), help="CA certificate that signs the gateway")
    common.add_argument("--card", default=os.environ.get("WPW_CARD"), help="card file (JSON)")
    common.add_argument("--client-id", help="our clientID (default wpw-HOSTNAME)")
    common.add_argument("--wallet", help="tokens file (default %s)" % os.path.join(home(), "tokens.json"))
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("scan", parents=[common], help="find producers (fast probe, then broadcasts)")
    s.add_argument("--seconds", type=float, default=3, help="how long to listen (default 3)")
    s.add_argument("--no-probe", action="store_true", help="only listen for the 5-second broadcasts")
    s.add_argument("--probe-address", default=discovery.BROADCAST_ADDRESS)
    s.add_argument("--broadcast-port", type=int, default=discovery.BROADCAST_PORT)
    s.add_argument("--probe-port", type=int, default=discovery.PROBE_PORT)
    for name, text in (("services", "list a producer's services and prices"),
                       ("buy", "buy units of a service and keep the token")):
        s = sub.add_parser(name, parents=[common], help=text)
        s.add_argument("producer", type=host_port, metavar="HOST:PORT")
        s.add_argument("--prefix", default="", help="the producer's URL prefix")
        if name == "buy":
            s.add_argument("--service", type=int, required=True)
            s.add_argument("--price", type=int, required=True)
            s.add_argument("--units", type=int, required=True)
    s = sub.add_parser("redeem", parents=[common], help="take delivery of units of a token (in one go or in parts)")
    s.add_argument("token", help="the token key or its first characters (see `wpw tokens`)")
    s.add_argument("--units", type=int, required=True)
    s.add_argument("--parts", type=int, default=1, help="delivery sessions to split the units into")
    sub.add_parser("tokens", parents=[common], help="tokens held and their units left")
    for role in ("producer", "consumer"):
        s = sub.add_parser(role, help="start a %s Thing on this host from a config" % role)
        s.add_argument("--config", required=True)
        s.add_argument("--runtime", choices=["micropython", "cpython"], default="micropython")
    return p


COMMANDS = {"scan": cmd_scan, "services": cmd_services, "buy": cmd_buy, "redeem": cmd_redeem, "tokens": cmd_tokens}


def run(args):
    if args.command in ("producer", "consumer"):
        return cmd_thing(args)
    for name in ("units", "parts"):
        if getattr(args, name, 1) < 1:
            raise Failure("usage", "--%s must be at least 1" % name)
    out = Out(args.json, args.quiet)
    recorder = None
    if args.trace:
        gateway = None
        if args.gateway:
            _, host, port, _ = parse_url(args.gateway)
            gateway = (host, port)
        recorder = trace.Recorder(gateway)
        recorder.install()
    try:
        asyncio.run(COMMANDS[args.command](args, out))
    finally:
        if recorder is not None:
            recorder.uninstall()
            with open(args.trace, "w") as f:
                f.write(recorder.render("wpw %s" % args.command))
    return EXIT["ok"]


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        return run(args)
    except Failure as exc:
        return fail(exc.kind, str(exc))
    except ProducerError as exc:
        if exc.status == 402:
            return fail("declined", "payment declined: %s; nothing was charged" % exc.message)
        return fail("refused", "the producer refused: %d %s" % (exc.status, exc.message))
    except GatewayError as exc:
        return fail("refused", "the gateway refused: %s %s" % (exc.custom_code, exc.message))
    except NotOffered as exc:
        return fail("refused", "%s; `wpw services HOST:PORT` lists what it sells" % exc)
    except NetError as exc:
        return fail("unreachable", "%s; check the address and that it is running" % exc)
    except OSError as exc:
        return fail("unreachable", "%s; check the address and that it is running" % exc)
    except PeerError as exc:
        return fail("protocol", "a peer broke the protocol: %s" % exc)
    except (ConfigError, ValueError) as exc:
        return fail("usage", str(exc))
    except KeyboardInterrupt:
        return fail("refused", "interrupted")


def fail(kind, message):
    print("wpw: %s" % message, file=sys.stderr)
    return EXIT[kind]


if __name__ == "__main__":
    sys.exit(main())
