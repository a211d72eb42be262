"""Runs one consumer (a shopper) on a host: find a producer, buy units, take delivery.

    consumer_main.py [--config FILE] [--action buy|scan] [OPTION VALUE ...]

The same file runs under MicroPython and CPython (it uses the lib's
consumer role and nothing the unix port lacks), so tests can put either
runtime on the buying side. Settings come from a JSON object (--config
FILE) whose keys are the options' names in camelCase ("producer",
"serviceId"...); options given on the command line override it:

    --action buy|scan|resume
                           buy (the default), only list the producers heard, or only
                           settle what the wallet holds unresolved
    --producer HOST:PORT   buy from this producer; without it, discover one
    --prefix PATH          that producer's URL prefix (default "")
    --server-id ID         discovering: wait for this producer (default: the first heard)
    --scan-ms N            discovering: give up after N ms (default 3000); a scan listens that long
    --probe-address ADDR   discovering: where the fast probe goes (default 255.255.255.255;
                           127.255.255.255 on loopback; "" listens to broadcasts only)
    --broadcast-port N     discovering: UDP port of the broadcasts (default 8980)
    --probe-port N         discovering: UDP port of the probes (default 8981)
    --service N --price N --units N      what to buy (required)
    --parts N              take the units in N delivery sessions (default 1)
    --purchases N          buy that many times in a row (default 1)
    --gateway URL          the payment gateway (required)
    --ca FILE              CA certificate (PEM or DER) the gateway is verified against
    --card FILE            the card: JSON {name, number, expiryMonth, expiryYear, cvc};
                           in the config file "card" may also be that object
    --client-id ID         our clientID (default consumer-<6 random hex digits>)
    --timeout S            seconds to wait for any answer (default 10)
    --payment-timeout S    seconds to wait for POST /payment (default 35: 3 x a producer's
                           gateway timeout of 10 s + 5, as it may call its gateway three
                           times before it answers); past it the payment is pending
    --wallet FILE          keep the wallet in this journal: every payment and delivery is
                           journalled before it is sent, and what a reset or kill left
                           unresolved is settled first (same reference, same client token)

Output: one JSON object per line on stdout, one per step ("discover",
"select", "pay", "deliver"), then {"step": "summary", "ok": ..., "exit": N}.
Exit codes, as the wpw command's: 0 ok, 1 refused by the producer or the
gateway, 2 bad arguments or settings, 3 producer or gateway unreachable,
4 payment declined, 5 a peer broke the protocol, 6 a payment's outcome is
not known (pending: the next run with the same --wallet settles it),
130 interrupted. With --wallet, a "resume" record per settled purchase
comes first; a "warning" record says a producer reports more units left
than we count. The card number and CVC
are never printed (the card shows as **** **** **** 1234); the delivery
token is, as a receipt shows it: it is what the buyer paid for.

Shape, for the wpw command to grow on: settings() turns argv into a
checked dict, Shopper runs the steps and reports each through emit(),
outcome() maps an exception to an exit code; main() only wires them.
"""
import asyncio
import json
import sys

# The lib beside this script, after any the caller put on the path (MICROPYPATH, PYTHONPATH).
sys.path.append((__file__.rsplit("/", 1)[0] if "/" in __file__ else ".") + "/../lib")

from wpwithin import discovery  # noqa: E402
from wpwithin.card import Card, mask_card  # noqa: E402
from wpwithin.consumer_role import ConsumerRole, PaymentPending, Producer, ProducerError  # noqa: E402
from wpwithin.consumer import NotOffered  # noqa: E402
from wpwithin.errors import PeerError  # noqa: E402
from wpwithin.gateway_client import GatewayClient  # noqa: E402
from wpwithin.gateway_wire import GatewayError  # noqa: E402
from wpwithin.net_errors import NetError  # noqa: E402

try:
    from time import ticks_diff, ticks_ms
