"""Things in one event loop, over real sockets on 127.0.0.1: both roles at once, busy producers, heap report.

A stand-in gateway (our HTTP server in front of fixtures.MemoryGateway,
plain http://) takes tokens and orders. Thing A runs a producer and a
consumer in one loop: it sells to Thing C while, at the same moment, it
buys from Thing B. Each test runs its own asyncio.run() and stops
everything it started; waits are bounded.
"""
import asyncio
import json
import os
import sys
from binascii import hexlify

from fixtures import MemoryGateway

from wpwithin import discovery, repl, wire
from wpwithin.board_host import HostBoard
from wpwithin.card import Card
from wpwithin.config import check, check_secrets
from wpwithin.consumer_role import ConsumerRole, Producer
from wpwithin.gateway_client import GatewayClient
from wpwithin.heap_report import HEAP_QUERY
from wpwithin.http_server import Server
from wpwithin.thing import Thing

MICROPYTHON = sys.implementation.name == "micropython"
# Each runtime has its own UDP ports, so the two runs never hear each other.
BASE = 47310 if MICROPYTHON else 37310
BROADCAST_PORT, PROBE_PORT, HEAP_PORT = BASE, BASE + 1, BASE + 2
HOST = "127.0.0.1"
LOOPBACK_BROADCAST = "127.255.255.255"  # this host's loopback broadcast
CLIENT_KEY = "T_C_03eaa1d3-4642-4079-b030-b543ee04b5af"
CARD = {"name": "Roles Test", "number": "4444333322221111", "expiryMonth": 12, "expiryYear": 2031, "cvc": "123"}
CARD_OBJECT = Card(CARD["name"], CARD["number"], CARD["expiryMonth"], CARD["expiryYear"], CARD["cvc"])
SERVICES = [{"id": 1, "name": "Charge", "description": "kWh", "prices": [
    {"id": 1, "amount": 30, "currency": "GBP", "unitId": 1, "unitDescription": "kWh", "description": "per kWh"}]}]
WAIT = 10  # seconds: an upper bound, never a timing assertion


TAG = hexlify(os.urandom(4)).decode()  # MicroPython's os has no getpid()
FOLDERS = []


def workdir(name):
    """A new, empty directory for one Thing's journal and board id; stop() removes it."""
    path = "/tmp/wpw-roles-%s-%s-%s" % (sys.implementation.name, name, TAG)
    os.mkdir(path)
    FOLDERS.append(path)
    return path


def remove_folders():
    while FOLDERS:
        path = FOLDERS.pop()
        for entry in os.listdir(path):
            os.remove(path + "/" + entry)
        os.rmdir(path)


class GatewayStandIn:
    """The gateway's /v1/tokens and /v1/orders over plain HTTP, deciding with MemoryGateway."""

    def __init__(self, order_delay=0):
        self.memory = MemoryGateway()
        self.server = Server(self.handle, HOST, 0, max_connections=8)
        self.order_delay = order_delay  # seconds each order takes
        self.orders_at_once = 0
        self.most_orders_at_once = 0

    async def handle(self, method, path, headers, body):
        if method == "POST" and path == "/v1/tokens":
            return 200, wire.encode_json(self.memory.token(wire.decode_json(body)))
        if method == "POST" and path == "/v1/orders":
            self.orders_at_once += 1
            self.most_orders_at_once = max(self.most_orders_at_once, self.orders_at_once)
            try:
                await asyncio.sleep(self.order_delay)
            finally:
                self.orders_at_once -= 1
            return 200, wire.encode_json(self.memory.order(wire.decode_json(body)))
        if method == "GET" and path.startswith("/v1/orders?customerOrderCode="):
            return 200, b'{"orders": []}'
        return 404, b'{"httpStatusCode": 404, "customCode": "NOT_FOUND", "message": "no such route"}'

    @property
    def url(self):
        return "http://%s:%d/v1" % (HOST, self.server.port)


def make_thing(name, gateway_url, producer=False, consumer=False, network=None):
    folder = workdir(name)
    net = {"host": HOST, "hostname": HOST, "port": 0, "broadcastAddress": LOOPBACK_BROADCAST,
           "broadcastPort": BROADCAST_PORT, "probePort": PROBE_PORT if producer else 0,
           "broadcastIntervalMs": 60000}
    if network:
        net.update(network)
    config = check({
        "device": {"serverId": name, "description": "Thing " + name}, "network": net,
        "gateway": {"url": gateway_url},
        "producer": {"enabled": producer, "journal": folder + "/ledger.journal", "services": SERVICES},
        "consumer": {"enabled": consumer, "wallet": folder + "/wallet.journal"}})
    secrets = check_secrets({"merchantClientKey": CLIENT_KEY, "merchantServiceKey": "T_S_service-key-of-" + name,
                       "tokenSigningSecret": "%064x" % len(name), "card": CARD}, config)
    return Thing(config, secrets, HostBoard(HOST, folder + "/board-id"))


async def start(*things):
    for thing in things:
        await thing.start()


async def stop(gateway, *things):
    for thing in things:
        await thing.stop()
    gateway.server.close()
    await gateway.server.wait_closed()
    remove_folders()


def address(thing):
    return Producer(HOST, thing.server.port, server_id=thing.server_id)


