"""Property-based tests of the core (CPython, hypothesis): round trips, hostile input, ledger invariants."""
import datetime
import hashlib
import hmac
import json
import tempfile

import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import mpy
from fixtures import replay, snapshot

from wpwithin import consumer, delivery_token, wire
from wpwithin.errors import ProtocolError
from wpwithin.ledger import CHARGE, PAID, Ledger


def utf8_at_most(limit):
    """Cut a string to `limit` bytes of UTF-8, as wire.get_str counts them."""
    return lambda text: text.encode()[:limit].decode("utf-8", "ignore")


# Identifiers hold no control characters (clientID and clientToken may not: wire.get_str's printable).
ids = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1,
              max_size=64).map(utf8_at_most(64)).filter(bool)
texts = st.text(max_size=wire.MAX_TEXT_LEN).map(utf8_at_most(wire.MAX_TEXT_LEN))
units = st.integers(1, wire.MAX_UNITS)
amounts = st.integers(0, wire.MAX_AMOUNT)
numbers = st.integers(0, wire.MAX_NUMBER_ID)
currencies = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=3)
tokens = st.builds(wire.delivery_token, ids, st.just("2026-11-27T00:00:00Z"),
                   st.just("2026-12-04T00:00:00Z"), st.booleans(), st.one_of(st.none(), st.just("c2ln")))

MESSAGES = st.one_of(
    st.builds(lambda *a: (wire.parse_total_request, consumer.total_request(*a)), ids, units, numbers),
    st.builds(lambda *a: (consumer.parse_total_response, wire.total_response(*a)),
              ids, ids, numbers, units, amounts, currencies, ids, ids),
    st.builds(lambda *a: (wire.parse_payment_request, consumer.payment_request(*a)), ids, ids, ids),
    st.builds(lambda *a: (consumer.parse_payment_response, wire.payment_response(*a)), ids, ids, amounts, tokens),
    st.builds(lambda *a: (wire.parse_begin_request, consumer.begin_request(*a)), ids, tokens, units),
    st.builds(lambda *a: (consumer.parse_end_response, wire.end_response(*a)), ids, ids, tokens, units, units),
    st.builds(lambda s, d, p, e: (consumer.parse_price_list, wire.price_list(s, [wire.price_entry(*e)])),
              ids, texts, numbers, st.tuples(numbers, texts, amounts, currencies, numbers, texts)),
    st.builds(lambda s, e: (consumer.parse_service_list, wire.service_list(s, [wire.service_entry(*e)])),
              ids, st.tuples(numbers, texts, texts)),
)


def recase(obj, data):
    if isinstance(obj, dict):
        return dict((data.draw(st.sampled_from([k, k.upper(), k.lower(), k.swapcase()])), recase(v, data))
                    for k, v in obj.items())
    if isinstance(obj, list):
        return [recase(v, data) for v in obj]
    return obj


@given(MESSAGES, st.data())
def test_messages_round_trip_through_bytes_in_any_key_case(pair, data):
    parse, message = pair
    body = json.dumps(recase(message, data)).encode()
    assert parse(wire.decode_json(body)) == message


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=20)
PARSERS = [consumer.parse_broadcast, consumer.parse_service_list, consumer.parse_price_list, wire.parse_total_request,
           consumer.parse_total_response, wire.parse_payment_request, consumer.parse_payment_response,
           wire.parse_begin_request, consumer.parse_begin_response, wire.parse_end_request,
           consumer.parse_end_response, wire.parse_delivery_token]
FIELD_NAMES = ["clientID", "selectedNumberOfUnits", "selectedPriceID", "serviceDeliveryToken", "key",
               "expiry", "unitsToSupply", "paymentReferenceID", "clientToken", "serverID", "prices"]


@given(st.sampled_from(PARSERS), st.dictionaries(st.sampled_from(FIELD_NAMES), JSON, max_size=8) | JSON)
def test_hostile_bodies_get_a_protocol_error_and_nothing_else(parse, body):
    try:
        parse(body)
    except ProtocolError as exc:
        assert exc.status == 422 and exc.message


@given(st.binary(max_size=200))
def test_random_bytes_decode_or_get_422(body):
    try:
        wire.decode_json(body)
    except ProtocolError as exc:
        assert exc.status == 422


def test_deep_nesting_is_a_clean_422():
    for containers in (8, consumer.MAX_ANSWER_CONTAINERS, 10 ** 6):
        with pytest.raises(ProtocolError) as raised:
            wire.decode_json(b"[" * 100000 + b"]" * 100000, "body", containers)
        assert raised.value.status == 422


@given(st.integers(-62135596800, 253402300799))
def test_rfc3339_matches_cpython_datetime(seconds):
    instant = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    assert delivery_token.format_time(seconds) == instant.isoformat().replace("+00:00", "Z")


@given(st.binary(max_size=200), st.binary(max_size=300))
def test_our_hmac_matches_cpython_hmac(key, message):
    assert delivery_token.hmac_sha256(key, message) == hmac.new(key, message, hashlib.sha256).digest()


