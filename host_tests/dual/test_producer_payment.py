"""The producer role's payment: exactly once, and every gateway outcome (no sockets)."""
import asyncio

from fixtures import NOW, SECRET, charging

from wpwithin import consumer, wire
from wpwithin.consumer import Purchase
from wpwithin.gateway_wire import GatewayError
from wpwithin.ledger import PAID, PAYING, QUOTED, Ledger
from wpwithin.net_errors import HttpTimeout
from wpwithin.producer import Producer
from wpwithin.producer_role import ListJournal, ProducerRole


class Clock:
    def __init__(self):
        self.now = NOW

    def __call__(self):
        return self.now


class Gateway:
    """A stand-in gateway with one-use tokens that does what a test scripts for each call:
    answer, decline, fail, or time out before or after committing."""

    def __init__(self):
        self.orders = []  # orders committed, failed ones included
        self.used = set()  # tokens spent by an order
        self.script = []  # what the next place_order calls do
        self.search_script = []  # what the next find_orders calls do
        self.slow = None  # an Event a place_order waits for
        self.refunds = []

    def _order(self, request, status):
        self.used.add(request["token"])
        order = {"orderCode": "o%d" % len(self.orders), "amount": request["amount"],
                 "currencyCode": request["currencyCode"], "paymentStatus": status,
                 "paymentStatusReason": "" if status == "SUCCESS" else "Refused by the card issuer",
                 "customerOrderCode": request["customerOrderCode"]}
        self.orders.append(order)
        return order

    def charged(self):
        return [o for o in self.orders if o["paymentStatus"] == "SUCCESS"]

    async def place_order(self, request):
        if self.slow is not None:
            await self.slow.wait()
        action = self.script.pop(0) if self.script else "pay"
        if action in ("TKN_EXPIRED", "UNAUTHORIZED"):
            raise GatewayError(400 if action == "TKN_EXPIRED" else 401, action, "refused")
        if action == "TKN_NOT_FOUND":  # the gateway's message echoes the token
            raise GatewayError(400, action, "Token %s not found" % request["token"])
        if action == "timeout-before-commit":
            raise HttpTimeout("gateway read timed out")
        if action == "5xx":
            raise GatewayError(503, "INTERNAL_SERVER_ERROR", "down")
        if request["token"] in self.used:
            raise GatewayError(400, "TKN_EXPIRED", "Token has already been used in an order request")
        order = self._order(request, "FAILED" if action == "decline" else "SUCCESS")
        if action == "timeout-after-commit":
            raise HttpTimeout("gateway read timed out")
        return order

    async def find_orders(self, code):
        if self.search_script and self.search_script.pop(0) == "down":
            raise HttpTimeout("gateway read timed out")
        return [o for o in self.orders if o["customerOrderCode"] == code]

    async def order(self, code):
        return [o for o in self.orders if o["orderCode"] == code][0]

    async def refund(self, code, amount):
        order = [o for o in self.orders if o["orderCode"] == code][0]
        self.refunds.append((code, amount))
        order["paymentStatus"] = "PARTIALLY_REFUNDED"
        if self.script and self.script.pop(0) == "refund-answer-lost":
            raise HttpTimeout("gateway read timed out")


def setup():
    clock, gateway = Clock(), Gateway()
    core = Producer("srv", charging(), Ledger(), SECRET, "T_C_x")
    n = [0]

    def random(size):
        n[0] += 1
        return bytes((n[0] + i) & 0xFF for i in range(size))
    role = ProducerRole(core, gateway, clock, random, ListJournal())
    return role, gateway, clock


async def call(role, method, path, body=None):
    status, data = await role.handle(method, path, {}, wire.encode_json(body) if body is not None else b"")
    return status, wire.decode_json(data)


async def quote(role, units=2):
    purchase = Purchase("c1", 1, 1, units)
    status, total = await call(role, "POST", "/service/1/requestTotal", purchase.total_request())
    assert status == 200, total
    return total["paymentReferenceID"]


def pay(ref, token="TEST_SU_1"):
    return consumer.payment_request("c1", token, ref)


def run(coro):
    return asyncio.run(coro)


def test_success_then_a_retry_gets_the_same_token_and_no_second_charge():
    async def main():
        role, gateway, _ = setup()
        ref = await quote(role)
        first = await call(role, "POST", "/payment", pay(ref))
        again = await call(role, "POST", "/payment", pay(ref))
        assert first[0] == again[0] == 200
        assert first[1]["serviceDeliveryToken"] == again[1]["serviceDeliveryToken"]
        assert len(gateway.orders) == 1
        assert [r[0] for r in role.journal.records] == ["q", "p", "c"]
    run(main())


