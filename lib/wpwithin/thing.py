"""A Thing: the configured roles started as asyncio tasks in one loop.

Builds the producer (HTTP API, broadcaster, probe responder, expiry sweep,
journal replayed at start) and/or the consumer from a Config, Secrets and a
board (clock, random bytes, unique id, addresses, pins). The same code runs
from main.py on a board and from tools/thing on a host. status() reports
what a person debugging at the REPL needs, and never a secret; so does
heap_report.HeapReport, over UDP, when network.debugHeap turns it on.
"""
import asyncio

from wpwithin import discovery, wire
from wpwithin.gateway_client import GatewayClient
from wpwithin.http_server import Server
from wpwithin.journal import FileJournal
from wpwithin.ledger import QUOTED, Ledger
from wpwithin.producer import Producer
from wpwithin.producer_role import ProducerRole

STATUS_ORDERS = 8  # orders status() lists; it counts them all


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
            from wpwithin import wallet  # not in producer-only images
            from wpwithin.consumer_role import ConsumerRole, broker_settings, payment_wait

            # The wallet on flash: what a reset cut off is settled at start (same reference, same token).
            self.wallet_journal = FileJournal(self.config.consumer["wallet"])
            timeout = self.config.gateway["timeout"]
            self.consumer = ConsumerRole(
                self.config.consumer["clientId"] or self.server_id + "-consumer", self._secrets.card,
                GatewayClient(self.config.gateway["url"], ca=self.gateway_ca, timeout=timeout),
                timeout=timeout, wallet=wallet.load(self.wallet_journal), journal=self.wallet_journal,
                payment_timeout=payment_wait(timeout), log=self.log,
                broker=broker_settings(self.config.consumer, self._secrets, self.server_id))
            self.tasks.append(self._spawn("wallet resume", self.consumer.keep_resuming))
        if self.config.network["debugHeap"]:
            from wpwithin.heap_report import HeapReport  # debugging only: not loaded unless turned on

            self.heap_report = HeapReport(self, self.config.network["debugHeap"])
            self.heap_report.open()
            self.tasks.append(self._spawn("heap report", self.heap_report.run))

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

    def status(self):
        """Roles, address, services, open orders and units left, last errors: no secrets."""
        out = {"serverID": self.server_id, "roles": []}
        if self.producer is not None:
            ledger = self.producer.core.ledger
            out["roles"].append("producer")
            out["listening"] = "%s:%d%s" % (self.config.network["host"], self.server.port,
                                            self.config.network["urlPrefix"])
            out["broadcasts"] = self.broadcaster.sent
            out["broadcastFailing"] = self.broadcaster.failing
            out["services"] = [s["ServiceName"] for s in self.producer.core.catalogue.service_entries()]
            open_orders = [o for o in ledger.orders.values() if o.state != QUOTED and o.remaining()]
            out["orderCount"] = len(ledger.orders)
            out["orders"] = [  # the first few with units left: enough for a person at the REPL
                {"ref": o.ref, "state": ("quoted", "paying", "paid")[o.state], "units": o.units,
                 "delivered": o.delivered, "inFlight": o.in_flight, "total": o.total}
                for o in open_orders[:STATUS_ORDERS]]
            out["lastErrors"] = list(self.producer.last_errors)
        if self.consumer is not None:
            out["roles"].append("consumer")
            out["clientID"] = self.consumer.client_id
        if self.heap_report is not None:
            out["heapReport"] = self.heap_report.port
        return out
