"""The consumer's journal over real sockets: pending payments, interrupted deliveries, resume, a Go SDK producer.

A scripted producer stand-in (scripted_producer.Seller) is told per test
what its next payment or end answers: an error status, a stall past the
consumer's timeout, or an end processed whose answer never comes; with
go_sdk it answers as the original Go SDK producer does. The last test buys
from a real Thing whose gateway takes its time, and cuts the payment off
mid-charge. Each test runs its own asyncio.run() and closes what it opened.
"""
import asyncio
import os
import sys
from binascii import hexlify

from scripted_producer import HOST, Seller
from test_roles import CARD_OBJECT, GatewayStandIn, address, make_thing, remove_folders

from wpwithin.consumer_role import (
    ConsumerRole, PaymentPending, Producer, ProducerError, definite, maybe_charged, payment_wait)
from wpwithin.gateway_client import GatewayClient
from wpwithin.journal import FileJournal
from wpwithin.net_errors import NetError
from wpwithin.wallet import FAILED, PAID, PENDING, load

DIR = "/tmp/wpw-resume-%s-%s" % (sys.implementation.name, hexlify(os.urandom(4)).decode())
NOW = 1795737600


def journal_path(name):
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


def role_with_wallet(seller, path, **kwargs):
    journal = FileJournal(path)
    wallet = load(journal)
    gateway = GatewayClient("http://%s:%d/v1" % (HOST, seller.server.port), timeout=5)
    warnings = []
    role = ConsumerRole("car-1", CARD_OBJECT, gateway, timeout=2, wallet=wallet, journal=journal,
                        clock=lambda: NOW, log=warnings.append, **kwargs)
    return role, warnings


def reopen(role, seller, path, **kwargs):
    """The role after a reset: a new one from the same journal."""
    role.journal.close()
    return role_with_wallet(seller, path, **kwargs)


def run(test, go_sdk=False):
    async def main():
        seller = Seller(go_sdk)
        await seller.server.start()
        try:
            await test(seller)
        finally:
            seller.server.close()
            await seller.server.wait_closed()
    asyncio.run(main())


def test_the_payment_wait_covers_three_gateway_calls_of_the_producer():
    assert payment_wait(10) == 35 and payment_wait(2) == 11
    assert ConsumerRole("c", None, None).payment_timeout == 35


def test_which_answers_settle_a_payment_and_which_may_leave_a_charge():
    for status in (400, 402, 404, 409, 410, 422):
        assert definite(status, "refused")
    for status in (408, 429, 500, 502, 503, 504):
        assert not definite(status, "refused")
    assert not definite(409, "payment for this reference is in progress; retry shortly")
    assert not maybe_charged(404, False) and maybe_charged(404, True)
    assert not maybe_charged(402, True) and not maybe_charged(410, True, "the total price quote has expired")
    assert maybe_charged(410, False, "this order was paid; its delivery token is used up or has expired")


def test_a_payment_without_an_answer_is_pending_and_resume_sends_the_same_reference_and_token():
    path = journal_path("pending")

    async def test(seller):
        role, _ = role_with_wallet(seller, path)
        seller.pay_script = [504]
        purchase = await role.select(seller.address(), 1, 1, 4)
        try:
            await role.pay(seller.address(), purchase)
            raise AssertionError("a 504 must not settle the payment")
        except PaymentPending as exc:
            assert exc.ref == "ref-1" and "504" in exc.reason
        entry = role.wallet.entries["ref-1"]
        assert entry.state == PENDING and entry.client_token == "TEST_SU_0001"
        role, _ = reopen(role, seller, path)
        (entry, outcome, _), = await role.resume()
        assert outcome == "paid" and entry.state == PAID and entry.remaining == 4
        assert seller.payments == [("ref-1", "TEST_SU_0001")] * 2  # same reference, same one-use token
        assert seller.tokens_made == 1  # the card went to the gateway once
        assert await role.resume() == []
        role, _ = reopen(role, seller, path)
        assert [e.key for e in role.wallet.tokens()] == ["token-ref-1"]
        role.journal.close()
    run(test)


def test_a_payment_that_outlasts_the_wait_is_pending_not_failed():
    path = journal_path("slow")

    async def test(seller):
        role, _ = role_with_wallet(seller, path, payment_timeout=0.3)
        seller.pay_script = [2.0]  # the producer is still asking its gateway
        exc = None
        try:
            await role.buy(seller.address(), 1, 1, 2)
        except PaymentPending as e:
            exc = e
        assert exc is not None and "timed out" in exc.reason, exc
        assert role.wallet.entries["ref-1"].state == PENDING
        results = await role.resume()
        assert [r[1] for r in results] == ["paid"] and role.wallet.entries["ref-1"].remaining == 2
        role.journal.close()
    run(test)


