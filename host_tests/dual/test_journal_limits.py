"""Every record the producer journals fits a journal line (MAX_LINE bytes) by construction.

Why it holds: the journalled strings are bounded in bytes of UTF-8 at the
API or the gateway parser (wire.get_str): clientID 64 and clientToken 128
with no control characters, the gateway's orderCode 64; refs (36) and token
keys (32) are the producer's own; numbers are bounded by wire's limits and
times stay below 10**10 (the year 2286). JSON then writes at most 3 bytes
per byte of UTF-8 of a printable string (CPython's \\uXXXX for 2 bytes, a
surrogate pair's 12 for 4, \\" for 1; MicroPython writes non-ASCII raw) and
6 per control character (\\u0001, both runtimes). The strings below are the
extremes of each case, measured under the runtime running the test.
"""
import json
import os
import sys

from expect import refused
from fixtures import producer, snapshot

from wpwithin import wire
from wpwithin.journal import MAX_LINE, FileJournal
from wpwithin.ledger import Ledger
from wpwithin.producer_role import ProducerRole

DIR = "/tmp/wpw-journal-limits-%s" % sys.implementation.name
EXPIRY = 10 ** 10 - 1  # the last 10-digit second
AT = EXPIRY - 366 * 86400  # config.producer.tokenLifetime is at most 366 days
BIG = 10 ** 9  # wire.MAX_UNITS, MAX_AMOUNT and MAX_NUMBER_ID
REF = "0" * 36  # producer.reference_id()
KEY = "f" * 32  # delivery_token.new_key()

# The extremes of what wire.get_str lets through, per byte of UTF-8 (64 and 128 bytes).
CLIENT_IDS = ['"' * 64, "\\" * 64, "\u00e9" * 32, "\u20ac" * 21 + "a", "\U0001F600" * 16, "a" * 64]
TOKENS = ['"' * 128, "\u00e9" * 64, "\U0001F600" * 32]
ORDER_CODES = ["\x01" * 64, '"' * 64, "\u00e9" * 32]  # the gateway's: control characters too


def fresh(name):
    try:
        os.mkdir(DIR)
    except OSError:
        pass
    path = DIR + "/" + name
    for p in (path, path + ".tmp"):
        try:
            os.remove(p)
        except OSError:
            pass
    return path


def line_bytes(record):
    return 10 + len(json.dumps(record).encode())  # "<crc32 hex> " and the newline


def accepted(name, value, max_len=64, printable=True):
    return wire.get_str(wire.fields({name: value}), name, max_len, printable=printable)


def largest_records():
    """{kind: the longest line of that kind} over the extreme inputs, each built by the ledger."""
    longest = {}
    for client in CLIENT_IDS:
        for token in TOKENS:
            for code in ORDER_CODES:
                ledger = Ledger()
                records = ledger.quote(REF, accepted("clientID", client), BIG, BIG, BIG, BIG, "GBP", AT)
                ledger.orders[REF].attempt = BIG - 1  # the attempt number is the count of attempts made
                records.append(ledger.start_payment(REF, AT, accepted("clientToken", token, 128)))
                records.append(ledger.charged(REF, accepted("orderCode", code, printable=False), KEY, AT,
                                              EXPIRY, False))
                order = ledger.paid_order(KEY, client, BIG)
                records.append(ledger.begin_delivery(order, BIG, AT))
                records.append(ledger.refund_asked(REF, BIG))
                records.append(ledger.refunded(REF, BIG))
                records.append(ledger.end_delivery(order, BIG)[0])
                records.extend(ledger.records())  # what compaction writes: "d" and "s"
                records.append(["x", REF])
                for record in records:
                    kind = record[0]
                    if line_bytes(record) > line_bytes(longest.get(kind, [kind])):
                        longest[kind] = record
    return longest


def test_the_largest_record_of_every_kind_fits_a_line_and_reloads():
    longest = largest_records()
    assert sorted(longest) == sorted("qpcbRred" + "sx"), sorted(longest)
    sizes = dict((kind, line_bytes(record)) for kind, record in longest.items())
    assert max(sizes.values()) <= MAX_LINE, sizes
    path = fresh("largest")
    journal = FileJournal(path)
    journal.load()
    for kind in sorted(longest):
        journal.append(longest[kind])
    journal.close()
    assert FileJournal(path).load() == [longest[kind] for kind in sorted(longest)]


def test_a_byte_over_the_limit_is_refused_naming_the_field():
    for client in CLIENT_IDS:
        message = refused(422, accepted, "clientID", client + "a")
        assert message == "field clientID is longer than 64 bytes of UTF-8", message
    assert "clientToken" in refused(422, accepted, "clientToken", TOKENS[0] + "a", 128)
    for control in ("\x00", "\n", "\x1f", "\x7f"):
        message = refused(422, accepted, "clientID", "adv" + control)
        assert message == "field clientID must not hold control characters", message


def test_a_record_over_the_line_limit_is_refused_before_anything_is_written():
    path = fresh("over")
    journal = FileJournal(path)
    journal.load()
    journal.append(["x", "r1"])
    size = journal.size
    message = str(refused_value(journal.append, ["f", "r1", "\"" * 300]))
    assert "over the %d" % MAX_LINE in message, message
    assert journal.size == size and os.stat(path)[6] == size
    journal.append(["x", "r2"])
    journal.close()
    assert FileJournal(path).load() == [["x", "r1"], ["x", "r2"]]


def refused_value(fn, *args):
    try:
        fn(*args)
    except ValueError as exc:
        return exc
    raise AssertionError("no ValueError")


def request_total(role, client_id):
    body = json.dumps({"clientID": client_id, "selectedNumberOfUnits": 2, "selectedPriceID": 1}).encode()
    run = role.handle("POST", "/service/1/requestTotal", {}, body)
    try:
        run.send(None)
    except StopIteration as done:  # no awaits on this route: the coroutine finishes at once
        return done.value
    raise AssertionError("requestTotal awaited something")


def test_an_emoji_client_id_too_long_for_the_journal_is_422_and_a_long_one_survives_compaction():
    path = fresh("emoji")
    journal = FileJournal(path)
    journal.load()
    core = producer()
    role = ProducerRole(core, None, lambda: 1795737600, lambda n=16: os.urandom(n), journal)
    for emoji in (34, 64):  # a 521-byte "d" record after compaction; a 500 before
        status, body = request_total(role, "\U0001F600" * emoji)
        assert status == 422, (status, body)
        assert json.loads(body)["message"] == "field clientID is longer than 64 bytes of UTF-8"
    client = "\U0001F600" * 16  # the most emoji that fit: 192 bytes of JSON under CPython, 64 under MicroPython
    status, body = request_total(role, client)
    assert status == 200, body
    ref = json.loads(body)["paymentReferenceID"]
    ledger = core.ledger
    journal.append(ledger.start_payment(ref, 1795737600, "TEST_SU_" + "0" * 36))
    journal.append(ledger.charged(ref, "o1", KEY, 1795737600, 1795737600 + 86400, False))
    order = ledger.paid_order(KEY, client, 1)
    journal.append(ledger.begin_delivery(order, 2, 1795737600))
    journal.append(ledger.end_delivery(order, 2)[0])
    assert ledger.used_up(KEY)[1] == client  # used up: compaction writes it as a "d" record
    journal.compact(ledger.records())
    journal.close()
    restarted = Ledger()
    FileJournal(path).load(restarted.apply)
    assert snapshot(restarted) == snapshot(ledger)
