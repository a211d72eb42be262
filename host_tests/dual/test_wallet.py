"""The consumer's wallet: records, replay, compaction, delivery counts and the journal's line limit."""
import os
import sys

from expect import raises

from wpwithin import wire
from wpwithin.journal import MAX_LINE, FileJournal
from wpwithin.wallet import FAILED, MAX_CLIENT_TOKEN, MAX_HOST, MAX_ID, MAX_NOTE, MAX_PREFIX, MAX_SIGNATURE, \
    MAX_TIME_TEXT, PAID, PENDING, Wallet, load, unix_time

DIR = "/tmp/wpw-wallet-test-%s" % sys.implementation.name
NOW = 1795737600  # 2026-11-27T00:00:00Z
REF = "0b9c2f5e-7d41-4a8e-9f3c-2d6b1a0e5c7f"


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


def total(ref=REF, units=5, server="charger-7f3a", client="car-1", price=1, amount=150):
    return wire.total_response(server, client, price, units, amount, "GBP", ref, "T_C_key")


def token(key="k" * 32, expiry="2026-12-04T00:00:00Z", refund=False):
    return wire.delivery_token(key, "2026-11-27T00:00:00Z", expiry, refund, "c2lnbmF0dXJl")


def paid_wallet(units=5, ref=REF):
    w = Wallet()
    w.quoted("127.0.0.1", 64521, "", total(ref, units))
    w.paying(total(ref, units), 1, "TEST_SU_one-use", NOW)
    w.paid(ref, token())
    return w


def test_a_payment_is_pending_until_the_token_is_recorded():
    w = Wallet()
    w.quoted("127.0.0.1", 64521, "/api", total())
    assert w.unresolved() == []  # a quote alone charges nothing
    record = w.paying(total(), 1, "TEST_SU_one-use", NOW)
    assert record[0] == "p" and "TEST_SU_one-use" in record
    e = w.entries[REF]
    assert e.state == PENDING and [x.ref for x in w.unresolved()] == [REF]
    assert (e.host, e.port, e.prefix, e.client_token, e.total) == ("127.0.0.1", 64521, "/api", "TEST_SU_one-use", 150)
    w.paid(REF, token())
    assert e.state == PAID and e.remaining == 5 and w.unresolved() == []
    assert e.token() == token()


def test_a_refusal_is_final_and_says_whether_a_charge_may_be_held():
    w = Wallet()
    w.quoted("127.0.0.1", 64521, "", total())
    w.paying(total(), 1, "TEST_SU_one-use", NOW)
    w.failed(REF, 404, True, "Unable to find order for payment ref " + REF)
    e = w.entries[REF]
    assert e.state == FAILED and e.maybe_charged and w.unresolved() == []
    assert [x.ref for x in w.needing_attention()] == [REF]
    raises(ValueError, w.paid, REF, token())  # a failed payment takes no token
    raises(ValueError, w.failed, REF, 504, False, "not a refusal")


def test_counts_come_from_the_wallet_and_a_smaller_report_is_taken():
    w = paid_wallet(5)
    w.begun(REF, 2)
    assert [x.ref for x in w.unresolved()] == [REF]  # begun, not known to be ended
    w.ending(REF, 2)
    w.ended(REF, 2, 3)
    e = w.entries[REF]
    assert (e.received, e.remaining, e.in_flight, e.warned) == (2, 3, 0, False)
    w.begun(REF, 1)
    w.ending(REF, 1)
    w.ended(REF, 1, 4)  # a Go SDK producer: "bought minus this session"
    assert (e.received, e.remaining, e.warned) == (3, 2, True)
    w.begun(REF, 1)
    w.ending(REF, 1)
    w.ended(REF, 1, 0)  # the producer says less is left: taken
    assert (e.received, e.remaining) == (4, 0)
    raises(ValueError, w.begun, REF, 1)


