"""The consumer's wallet: purchases and delivery tokens as a state machine over journal records.

Theory of operation
-------------------
The wallet is the buyer's journal. Each purchase is keyed by its
paymentReferenceID (ref) and moves through

    QUOTED --paying--> PENDING --paid--> PAID --begun/ending/ended...
                          |
                          +--failed--> FAILED   (a definite refusal)

Records, JSON-ready lists whose first item says what happened:

    ["o", ref, host, port, prefix, server]    the producer quoted (where to find it again)
    ["p", ref, client, service, price, units, total, currency, client_token, at]
                                              about to POST /payment (stored before it is sent)
    ["t", ref, key, issued, expiry, refund_on_expiry, signature]   the delivery token came
    ["f", ref, status, maybe_charged, note]   the producer refused the payment for good
    ["b", ref, units]                         about to begin a delivery of `units`
    ["E", ref, received]                      about to end it, saying `received` units came
    ["e", ref, just, reported]                ended: `just` units counted; the producer's
                                              unitsRemaining, or None when it did not say
    ["w", ref]                                warned about a larger unitsRemaining (compaction only)

A PENDING purchase is retried with the SAME reference and client token
(the producer answers a paid order only to the token that paid it) until
the producer answers a token or a definite refusal. A delivery begun and
not known to be ended is ended again with the units the "E" record says, or
0. The wallet's own count of units left is its truth: a producer reporting
more (the Go SDK reports "bought minus this session") is taken as the
smaller and warned about once per token; one reporting fewer is taken.

Never the card: the wallet holds the one-use client token only. Every
string it stores is printable ASCII without quotes or backslashes and
within a length limit, so each JSON character is one byte and every record
fits the journal's 512-byte line by construction (the budgets are below).
Never does I/O: load() takes a journal object; times are passed in.
"""
from wpwithin import wire
from wpwithin.compat import const
from wpwithin.consumer import Purchase

QUOTED = const(0)
PENDING = const(1)
PAID = const(2)
FAILED = const(3)
STATES = ("quoted", "pending", "paid", "failed")

# Length limits of what the wallet stores. The longest record is "o":
# 32 bytes of framing (CRC, brackets, quotes, separators, newline) + 1 + ref 64 +
# host 253 + port 5 + prefix 64 + server 64 = 483 <= 512. "p" is at most 352
# ("at" < 10**12), "t" 338, "f" 301.
MAX_ID = const(64)
MAX_HOST = const(253)
MAX_PREFIX = const(64)
MAX_TIME_TEXT = const(40)
MAX_SIGNATURE = const(88)
MAX_CLIENT_TOKEN = const(128)
MAX_NOTE = const(200)
MAX_AT = 10 ** 12
KEEP_QUOTES = const(4)


def _text(value, limit, name, allow_empty=False):
    """value if it is a string the wallet may store (one JSON byte per character), else ValueError."""
    if not isinstance(value, str) or len(value) > limit or (not value and not allow_empty):
        raise ValueError("wallet: %s must be a string of 1 to %d characters" % (name, limit))
    for byte in value.encode("utf-8", "surrogatepass"):  # bytes: a str's characters would become names for good
        if byte < 32 or byte > 126 or byte == 34 or byte == 92:
            raise ValueError("wallet: %s holds a character the wallet does not store" % name)
    return value


def _int(value, low, high, name):
    if type(value) is not int or not low <= value <= high:
        raise ValueError("wallet: %s must be an integer from %d to %d" % (name, low, high))
    return value


def note_text(text):
    """A message made storable: printable ASCII only, at most MAX_NOTE characters."""
    return wire.ascii_text(str(text), MAX_NOTE)


