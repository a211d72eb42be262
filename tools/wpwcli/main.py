"""wpw: the command line of Within for MicroPython (host, CPython).

Scans for producers (broadcasts, probes, and an MQTT broker's adverts),
shows a fleet's status from the broker, lists their services and prices,
quotes a total without paying, buys units (paying through the gateway
with a configured card, refusing a total over --max-total), redeems them in one go or in
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
import importlib.util
import socket
import sys
import time

from wpwithin import discovery, mqtt, scanner
from wpwithin.card import Card, mask_card
from wpwithin import config
from wpwithin.config import ConfigError
from wpwithin.consumer_role import ConsumerRole, PaymentPending, Producer, ProducerError, payment_wait
from wpwithin.consumer import NotOffered
from wpwithin.errors import PeerError
from wpwithin.gateway_client import GatewayClient, parse_url
from wpwithin.gateway_wire import GatewayError
from wpwithin.journal import JournalCorrupt
from wpwithin.net_errors import BadResponse, ConnectFailed, HttpTimeout, NetError, TlsFailed
from wpwithin.wallet import PENDING

from wpwcli import fleet, trace
from wpwcli.wallet import WalletBusy, WalletFile, home

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout's tools/, beside wpwcli/


def project_version():
    """tools/version.py's answer (the project's pyproject.toml version)."""
    path = os.path.join(TOOLS, "version.py")
    if not os.path.exists(path):  # installed without the checkout: the package's own metadata
        from importlib import metadata
        return metadata.version("wpwithin-micropython")
    spec = importlib.util.spec_from_file_location("wpw_version", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.version()


EXIT = {"ok": 0, "refused": 1, "usage": 2, "unreachable": 3, "declined": 4, "protocol": 5, "pending": 6,
        "over": 7, "interrupted": 130}
PAYMENT_WAIT = payment_wait()
BROADCAST_S = discovery.INTERVAL_MS // 1000
SCAN_SECONDS = BROADCAST_S + 1.5  # the reference broadcasts every 5 s and never answers a probe
EPILOG = """exit codes: 0 ok, 1 refused by the producer or gateway, 2 bad arguments or settings,
3 producer or gateway unreachable, 4 payment declined, 5 a peer broke the protocol,
6 a payment's outcome is not known yet (it is pending: `wpw resume` settles it, never charging twice),
7 the quote is over `buy --max-total` (nothing was paid),
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
        self.printed = False  # a result is out (a failure after it adds no second JSON document)

    def say(self, text):
        """A line the user must see before anything is paid, even with --quiet."""
        print("wpw: " + text, file=sys.stderr, flush=True)

    def progress(self, text):
        if not self.quiet:
            print("... " + text, file=sys.stderr, flush=True)

    def result(self, data, lines):
        self.printed = True
        if self.as_json:
            print(json.dumps(data, indent=2, sort_keys=True))
        else:
            for line in lines:
                print(line)


