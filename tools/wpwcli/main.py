"""wpw: the command line of Within for MicroPython (host, CPython).

Scans for producers (broadcasts, probes, and an MQTT broker's adverts),
shows a fleet's status from the broker, lists their services and prices, buys units (paying
through the gateway with a configured card), redeems them in one go or in
parts, lists the tokens held and the purchases not yet settled, resumes
them, and starts Things from a configuration. Human output by default,
--json for scripts, progress on stderr, and exit codes a script can rely
on (see EXIT). Expected failures print one line saying what went wrong and
what to do, never a traceback. Never prints a card number, a CVC or a key.

The wallet is a journal (tools/wpwcli/wallet.py over wpwithin.wallet):
the pending payment, with its one-use client token, is stored before
POST /payment, the token after, each delivery's begin and end around
them. So an answer that never comes, a kill or a Ctrl-C leaves a state
that `wpw resume` (and the start of every buy or redeem) settles: the
payment is retried with the same reference and client token, a begun
delivery is ended. Nothing is charged twice and no paid unit is lost.
"""
import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time

from wpwithin import discovery, mqtt, scanner
from wpwithin.card import Card, mask_card
from wpwithin.config import ConfigError
from wpwithin.consumer_role import ConsumerRole, PaymentPending, Producer, ProducerError, payment_wait
from wpwithin.errors import NotOffered, PeerError
from wpwithin.gateway_client import GatewayClient, parse_url
from wpwithin.gateway_wire import GatewayError
from wpwithin.journal import JournalCorrupt
from wpwithin.net_errors import NetError
from wpwithin.wallet import PENDING

from wpwcli import fleet, trace
from wpwcli.wallet import WalletBusy, WalletFile, home

EXIT = {"ok": 0, "refused": 1, "usage": 2, "unreachable": 3, "declined": 4, "protocol": 5, "pending": 6,
        "interrupted": 130}
PAYMENT_WAIT = payment_wait()
EPILOG = """exit codes: 0 ok, 1 refused by the producer or gateway, 2 bad arguments or settings,
3 producer or gateway unreachable, 4 payment declined, 5 a peer broke the protocol,
6 a payment's outcome is not known yet (it is pending: `wpw resume` settles it, never charging twice),
130 interrupted (Ctrl-C): what was under way is kept and `wpw resume` settles it.

Timeouts: --timeout (default 10 s) for any answer; --payment-timeout (default %d s) for POST /payment,
at least 3 x the producer's gateway timeout + 5 s, since a producer may call its gateway three times
(charge, search, resend) before it answers. Running out of time there leaves the payment pending.
Settings: --gateway/--ca/--card or $WPW_GATEWAY, $WPW_GATEWAY_CA, $WPW_CARD; the wallet in $WPW_HOME (~/.wpw).
The MQTT broker (scan --broker, fleet): --broker/--broker-user/--broker-ca or $WPW_BROKER, $WPW_BROKER_USER,
$WPW_BROKER_CA; its password from $WPW_BROKER_PASSWORD or --broker-password-file (never on the command line).""" \
    % PAYMENT_WAIT


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


def consumer(args, card=None, wallet=None):
    client_id = args.client_id or "wpw-%s" % socket.gethostname()
    return ConsumerRole(client_id, card, gateway_client(args) if card else None, timeout=args.timeout,
                        wallet=wallet.wallet if wallet else None, journal=wallet.journal if wallet else None,
                        payment_timeout=args.payment_timeout, log=lambda text: print("wpw: " + text, file=sys.stderr))


def producer_at(args):
    host, port = args.producer
    return Producer(host, port, args.prefix)


def open_wallet(args):
    """The wallet file, locked for this run (closed by run())."""
    try:
        args.wallet_file = WalletFile(args.wallet)
    except WalletBusy as exc:
        raise Failure("usage", str(exc))
    except JournalCorrupt as exc:
        raise Failure("usage", "%s; nothing was changed: keep a copy of the file and report it" % exc)
    except ValueError as exc:
        raise Failure("usage", str(exc))
    if args.wallet_file.journal.dropped:
        Out(False, args.quiet).progress("the wallet's last record was torn (a write cut off); it was dropped")
    if args.wallet_file.migrated:
        Out(False, args.quiet).progress("read %d tokens from the old tokens.json into %s"
                                        % (args.wallet_file.migrated, args.wallet_file.path))
    return args.wallet_file


