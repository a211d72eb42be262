"""The producer's link to an MQTT broker (network.broker): its advert kept there, its status sent there.

Loaded only when network.broker is set (thing.py imports it then, and
only then). Theory of operation: run() is the one supervisor of the link.
It connects (client id and, by default, user name: the serverID) with a
Last Will that empties the retained advert on
wpw/v1/things/{serverID}/advert, publishes the advert (the broadcast
datagram itself: the same fields, the same bytes) retained at QoS 1, then
a status on .../status every network.brokerStatusInterval seconds at QoS 1
(its PUBACK proves the link is up), and the advert again when the
broadcast changes (a new address). Any failure closes the connection
without DISCONNECT, so the broker publishes the will, and the link
connects again after a backoff doubling from 1 s to 60 s. Every wait is
in this task and bounded by mqtt's deadlines (at most its 5 s per step):
the HTTP server, the ledger and sales never wait on the broker.

The status: {"upSince": Unix time the link started (or the clock was
set, if later; null until it is), "heapFree": bytes (null on CPython),
"ordersOpen": paid orders with units left, "unitsSold": {serviceID:
units paid for since start}, "lastError": the producer's last error or
null}. Never a key, token or card: counts, and an error text the producer
already scrubbed.
"""
import asyncio
import gc

from wpwithin import mqtt, wire
from wpwithin.compat import const
from wpwithin.ledger import QUOTED

TOPIC = "wpw/v1/things/%s/%s"
_BACKOFF_MAX_S = const(60)
_MAX_PACKET = const(64)  # the broker sends this client only CONNACK, PUBACK and PINGRESP


class SalesCount:
    """The application's hooks, with the units paid for counted per service on the way through."""

    def __init__(self, hooks):
        self.hooks = hooks  # None: the application has none
        self.units = {}

    def __getattr__(self, name):  # its other hooks as they are (AttributeError if it has not that one)
        return getattr(self.hooks, name)

    async def payment_received(self, service_id, units, total):
        key = str(service_id)
        self.units[key] = self.units.get(key, 0) + units
        hook = getattr(self.hooks, "payment_received", None)
        if hook is not None:
            await hook(service_id, units, total)


def start(thing):
    """Start the link of a started producer Thing as one of its tasks; returns the FleetLink."""
    link = FleetLink(thing)
    thing.tasks.append(thing._spawn("broker link", link.run))
    return link


class FleetLink:
    def __init__(self, thing):
        net = thing.config.network
        secrets = thing._secrets
        self.thing = thing
        self.interval = net["brokerStatusInterval"]
        self.sales = thing.producer.hooks = SalesCount(thing.producer.hooks)
        self.started = thing.board.time() if thing.board.time_known() else None
        sid = thing.server_id
        self.client = mqtt.client_for(net["broker"], net["brokerCa"], sid,
                                      getattr(secrets, "broker_username", None) or sid,
                                      getattr(secrets, "broker_password", None), min(self.interval * 2, 65535),
                                      (TOPIC % (sid, "advert"), b"", True), _MAX_PACKET)
        self.url = net["broker"]
        self.connected = False
        self.failures = 0  # connection attempts failed since the link was last up
        self.published = 0  # status messages acknowledged

    async def run(self):
        """Keep the link up for as long as the Thing runs."""
        delay = 1
        log = self.thing.log
        while True:
            try:
                await self._session()
            except mqtt.MQTTError as exc:
                if self.connected or not self.failures:
                    log("broker %s: %s; sales go on, retrying with backoff" % (self.url, exc.message))
                if self.connected:
                    delay = 1
                self.connected = False
                self.failures += 1
            finally:
                self.client.close()  # without DISCONNECT: the broker publishes the will
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX_S)

    async def _session(self):
        client = self.client
        sid = self.thing.server_id
        await client.connect()
        self.thing.log("broker %s: connected%s" % (
            self.url, " again after %d failed attempt(s)" % self.failures if self.failures else ""))
        self.connected = True
        self.failures = 0
        advert = None
        while True:
            if advert is not self.thing.broadcaster.datagram:
                advert = self.thing.broadcaster.datagram
                await client.publish(TOPIC % (sid, "advert"), advert, True, 1)
            await client.publish(TOPIC % (sid, "status"), wire.encode_json(self.status()), False, 1)
            self.published += 1
            for _ in range(self.interval):  # a changed advert goes out within a second
                await asyncio.sleep(1)
                if advert is not self.thing.broadcaster.datagram:
                    break

    def status(self):
        role = self.thing.producer
        board = self.thing.board
        if self.started is None and board.time_known():
            self.started = board.time()
        orders = 0
        for o in role.core.ledger.orders.values():
            if o.state != QUOTED and o.remaining():
                orders += 1
        return {"upSince": self.started, "heapFree": gc.mem_free() if hasattr(gc, "mem_free") else None,
                "ordersOpen": orders, "unitsSold": self.sales.units,
                "lastError": role.last_errors[-1] if role.last_errors else None}