def _days_from_civil(y, m, d):
    # Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def unix_time(text):
    """Unix seconds of an RFC 3339 time ("2026-11-27T00:00:00Z", "...+01:00", fractions ignored); None if not one."""
    try:
        if len(text) < 20 or text[4] != "-" or text[7] != "-" or text[10] not in "Tt" or text[13] != ":" \
                or text[16] != ":":
            return None
        seconds = _days_from_civil(int(text[0:4]), int(text[5:7]), int(text[8:10])) * 86400 \
            + int(text[11:13]) * 3600 + int(text[14:16]) * 60 + int(text[17:19])
        zone = text[19:]
        if zone[:1] == ".":
            i = 1
            while i < len(zone) and "0" <= zone[i] <= "9":
                i += 1
            zone = zone[i:]
        if zone in ("Z", "z"):
            return seconds
        if len(zone) == 6 and zone[0] in "+-" and zone[3] == ":":
            offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
            return seconds - offset if zone[0] == "+" else seconds + offset
    except ValueError:
        pass
    return None


class Entry:
    """One purchase in the wallet. Defaults live on the class, as the ledger's orders do."""

    state = QUOTED
    client_id = ""
    service_id = 0
    price_id = 0
    units = 0
    total = 0
    currency = ""
    client_token = ""
    at = 0
    key = ""
    issued = ""
    expiry = ""
    refund_on_expiry = False
    signature = None
    received = 0  # units counted as received, over every delivery
    remaining = 0  # units left: our own count, or less when the producer says less
    in_flight = 0  # units of a delivery begun and not known to be ended
    ending = None  # units an end about to be sent says were received
    warned = False
    status = 0  # the producer's refusal, for FAILED
    maybe_charged = False
    note = ""

    def __init__(self, seq, ref, host, port, prefix, server_id):
        self.seq = seq
        self.ref = ref
        self.host = host
        self.port = port
        self.prefix = prefix
        self.server_id = server_id

    def token(self):
        """The serviceDeliveryToken, as the producer issued it."""
        return wire.delivery_token(self.key, self.issued, self.expiry, self.refund_on_expiry, self.signature)

    def expired(self, now):
        """True once the token's expiry has passed (False when its time cannot be read)."""
        t = unix_time(self.expiry)
        return t is not None and now >= t

    def purchase(self):
        """A consumer.Purchase in this entry's state, to check the producer's answers with."""
        p = Purchase(self.client_id, self.service_id, self.price_id, self.units)
        p.server_id = self.server_id
        p.total = wire.total_response(self.server_id, self.client_id, self.price_id, self.units, self.total,
                                      self.currency, self.ref, "")
        if self.state == PAID:
            p.token = self.token()
            p.remaining = self.remaining
            p.in_flight = self.in_flight
            p.warned = self.warned
        return p

    def summary(self):
        """A JSON-ready dict of this entry (no client token)."""
        out = {"paymentReferenceID": self.ref, "state": STATES[self.state], "serverID": self.server_id,
               "producer": "%s:%d%s" % (self.host, self.port, self.prefix), "serviceID": self.service_id,
               "priceID": self.price_id, "units": self.units, "total": self.total, "currency": self.currency}
        if self.state == PAID:
            out.update({"token": self.key, "expiry": self.expiry, "refundOnExpiry": self.refund_on_expiry,
                        "received": self.received, "remaining": self.remaining, "inFlight": self.in_flight})
        if self.state == FAILED:
            out.update({"status": self.status, "maybeCharged": self.maybe_charged, "note": self.note})
        return out