def test_a_delivery_can_begin_only_within_what_is_left_and_not_twice():
    w = paid_wallet(3)
    raises(ValueError, w.begun, REF, 4)
    raises(ValueError, w.begun, REF, 0)
    w.begun(REF, 3)
    raises(ValueError, w.begun, REF, 1)
    raises(ValueError, w.ending, REF, 4)  # more received than in flight
    raises(ValueError, w.ended, REF, 4, 0)


def test_an_end_settled_without_a_report_counts_what_the_wallet_said():
    w = paid_wallet(4)
    w.begun(REF, 3)
    w.ending(REF, 2)
    w.ended(REF, 2, None)
    e = w.entries[REF]
    assert (e.received, e.remaining, e.in_flight, e.ending) == (2, 2, 0, None)


def test_replay_rebuilds_the_same_wallet_and_compaction_keeps_what_matters():
    w = Wallet()
    records = []
    for n, units in ((1, 5), (2, 3), (3, 2), (4, 1)):
        ref = "ref-%d" % n
        records.append(w.quoted("127.0.0.1", 64521, "", total(ref, units)))
        records.append(w.paying(total(ref, units), 1, "TEST_SU_%d" % n, NOW + n))
    records.append(w.paid("ref-1", token("a" * 32)))
    records.append(w.begun("ref-1", 2))
    records.append(w.ending("ref-1", 2))
    records.append(w.ended("ref-1", 2, 9))  # warned
    records.append(w.begun("ref-1", 1))  # in flight when the power went
    records.append(w.paid("ref-2", token("b" * 32)))
    for r in (w.begun("ref-2", 3), w.ending("ref-2", 3), w.ended("ref-2", 3, 0)):  # used up
        records.append(r)
    records.append(w.failed("ref-3", 402, False, "payment declined: REFUSED"))
    records.append(w.quoted("127.0.0.1", 64521, "", total("ref-5", 1)))  # a quote never paid
    # ref-4 stays pending

    def state(wallet):
        return sorted((e.ref, e.state, e.received, e.remaining, e.in_flight, e.ending, e.warned, e.key,
                       e.client_token) for e in wallet.entries.values())

    again = Wallet.replay(records)
    assert state(again) == state(w)
    compacted = Wallet.replay(w.records(), keep_used=1000)
    kept = dict((e.ref, e) for e in compacted.entries.values())
    for ref in kept:
        e, o = kept[ref], w.entries[ref]
        assert (e.state, e.received, e.remaining, e.in_flight, e.warned, e.client_token) == \
            (o.state, o.received, o.remaining, o.in_flight, o.warned, o.client_token)
    assert [e.ref for e in compacted.unresolved()] == ["ref-1", "ref-4"]
    assert sorted(kept) == ["ref-1", "ref-2", "ref-4", "ref-5"]  # the newest quotes stay: one may be paid next
    small = Wallet(keep_used=0)
    for record in records:
        small.apply(record)
    assert sorted(set(r[1] for r in small.compact())) == ["ref-1", "ref-4", "ref-5"]  # the used-up token goes
    assert sorted(small.entries) == ["ref-1", "ref-4", "ref-5"]  # from memory too
    small.paying(total("ref-5", 1), 1, "TEST_SU_5", NOW)  # the quote kept can still be paid


def test_compaction_keeps_only_the_newest_quotes_and_used_up_tokens():
    w = Wallet(keep_used=2)
    for n in range(8):
        w.quoted("127.0.0.1", 64521, "", total("q-%d" % n, 1))
    for n in range(5):
        ref = "u-%d" % n
        w.quoted("127.0.0.1", 64521, "", total(ref, 1))
        w.paying(total(ref, 1), 1, "TEST_SU_u%d" % n, NOW)
        w.paid(ref, token("%032d" % n))
        w.begun(ref, 1)
        w.ending(ref, 1)
        w.ended(ref, 1, 0)
    w.compact()
    assert sorted(w.entries) == ["q-4", "q-5", "q-6", "q-7", "u-3", "u-4"]