def test_a_paid_reference_gives_its_token_only_to_the_client_token_that_paid():
    async def main():
        role, gateway, _ = setup()
        ref = await quote(role)
        assert (await call(role, "POST", "/payment", pay(ref)))[0] == 200
        status, body = await call(role, "POST", "/payment", pay(ref, "TEST_SU_2"))
        assert status == 409 and "client token that paid" in body["message"], body
        assert "serviceDeliveryToken" not in body and len(gateway.orders) == 1
    run(main())


def test_concurrent_payments_for_one_reference_charge_once():
    async def main():
        role, gateway, _ = setup()
        ref = await quote(role)
        gateway.slow = asyncio.Event()
        tokens = ["TEST_SU_1"] * 3 + ["TEST_SU_2", "TEST_SU_3"]
        tasks = [asyncio.create_task(call(role, "POST", "/payment", pay(ref, t))) for t in tokens]
        await asyncio.sleep(0.01)
        gateway.slow.set()
        results = []
        for task in tasks:  # no await in a comprehension on MicroPython
            results.append(await task)
        assert [r[0] for r in results] == [200, 200, 200, 409, 409]
        assert len(gateway.orders) == 1
        assert len(set(r[1]["serviceDeliveryToken"]["key"] for r in results[:3])) == 1
    run(main())


def test_decline_is_402_and_the_order_may_be_paid_again_with_a_new_token():
    async def main():
        role, gateway, _ = setup()
        ref = await quote(role)
        gateway.script = ["decline"]
        status, body = await call(role, "POST", "/payment", pay(ref))
        assert status == 402 and "Refused" in body["message"], body
        assert role.core.ledger.orders[ref].state == QUOTED
        status, body = await call(role, "POST", "/payment", pay(ref))  # the declined token again
        assert status == 402 and "new client token" in body["message"] and len(gateway.orders) == 1
        assert (await call(role, "POST", "/payment", pay(ref, "TEST_SU_2")))[0] == 200
        assert [o["customerOrderCode"] for o in gateway.orders] == [ref + ".1", ref + ".2"]
    run(main())


def test_token_refused_by_the_gateway_is_402_and_merchant_keys_refused_is_500():
    async def main():
        role, gateway, _ = setup()
        ref = await quote(role)
        gateway.script = ["TKN_EXPIRED", "UNAUTHORIZED"]
        status, body = await call(role, "POST", "/payment", pay(ref))
        assert status == 402 and "TKN_EXPIRED" in body["message"]
        status, body = await call(role, "POST", "/payment", pay(ref, "TEST_SU_2"))
        assert status == 500 and "T_S_" not in body["message"] and "merchant" in body["message"]
        assert gateway.orders == []
    run(main())


def test_a_gateway_message_that_echoes_the_token_is_not_passed_on():
    async def main():
        role, gateway, _ = setup()
        ref = await quote(role)
        gateway.script = ["TKN_NOT_FOUND"]
        status, body = await call(role, "POST", "/payment", pay(ref, "TEST_SU_4444333322221111"))
        assert status == 402 and "TKN_NOT_FOUND" in body["message"], body
        assert "TEST_SU_" not in body["message"] and "4444333322221111" not in body["message"]
    run(main())


def test_timeout_after_the_gateway_committed_is_resolved_as_paid():
    async def main():
        role, gateway, _ = setup()
        ref = await quote(role)
        gateway.script = ["timeout-after-commit"]
        status, body = await call(role, "POST", "/payment", pay(ref))
        assert status == 200 and body["totalPaid"] == 60, body
        assert role.core.ledger.orders[ref].state == PAID and len(gateway.orders) == 1
    run(main())


def test_timeout_before_commit_is_settled_by_sending_the_same_attempt_again():
    async def main():
        role, gateway, _ = setup()
        ref = await quote(role)
        gateway.script = ["timeout-before-commit"]
        status, body = await call(role, "POST", "/payment", pay(ref))
        assert status == 200, body  # the search found nothing, the same token sent again was charged
        assert [o["customerOrderCode"] for o in gateway.charged()] == [ref + ".1"]
    run(main())


def test_a_gateway_that_answers_every_send_with_5xx_and_shows_no_order_charged_nothing():
    async def main():
        role, gateway, _ = setup()
        ref = await quote(role)
        gateway.script = ["5xx", "5xx"]
        status, body = await call(role, "POST", "/payment", pay(ref))
        assert status == 502 and "nothing was charged" in body["message"], body
        assert role.core.ledger.orders[ref].state == QUOTED
        assert (await call(role, "POST", "/payment", pay(ref, "TEST_SU_2")))[0] == 200
    run(main())