def test_definite_refusals_fail_and_say_whether_the_gateway_may_hold_a_charge():
    path = journal_path("refused")

    async def test(seller):
        role, _ = role_with_wallet(seller, path)
        seller.pay_script = [402]
        try:
            await role.buy(seller.address(), 1, 1, 1)
            raise AssertionError("402 must be raised")
        except ProducerError as exc:
            assert exc.status == 402
        first = role.wallet.entries["ref-1"]
        assert first.state == FAILED and not first.maybe_charged  # first try: our token reached no one before
        seller.pay_script = [504, 404]  # then the producer lost the order
        purchase = await role.select(seller.address(), 1, 1, 1)
        try:
            await role.pay(seller.address(), purchase)
        except PaymentPending:
            pass
        (entry, outcome, message), = await role.resume()
        assert outcome == "failed" and "404" in message
        assert entry.state == FAILED and entry.maybe_charged  # the 504'd try may have charged
        assert [e.ref for e in role.wallet.needing_attention()] == ["ref-2"]
        assert role.wallet.unresolved() == []
        role.journal.close()
    run(test)


def test_a_delivery_cut_off_after_begin_is_ended_with_nothing_received():
    path = journal_path("begun")

    async def test(seller):
        role, _ = role_with_wallet(seller, path)
        purchase = await role.buy(seller.address(), 1, 1, 5)
        await role.begin(seller.address(), purchase, 3)  # and then the power goes
        role, _ = reopen(role, seller, path)
        assert [e.ref for e in role.wallet.unresolved()] == ["ref-1"]
        (entry, outcome, _), = await role.resume()
        assert outcome == "ended" and seller.delivered["ref-1"] == 0
        assert (entry.received, entry.remaining, entry.in_flight) == (0, 5, 0)
        role.journal.close()
    run(test)


def test_an_end_whose_answer_was_lost_counts_what_the_producer_counted():
    path = journal_path("lost-end")

    async def test(seller):
        role, _ = role_with_wallet(seller, path)
        purchase = await role.buy(seller.address(), 1, 1, 5)
        seller.end_script = ["lost"]
        try:
            await role.deliver(seller.address(), purchase, 2)
            raise AssertionError("the end's answer never came")
        except NetError:
            pass
        assert seller.delivered["ref-1"] == 2
        role, _ = reopen(role, seller, path)
        (entry, outcome, message), = await role.resume()
        assert outcome == "ended" and "409" in message  # the producer had ended it already
        assert (entry.received, entry.remaining) == (2, 3) == (seller.delivered["ref-1"], 3)
        role.journal.close()
    run(test)


def test_a_go_sdk_producer_redeems_in_three_parts_with_one_warning():
    path = journal_path("go-sdk")

    async def test(seller):
        role, warnings = role_with_wallet(seller, path)
        purchase = await role.buy(seller.address(), 1, 1, 3)
        lefts = []
        for _ in range(3):
            end = await role.deliver(seller.address(), purchase, 1)
            lefts.append((end["unitsRemaining"], purchase.remaining))
        assert lefts == [(2, 2), (2, 1), (2, 0)]  # the producer says 2 each time; our count goes down
        assert len(warnings) == 1 and "keeping 1" in warnings[0]
        entry = role.wallet.entries["ref-1"]
        assert (entry.received, entry.remaining, entry.warned) == (3, 0, True)
        assert seller.delivered["ref-1"] == 3
        seller.pay_script = [402]  # its errors say HTTPStatusCode 0: the HTTP status is what counts
        try:
            await role.buy(seller.address(), 1, 1, 1)
            raise AssertionError("402 must be raised")
        except ProducerError as exc:
            assert exc.status == 402 and exc.message == "scripted answer 402"
        role.journal.close()
    run(test, go_sdk=True)


def test_a_thing_cut_off_mid_charge_gets_its_token_when_it_starts_again():
    async def main():
        gateway = GatewayStandIn(order_delay=0.5)
        await gateway.server.start()
        seller = make_thing("resume-seller", gateway.url, producer=True)
        buyer = make_thing("resume-buyer", gateway.url, consumer=True)
        await seller.start()
        try:
            producer = address(seller)
            path = buyer.config.consumer["wallet"]  # the buyer's wallet on its flash
            journal = FileJournal(path)
            role = ConsumerRole("resume-buyer-consumer", CARD_OBJECT, GatewayClient(gateway.url),
                                wallet=load(journal), journal=journal)
            purchase = await role.select(producer, 1, 1, 2)
            paying = asyncio.create_task(role.pay(producer, purchase))
            await asyncio.sleep(0.2)  # the producer is at the gateway now
            paying.cancel()  # and the buyer resets
            try:
                await paying
            except asyncio.CancelledError:
                pass
            journal.close()
            await buyer.start()  # its start resumes what the wallet holds
            for _ in range(100):
                if buyer.consumer.wallet.tokens():
                    break
                await asyncio.sleep(0.1)
            (entry,) = buyer.consumer.wallet.tokens()
            assert entry.ref == purchase.total["paymentReferenceID"] and entry.remaining == 2
            assert len(gateway.memory.orders) == 1 and gateway.memory.orders[0][2] == "SUCCESS"
            order = seller.producer.core.ledger.by_key[entry.key]
            assert order.ref == entry.ref and order.remaining() == 2
            await buyer.consumer.deliver(producer, entry.purchase(), 2)
            assert buyer.consumer.wallet.entries[entry.ref].remaining == 0 and order.remaining() == 0
        finally:
            await buyer.stop()
            await seller.stop()
            gateway.server.close()
            await gateway.server.wait_closed()
            remove_folders()
    asyncio.run(main())