PENDING_NEXT = ("it is never charged twice: `wpw resume` retries it with the same reference and card token "
                "(so do the next buy and redeem)")


def outcome_line(entry, outcome, message):
    """One line saying how resume left an entry."""
    if outcome == "paid":
        return "payment %s settled: paid, token %s holds %d units" % (entry.ref, entry.key[:12], entry.remaining)
    if outcome == "failed":
        charge = ("the gateway may still hold a charge: ask the producer %s about order %s"
                  % (entry.server_id, entry.ref) if entry.maybe_charged else "nothing was charged")
        return "payment %s failed: %s; %s" % (entry.ref, message, charge)
    if outcome == "ended":
        return "delivery on token %s ended: %s" % (entry.key[:12], message)
    return "payment %s still pending (%s); %s" % (entry.ref, message, PENDING_NEXT) if entry.state == PENDING else \
        "delivery on token %s still open (%s); `wpw resume` ends it" % (entry.key[:12], message)


def resumed(outcome_list):
    return [{"paymentReferenceID": e.ref, "outcome": o, "message": m, "entry": e.summary()} for e, o, m in outcome_list]


async def resume_first(role, out):
    """Settle what earlier runs left unresolved, saying so on stderr; returns the outcomes."""
    if not role.wallet.unresolved():
        return []
    out.progress("settling %d unresolved purchase(s) first" % len(role.wallet.unresolved()))
    results = await role.resume()
    for result in results:
        out.progress(outcome_line(*result))
    return results


# --- commands ------------------------------------------------------------------

def broker_client(args):
    """The broker's client from --broker and its settings; Failure("usage") saying what is missing."""
    if not args.broker:
        raise Failure("usage", "no broker: give --broker mqtt://HOST[:1883] or mqtts://HOST[:8883], or set WPW_BROKER")
    password = os.environ.get("WPW_BROKER_PASSWORD")
    if args.broker_password_file:
        try:
            with open(args.broker_password_file) as f:
                password = f.readline().rstrip("\r\n")
        except OSError:
            raise Failure("usage", "cannot read the broker password file %s" % args.broker_password_file)
    if password and not args.broker_user:
        raise Failure("usage", "a broker password needs its user: give --broker-user NAME or set WPW_BROKER_USER")
    client_id = "wpw-%s-%d" % (socket.gethostname()[:12], os.getpid())
    try:
        return fleet.client(args.broker, args.broker_user, password, args.broker_ca or args.ca, client_id,
                            int(args.timeout * 1000))
    except ValueError as exc:
        raise Failure("usage", "--broker: %s" % exc)


async def broker_connect(args, c):
    """Connect and subscribe; a refusal (user, password, ACL) or an unreachable broker as a Failure."""
    try:
        await fleet.connect(c, int(args.timeout * 1000))
    except mqtt.MQTTError as exc:
        if exc.code in (4, 5):
            raise Failure("refused", "the broker %s refused user %s: %s; check --broker-user and the password "
                                     "($WPW_BROKER_PASSWORD or --broker-password-file)"
                          % (args.broker, args.broker_user or "(none)", exc))
        raise Failure("unreachable", "broker %s: %s" % (args.broker, exc))


async def broker_adverts(args, things):
    c = broker_client(args)
    await broker_connect(args, c)
    try:
        await fleet.listen(c, things, args.seconds)
    except mqtt.MQTTError as exc:
        raise Failure("unreachable", "broker %s: %s" % (args.broker, exc))
    finally:
        await c.disconnect()


def scan_entry(message, ways):
    return {"serverID": message["serverID"], "description": message["deviceDescription"],
            "host": message["hostname"], "port": message["portNumber"], "urlPrefix": message["urlPrefix"],
            "foundBy": ways, "stale": None}