def test_strings_the_wallet_cannot_store_are_refused_by_name():
    w = Wallet()
    assert "serverID" in str(raises(ValueError, w.quoted, "127.0.0.1", 1, "", total(server="caf\u00e9")))
    assert "host" in str(raises(ValueError, w.quoted, "h" * (MAX_HOST + 1), 1, "", total()))
    assert "urlPrefix" in str(raises(ValueError, w.quoted, "h", 1, "/" + "p" * MAX_PREFIX, total()))
    assert "port" in str(raises(ValueError, w.quoted, "h", 0, "", total()))
    w.quoted("h", 1, "", total())
    assert "clientToken" in str(raises(ValueError, w.paying, total(), 1, 'a"b', NOW))
    assert w.entries[REF].state != PENDING


def test_the_longest_records_fit_the_journal_line():
    path = fresh("longest")
    journal = FileJournal(path)
    w = load(journal)
    ref = "r" * MAX_ID
    long_total = wire.total_response("s" * MAX_ID, "c" * MAX_ID, wire.MAX_NUMBER_ID, wire.MAX_UNITS,
                                     wire.MAX_AMOUNT, "GBP", ref, "k")
    journal.append(w.quoted("h" * MAX_HOST, 65535, "/" + "p" * (MAX_PREFIX - 1), long_total))
    journal.append(w.paying(long_total, wire.MAX_NUMBER_ID, "t" * MAX_CLIENT_TOKEN, 10 ** 12 - 1))
    long_token = wire.delivery_token("k" * MAX_ID, "i" * MAX_TIME_TEXT, "e" * MAX_TIME_TEXT, False,
                                     "g" * MAX_SIGNATURE)
    journal.append(w.paid(ref, long_token))
    journal.append(w.begun(ref, wire.MAX_UNITS))
    journal.append(w.ending(ref, wire.MAX_UNITS - 1))
    journal.append(w.ended(ref, wire.MAX_UNITS - 1, wire.MAX_UNITS))
    w2 = Wallet()
    w2.quoted("h" * MAX_HOST, 65535, "", total("r2" * 32))
    w2.paying(total("r2" * 32), 1, "t", NOW)
    journal.append(w2.failed("r2" * 32, 404, True, "\u00e9" * (MAX_NOTE + 50)))  # note made ASCII and cut
    journal.close()
    with open(path) as f:
        lines = f.read().split("\n")[:-1]
    assert len(lines) == 7 and max(len(line) + 1 for line in lines) <= MAX_LINE
    assert len(lines[0]) + 1 > MAX_LINE - 40  # the "o" record is the longest, near the limit


def test_the_wallet_survives_a_reopen_of_its_journal():
    path = fresh("reopen")
    journal = FileJournal(path, compact_at=600)
    w = load(journal)
    for n in range(6):
        ref = "ref-%d" % n
        for record in (w.quoted("127.0.0.1", 64521, "", total(ref, 2)),
                       w.paying(total(ref, 2), 1, "TEST_SU_%d" % n, NOW), w.paid(ref, token("%032d" % n))):
            journal.append(record)
            if journal.needs_compaction():
                journal.compact(w.records())
    journal.append(w.begun("ref-5", 1))
    journal.close()
    again = load(FileJournal(path))
    assert sorted(e.key for e in again.tokens()) == sorted(e.key for e in w.tokens())
    assert [e.ref for e in again.unresolved()] == ["ref-5"] and again.entries["ref-5"].in_flight == 1


def test_expiry_is_read_from_rfc3339_times():
    assert unix_time("2026-11-27T00:00:00Z") == NOW
    assert unix_time("2026-11-27T01:00:00+01:00") == NOW
    assert unix_time("2026-11-26T23:00:00.123456-01:00") == NOW
    assert unix_time("1970-01-01T00:00:00Z") == 0
    assert unix_time("2000-02-29T12:00:00Z") == 951825600
    assert unix_time("yesterday") is None and unix_time("2026-11-27 00:00:00") is None
    w = paid_wallet()
    e = w.entries[REF]
    assert not e.expired(NOW) and e.expired(NOW + 7 * 86400)
    assert e.summary()["remaining"] == 5 and "clientToken" not in str(e.summary())