def test_an_attempt_the_gateway_cannot_settle_is_504_and_no_new_token_is_charged_meanwhile():
    async def main():
        role, gateway, clock = setup()
        ref = await quote(role)
        gateway.script = ["timeout-before-commit", "5xx"]
        status, body = await call(role, "POST", "/payment", pay(ref))
        assert status == 504 and "same paymentReferenceID and clientToken" in body["message"], body
        assert role.core.ledger.orders[ref].state == PAYING
        clock.now += 3600  # no clock ever settles an attempt
        gateway.script = ["5xx"]
        status, _ = await call(role, "POST", "/payment", pay(ref, "TEST_SU_2"))
        assert status == 504 and gateway.orders == []
        status, body = await call(role, "POST", "/payment", pay(ref, "TEST_SU_2"))
        # Settled now, by the first attempt's own token: charged once, and not to the second token.
        assert status == 409 and [o["customerOrderCode"] for o in gateway.charged()] == [ref + ".1"], body
        assert (await call(role, "POST", "/payment", pay(ref)))[0] == 200
    run(main())


def test_a_resend_refused_because_the_token_is_spent_is_settled_by_the_order_that_spent_it():
    async def main():
        role, gateway, _ = setup()
        ref = await quote(role)
        gateway.script = ["timeout-after-commit"]
        gateway.search_script = ["down"]  # the first search fails: the order is there but unseen
        status, _ = await call(role, "POST", "/payment", pay(ref))
        assert status == 504
        status, body = await call(role, "POST", "/payment", pay(ref))
        assert status == 200 and len(gateway.orders) == 1, body
    run(main())


def test_a_gateway_5xx_with_nothing_charged_is_paid_at_once_by_the_same_attempt():
    async def main():
        role, gateway, _ = setup()
        ref = await quote(role)
        gateway.script = ["5xx"]
        status, body = await call(role, "POST", "/payment", pay(ref))
        assert status == 200, body  # not 60 s of 504s: the gateway settled it at once
        assert len(gateway.charged()) == 1
    run(main())


def test_the_sweep_settles_a_payment_left_unresolved():
    async def main():
        role, gateway, _ = setup()
        ref = await quote(role)
        gateway.script = ["timeout-before-commit", "5xx"]
        assert (await call(role, "POST", "/payment", pay(ref)))[0] == 504
        await role.expire()
        assert role.core.ledger.orders[ref].state == PAID and len(gateway.charged()) == 1
    run(main())


def test_a_refund_whose_answer_was_lost_is_not_asked_for_twice():
    async def main():
        role, gateway, clock = setup()
        role.core.refund_on_expiry = True
        role.core.token_ttl = 60
        ref = await quote(role, 4)
        assert (await call(role, "POST", "/payment", pay(ref)))[0] == 200
        clock.now += 61
        gateway.script = ["refund-answer-lost"]
        await role.expire()
        assert role.core.ledger.orders[ref].refunding == 120
        await role.expire()
        assert gateway.refunds == [("o0", 120)] and ref not in role.core.ledger.orders
        assert [r[0] for r in role.journal.records][-3:] == ["R", "r", "x"]
    run(main())


def test_capacity_held_by_an_order_being_paid_is_not_sold_again():
    async def main():
        role, gateway, _ = setup()
        totals = []
        for client in ("c1", "c2"):
            status, total = await call(role, "POST", "/service/2/requestTotal", consumer.total_request(client, 120, 7))
            totals.append((status, total))
        assert totals[0][0] == 200 and totals[0][1]["unitsToSupply"] == 120
        assert totals[1][0] == 409 and "no units left" in totals[1][1]["message"], totals[1]
    run(main())


def test_a_delivery_never_ended_is_ended_by_the_sweep_after_the_timeout():
    async def main():
        role, gateway, clock = setup()
        role.core.ledger.delivery_timeout = 300
        ref = await quote(role)
        _, paid = await call(role, "POST", "/payment", pay(ref))
        token = paid["serviceDeliveryToken"]
        status, _ = await call(role, "POST", "/service/1/delivery/begin", consumer.begin_request("c1", token, 2))
        assert status == 200
        clock.now += 300
        await role.expire()
        order = role.core.ledger.used_up(token["key"])
        assert order[3] == 2  # both units counted as supplied: the token is used up
        status, body = await call(role, "POST", "/service/1/delivery/end", consumer.end_request("c1", token, 0))
        assert status == 409 and "no delivery in progress" in body["message"]
    run(main())


def test_an_expired_delivery_token_is_410_after_the_sweep_too():
    async def main():
        role, gateway, clock = setup()
        role.core.token_ttl = 60
        ref = await quote(role)
        _, paid = await call(role, "POST", "/payment", pay(ref))
        token = paid["serviceDeliveryToken"]
        clock.now += 61
        await role.expire()
        assert ref not in role.core.ledger.orders
        status, body = await call(role, "POST", "/service/1/delivery/begin", consumer.begin_request("c1", token, 1))
        assert status == 410 and "expired" in body["message"], body
    run(main())