async def buy_and_take(role, producer, units):
    purchase = await role.buy(producer, 1, 1, units)
    end = await role.deliver(producer, purchase, units)
    return purchase, end


def test_a_thing_with_both_roles_sells_and_buys_in_one_loop_at_once():
    async def main():
        gateway = GatewayStandIn()
        await gateway.server.start()
        a = make_thing("thing-a", gateway.url, producer=True, consumer=True)
        b = make_thing("thing-b", gateway.url, producer=True)
        c = make_thing("thing-c", gateway.url, consumer=True)
        try:
            await start(a, b, c)
            assert repl.thing_status(a)["roles"] == ["producer", "consumer"]
            assert a.consumer.client_id == "thing-a-consumer"
            found = await c.consumer.discover(WAIT * 1000, LOOPBACK_BROADCAST, 2, BROADCAST_PORT,
                                              PROBE_PORT)
            assert sorted(p.server_id for p in found) == ["thing-a", "thing-b"], found
            # At the same moment: C buys from A while A (its consumer role) buys from B.
            sold, bought = await asyncio.wait_for(asyncio.gather(
                buy_and_take(c.consumer, address(a), 3), buy_and_take(a.consumer, address(b), 2)), WAIT)
            assert sold[0].server_id == "thing-a" and sold[1]["unitsRemaining"] == 0
            assert bought[0].server_id == "thing-b" and bought[1]["unitsRemaining"] == 0
            for thing, client, units in ((a, "thing-c-consumer", 3), (b, "thing-a-consumer", 2)):
                ledger = thing.producer.core.ledger
                assert ledger.orders == {}  # delivered in full: only the used-up token is kept
                assert [(ledger.used_up(k)[1], ledger.used_up(k)[3]) for k in ledger.spent] == [(client, units)]
            assert sorted(o[1] for o in gateway.memory.orders) == [60, 90]
        finally:
            await stop(gateway, a, b, c)
    asyncio.run(main())


def test_a_producer_calls_the_gateway_one_request_at_a_time():
    """Each gateway call is a TLS session (16-20 KB on an ESP32): payments at once queue for it."""
    async def main():
        gateway = GatewayStandIn(order_delay=0.05)
        await gateway.server.start()
        seller = make_thing("one-at-a-time", gateway.url, producer=True, network={"maxConnections": 8})
        try:
            await start(seller)
            buyers = [ConsumerRole("queued-car-%d" % n, CARD_OBJECT, GatewayClient(gateway.url)) for n in range(4)]
            bought = await asyncio.wait_for(asyncio.gather(
                *[role.buy(address(seller), 1, 1, 1) for role in buyers]), WAIT)
            assert [p.remaining for p in bought] == [1, 1, 1, 1]
            assert gateway.most_orders_at_once == 1
        finally:
            await stop(gateway, seller)
    asyncio.run(main())


def test_a_consumer_waits_out_a_busy_producer():
    """A producer at its connection cap answers 503; the consumer role tries again shortly."""
    async def main():
        gateway = GatewayStandIn()
        await gateway.server.start()
        seller = make_thing("busy-seller", gateway.url, producer=True, network={"maxConnections": 1})
        holder = None
        try:
            await start(seller)
            reader, holder = await asyncio.open_connection(HOST, seller.server.port)
            holder.write(b"GET /service/discover HTTP/1.1\r\n")  # holds the only slot, not idle
            await holder.drain()
            await asyncio.sleep(0.05)

            async def let_go():
                await asyncio.sleep(0.25)
                holder.close()

            role = ConsumerRole("patient-car", None, None)
            services = (await asyncio.gather(role.services(address(seller)), let_go()))[0]
            assert [s["ServiceID"] for s in services] == [1]
            assert role.busy_answers >= 1
            assert (await ConsumerRole("hasty-car", None, None, busy_retries=0).prices(address(seller), 1))
        finally:
            await stop(gateway, seller)
    asyncio.run(main())


def test_the_heap_report_is_off_by_default_and_answers_when_configured():
    async def main():
        gateway = GatewayStandIn()
        await gateway.server.start()
        quiet = make_thing("quiet", gateway.url, producer=True)
        told = make_thing("told", gateway.url, producer=True, network={"debugHeap": HEAP_PORT, "probePort": 0})
        asker = discovery.udp_socket(broadcast=False)
        try:
            await start(quiet, told)
            assert quiet.heap_report is None and "heapReport" not in repl.thing_status(quiet)
            assert repl.thing_status(told)["heapReport"] == HEAP_PORT
            asker.sendto(b"something else", discovery.address(HOST, HEAP_PORT))  # ignored
            asker.sendto(HEAP_QUERY, discovery.address(HOST, HEAP_PORT))
            data, _ = await asyncio.wait_for(discovery.recvfrom(asker), WAIT)
            report = json.loads(data)
            assert sorted(report) == ["connections", "errors", "memAlloc", "memFree", "modules", "orders", "slots",
                                      "spent"]
            assert (report["orders"], report["spent"], report["errors"], report["connections"]) == (0, 0, 0, 0)
            assert report["slots"] >= 1 and report["modules"] > 10
            if MICROPYTHON:
                assert report["memAlloc"] > 0 and report["memFree"] > 0
            else:
                assert report["memAlloc"] is None  # CPython has no such figure
        finally:
            asker.close()
            await stop(gateway, quiet, told)
    asyncio.run(main())