async def cmd_scan(args, out):
    probe = None if args.no_probe else args.probe_address
    out.progress("listening %.1f s for producers on UDP %d%s%s" % (
        args.seconds, args.broadcast_port, "" if args.no_probe else ", probing %s:%d" % (probe, args.probe_port),
        ", reading adverts from %s" % args.broker if args.broker else ""))
    ways, things = {}, fleet.Fleet()
    jobs = [scanner.scan(int(args.seconds * 1000), args.broadcast_port, probe, args.probe_port, ways=ways)]
    if args.broker:
        jobs.append(broker_adverts(args, things))
    found = (await asyncio.gather(*jobs))[0]
    entries = {k: scan_entry(found[k], ways[k]) for k in found}
    gone, unheard = [], []
    for thing in things.sorted():
        if thing.server_id in entries:
            entries[thing.server_id]["foundBy"].append("broker")
        elif thing.advert is None:
            gone.append({"serverID": thing.server_id, "since": thing.cleared,
                         "reason": "its advert was cleared (its will: it dropped off the broker)"})
        else:
            entries[thing.server_id] = scan_entry(thing.advert, ["broker"])
            unheard.append(entries[thing.server_id])
    checks = [fleet.reachable(e["host"], e["port"], min(args.timeout, 3)) for e in unheard]
    for entry, why in zip(unheard, await asyncio.gather(*checks)):
        entry["stale"] = why and "retained advert, but %s" % why
    data = [entries[k] for k in sorted(entries)]
    lines = ["%-24s %-21s %-22s %s%s" % (p["serverID"], "%s:%d%s" % (p["host"], p["port"], p["urlPrefix"]),
                                         "+".join(p["foundBy"]), p["description"],
                                         "  STALE: %s" % p["stale"] if p["stale"] else "") for p in data]
    lines += ["%-24s gone: %s" % (g["serverID"], g["reason"]) for g in gone]
    out.result({"producers": data, "gone": gone}, lines or ["no producers found"])