def test_a_clock_not_yet_set_sells_nothing_but_still_lists():
    async def main():
        role, _, _ = setup()
        role.clock_problem = lambda: "no answer from NTP server ntp.example"
        assert (await call(role, "GET", "/service/discover"))[0] == 200
        status, body = await call(role, "POST", "/service/1/requestTotal", consumer.total_request("c1", 1, 1))
        assert status == 503 and body["message"] == ("the producer's clock is not set yet (no answer from NTP "
                                                     "server ntp.example); try again shortly"), body
    run(main())


def test_the_console_gets_one_line_per_sale_delivery_and_refund_and_no_token_or_key():
    async def main():
        role, gateway, clock = setup()
        lines = []
        role.log = lines.append
        role.core.refund_on_expiry = True
        role.core.token_ttl = 60
        ref = await quote(role, 4)
        status, paid = await call(role, "POST", "/payment", pay(ref, "TEST_SU_secret-client-token"))
        assert status == 200, paid
        token = paid["serviceDeliveryToken"]
        assert (await call(role, "POST", "/service/1/delivery/begin", consumer.begin_request("c1", token, 1)))[0] == 200
        assert (await call(role, "POST", "/service/1/delivery/end", consumer.end_request("c1", token, 1)))[0] == 200
        clock.now += 61
        await role.expire()
        assert lines == ["sold 4 units of service 1 for GBP 1.20 on %s" % ref[:8],
                         "delivered 1 units of service 1 on %s (3 left)" % ref[:8],
                         "refunded GBP 0.90 on %s (units not delivered)" % ref[:8]], lines
        shown = "\n".join(lines)
        for secret in ("TEST_SU_", token["key"], "T_C_x", SECRET.decode()):
            assert secret not in shown
    run(main())


class Recording:
    """Application hooks that record their calls; `fail` names one that raises, `hang` one that never ends."""

    def __init__(self, fail=None, hang=None):
        self.calls = []
        self.fail = fail
        self.hang = hang

    async def _called(self, name, *args):
        self.calls.append((name,) + args)
        if name == self.fail:
            raise RuntimeError("the application's own bug")
        if name == self.hang:
            await asyncio.sleep(3600)

    async def payment_received(self, service_id, units, total):
        await self._called("payment_received", service_id, units, total)

    async def delivery_begin(self, service_id, units):
        await self._called("delivery_begin", service_id, units)

    async def delivery_end(self, service_id, units_supplied):
        await self._called("delivery_end", service_id, units_supplied)


async def sell_and_deliver(role, units=2, card_token="TEST_SU_1"):
    """A purchase of `units` kWh and their delivery in one session, each answer 200; the token."""
    ref = await quote(role, units)
    status, paid = await call(role, "POST", "/payment", pay(ref, card_token))
    assert status == 200, paid
    token = paid["serviceDeliveryToken"]
    for route, request in (("begin", consumer.begin_request("c1", token, units)),
                           ("end", consumer.end_request("c1", token, units))):
        status, answer = await call(role, "POST", "/service/1/delivery/" + route, request)
        assert status == 200, answer
    await asyncio.sleep(0.05)  # the hooks run as tasks of their own
    return token


def test_the_applications_hooks_hear_each_sale_and_delivery():
    async def main():
        role, _, _ = setup()
        role.hooks = Recording()
        await sell_and_deliver(role)
        assert role.hooks.calls == [("payment_received", 1, 2, 60), ("delivery_begin", 1, 2), ("delivery_end", 1, 2)]
        assert role.last_errors == []
    run(main())


def test_a_failing_or_hanging_hook_costs_nothing_but_a_noted_error():
    async def main():
        for hooks, said in ((Recording(fail="payment_received"), "the application's own bug"),
                            (Recording(hang="delivery_begin"), "")):
            role, gateway, _ = setup()
            role.hook_timeout = 0.02
            role.hooks = hooks
            await sell_and_deliver(role)
            await sell_and_deliver(role, card_token="TEST_SU_2")  # the producer goes on selling after it
            assert len(gateway.charged()) == 2 and len(hooks.calls) == 6, hooks.calls
            assert role.last_errors and all(m.startswith("hook failed: ") for m in role.last_errors), role.last_errors
            assert said in role.last_errors[0]
    run(main())


def test_hooks_are_optional_each_and_all():
    class OnlyPaid:
        def __init__(self):
            self.paid = []

        async def payment_received(self, service_id, units, total):
            self.paid.append(total)

    async def main():
        role, _, _ = setup()  # no hooks at all
        assert role.hooks is None
        await sell_and_deliver(role)
        role.hooks = OnlyPaid()
        await sell_and_deliver(role, 3, "TEST_SU_2")
        assert role.hooks.paid == [90] and role.last_errors == []
    run(main())