except ImportError:  # CPython
    from time import monotonic

    def ticks_ms():
        return int(monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

EXIT = {"ok": 0, "refused": 1, "usage": 2, "unreachable": 3, "declined": 4, "protocol": 5, "pending": 6,
        "interrupted": 130}

# option -> (settings key, kind); kinds: "text", "int" (>= 1), "port" (1-65535), "path"
OPTIONS = {
    "--config": ("config", "path"),
    "--action": ("action", "text"),
    "--producer": ("producer", "text"),
    "--prefix": ("urlPrefix", "text"),
    "--server-id": ("serverId", "text"),
    "--scan-ms": ("scanMs", "int"),
    "--probe-address": ("probeAddress", "text"),
    "--broadcast-port": ("broadcastPort", "port"),
    "--probe-port": ("probePort", "port"),
    "--service": ("serviceId", "int"),
    "--price": ("priceId", "int"),
    "--units": ("units", "int"),
    "--parts": ("parts", "int"),
    "--purchases": ("purchases", "int"),
    "--gateway": ("gateway", "text"),
    "--ca": ("ca", "path"),
    "--card": ("card", "path"),
    "--client-id": ("clientId", "text"),
    "--timeout": ("timeout", "int"),
    "--payment-timeout": ("paymentTimeout", "int"),
    "--wallet": ("wallet", "path"),
}
DEFAULTS = {
    "action": "buy", "producer": None, "urlPrefix": "", "serverId": None, "scanMs": 3000,
    "probeAddress": discovery.BROADCAST_ADDRESS, "broadcastPort": discovery.BROADCAST_PORT,
    "probePort": discovery.PROBE_PORT, "serviceId": None, "priceId": None, "units": None, "parts": 1,
    "purchases": 1, "gateway": None, "ca": None, "card": None, "clientId": None, "timeout": 10,
    "paymentTimeout": 35, "wallet": None,
}
ACTIONS = ("buy", "scan", "resume")
REQUIRED = {"buy": ("serviceId", "priceId", "units", "gateway", "card"), "scan": (), "resume": ("wallet",)}


class UsageError(ValueError):
    """Bad arguments or settings; the message names the option or key."""


# --- settings -----------------------------------------------------------------------

def _relative(path, base_dir):
    if not path or path.startswith("/") or not base_dir:
        return path
    return base_dir + "/" + path


def _read_json(path, what):
    try:
        with open(path) as f:
            return json.loads(f.read())
    except OSError:
        raise UsageError("%s file %s cannot be read" % (what, path))
    except ValueError:
        raise UsageError("%s file %s is not valid JSON" % (what, path))


def _value(key, kind, value):
    if kind in ("int", "port"):
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        high = 65535 if kind == "port" else 1000000000
        if type(value) is not int or not 1 <= value <= high:
            raise UsageError("%s must be an integer from 1 to %d" % (key, high))
    elif value is not None and not isinstance(value, str) and not (key == "card" and isinstance(value, dict)):
        raise UsageError("%s must be a string" % key)
    return value


def settings(argv):
    """The checked settings dict from command-line arguments (argv without the program name)."""
    given = {}
    i = 0
    while i < len(argv):
        option = argv[i]
        if option not in OPTIONS:
            raise UsageError("unknown option %s (options: %s)" % (option, " ".join(sorted(OPTIONS))))
        if i + 1 >= len(argv):
            raise UsageError("%s needs a value" % option)
        given[OPTIONS[option][0]] = argv[i + 1]
        i += 2
    out = dict(DEFAULTS)
    config = given.pop("config", None)
    if config is not None:
        obj = _read_json(config, "config")
        if not isinstance(obj, dict):
            raise UsageError("config file %s must hold a JSON object" % config)
        base = config.rsplit("/", 1)[0] if "/" in config else ""
        for key in obj:
            if key not in DEFAULTS:
                raise UsageError("config key %s is not known (known: %s)" % (key, ", ".join(sorted(DEFAULTS))))
            value = obj[key]
            if key in ("ca", "card") and isinstance(value, str):
                value = _relative(value, base)
            out[key] = value
    out.update(given)
    kinds = {}
    for key, kind in OPTIONS.values():
        kinds[key] = kind
    for key in DEFAULTS:
        if out[key] is not None:
            out[key] = _value(key, kinds[key], out[key])
    if out["action"] not in ACTIONS:
        raise UsageError("action must be one of: %s" % ", ".join(ACTIONS))
    for key in REQUIRED[out["action"]]:
        if out[key] is None:
            raise UsageError("%s is required (option %s)" % (key, _option(key)))
    if out["producer"] is not None:
        out["producer"] = host_port(out["producer"])
    if out["action"] == "buy" and out["parts"] > out["units"]:
        raise UsageError("parts (%d) cannot be more than units (%d)" % (out["parts"], out["units"]))
    return out


def _option(key):
    for option in OPTIONS:
        if OPTIONS[option][0] == key:
            return option
    return key


def host_port(text):
    """(host, port) from HOST:PORT."""
    colon = text.rfind(":")
    port = text[colon + 1:]
    if colon <= 0 or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError("producer must be HOST:PORT, e.g. 127.0.0.1:64521, not %s" % text)
    return text[:colon], int(port)


def card_from(value):
    """A Card from a card file's path or from the object itself."""
    obj = _read_json(value, "card") if isinstance(value, str) else value
    try:
        card = Card(obj["name"], str(obj["number"]), int(obj["expiryMonth"]), int(obj["expiryYear"]),
                    str(obj["cvc"]))
    except (KeyError, TypeError, ValueError):
        raise UsageError("card needs name, number, expiryMonth, expiryYear and cvc")
    if not isinstance(card.name, str) or not card.name:
        raise UsageError("card name must be a non-empty string")
    return card


def consumer_role(s, log=None):
    """(ConsumerRole, masked card number) for these settings: card read, gateway client made, wallet loaded.

    A scan needs neither card nor gateway, nor a resume: their roles have none.
    """
    wallet = journal = None
    if s["wallet"] and s["action"] != "scan":
        from wpwithin.journal import FileJournal
        from wpwithin.wallet import load

        journal = FileJournal(s["wallet"])
        wallet = load(journal, keep_used=100000)  # on a host: every purchase, for the tests to reconcile
    if s["action"] != "buy":
        return ConsumerRole(s["clientId"] or "scanner", None, None, timeout=s["timeout"], wallet=wallet,
                            journal=journal, payment_timeout=s["paymentTimeout"], log=log), "****"
    ca = None
    if s["ca"]:
        try:
            with open(s["ca"], "rb") as f:
                ca = f.read()
        except OSError:
            raise UsageError("ca file %s cannot be read" % s["ca"])
    try:
        gateway = GatewayClient(s["gateway"], ca=ca, timeout=s["timeout"])
    except ValueError as exc:
        raise UsageError("gateway: %s" % exc)
    client_id = s["clientId"]
    if not client_id:
        from binascii import hexlify
        from os import urandom

        client_id = "consumer-" + hexlify(urandom(3)).decode()
    card = card_from(s["card"])
    return ConsumerRole(client_id, card, gateway, timeout=s["timeout"], wallet=wallet, journal=journal,
                        payment_timeout=s["paymentTimeout"], log=log), mask_card(card.number)


# --- the steps ------------------------------------------------------------------------

def split(units, parts):
    """Units per delivery session: as even as can be, larger ones first."""
    return [units // parts + (1 if i < units % parts else 0) for i in range(parts)]


class Shopper:
    """Runs purchases step by step; each step's result goes to emit(dict) as it happens."""

    def __init__(self, role, emit, card_shown="****"):
        self.role = role
        self.emit = emit
        self.card_shown = card_shown  # the masked number, for receipts
        self.started = ticks_ms()
        self.purchases = 0
        self.paid = 0
        self.units = 0
        self.server_id = None
        self.heard = None  # producers heard, for a scan
        self.resumed = None  # outcomes of the wallet's resume: {outcome: count}
        self.only_resume = False

    def _ms(self):
        return ticks_diff(ticks_ms(), self.started)

    async def _discover(self, s, every):
        """(producers heard, the discover record): all within scanMs, or until the one wanted is heard."""
        began = ticks_ms()
        wanted = None if every else s["serverId"]
        enough = 0 if every or wanted else 1
        found = await self.role.discover(s["scanMs"], s["probeAddress"] or None, enough, s["broadcastPort"],
                                         s["probePort"], wanted)
        heard = [{"serverID": p.server_id, "host": p.host, "port": p.port, "urlPrefix": p.url_prefix,
                  "description": p.description} for p in found]
        return found, {"step": "discover", "heard": heard, "ms": ticks_diff(ticks_ms(), began)}

    async def find(self, s):
        """The producer to buy from: the one given, or one heard on the network."""
        if s["producer"] is not None:
            host, port = s["producer"]
            return Producer(host, port, s["urlPrefix"])
        found, record = await self._discover(s, False)
        chosen = None
        for producer in found:
            if s["serverId"] is None or producer.server_id == s["serverId"]:
                chosen = producer
                break
        record["chosen"] = chosen.server_id if chosen else None
        self.emit(record)
        if chosen is None:
            raise NetError("no producer%s heard within %d ms on UDP %d%s" % (
                " " + s["serverId"] if s["serverId"] else "", s["scanMs"], s["broadcastPort"],
                ", probe to %s:%d" % (s["probeAddress"], s["probePort"]) if s["probeAddress"] else ""))
        return chosen

    async def scan(self, s):
        """Every producer heard within scanMs (the probe's answers first, then broadcasts)."""
        found, record = await self._discover(s, True)
        self.emit(record)
        self.heard = len(found)

    async def purchase(self, producer, service_id, price_id, units, parts):
        """Select, pay, and take the units in `parts` delivery sessions; returns the Purchase."""
        role = self.role
        purchase = await role.select(producer, service_id, price_id, units)
        total = purchase.total
        self.server_id = purchase.server_id
        self.emit({"step": "select", "serverID": purchase.server_id, "serviceID": service_id,
                   "priceID": total["priceID"], "units": total["unitsToSupply"], "totalPrice": total["totalPrice"],
                   "currency": total["currencyCode"], "paymentReferenceID": total["paymentReferenceID"]})
        receipt = await role.pay(producer, purchase)
        token = receipt["serviceDeliveryToken"]
        self.emit({"step": "pay", "totalPaid": receipt["totalPaid"], "currency": total["currencyCode"],
                   "card": self.card_shown, "token": token["key"], "expiry": token["expiry"],
                   "paymentReferenceID": total["paymentReferenceID"]})
        for session in split(purchase.remaining, min(parts, purchase.remaining)):
            end = await role.deliver(producer, purchase, session)
            self.emit({"step": "deliver", "units": session, "supplied": end["unitsJustSupplied"],
                       "remaining": purchase.remaining, "producerSays": end["unitsRemaining"]})
        self.purchases += 1
        self.paid += receipt["totalPaid"]
        self.units += total["unitsToSupply"]
        return purchase

    async def resume(self):
        """Settle what the wallet holds unresolved; one "resume" record per purchase."""
        self.resumed = {}
        for entry, outcome, message in await self.role.resume():
            self.resumed[outcome] = self.resumed.get(outcome, 0) + 1
            record = {"step": "resume", "paymentReferenceID": entry.ref, "outcome": outcome, "message": message}
            if outcome == "failed":
                record["maybeCharged"] = entry.maybe_charged
            self.emit(record)

    async def run(self, s):
        if s["action"] == "scan":
            await self.scan(s)
            return
        if self.role.wallet is not None:
            await self.resume()
        if s["action"] == "resume":
            self.only_resume = True
            return
        producer = await self.find(s)
        for _ in range(s["purchases"]):
            await self.purchase(producer, s["serviceId"], s["priceId"], s["units"], s["parts"])

    def summary(self):
        if self.only_resume:
            left = self.resumed.get("pending", 0)
            return {"step": "summary", "ok": not left, "exit": EXIT["pending"] if left else EXIT["ok"],
                    "resumed": self.resumed, "ms": self._ms()}
        if self.heard is not None:
            return {"step": "summary", "ok": True, "exit": EXIT["ok"], "heard": self.heard, "ms": self._ms()}
        return {"step": "summary", "ok": True, "exit": EXIT["ok"], "purchases": self.purchases,
                "totalPaid": self.paid, "units": self.units, "serverID": self.server_id,
                "clientID": self.role.client_id, "busyRetries": self.role.busy_answers, "ms": self._ms()}


def outcome(exc):
    """(kind, message, producer's HTTP status or None) for a failure; kind is a key of EXIT."""
    if isinstance(exc, UsageError):
        return "usage", str(exc), None
    if isinstance(exc, PaymentPending):
        return "pending", "payment %s is pending (%s); run again with the same --wallet to settle it" % (
            exc.ref, exc.reason), None
    if isinstance(exc, ProducerError):
        kind = "declined" if exc.status == 402 else "refused"
        return kind, "the producer answered %d: %s" % (exc.status, exc.message), exc.status
    if isinstance(exc, GatewayError):
        return "refused", "the gateway refused: %s %s" % (exc.custom_code, exc.message), None
    if isinstance(exc, NotOffered):
        return "refused", str(exc), None
    if isinstance(exc, NetError):
        return "unreachable", exc.message, None
    if isinstance(exc, OSError):
        return "unreachable", "network error: %s" % exc, None
    if isinstance(exc, PeerError):
        return "protocol", "a peer broke the protocol: %s" % exc, None
    return None


def emit(record):
    sys.stdout.write(json.dumps(record) + "\n")
    flush = getattr(sys.stdout, "flush", None)
    if flush is not None:
        flush()


def usage():
    """This file's docstring, read from the file: the unix port keeps no docstrings in memory."""
    with open(__file__) as f:
        return f.read().split('"' * 3, 2)[1]


def main(argv):
    if "-h" in argv[1:] or "--help" in argv[1:]:
        sys.stdout.write(usage())
        return EXIT["ok"]
    shopper = role = None
    try:
        s = settings(argv[1:])
        role, card_shown = consumer_role(s, lambda text: emit({"step": "warning", "message": text}))
        shopper = Shopper(role, emit, card_shown)
        asyncio.run(shopper.run(s))
    except KeyboardInterrupt:
        emit({"step": "summary", "ok": False, "exit": EXIT["interrupted"], "error": "interrupted"})
        return EXIT["interrupted"]
    except Exception as exc:
        found = outcome(exc)
        if found is None:
            raise  # our own bug: the traceback says where
        kind, message, status = found
        record = {"step": "summary", "ok": False, "exit": EXIT[kind], "error": kind, "message": message}
        if status is not None:
            record["status"] = status
        if shopper is not None:
            record["purchases"] = shopper.purchases
        emit(record)
        return EXIT[kind]
    finally:
        if role is not None and role.journal is not None:
            role.journal.close()
    summary = shopper.summary()
    emit(summary)
    return summary["exit"]


if __name__ == "__main__":
    sys.exit(main(sys.argv))