async def cmd_fleet(args, out):
    c = broker_client(args)
    things = fleet.Fleet()
    if not args.watch:
        await broker_connect(args, c)
        try:
            await fleet.listen(c, things, args.seconds)
        except mqtt.MQTTError as exc:
            raise Failure("unreachable", "broker %s: %s" % (args.broker, exc))
        finally:
            await c.disconnect()
        rows, lines = fleet.table(things)
        out.result({"things": rows}, lines)
        return
    await broker_connect(args, c)  # a wrong password or URL fails at once; later drops are retried
    screen = sys.stdout.isatty() and not args.json
    note = [""]

    def show():
        rows, lines = fleet.table(things)
        if args.json:
            print(json.dumps({"things": rows}, sort_keys=True), flush=True)
            return
        up = sum(1 for r in rows if r["up"])
        head = "wpw fleet  %s  %d Things, %d up, %d down  %s%s  (Ctrl-C ends)" % (
            args.broker, len(rows), up, len(rows) - up, time.strftime("%H:%M:%S"), note[0])
        print(("\x1b[H\x1b[2J" if screen else "") + "\n".join([head] + lines) + ("" if screen else "\n"), flush=True)

    delay = 1
    while True:
        try:
            if not c.connected:
                await broker_connect(args, c)
                note[0], delay = "", 1
            show()
            await fleet.listen(c, things, None, show)
        except (mqtt.MQTTError, Failure) as exc:
            if isinstance(exc, Failure) and exc.kind != "unreachable":
                raise
            c.close()
            note[0] = "  broker: %s; retrying in %d s" % (exc, delay)
            show()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30)


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
    wallet = open_wallet(args)
    role, producer = consumer(args, card, wallet), producer_at(args)
    await resume_first(role, out)
    out.progress("asking for %d units of service %d at price %d" % (args.units, args.service, args.price))
    purchase = await role.select(producer, args.service, args.price, args.units)
    total = purchase.total
    args.paying = total["paymentReferenceID"]
    out.progress("paying %s with card %s (order %s)" % (money(total["totalPrice"], total["currencyCode"]),
                                                        mask_card(card.number), total["paymentReferenceID"]))
    receipt = await role.pay(producer, purchase)
    args.paying = None
    data = {"serverID": purchase.server_id, "serviceID": args.service, "priceID": total["priceID"],
            "units": total["unitsToSupply"], "totalPaid": receipt["totalPaid"], "currency": total["currencyCode"],
            "paymentReferenceID": total["paymentReferenceID"], "token": purchase.token["key"],
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
    wallet = open_wallet(args)
    role = consumer(args, None, wallet)
    await resume_first(role, out)
    try:
        entry = wallet.wallet.find(args.token)
    except LookupError as exc:
        raise Failure("usage", "%s; `wpw tokens` lists them" % exc)
    if entry.expired(time.time()):
        raise Failure("refused", "token %s expired at %s; its units can no longer be taken%s" % (
            entry.key[:8], entry.expiry,
            " (it carries refundOnExpiry: the producer refunds the %d units left)" % entry.remaining
            if entry.refund_on_expiry and entry.remaining else ""))
    if entry.in_flight:
        raise Failure("unreachable", "a delivery on token %s is still open (its producer did not answer); "
                                     "`wpw resume` ends it" % entry.key[:8])
    if args.units > entry.remaining:
        raise Failure("refused", "token %s has %d units left, not %d" % (entry.key[:8], entry.remaining, args.units))
    purchase = entry.purchase()
    producer = Producer(entry.host, entry.port, entry.prefix, server_id=entry.server_id)
    parts = [args.units // args.parts + (1 if i < args.units % args.parts else 0) for i in range(args.parts)]
    sessions = []
    for units in [u for u in parts if u]:
        out.progress("delivery of %d units" % units)
        end = await role.deliver(producer, purchase, units)
        sessions.append({"supplied": end["unitsJustSupplied"], "remaining": entry.remaining})
    out.result({"token": entry.key, "sessions": sessions, "remaining": entry.remaining},
               ["session %d: %d units supplied, %d left" % (i + 1, s["supplied"], s["remaining"])
                for i, s in enumerate(sessions)])


def token_line(e, now):
    d = e.summary()
    if e.expired(now):
        left = "expired with %d/%d units left%s" % (e.remaining, e.units,
                                                     " (refund on expiry)" if e.refund_on_expiry else "")
    else:
        left = "%d/%d units left" % (e.remaining, e.units)
    return "%s  %-20s service %d  %s  paid %s  expires %s" % (
        e.key[:12], e.server_id, e.service_id, left, money(e.total, e.currency), d["expiry"])


async def cmd_tokens(args, out):
    wallet = open_wallet(args).wallet
    now = time.time()
    data = []
    for e in wallet.tokens():
        d = e.summary()
        data.append({"token": e.key, "serverID": e.server_id, "serviceID": e.service_id, "units": e.units,
                     "remaining": e.remaining, "expiry": e.expiry, "expired": e.expired(now),
                     "refundOnExpiry": e.refund_on_expiry, "totalPaid": e.total, "currency": e.currency,
                     "paymentReferenceID": d["paymentReferenceID"]})
    open_ones = len(wallet.unresolved()) + len(wallet.needing_attention())
    if open_ones:
        out.progress("%d purchase(s) not settled: `wpw pending` lists them" % open_ones)
    out.result({"tokens": data}, [token_line(e, now) for e in wallet.tokens()] or ["no tokens"])


def pending_line(e):
    d = e.summary()
    if e.state == PENDING:
        return "payment %s  %-20s %s for %d units of service %d at %s: outcome not known; `wpw resume` retries it" % (
            e.ref, e.server_id, money(e.total, e.currency), e.units, e.service_id, d["producer"])
    if e.in_flight:
        return "delivery on token %s  %-20s %d units begun at %s, not known to be ended; `wpw resume` ends it" % (
            e.key[:12], e.server_id, e.in_flight, d["producer"])
    return ("payment %s  %-20s %s refused (%d %s) after an earlier try went unanswered: the gateway may hold "
            "a charge; ask the producer about this order" % (e.ref, e.server_id, money(e.total, e.currency),
                                                             e.status, e.note))


async def cmd_pending(args, out):
    wallet = open_wallet(args).wallet
    entries = wallet.unresolved() + wallet.needing_attention()
    out.result({"pending": [e.summary() for e in entries]},
               [pending_line(e) for e in entries] or ["nothing pending"])


async def cmd_resume(args, out):
    wallet = open_wallet(args)
    role = consumer(args, None, wallet)
    results = await role.resume()
    out.result({"resumed": resumed(results)}, [outcome_line(*r) for r in results] or ["nothing to resume"])
    if any(o == "pending" for _, o, _ in results):
        raise Failure("pending", "%d purchase(s) still unresolved; run `wpw resume` again later"
                      % sum(1 for _, o, _ in results if o == "pending"))


def cmd_thing(args):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    tool = os.path.join(root, "tools", "thing")
    if not os.path.exists(tool):
        raise Failure("usage", "tools/thing is not beside this wpw (run wpw from the project's checkout)")
    return subprocess.call([sys.executable, tool, "--config", args.config, "--runtime", args.runtime])


# --- parsing and errors -----------------------------------------------------------

def broker_options(s, text):
    s.add_argument("--broker", default=os.environ.get("WPW_BROKER"), metavar="URL",
                   help="%s: mqtt://HOST[:1883] or mqtts://HOST[:8883] (default $WPW_BROKER)" % text)
    s.add_argument("--broker-user", default=os.environ.get("WPW_BROKER_USER"), metavar="NAME",
                   help="user name at the broker (default $WPW_BROKER_USER); its password comes from "
                        "$WPW_BROKER_PASSWORD or --broker-password-file, never from the command line")
    s.add_argument("--broker-password-file", metavar="FILE", help="file whose first line is the broker password")
    s.add_argument("--broker-ca", default=os.environ.get("WPW_BROKER_CA"), metavar="FILE",
                   help="CA certificate that signs an mqtts:// broker's certificate (default $WPW_BROKER_CA, "
                        "else --ca); the certificate and its name are always checked")


def parser():
    p = argparse.ArgumentParser(prog="wpw", description="Buy and sell services between Things.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document (for scripts)")
    common.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    common.add_argument("--timeout", type=float, default=10, help="seconds to wait for any answer (default 10)")
    common.add_argument("--payment-timeout", type=float, default=PAYMENT_WAIT,
                        help="seconds to wait for the producer's answer to a payment (default %d: 3 x its "
                             "gateway timeout of 10 s + 5; give 3 x T + 5 for a producer whose "
                             "gateway.timeout is T). Past it the payment is pending, not failed" % PAYMENT_WAIT)
    common.add_argument("--trace", metavar="FILE.svg", help="write a sequence diagram of the messages")
    common.add_argument("--gateway", default=os.environ.get("WPW_GATEWAY"), help="payment gateway URL")
    common.add_argument("--ca", default=os.environ.get("WPW_GATEWAY_CA"), help="CA certificate that signs the gateway")
    common.add_argument("--card", default=os.environ.get("WPW_CARD"), help="card file (JSON)")
    common.add_argument("--client-id", help="our clientID (default wpw-HOSTNAME)")
    common.add_argument("--wallet", help="wallet journal (default %s)" % os.path.join(home(), "wallet.journal"))
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("scan", parents=[common], help="find producers (fast probe, then broadcasts)")
    s.add_argument("--seconds", type=float, default=3, help="how long to listen (default 3)")
    s.add_argument("--no-probe", action="store_true", help="only listen for the 5-second broadcasts")
    s.add_argument("--probe-address", default=discovery.BROADCAST_ADDRESS,
                   help="where the probe goes (default %s; '' sends none)" % discovery.BROADCAST_ADDRESS)
    s.add_argument("--broadcast-port", type=int, default=discovery.BROADCAST_PORT,
                   help="UDP port to hear broadcasts on (default %d)" % discovery.BROADCAST_PORT)
    s.add_argument("--probe-port", type=int, default=discovery.PROBE_PORT,
                   help="UDP port producers answer probes on (default %d)" % discovery.PROBE_PORT)
    broker_options(s, "also read the Things' retained adverts from this MQTT broker")
    s = sub.add_parser("fleet", parents=[common], help="every Thing on an MQTT broker: up or down, heap, orders, sold")
    broker_options(s, "the MQTT broker the Things publish to")
    s.add_argument("--watch", action="store_true", help="keep the table up to date in the terminal until Ctrl-C "
                                                        "(with --json: one JSON line per change)")
    s.add_argument("--seconds", type=float, default=2,
                   help="without --watch: how long to collect the retained adverts and statuses (default 2)")
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
    sub.add_parser("tokens", parents=[common], help="tokens held, their units left and expiry")
    sub.add_parser("pending", parents=[common],
                   help="purchases not settled: payments whose outcome is not known, deliveries left open")
    sub.add_parser("resume", parents=[common], help="settle the pending purchases now (same reference, same token)")
    for role in ("producer", "consumer"):
        s = sub.add_parser(role, help="start a %s Thing on this host from a config" % role)
        s.add_argument("--config", required=True)
        s.add_argument("--runtime", choices=["micropython", "cpython"], default="micropython")
    return p


COMMANDS = {"scan": cmd_scan, "fleet": cmd_fleet, "services": cmd_services, "buy": cmd_buy, "redeem": cmd_redeem, "tokens": cmd_tokens,
            "pending": cmd_pending, "resume": cmd_resume}


def run(args):
    if args.command in ("producer", "consumer"):
        return cmd_thing(args)
    for name in ("units", "parts"):
        if getattr(args, name, 1) < 1:
            raise Failure("usage", "--%s must be at least 1" % name)
    if args.timeout <= 0 or args.payment_timeout <= 0:
        raise Failure("usage", "--timeout and --payment-timeout must be more than 0 seconds")
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
        if args.wallet_file is not None:
            args.wallet_file.close()
        if recorder is not None:
            recorder.uninstall()
            with open(args.trace, "w") as f:
                f.write(recorder.render("wpw %s" % args.command))
    return EXIT["ok"]


def main(argv=None):
    args = parser().parse_args(argv)
    args.wallet_file = None  # the wallet, once a command opened it
    args.paying = None  # the reference of a payment under way
    try:
        return run(args)
    except Failure as exc:
        return fail(exc.kind, str(exc))
    except PaymentPending as exc:
        return fail("pending", "payment %s is pending: %s; %s" % (exc.ref, exc.reason, PENDING_NEXT))
    except ProducerError as exc:
        if exc.status == 402:
            return fail("declined", "payment declined: %s; nothing was charged" % exc.message)
        return fail("refused", "the producer refused: %d %s" % (exc.status, exc.message))
    except GatewayError as exc:
        return fail("refused", "the gateway refused: %s %s" % (exc.custom_code, exc.message))
    except NotOffered as exc:
        return fail("refused", "%s; `wpw services HOST:PORT` lists what it sells" % exc)
    except NetError as exc:
        return fail("unreachable", "%s; check the address and that it is running%s" % (exc, resumable(args)))
    except OSError as exc:
        return fail("unreachable", "%s; check the address and that it is running%s" % (exc, resumable(args)))
    except PeerError as exc:
        return fail("protocol", "a peer broke the protocol: %s%s" % (exc, resumable(args)))
    except (ConfigError, ValueError) as exc:
        return fail("usage", str(exc))
    except KeyboardInterrupt:
        if args.command == "fleet":
            return EXIT["ok"]  # how --watch ends
        entry = args.wallet_file.wallet.entries.get(args.paying) if args.wallet_file and args.paying else None
        if entry is not None and entry.state == PENDING:
            return fail("interrupted", "interrupted; payment %s is pending: %s" % (args.paying, PENDING_NEXT))
        return fail("interrupted", "interrupted%s" % (resumable(args) or "; nothing was under way"))


def resumable(args):
    """What to do next when the wallet holds something unresolved after a failure."""
    w = args.wallet_file
    if w is None or not w.wallet.unresolved():
        return ""
    entry = w.wallet.entries.get(args.paying) if args.paying else None
    if entry is not None and entry.state == PENDING:
        return "; payment %s is pending: %s" % (entry.ref, PENDING_NEXT)
    return "; the wallet keeps what was under way: `wpw pending` lists it, `wpw resume` settles it"


def fail(kind, message):
    print("wpw: %s" % message, file=sys.stderr)
    return EXIT[kind]


if __name__ == "__main__":
    sys.exit(main())
