"""A Thing: the configured roles started as asyncio tasks in one loop.

Builds the producer (HTTP API, broadcaster, probe responder, expiry sweep,
journal replayed at start) and/or the consumer from a Config, Secrets and a
board (clock, random bytes, unique id, addresses, pins). The same code runs
from main.py on a board and from tools/thing on a host. What a person
debugging at the REPL needs is in repl.thing_status() (loaded only by a
person: its names would cost every running board heap), never a secret;
so is heap_report.HeapReport, over UDP, when network.debugHeap turns it on.
"""
import asyncio

from wpwithin import discovery, wire
from wpwithin.gateway_client import GatewayClient
from wpwithin.http_server import Server
from wpwithin.journal import FileJournal
from wpwithin.ledger import Ledger
from wpwithin.producer import Producer
from wpwithin.producer_role import ProducerRole


class Thing:
    def __init__(self, config, secrets, board, hooks=None, log=None, gateway_ca=None, spawn=None):
        """`spawn(name, factory)` starts a task running factory(); app.py's restarts crashed ones."""
        self.config = config
        self._secrets = secrets
        self.board = board
        self.hooks = hooks
        self.log = log or (lambda message: None)
        self.gateway_ca = gateway_ca
        # The configured serverID, or one derived from the board's unique id (stable across reboots).
        self.server_id = config.device["serverId"] or "wpw-" + board.unique_id()
        self.producer = None  # ProducerRole
        self.consumer = None  # ConsumerRole
        self.server = None
        self.broadcaster = None
        self.responder = None
        self.tasks = []
        self.discovery_tasks = []
        self.journal = None
        self.wallet_journal = None  # the consumer's wallet
        self.heap_report = None
        self._spawn = spawn or (lambda name, factory: asyncio.create_task(factory()))

    def __repr__(self):
        return "<Thing %s>" % self.server_id

    async def start(self):
        if self.config.producer["enabled"]:
            cfg, net = self.config.producer, self.config.network
            ledger = Ledger(max_orders=cfg["maxOrders"], delivery_timeout=cfg["deliveryTimeout"])
            self.journal = FileJournal(cfg["journal"])
            self.journal.load(ledger.apply)
            if self.journal.dropped:
                self.log("journal: dropped a torn last record (%d bytes)" % self.journal.dropped)
            core = Producer(self.server_id, self.config.catalogue, ledger, self._secrets.signing_secret,
                            self._secrets.client_key, cfg["tokenLifetime"], cfg["refundOnExpiry"])
            gateway = GatewayClient(self.config.gateway["url"], self._secrets.service_key, self.gateway_ca,
                                    self.config.gateway["timeout"])
            gateway.reserve()
            self.producer = ProducerRole(core, gateway, self.board.time, self.board.random, self.journal,
                                         self.hooks, self.log, net["urlPrefix"], clock_problem=self.board.clock_problem)
            self.server = Server(self.producer.handle, net["host"], net["port"],
                                 max_connections=net["maxConnections"], read_timeout=net["readTimeout"],
                                 log=self.log)
            await self.server.start()
            await self.restart_discovery(net["hostname"] or self.board.ip_address())
            if "broker" in net:
                from wpwithin import fleet_link  # only with network.broker set: never loaded otherwise

                fleet_link.start(self)
            self.tasks.append(self._spawn("sweep", self._sweep))
            unresolved = ledger.unresolved()
            if unresolved:  # charges cut short by a reset: ask the gateway, one order at a time
                self.tasks.append(asyncio.create_task(self._resolve(unresolved)))
        if self.config.consumer["enabled"]:
            from wpwithin import consumer_role  # not in producer-only images

            consumer_role.start(self)
        if self.config.network["debugHeap"]:
            from wpwithin import heap_report  # debugging only: not loaded unless turned on

            heap_report.start(self)

    async def restart_discovery(self, hostname):
        """(Re)start the broadcaster and probe responder announcing `hostname`."""
        await discovery.cancel_all(self.discovery_tasks)
        net = self.config.network
        message = wire.broadcast(self.server_id, self.config.device["description"], hostname,
                                 self.server.port, net["urlPrefix"])
        self.broadcaster = discovery.Broadcaster(message, net["broadcastAddress"], net["broadcastPort"],
                                                 net["broadcastIntervalMs"], self.log)
        self.discovery_tasks = [self._spawn("broadcaster", self.broadcaster.run)]
        if net["probePort"]:
            self.responder = discovery.ProbeResponder(message, net["probePort"])
            self.responder.open()  # bound before start() returns and the Thing says it is up
            self.discovery_tasks.append(self._spawn("probe responder", self.responder.run))

    async def _resolve(self, orders):
        # One task for all: a task per order would open as many TLS connections at once
        # (each 16-20 KB on an ESP32), and a journal with many would exhaust the heap.
        for order in orders:
            try:
                await self.producer.resolve(order)
            except Exception as exc:  # noqa: the gateway may still be down; a retried payment asks again
                self.log("payment %s still unresolved: %s" % (order.ref, exc))

    async def _sweep(self):
        failing = False
        while True:
            await asyncio.sleep(5)
            await self.producer.expire()
            if self.journal.needs_compaction():
                try:  # a failure leaves the journal open and appending: retried every sweep
                    self.journal.compact(self.producer.core.ledger.records())
                    failing = False
                except (OSError, ValueError) as exc:
                    if not failing:
                        self.log("journal: compaction failed (%r); appending as before, retrying" % (exc,))
                    failing = True

    async def stop(self):
        await discovery.cancel_all(self.tasks + self.discovery_tasks)
        self.tasks = []
        self.discovery_tasks = []
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        if self.journal is not None:
            self.journal.close()
        if self.wallet_journal is not None:
            self.wallet_journal.close()

    def address(self):
        """host:port and URL prefix the producer serves on; None without a producer."""
        if self.server is None:
            return None
        net = self.config.network
        return "%s:%d%s" % (net["host"], self.server.port, net["urlPrefix"])