class Wallet:
    def __init__(self, keep_used=16):
        self.entries = {}  # ref -> Entry
        self.keep_used = keep_used  # used-up tokens compaction keeps, newest first
        self._seq = 0

    # --- records ------------------------------------------------------------------

    def apply(self, record):
        """Apply one record (live or replayed). Unknown or inconsistent records raise ValueError."""
        kind = record[0]
        if kind == "o":
            self._seq += 1
            self.entries[record[1]] = Entry(self._seq, record[1], record[2], record[3], record[4], record[5])
            return
        e = self.entries.get(record[1])
        if e is None:
            raise ValueError("wallet record for an unknown purchase")
        if kind == "p":
            (e.client_id, e.service_id, e.price_id, e.units, e.total, e.currency, e.client_token,
             e.at) = record[2:10]
            e.state = PENDING
        elif kind == "t":
            e.key, e.issued, e.expiry, e.refund_on_expiry, e.signature = record[2:7]
            e.state = PAID
            e.remaining = e.units - e.received
        elif kind == "f":
            e.status, e.maybe_charged, e.note = record[2:5]
            e.state = FAILED
        elif kind == "b":
            e.in_flight = record[2]
        elif kind == "E":
            e.ending = record[2]
        elif kind == "e":
            e.received += record[2]
            own = e.remaining - record[2]  # the wallet's count
            reported = record[3]
            if reported is not None and reported > own:
                e.warned = True
            e.remaining = own if reported is None or reported > own else reported
            e.in_flight = 0
            e.ending = None
        elif kind == "w":
            e.warned = True
        else:
            raise ValueError("unknown wallet record kind %r" % (kind,))

    def _do(self, record):
        self.apply(record)
        return record

    @classmethod
    def replay(cls, records, **settings):
        wallet = cls(**settings)
        for record in records:
            wallet.apply(record)
        return wallet

    def records(self):
        """Records that rebuild the live state (for compaction).

        Dropped: refusals that charged nothing, the used-up tokens beyond the
        newest keep_used, and quotes never paid beyond the newest KEEP_QUOTES
        (a purchase may be between its quote and its payment right now).
        """
        out = []
        used = []
        quotes = []
        for e in sorted(self.entries.values(), key=lambda e: e.seq):
            if e.state == FAILED and not e.maybe_charged:
                continue
            if e.state == QUOTED:
                quotes.append(e)
            elif e.state == PAID and e.remaining == 0 and not e.in_flight:
                used.append(e)
            else:
                out.extend(self._entry_records(e))
        for e in used[len(used) - self.keep_used:] if self.keep_used else ():
            out.extend(self._entry_records(e))
        for e in quotes[len(quotes) - KEEP_QUOTES:]:
            out.append(["o", e.ref, e.host, e.port, e.prefix, e.server_id])
        return out

    def compact(self):
        """records(), and what they leave out dropped from memory too (a board's heap stays flat)."""
        records = self.records()
        kept = set(r[1] for r in records)
        for ref in [ref for ref in self.entries if ref not in kept]:
            del self.entries[ref]
        return records

    def _entry_records(self, e):
        out = [["o", e.ref, e.host, e.port, e.prefix, e.server_id],
               ["p", e.ref, e.client_id, e.service_id, e.price_id, e.units, e.total, e.currency,
                e.client_token, e.at]]
        if e.state == FAILED:
            out.append(["f", e.ref, e.status, e.maybe_charged, e.note])
        if e.state == PAID:
            out.append(["t", e.ref, e.key, e.issued, e.expiry, e.refund_on_expiry, e.signature])
            if e.received or e.remaining != e.units:
                out.append(["e", e.ref, e.received, e.remaining])
            if e.warned:
                out.append(["w", e.ref])
            if e.in_flight:
                out.append(["b", e.ref, e.in_flight])
            if e.ending is not None:
                out.append(["E", e.ref, e.ending])
        return out

    # --- decisions: each builds its record, applies it and returns it for the journal ------

    def quoted(self, host, port, prefix, total):
        """The "o" record of a checked total price response from the producer at host:port+prefix."""
        ref = _text(total["paymentReferenceID"], MAX_ID, "paymentReferenceID")
        if ref in self.entries:
            raise ValueError("wallet: payment reference %s is already in the wallet" % ref)
        return self._do(["o", ref, _text(host, MAX_HOST, "host"), _int(port, 1, 65535, "port"),
                         _text(prefix, MAX_PREFIX, "urlPrefix", True), _text(total["serverID"], MAX_ID, "serverID")])

    def paying(self, total, service_id, client_token, now):
        """The "p" record to store before POST /payment with this one-use client token."""
        e = self.entries[total["paymentReferenceID"]]
        if e.state != QUOTED:
            raise ValueError("wallet: %s is %s, not a quote to pay" % (e.ref, STATES[e.state]))
        return self._do(["p", e.ref, _text(total["clientID"], MAX_ID, "clientID"),
                         _int(service_id, 0, wire.MAX_NUMBER_ID, "serviceID"),
                         _int(total["priceID"], 0, wire.MAX_NUMBER_ID, "priceID"),
                         _int(total["unitsToSupply"], 1, wire.MAX_UNITS, "unitsToSupply"),
                         _int(total["totalPrice"], 0, wire.MAX_AMOUNT, "totalPrice"),
                         _text(total["currencyCode"], 3, "currencyCode"),
                         _text(client_token, MAX_CLIENT_TOKEN, "clientToken"), _int(now, 0, MAX_AT, "time")])

    def paid(self, ref, token):
        """The "t" record of the delivery token the producer answered."""
        e = self._entry(ref, PENDING)
        signature = token["signature"]
        return self._do(["t", e.ref, _text(token["key"], MAX_ID, "token key"),
                         _text(token["issued"], MAX_TIME_TEXT, "token issued"),
                         _text(token["expiry"], MAX_TIME_TEXT, "token expiry"), token["refundOnExpiry"] is True,
                         None if signature is None else _text(signature, MAX_SIGNATURE, "token signature")])

    def failed(self, ref, status, maybe_charged, note):
        """The "f" record of a definite refusal (status 400-499)."""
        e = self._entry(ref, PENDING)
        return self._do(["f", e.ref, _int(status, 400, 499, "status"), maybe_charged is True, note_text(note)])

    def begun(self, ref, units):
        """The "b" record to store before POST delivery/begin."""
        e = self._entry(ref, PAID)
        if e.in_flight:
            raise ValueError("wallet: a delivery is already in progress on %s; end it first" % e.key)
        if not 1 <= units <= e.remaining:
            raise ValueError("wallet: can begin delivery of 1 to %d units, not %d" % (e.remaining, units))
        return self._do(["b", e.ref, units])

    def ending(self, ref, received):
        """The "E" record to store before POST delivery/end saying `received` units came."""
        e = self._entry(ref, PAID)
        if not e.in_flight:
            raise ValueError("wallet: no delivery in progress on %s" % e.key)
        return self._do(["E", e.ref, _int(received, 0, e.in_flight, "units received")])

    def ended(self, ref, just, reported):
        """The "e" record once the producer answered the end.

        `reported` is the producer's unitsRemaining, or None when it did not
        say (an end it had already settled).
        """
        e = self._entry(ref, PAID)
        _int(just, 0, e.in_flight if e.in_flight else e.remaining, "units supplied")
        if reported is not None:
            _int(reported, 0, wire.MAX_UNITS, "unitsRemaining")
        return self._do(["e", e.ref, just, reported])

    def _entry(self, ref, state):
        e = self.entries.get(ref)
        if e is None:
            raise ValueError("wallet: no purchase %s" % ref)
        if e.state != state:
            raise ValueError("wallet: %s is %s, not %s" % (ref, STATES[e.state], STATES[state]))
        return e

    # --- queries ----------------------------------------------------------------------

    def unresolved(self):
        """Entries to resume, oldest first: payments pending, deliveries begun and not known to be ended."""
        return [e for e in sorted(self.entries.values(), key=lambda e: e.seq)
                if e.state == PENDING or (e.state == PAID and e.in_flight)]

    def needing_attention(self):
        """Refused payments that the gateway may still hold a charge for."""
        return [e for e in sorted(self.entries.values(), key=lambda e: e.seq)
                if e.state == FAILED and e.maybe_charged]

    def tokens(self):
        """Paid entries, oldest first."""
        return [e for e in sorted(self.entries.values(), key=lambda e: e.seq) if e.state == PAID]

    def find(self, prefix):
        """The paid entry whose token key starts with `prefix` (6 characters at least); LookupError otherwise."""
        if len(prefix) < 6:
            raise LookupError("give at least 6 characters of the token key")
        found = [e for e in self.tokens() if e.key.startswith(prefix)]
        if len(found) != 1:
            raise LookupError("%s token in the wallet starts with %s" % ("no" if not found else "more than one",
                                                                        prefix))
        return found[0]


def load(journal, **settings):
    """The wallet a journal (wpwithin.journal.FileJournal) holds, replayed; the journal is left open."""
    wallet = Wallet(**settings)
    journal.load(wallet.apply)
    return wallet