@settings(max_examples=1)
@given(st.lists(st.tuples(st.binary(max_size=150), st.binary(max_size=300)), min_size=40, max_size=40))
def test_micropython_hmac_matches_cpython_hmac(vectors):
    script = (
        "import sys, binascii\n"
        "from wpwithin.delivery_token import hmac_sha256\n"
        "for line in sys.stdin.read().split():\n"
        "    k, m = line.split(':')\n"
        "    print(binascii.hexlify(hmac_sha256(binascii.unhexlify(k), binascii.unhexlify(m))).decode())\n"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
        f.write("\n".join("%s:%s" % (k.hex(), m.hex()) for k, m in vectors))
        f.flush()
        proc = mpy.run(["-c", script.replace("sys.stdin.read()", "open(%r).read()" % f.name)])
    assert proc.returncode == 0, proc.stderr
    got = proc.stdout.split()
    assert got == [hmac.new(k, m, hashlib.sha256).hexdigest() for k, m in vectors]


NOW = 1795737600


class LedgerMachine(RuleBasedStateMachine):
    """Random, partly hostile request sequences against one ledger; the journal must replay to it."""

    def __init__(self):
        super().__init__()
        self.ledger = Ledger(max_orders=6, quote_ttl=50)
        self.journal = []
        self.now = NOW
        self.n = 0
        self.supplied = {}  # token key -> units counted as supplied, kept here apart from the ledger
        self.paid = {}  # token key -> units paid

    def _keep(self, record):
        self.journal.append(record)

    def _try(self, fn, *args):
        try:
            return fn(*args)
        except ProtocolError:
            return None

    @rule(client=st.sampled_from(["c1", "c2"]), units=st.integers(1, 9))
    def quote(self, client, units):
        self.n += 1
        records = self._try(self.ledger.quote, "r%d" % self.n, client, 1, 1, units, units * 3, "GBP", self.now)
        self.journal.extend(records or [])

    @rule(pick=st.integers(0, 99), client=st.sampled_from(["c1", "c2", "evil"]), outcome=st.sampled_from(
        ["charged", "failed", "unknown"]))
    def pay(self, pick, client, outcome):
        refs = sorted(self.ledger.orders) or ["missing"]
        ref = refs[pick % len(refs)]
        if self._try(self.ledger.payment_step, ref, client, self.now) != CHARGE:
            return
        self._keep(self.ledger.start_payment(ref, self.now))
        if outcome == "charged":
            self._keep(self.ledger.charged(ref, "o-" + ref, "k-" + ref, self.now, self.now + 40, pick % 2 == 0))
        elif outcome == "failed":
            self._keep(self.ledger.failed(ref, "REFUSED"))

    @rule(pick=st.integers(0, 99))
    def resolve(self, pick):
        for order in self.ledger.unresolved():
            if pick % 2:
                self._keep(self.ledger.charged(order.ref, "o", "k-" + order.ref, self.now, self.now + 40, False))
            else:
                self._keep(self.ledger.failed(order.ref, "gateway says no order"))

    @rule(pick=st.integers(0, 99), client=st.sampled_from(["c1", "c2"]), units=st.integers(1, 12),
          supplied=st.integers(0, 15))
    def deliver(self, pick, client, units, supplied):
        keys = sorted(self.ledger.by_key) + sorted(self.ledger.spent) or ["missing"]
        order = self._try(self.ledger.paid_order, keys[pick % len(keys)], client, 1)
        if order is None:
            return
        record = self._try(self.ledger.begin_delivery, order, units, self.now)
        if record:
            self._keep(record)
        if pick % 3:
            ended = self._try(self.ledger.end_delivery, order, supplied)
            if ended:
                self._keep(ended[0])
                self.supplied[order.key] = self.supplied.get(order.key, 0) + ended[1]
                self.paid[order.key] = order.units

    @rule(seconds=st.integers(1, 30))
    def tick(self, seconds):
        self.now += seconds
        for order, owed in self.ledger.due(self.now):
            if owed:
                self._keep(self.ledger.refunded(order.ref, owed))
            self._keep(self.ledger.drop(order.ref))

    @invariant()
    def never_more_than_paid(self):
        for order in self.ledger.orders.values():
            assert 0 <= order.delivered + order.in_flight <= order.units
            if order.state != PAID:
                assert order.delivered == 0 and order.in_flight == 0
        for key, units in self.supplied.items():
            assert units <= self.paid[key]
        for key in self.ledger.spent:
            ref, client, service, units, expiry = self.ledger.used_up(key)
            # Used up, or expired and kept to be answered 410.
            assert self.supplied.get(key, 0) == units or expiry <= self.now
            assert key not in self.ledger.by_key and ref not in self.ledger.orders

    @invariant()
    def journal_replays_to_the_same_state(self):
        settings_ = dict(max_orders=6, quote_ttl=50)
        assert snapshot(replay(self.journal, **settings_)) == snapshot(self.ledger)
        assert snapshot(replay(self.ledger.records(), **settings_)) == snapshot(self.ledger)


TestLedgerMachine = LedgerMachine.TestCase
TestLedgerMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
