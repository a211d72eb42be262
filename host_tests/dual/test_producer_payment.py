"""The producer role's payment: exactly once, and every gateway outcome (no sockets)."""
import asyncio

from fixtures import NOW, SECRET, charging

from wpwithin import wire
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
    """A stand-in gateway that does what a test scripts: answer, fail, time out after committing."""

    def __init__(self):
        self.orders = []  # orders committed: (customerOrderCode, amount)
        self.script = []  # what the next place_order calls do
        self.slow = None  # an Event a place_order waits for

    def _order(self, request, status="SUCCESS"):
        return {"orderCode": "o%d" % len(self.orders), "amount": request["amount"],
                "currencyCode": request["currencyCode"], "paymentStatus": status,
                "paymentStatusReason": "" if status == "SUCCESS" else "Refused by the card issuer",
                "customerOrderCode": request["customerOrderCode"]}

    async def place_order(self, request):
        if self.slow is not None:
            await self.slow.wait()
        action = self.script.pop(0) if self.script else "pay"
        if action == "decline":
            return self._order(request, "FAILED")
        if action == "timeout-after-commit":
            self.orders.append(self._order(request))
            raise HttpTimeout("gateway read timed out")
        if action == "timeout-before-commit":
            raise HttpTimeout("gateway read timed out")
        if action in ("TKN_EXPIRED", "UNAUTHORIZED"):
            raise GatewayError(400 if action == "TKN_EXPIRED" else 401, action, "refused")
        if action == "5xx":
            raise GatewayError(503, "INTERNAL_SERVER_ERROR", "down")
        self.orders.append(self._order(request))
        return self.orders[-1]

    async def find_orders(self, code):
        return [o for o in self.orders if o["customerOrderCode"] == code]


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
    return wire.payment_request("c1", token, ref)


def run(coro):
    return asyncio.run(coro)


def test_success_then_a_retry_gets_the_same_token_and_no_second_charge():
    async def main():
        role, gateway, _ = setup()
        ref = await quote(role)
        first = await call(role, "POST", "/payment", pay(ref))
        again = await call(role, "POST", "/payment", pay(ref, "TEST_SU_2"))
        assert first[0] == again[0] == 200
        assert first[1]["serviceDeliveryToken"] == again[1]["serviceDeliveryToken"]
        assert len(gateway.orders) == 1
        assert [r[0] for r in role.journal.records] == ["q", "p", "c"]
    run(main())


def test_concurrent_payments_for_one_reference_charge_once():
    async def main():
        role, gateway, _ = setup()
        ref = await quote(role)
        gateway.slow = asyncio.Event()
        tasks = [asyncio.create_task(call(role, "POST", "/payment", pay(ref, "TEST_SU_%d" % i)))
                 for i in range(5)]
        await asyncio.sleep(0.01)
        gateway.slow.set()
        results = []
        for task in tasks:  # no await in a comprehension on MicroPython
            results.append(await task)
        assert [r[0] for r in results] == [200] * 5
        assert len(gateway.orders) == 1
        assert len(set(r[1]["serviceDeliveryToken"]["key"] for r in results)) == 1
    run(main())


def test_decline_is_402_and_the_order_may_be_paid_again():
    async def main():
        role, gateway, _ = setup()
        ref = await quote(role)
        gateway.script = ["decline"]
        status, body = await call(role, "POST", "/payment", pay(ref))
        assert status == 402 and "Refused" in body["message"], body
        assert role.core.ledger.orders[ref].state == QUOTED
        assert (await call(role, "POST", "/payment", pay(ref, "TEST_SU_2")))[0] == 200
    run(main())


def test_token_refused_by_the_gateway_is_402_and_merchant_keys_refused_is_500():
    async def main():
        role, gateway, _ = setup()
        ref = await quote(role)
        gateway.script = ["TKN_EXPIRED", "UNAUTHORIZED"]
        status, body = await call(role, "POST", "/payment", pay(ref))
        assert status == 402 and "TKN_EXPIRED" in body["message"]
        status, body = await call(role, "POST", "/payment", pay(ref))
        assert status == 500 and "T_S_" not in body["message"] and "merchant" in body["message"]
        assert gateway.orders == []
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


def test_timeout_before_commit_stays_unknown_until_the_gateway_can_have_settled():
    async def main():
        role, gateway, clock = setup()
        ref = await quote(role)
        gateway.script = ["timeout-before-commit"]
        status, body = await call(role, "POST", "/payment", pay(ref))
        assert status == 504 and "same paymentReferenceID" in body["message"], body
        assert role.core.ledger.orders[ref].state == PAYING
        status, _ = await call(role, "POST", "/payment", pay(ref))
        assert status == 504 and gateway.orders == []  # still unknown: never charged blind
        clock.now += role.settle_after
        status, body = await call(role, "POST", "/payment", pay(ref, "TEST_SU_2"))
        assert status == 200, body  # known not taken: charged once, now
        assert len(gateway.orders) == 1
    run(main())


def test_gateway_5xx_is_resolved_by_asking_the_gateway():
    async def main():
        role, gateway, clock = setup()
        ref = await quote(role)
        gateway.script = ["5xx"]
        status, _ = await call(role, "POST", "/payment", pay(ref))
        assert status == 504
        clock.now += role.settle_after
        await role.expire()  # the sweep settles it: no order there, so not charged
        assert role.core.ledger.orders[ref].state == QUOTED
        assert role.core.ledger.orders[ref].failure == "no order at the gateway"
    run(main())


def test_a_clock_not_yet_set_sells_nothing_but_still_lists():
    async def main():
        role, _, _ = setup()
        role.time_known = lambda: False
        assert (await call(role, "GET", "/service/discover"))[0] == 200
        status, body = await call(role, "POST", "/service/1/requestTotal", wire.total_request("c1", 1, 1))
        assert status == 503 and "clock" in body["message"]
    run(main())
