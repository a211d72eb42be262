"""The producer ledger: states, refusals, replay and compaction."""
from expect import raises, refused

from fixtures import replay, snapshot

from wpwithin.ledger import ANSWER, CHARGE, PAID, PAYING, QUOTED, Ledger, attempt_code

NOW = 1795737600
GRACE = 30  # s a quote is safe from being dropped to make room (ledger._QUOTE_GRACE)


def quoted(ledger=None, ref="r1", units=5, total=150):
    ledger = ledger or Ledger()
    ledger.quote(ref, "c1", 1, 1, units, total, "GBP", NOW)
    return ledger


def paid(ledger=None, ref="r1", key="k1", units=5, expiry=NOW + 3600, refund=False):
    ledger = quoted(ledger, ref, units, units * 30)
    ledger.start_payment(ref, NOW)
    ledger.charged(ref, "order-" + ref, key, NOW, expiry, refund)
    return ledger


def test_quote_then_charge_then_answer():
    ledger = quoted()
    assert ledger.payment_step("r1", "c1", NOW) == CHARGE
    ledger.start_payment("r1", NOW)
    assert ledger.orders["r1"].state == PAYING
    assert "in progress" in refused(409, ledger.payment_step, "r1", "c1", NOW)
    ledger.charged("r1", "order-1", "k1", NOW, NOW + 60, False)
    assert ledger.orders["r1"].state == PAID
    assert ledger.payment_step("r1", "c1", NOW) == ANSWER
    assert ledger.sold == {1: 5}


def test_reference_refusals():
    ledger = quoted()
    assert refused(404, ledger.payment_step, "nope", "c1", NOW) == "Unable to find order for payment ref nope"
    assert refused(400, ledger.payment_step, "r1", "c2", NOW) == "Client ID does not match Order Client ID"


def test_expired_quote_is_gone():
    ledger = quoted()
    assert "expired" in refused(410, ledger.payment_step, "r1", "c1", NOW + ledger.quote_ttl)


def test_failed_payment_returns_to_quoted_and_may_be_retried():
    ledger = quoted()
    ledger.start_payment("r1", NOW)
    ledger.failed("r1", "REFUSED")
    assert ledger.orders["r1"].state == QUOTED
    assert ledger.payment_step("r1", "c1", NOW) == CHARGE


def test_only_a_paying_order_can_be_charged_or_fail():
    ledger = quoted()
    raises(ValueError, ledger.charged, "r1", "o", "k", NOW, NOW, False)
    raises(ValueError, ledger.failed, "r1", "x")
    ledger = paid()
    raises(ValueError, ledger.start_payment, "r1", NOW)


def test_delivery_never_exceeds_what_was_paid():
    ledger = paid(units=5)
    order = ledger.paid_order("k1", "c1", 1)
    ledger.begin_delivery(order, 3, NOW)
    assert "in progress" in refused(409, ledger.begin_delivery, order, 1, NOW)
    ledger.end_delivery(order, 10)  # claims more than was in flight: counts 3
    assert order.delivered == 3 and order.remaining() == 2
    assert "Units available = 2" in refused(409, ledger.begin_delivery, order, 3, NOW)
    ledger.begin_delivery(order, 2, NOW)
    ledger.end_delivery(order, 1)  # stopped early: one unit goes back
    assert order.remaining() == 1
    assert "begin one first" in refused(409, ledger.end_delivery, order, 1)


def test_token_must_match_client_and_service():
    ledger = paid()
    assert refused(400, ledger.paid_order, "zz", "c1", 1) == "unknown delivery token"
    assert "another client" in refused(400, ledger.paid_order, "k1", "c2", 1)
    assert refused(400, ledger.paid_order, "k1", "c1", 2) == "delivery token is for service 1, not 2"


def test_expired_token_cannot_begin():
    ledger = paid(expiry=NOW + 10)
    order = ledger.paid_order("k1", "c1", 1)
    refused(410, ledger.begin_delivery, order, 1, NOW + 10)


def test_a_used_up_order_leaves_the_ledger_and_its_token_is_still_refused_as_used_up():
    ledger = Ledger(max_orders=3)
    paid(ledger, "done", "k1", units=2, expiry=NOW + 60)
    order = ledger.paid_order("k1", "c1", 1)
    ledger.begin_delivery(order, 2, NOW)
    ledger.end_delivery(order, 2)
    assert ledger.orders == {} and ledger.by_key == {}  # its slot is free for the next purchase
    assert list(ledger.spent) == ["k1"] and ledger.used_up("k1") == ("done", "c1", 1, 2, NOW + 60)
    again = ledger.paid_order("k1", "c1", 1)
    assert "Units available = 0" in refused(409, ledger.begin_delivery, again, 1, NOW)
    assert "begin one first" in refused(409, ledger.end_delivery, again, 1)
    assert "another client" in refused(400, ledger.paid_order, "k1", "c2", 1)
    refused(410, ledger.begin_delivery, ledger.paid_order("k1", "c1", 1), 1, NOW + 60)
    assert replay(ledger.records(), max_orders=3).spent == ledger.spent


