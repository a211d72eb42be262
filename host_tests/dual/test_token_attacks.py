"""Token attacks on a producer: none yields a unit more than was paid (no sockets)."""
import asyncio

from fixtures import NOW, SECRET, charging

from wpwithin import consumer, delivery_token, wire
from wpwithin.consumer import Purchase
from wpwithin.gateway_wire import parse_order_response
from wpwithin.ledger import Ledger
from wpwithin.producer import Producer
from wpwithin.producer_role import ListJournal, ProducerRole


class Gateway:
    """Charges every order it is given."""

    async def place_order(self, request):
        return parse_order_response({
            "orderCode": "o-" + request["customerOrderCode"], "amount": request["amount"],
            "currencyCode": request["currencyCode"], "paymentStatus": "SUCCESS",
            "customerOrderCode": request["customerOrderCode"]})

    async def find_orders(self, code):
        return []


def producer(server_id="srv", secret=SECRET):
    n = [0]

    def random(size):
        n[0] += 1
        return bytes((n[0] * 31 + i + len(server_id)) & 0xFF for i in range(size))
    core = Producer(server_id, charging(), Ledger(), secret, "T_C_x")
    return ProducerRole(core, Gateway(), lambda: NOW, random, ListJournal())


async def call(role, path, body):
    status, data = await role.handle("POST", path, {}, wire.encode_json(body))
    return status, wire.decode_json(data)


async def bought(role, client="c1", units=3, service=1):
    purchase = Purchase(client, service, 1 if service == 1 else 7, units)
    status, total = await call(role, "/service/%d/requestTotal" % service, purchase.total_request())
    status, paid = await call(role, "/payment", consumer.payment_request(client, "TEST_SU_x",
                                                                      total["paymentReferenceID"]))
    assert status == 200, paid
    return paid["serviceDeliveryToken"]


def begin(token, units, client="c1", service=1):
    return "/service/%d/delivery/begin" % service, consumer.begin_request(client, token, units)


def end(token, units, client="c1", service=1):
    return "/service/%d/delivery/end" % service, consumer.end_request(client, token, units)


def delivered(role):
    return sum(o.delivered + o.in_flight for o in role.core.ledger.orders.values())


def run(coro):
    asyncio.run(coro)


def test_forged_signature_and_altered_fields_are_refused():
    async def main():
        role = producer()
        token = await bought(role)
        forged = dict(token)
        forged["signature"] = delivery_token.issue(b"guess" * 8, token["key"], "srv", "c1", 1, 3, NOW, NOW + 604800,
                                                   False)["signature"]
        longer = dict(token)
        longer["expiry"] = delivery_token.format_time(NOW + 10 * 604800)
        unsigned = dict(token)
        unsigned["signature"] = None
        for bad in (forged, longer, unsigned):
            status, body = await call(role, *begin(bad, 1))
            assert status == 400, body
        assert delivered(role) == 0
    run(main())


def test_more_units_than_paid_are_refused():
    async def main():
        role = producer()
        token = await bought(role, units=3)
        status, body = await call(role, *begin(token, 4))
        assert status == 409 and "Units available = 3" in body["message"]
        assert delivered(role) == 0
    run(main())


def test_another_producers_token_and_another_clients_token_are_refused():
    async def main():
        mine, theirs = producer("srv"), producer("other", b"another-secret-of-32-bytes-long!")
        their_token = await bought(theirs)
        status, body = await call(mine, *begin(their_token, 1))
        assert status == 400 and body["message"] == "unknown delivery token"
        token = await bought(mine, client="c1")
        status, body = await call(mine, *begin(token, 1, client="c2"))
        assert status == 400 and "another client" in body["message"]
        status, body = await call(mine, *begin(token, 1, service=2))
        assert status == 400 and "is for service 1" in body["message"]
        assert delivered(mine) == 0
    run(main())


def test_replayed_begin_and_end_do_not_add_units():
    async def main():
        role = producer()
        token = await bought(role, units=3)
        assert (await call(role, *begin(token, 2)))[0] == 200
        assert (await call(role, *begin(token, 2)))[0] == 409  # replayed begin
        status, body = await call(role, *end(token, 2))
        assert status == 200 and body["unitsRemaining"] == 1
        status, body = await call(role, *end(token, 2))  # replayed end
        assert status == 409
        assert (await call(role, *begin(token, 2)))[0] == 409
        assert (await call(role, *begin(token, 1)))[0] == 200
        status, body = await call(role, *end(token, 5))  # claims more than in flight
        assert body["unitsJustSupplied"] == 1 and body["unitsRemaining"] == 0
        assert role.core.ledger.orders == {}  # used up: only the spent token is kept
        status, body = await call(role, *begin(token, 1))
        assert status == 409 and "Units available = 0" in body["message"]
    run(main())


def test_concurrent_begins_on_one_token_put_only_one_delivery_in_flight():
    async def main():
        role = producer()
        token = await bought(role, units=3)
        tasks = [asyncio.create_task(call(role, *begin(token, 3))) for _ in range(8)]
        statuses = []
        for task in tasks:
            statuses.append((await task)[0])
        assert statuses.count(200) == 1 and statuses.count(409) == 7, statuses
        assert delivered(role) == 3
    run(main())


def test_expired_token_is_refused_with_410():
    async def main():
        role = producer()
        token = await bought(role)
        role.clock = lambda: NOW + 604800
        status, body = await call(role, *begin(token, 1))
        assert status == 410, body
    run(main())