def money(minor, currency):
    return "%s %d.%02d" % (currency, minor // 100, minor % 100)


def units(n):
    return "%d unit%s" % (n, "" if n == 1 else "s")


def max_total(text):
    """--max-total: (currency or None, minor units) from "2.50", "GBP 2.50" or "2.50 GBP"."""
    words = text.replace(",", "").split()
    currency = next((w.upper() for w in words if w.isalpha()), None)
    number = [w for w in words if not w.isalpha()]
    whole, _, cents = (number[0] if len(number) == 1 else "").partition(".")
    if len(words) - len(number) > 1 or not whole.isdigit() or not (cents == "" or cents.isdigit() and len(cents) <= 2) \
            or (currency is not None and len(currency) != 3):
        raise argparse.ArgumentTypeError("expected an amount such as 2.50 or \"GBP 2.50\", not %r" % text)
    return currency, int(whole) * 100 + int((cents + "00")[:2])


def host_port(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError("expected HOST:PORT, e.g. 127.0.0.1:64521, not %r" % text)
    return host, int(port)


def read_card(path):
    """The card of a card file, checked as the gateway would (Luhn, expiry) before anything is asked."""
    if not path:
        raise Failure("usage", "no card: give --card FILE (JSON with name, number, expiryMonth, expiryYear, cvc) "
                               "or set WPW_CARD")
    try:
        return config.check_card(config.read(path, "card"), "card", time.gmtime()[:2])
    except ConfigError as exc:
        raise Failure("usage", str(exc) if str(exc).startswith("card file") else "card file %s: %s" % (path, exc))


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
            raise Failure("usage", "cannot read the gateway CA file %s (--ca or WPW_GATEWAY_CA)" % args.ca)
    elif args.gateway.startswith("https:"):
        raise Failure("usage", "the gateway %s is https: give --ca FILE or set WPW_GATEWAY_CA to the CA certificate "
                               "that signs it (the simulator's is ca.pem in its --tls folder)" % args.gateway)
    try:
        return GatewayClient(args.gateway, ca=ca, timeout=args.timeout)
    except ValueError as exc:
        where = "--gateway %s" % args.gateway if "URL" in str(exc) else "--ca %s" % args.ca
        raise Failure("usage", "%s: %s" % (where, exc))


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


def probe_or_listen(args, out):
    """Listen only (saying so once) when the probe could not be sent: no route to its address."""
    if args.no_probe or not args.probe_address:
        return
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.connect(discovery.address(args.probe_address, args.probe_port))  # a route lookup; sends nothing
    except OSError as exc:
        args.no_probe = True
        print("wpw: cannot send the probe to %s:%d (%s); listening for broadcasts only"
              % (args.probe_address, args.probe_port, exc.strerror or exc), file=sys.stderr)
    finally:
        sock.close()


async def cmd_scan(args, out):
    probe = None if args.no_probe else args.probe_address
    out.progress("listening %.1f s for producers on UDP %d%s%s" % (
        args.seconds, args.broadcast_port, "" if args.no_probe else ", probing %s:%d" % (probe, args.probe_port),
        ", reading adverts from %s" % args.broker if args.broker else ""))
    ways, things = {}, fleet.Fleet()
    jobs = [scanner.scan(int(args.seconds * 1000), args.broadcast_port, probe, args.probe_port, args.expect,
                         ways=ways)]
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
            await fleet.listen(c, things, args.seconds, enough=min(1, args.seconds))
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
                things.forget_up()  # what is up is what the broker holds now: its adverts come again at once
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


def quote_lines(args, total):
    """What the quote says, and plainly when it is not what was asked (another tier, fewer units)."""
    quoted = "%s quotes %s at price %d for %s (order %s)" % (
        total["serverID"], units(total["unitsToSupply"]), total["priceID"],
        money(total["totalPrice"], total["currencyCode"]), total["paymentReferenceID"])
    if (total["unitsToSupply"], total["priceID"]) == (args.units, args.price):
        return quoted, None
    return quoted, ("note: you asked for %s at price %d; the producer sells %s at price %d instead (its price "
                    "tiers or what it has left decide): that is what will be paid for" % (
                        units(args.units), args.price, units(total["unitsToSupply"]), total["priceID"]))


async def cmd_quote(args, out):
    role, producer = consumer(args), producer_at(args)
    out.progress("asking for %s of service %d at price %d" % (units(args.units), args.service, args.price))
    total = (await role.select(producer, args.service, args.price, args.units)).total
    line, note = quote_lines(args, total)
    out.result({"serverID": total["serverID"], "serviceID": args.service, "priceID": total["priceID"],
                "units": total["unitsToSupply"], "totalPrice": total["totalPrice"], "currency": total["currencyCode"],
                "paymentReferenceID": total["paymentReferenceID"], "asked": {"priceID": args.price, "units": args.units},
                "note": note}, [line] + ([note.replace(": that is what will be paid for", "")] if note else []) +
               ["nothing was paid; `wpw buy` with the same options pays (with --max-total to cap it)"])


async def cmd_buy(args, out):
    card = read_card(args.card)
    wallet = open_wallet(args)
    role, producer = consumer(args, card, wallet), producer_at(args)
    await resume_first(role, out)
    out.progress("asking for %s of service %d at price %d" % (units(args.units), args.service, args.price))
    purchase = await role.select(producer, args.service, args.price, args.units)
    total = purchase.total
    _, note = quote_lines(args, total)
    if note:
        out.say(note)
    if args.max_total is not None:
        currency, limit = args.max_total
        if (currency or total["currencyCode"]) != total["currencyCode"] or total["totalPrice"] > limit:
            raise Failure("over", "the total is %s, over --max-total %s; nothing was paid" % (
                money(total["totalPrice"], total["currencyCode"]), money(limit, currency or total["currencyCode"])))
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
        "  units      %s (price %d)" % (units(data["units"]), data["priceID"]),
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
        raise Failure("refused", "token %s has %s left, not %d" % (entry.key[:8], units(entry.remaining), args.units))
    purchase = entry.purchase()
    producer = Producer(entry.host, entry.port, entry.prefix, server_id=entry.server_id)
    parts = [args.units // args.parts + (1 if i < args.units % args.parts else 0) for i in range(args.parts)]
    sessions = []
    for count in [u for u in parts if u]:
        out.progress("delivery of %s" % units(count))
        end = await role.deliver(producer, purchase, count)
        sessions.append({"supplied": end["unitsJustSupplied"], "remaining": entry.remaining})
    out.result({"token": entry.key, "sessions": sessions, "remaining": entry.remaining},
               ["session %d: %s supplied, %d left" % (i + 1, units(s["supplied"]), s["remaining"])
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
    """Become tools/thing (exec, so a Ctrl-C or SIGTERM reaches the Thing itself and stops it: exit 0)."""
    tool = os.path.join(TOOLS, "thing")
    if not os.path.exists(tool):
        raise Failure("usage", "tools/thing is not beside this wpw (run wpw from the project's checkout)")
    os.execv(sys.executable, [sys.executable, tool, "--config", args.config, "--runtime", args.runtime])


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
    p.add_argument("--version", action="version", version="wpw " + project_version(), help="print the version and exit")
    output, wallet, talk, pay = (argparse.ArgumentParser(add_help=False) for _ in range(4))  # options by use
    output.add_argument("--json", action="store_true", help="print one JSON document (for scripts)")
    output.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    wallet.add_argument("--wallet", help="wallet journal (default %s)" % os.path.join(home(), "wallet.journal"))
    talk.add_argument("--timeout", type=float, default=10, help="seconds to wait for any answer (default 10)")
    talk.add_argument("--trace", metavar="FILE.svg", help="write a sequence diagram of the messages")
    talk.add_argument("--ca", default=os.environ.get("WPW_GATEWAY_CA"),
                      help="CA certificate that signs the gateway (and a broker without --broker-ca)")
    pay.add_argument("--payment-timeout", type=float, default=PAYMENT_WAIT,
                     help="seconds to wait for the producer's answer to a payment (default %d: 3 x its "
                          "gateway timeout of 10 s + 5; give 3 x T + 5 for a producer whose "
                          "gateway.timeout is T). Past it the payment is pending, not failed" % PAYMENT_WAIT)
    pay.add_argument("--gateway", default=os.environ.get("WPW_GATEWAY"), help="payment gateway URL")
    pay.add_argument("--card", default=os.environ.get("WPW_CARD"), help="card file (JSON)")
    pay.add_argument("--client-id", help="our clientID (default wpw-HOSTNAME)")
    common, local, heard = [output, wallet, talk, pay], [output, wallet], [output, talk]
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("scan", parents=heard, help="find producers (fast probe, then broadcasts)")
    s.add_argument("--seconds", type=float, default=SCAN_SECONDS,
                   help="how long to listen (default %s: one %d s broadcast interval of the reference and a "
                        "margin, so a producer that only broadcasts is heard)" % (SCAN_SECONDS, BROADCAST_S))
    s.add_argument("--expect", type=int, default=0, metavar="N",
                   help="stop as soon as N producers are heard (e.g. the ones that answer the probe)")
    s.add_argument("--no-probe", action="store_true", help="only listen for the 5-second broadcasts")
    s.add_argument("--probe-address", default=discovery.BROADCAST_ADDRESS,
                   help="where the probe goes (default %s; '' sends none)" % discovery.BROADCAST_ADDRESS)
    s.add_argument("--broadcast-port", type=int, default=discovery.BROADCAST_PORT,
                   help="UDP port to hear broadcasts on (default %d)" % discovery.BROADCAST_PORT)
    s.add_argument("--probe-port", type=int, default=discovery.PROBE_PORT,
                   help="UDP port producers answer probes on (default %d)" % discovery.PROBE_PORT)
    broker_options(s, "also read the Things' retained adverts from this MQTT broker")
    s = sub.add_parser("fleet", parents=heard, help="every Thing on an MQTT broker: up or down, heap, orders, sold")
    broker_options(s, "the MQTT broker the Things publish to")
    s.add_argument("--watch", action="store_true", help="keep the table up to date in the terminal until Ctrl-C "
                                                        "(with --json: one JSON line per change)")
    s.add_argument("--seconds", type=float, default=35,
                   help="without --watch: the longest to wait for a status from every Thing with an advert "
                        "(default 35: the producers' status interval of 30 s and a margin); it prints as "
                        "soon as each has sent one")
    for name, text in (("services", "list a producer's services and prices"),
                       ("quote", "the total for units of a service, without paying (the producer opens an order "
                                 "that expires unpaid)"),
                       ("buy", "buy units of a service and keep the token")):
        s = sub.add_parser(name, parents=common, help=text)
        s.add_argument("producer", type=host_port, metavar="HOST:PORT", help="the producer (`wpw scan` lists them)")
        s.add_argument("--prefix", default="", help="the producer's URL prefix")
        if name in ("quote", "buy"):
            s.add_argument("--service", type=int, required=True, help="the service's ID (`wpw services` lists them)")
            s.add_argument("--price", type=int, required=True,
                           help="the price's ID; the producer may quote another of its tiers for that many units")
            s.add_argument("--units", type=int, required=True, help="how many units to buy")
        if name == "buy":
            s.add_argument("--max-total", type=max_total, metavar="AMOUNT",
                           help="pay only if the total is at most AMOUNT (e.g. 2.50 or \"GBP 2.50\"); over it, "
                                "nothing is paid and wpw exits 7")
    s = sub.add_parser("redeem", parents=common, help="take delivery of units of a token (in one go or in parts)")
    s.add_argument("token", help="the token key or its first characters (see `wpw tokens`)")
    s.add_argument("--units", type=int, required=True, help="how many of the token's units to take")
    s.add_argument("--parts", type=int, default=1, help="delivery sessions to split the units into")
    sub.add_parser("tokens", parents=local, help="tokens held, their units left and expiry")
    sub.add_parser("pending", parents=local,
                   help="purchases not settled: payments whose outcome is not known, deliveries left open")
    sub.add_parser("resume", parents=common, help="settle the pending purchases now (same reference, same token)")
    for role in ("producer", "consumer"):
        s = sub.add_parser(role, help="start a %s Thing on this host from a config" % role)
        s.add_argument("--config", required=True,
                       help="the Thing's config.json (its secrets.json beside it); see firmware/config.example.json")
        s.add_argument("--runtime", choices=["micropython", "cpython"], default="micropython",
                       help="run its lib under the MicroPython unix port (default) or CPython")
    return p


ABSENT = {"json": False, "quiet": False, "wallet": None, "timeout": 10, "trace": None, "ca": None,
          "payment_timeout": PAYMENT_WAIT, "gateway": None, "card": None, "client_id": None}
COMMANDS = {"scan": cmd_scan, "fleet": cmd_fleet, "services": cmd_services, "quote": cmd_quote, "buy": cmd_buy,
            "redeem": cmd_redeem, "tokens": cmd_tokens,
            "pending": cmd_pending, "resume": cmd_resume}


def run(args):
    if args.command in ("producer", "consumer"):
        return cmd_thing(args)
    for name in ("units", "parts", "expect"):
        if getattr(args, name, 1) < (0 if name == "expect" else 1):
            raise Failure("usage", "--%s must be at least 1" % name)
    if args.timeout <= 0 or args.payment_timeout <= 0:
        raise Failure("usage", "--timeout and --payment-timeout must be more than 0 seconds")
    out = args.out = Out(args.json, args.quiet)
    if args.command == "scan":
        probe_or_listen(args, out)
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
    for name, value in ABSENT.items():  # what a command's options leave out
        if not hasattr(args, name):
            setattr(args, name, value)
    args.wallet_file = None  # the wallet, once a command opened it
    args.paying = None  # the reference of a payment under way
    args.out = None
    try:
        return run(args)
    except KeyboardInterrupt:
        if args.command == "fleet":
            return EXIT["ok"]  # how --watch ends
        entry = args.wallet_file.wallet.entries.get(args.paying) if args.wallet_file and args.paying else None
        if entry is not None and entry.state == PENDING:
            return fail(args, "interrupted", "interrupted; payment %s is pending: %s" % (args.paying, PENDING_NEXT))
        return fail(args, "interrupted", "interrupted%s" % (resumable(args) or "; nothing was under way"))
    except (Failure, PaymentPending, ProducerError, GatewayError, NotOffered, NetError, OSError, PeerError, ConfigError,
            ValueError) as exc:
        return fail(args, *explain(exc, args))


DIFFERENT_GATEWAYS = ("the producer pays through another gateway: give its gateway with --gateway (or "
                      "WPW_GATEWAY); nothing was charged")


def explain(exc, args):
    """(kind, message) of an expected failure: what went wrong, with which peer, the likely cause, what to do."""
    if isinstance(exc, Failure):
        return exc.kind, str(exc)
    if isinstance(exc, PaymentPending):
        return "pending", "payment %s is pending: %s; %s" % (exc.ref, exc.reason, PENDING_NEXT)
    if isinstance(exc, ProducerError):
        if exc.status == 402 and "TKN_NOT_FOUND" in exc.message:  # our card token is not on its gateway
            return "usage", "the producer's gateway does not know the card token made at %s: %s" % (
                args.gateway, DIFFERENT_GATEWAYS)
        if exc.status == 402:
            reason = exc.message.split("payment declined: ", 1)[-1]
            return "declined", "payment declined: %s; nothing was charged" % reason
        return "refused", "the producer refused: %d %s" % (exc.status, exc.message)
    if isinstance(exc, GatewayError):
        if exc.custom_code == "UNAUTHORIZED" and "clientKey" in exc.message:  # the producer's merchant is not there
            return "usage", "the gateway %s does not know the producer's merchant (%s): %s" % (
                args.gateway, exc.message, DIFFERENT_GATEWAYS)
        return "refused", "the gateway %s refused: %s %s" % (args.gateway, exc.custom_code, exc.message)
    if isinstance(exc, NotOffered):
        return "refused", "%s; `wpw services HOST:PORT` lists what it sells" % exc
    if isinstance(exc, NetError):
        return net_failure(exc, args)
    if isinstance(exc, OSError):
        return "unreachable", "%s%s" % (exc, resumable(args))
    if isinstance(exc, PeerError):
        return "protocol", "a peer broke the protocol: %s%s" % (exc, resumable(args))
    return "usage", str(exc)


def net_failure(exc, args):
    """A NetError said with its peer (the gateway or the producer) and the likely cause."""
    gateway = None
    if args.gateway:
        try:
            gateway = "%s:%d" % parse_url(args.gateway)[1:3]
        except ValueError:
            pass
    peer = "gateway" if gateway and gateway in exc.message else "producer"
    where = "--gateway (or WPW_GATEWAY)" if peer == "gateway" else "HOST:PORT (`wpw scan` lists producers)"
    if isinstance(exc, TlsFailed):
        return "usage", ("%s: a settings problem, not the network: --ca (or WPW_GATEWAY_CA) must be the CA "
                         "certificate that signed the %s's, and the host in %s one of its names"
                         % (exc, peer, where))
    if isinstance(exc, ConnectFailed):
        cause = "check %s and that the %s is running" % (where, peer)
    elif isinstance(exc, HttpTimeout):
        cause = ("the %s is busy or slow (a producer waiting on its gateway answers late): try again, or give "
                 "a longer --timeout" % peer)
    elif isinstance(exc, BadResponse):
        return "protocol", "%s: the %s's answer is not one we accept; is %s right?%s" % (
            exc, peer, where, resumable(args))
    else:
        cause = "the %s dropped the connection (a restart or overload): try again" % peer
    return "unreachable", "%s; %s%s" % (exc, cause, resumable(args))


def resumable(args):
    """What to do next when the wallet holds something unresolved after a failure."""
    w = args.wallet_file
    if w is None or not w.wallet.unresolved():
        return ""
    entry = w.wallet.entries.get(args.paying) if args.paying else None
    if entry is not None and entry.state == PENDING:
        return "; payment %s is pending: %s" % (entry.ref, PENDING_NEXT)
    return "; the wallet keeps what was under way: `wpw pending` lists it, `wpw resume` settles it"


def fail(args, kind, message):
    """Say what went wrong on stderr (and, with --json, as {"error": ...} on stdout); the exit status."""
    print("wpw: %s" % message, file=sys.stderr)
    if args.json and not (args.out and args.out.printed):
        print(json.dumps({"error": {"kind": kind, "exitCode": EXIT[kind], "message": message}}, indent=2,
                         sort_keys=True))
    return EXIT[kind]


if __name__ == "__main__":
    sys.exit(main())