def test_spent_tokens_are_bounded_by_max_orders_the_first_to_expire_goes():
    ledger = Ledger(max_orders=2)
    for i, expiry in enumerate((NOW + 30, NOW + 10, NOW + 20)):
        paid(ledger, "r%d" % i, "k%d" % i, units=1, expiry=expiry)
        order = ledger.paid_order("k%d" % i, "c1", 1)
        ledger.begin_delivery(order, 1, NOW)
        ledger.end_delivery(order, 1)
    assert sorted(ledger.spent) == ["k0", "k2"]
    assert refused(400, ledger.paid_order, "k1", "c1", 1) == "unknown delivery token"


def test_a_journal_that_drops_a_used_up_order_later_still_replays():
    # Journals written before spent tokens say "x" for a used-up order when it expires.
    ledger = paid(ref="old", key="k1", units=1)
    records = [["b", "k1", 1], ["e", "k1", 1], ["x", "old"]]
    for record in records:
        ledger.apply(record)
    assert ledger.orders == {} and list(ledger.spent) == ["k1"]


def test_full_ledger_drops_the_oldest_quote_but_never_a_paid_order():
    ledger = Ledger(max_orders=2)
    paid(ledger, "paid", "k1")
    ledger.quote("old", "c1", 1, 1, 1, 30, "GBP", NOW)
    records = ledger.quote("new", "c1", 1, 1, 1, 30, "GBP", NOW + GRACE)
    assert records[0] == ["x", "old"]
    assert sorted(ledger.orders) == ["new", "paid"]
    ledger.start_payment("new", NOW)
    ledger.charged("new", "o", "k2", NOW, NOW + 60, False)
    assert "too many" in refused(503, ledger.quote, "more", "c1", 1, 1, 1, 30, "GBP", NOW)


def test_a_quote_younger_than_the_grace_is_not_dropped_the_new_one_waits():
    # 32 consumers against 16 order slots: dropping a quote being paid would fail that purchase.
    ledger = Ledger(max_orders=2)
    ledger.quote("a", "c1", 1, 1, 1, 30, "GBP", NOW)
    ledger.quote("b", "c2", 1, 1, 1, 30, "GBP", NOW + 1)
    assert "too many" in refused(503, ledger.quote, "c", "c3", 1, 1, 1, 30, "GBP", NOW + GRACE - 1)
    assert ledger.quote("c", "c3", 1, 1, 1, 30, "GBP", NOW + GRACE)[0] == ["x", "a"]


def test_due_lists_stale_quotes_and_expired_tokens_with_refunds():
    ledger = paid(ref="refund", key="k1", units=4, expiry=NOW + 10, refund=True)
    paid(ledger, ref="keep", key="k2", units=4, expiry=NOW + 10, refund=False)
    quoted(ledger, ref="stale")
    order = ledger.paid_order("k1", "c1", 1)
    ledger.begin_delivery(order, 1, NOW)
    ledger.end_delivery(order, 1)
    due = dict((o.ref, owed) for o, owed in ledger.due(NOW + ledger.quote_ttl))
    assert due == {"refund": 90, "keep": 0, "stale": 0}
    ledger.refunded("refund", 90)
    assert ledger.sold[1] == 8 - 3
    for ref in due:
        ledger.drop(ref)
    assert ledger.orders == {} and ledger.by_key == {}


def test_unresolved_lists_orders_caught_mid_payment():
    ledger = quoted()
    record = ledger.start_payment("r1", NOW, "TEST_SU_1")
    assert record == ["p", "r1", NOW, 1, "TEST_SU_1"]
    replayed = replay([["q", "r1", "c1", 1, 1, 5, 150, "GBP", NOW], record])
    assert [o.ref for o in replayed.unresolved()] == ["r1"]
    assert snapshot(replayed) == snapshot(ledger)
    assert attempt_code(replayed.orders["r1"]) == "r1.1"


def test_a_journal_from_before_attempts_replays_as_attempt_0_known_by_the_bare_reference():
    old = replay([["q", "r1", "c1", 1, 1, 5, 150, "GBP", NOW], ["p", "r1", NOW]])
    order = old.orders["r1"]
    assert (order.state, order.attempt, order.token, attempt_code(order)) == (PAYING, 0, "", "r1")


def test_each_attempt_has_its_own_code_and_a_declined_token_is_not_tried_again():
    ledger = quoted()
    ledger.start_payment("r1", NOW, "TEST_SU_1")
    ledger.failed("r1", "Refused")
    assert "new client token" in refused(402, ledger.payment_step, "r1", "c1", NOW, "TEST_SU_1")
    assert ledger.payment_step("r1", "c1", NOW, "TEST_SU_2") == CHARGE
    ledger.start_payment("r1", NOW, "TEST_SU_2")
    assert attempt_code(ledger.orders["r1"]) == "r1.2"
    assert snapshot(replay(ledger.records())) == snapshot(ledger)  # compaction keeps the count


def test_a_failure_reason_is_kept_short_and_printable_so_its_record_fits_a_journal_line():
    ledger = quoted()
    ledger.start_payment("r1", NOW, "TEST_SU_1")
    record = ledger.failed("r1", "Refus\u00e9 \"par\" l'\u00e9metteur\n" * 20)
    assert record[2].startswith("Refus? ?par? l'?metteur?Refus") and len(record[2]) == 100


def test_a_paid_order_answers_only_the_client_token_that_paid_it():
    ledger = quoted()
    ledger.start_payment("r1", NOW, "TEST_SU_1")
    ledger.charged("r1", "o1", "k1", NOW, NOW + 3600, False)
    assert ledger.payment_step("r1", "c1", NOW, "TEST_SU_1") == ANSWER
    assert "client token that paid" in refused(409, ledger.payment_step, "r1", "c1", NOW, "TEST_SU_2")


def test_quotes_and_payments_hold_capacity_until_paid_declined_or_expired():
    ledger = Ledger(quote_ttl=600)
    ledger.quote("a", "c1", 2, 7, 10, 50, "GBP", NOW)
    ledger.quote("b", "c2", 2, 7, 4, 20, "GBP", NOW)
    assert ledger.held(2, NOW) == 14 and ledger.held(2, NOW, ledger.orders["a"]) == 4
    ledger.start_payment("a", NOW, "TEST_SU_1")
    assert ledger.held(2, NOW + 600) == 10  # b's quote expired; a is being paid
    ledger.failed("a", "Refused")
    assert ledger.held(2, NOW) == 4  # a decline lets go
    ledger.start_payment("a", NOW, "TEST_SU_2")
    ledger.charged("a", "o1", "k1", NOW, NOW + 3600, False)
    assert ledger.held(2, NOW) == 4 and ledger.sold[2] == 10  # paid: sold, no longer held


def test_a_delivery_never_ended_stalls_after_the_timeout_and_an_expired_token_is_kept_for_410():
    ledger = Ledger(delivery_timeout=300)
    ledger.quote("r1", "c1", 1, 1, 5, 150, "GBP", NOW)
    ledger.start_payment("r1", NOW, "TEST_SU_1")
    ledger.charged("r1", "o1", "k1", NOW, NOW + 3600, False)
    order = ledger.orders["r1"]
    ledger.begin_delivery(order, 3, NOW + 10)
    assert ledger.stalled(NOW + 309) == [] and ledger.stalled(NOW + 310) == [order]
    assert ledger.due(NOW + 3600) == []  # units in flight: not dropped while a delivery is open
    ledger.end_delivery(order, 3)
    assert ledger.due(NOW + 3600) == [(order, 0)]
    ledger.drop("r1")
    assert "expired" in refused(410, ledger.payment_step, "r1", "c1", NOW + 3600, "TEST_SU_1")
    spent = ledger.paid_order("k1", "c1", 1)
    assert "expired" in refused(410, ledger.begin_delivery, spent, 1, NOW + 3600)


def test_replay_and_compaction_rebuild_the_same_state():
    ledger = Ledger()
    journal = []
    journal += ledger.quote("a", "c1", 1, 1, 5, 150, "GBP", NOW)
    journal += ledger.quote("b", "c2", 2, 7, 3, 15, "GBP", NOW)
    journal.append(ledger.start_payment("a", NOW))
    journal.append(ledger.failed("a", "REFUSED"))
    journal.append(ledger.start_payment("a", NOW + 1))
    journal.append(ledger.charged("a", "o1", "k1", NOW, NOW + 99, True))
    order = ledger.paid_order("k1", "c1", 1)
    journal.append(ledger.begin_delivery(order, 2, NOW))
    journal.append(ledger.end_delivery(order, 2)[0])
    journal.append(ledger.begin_delivery(order, 1, NOW))
    journal.append(ledger.start_payment("b", NOW))
    assert snapshot(replay(journal)) == snapshot(ledger)
    assert snapshot(replay(ledger.records())) == snapshot(ledger)


def test_records_for_unknown_orders_are_refused_on_replay():
    raises(ValueError, replay, [["p", "ghost", NOW]])
    raises(ValueError, replay, [["b", "no-key", 1]])
    raises(ValueError, replay, [["?", "x"]])
