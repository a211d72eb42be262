"""What an MQTT broker says of the Things, for `wpw scan --broker` and `wpw fleet` (host, CPython).

A Thing with network.broker set keeps its advert (its broadcast's fields)
retained on wpw/v1/things/ID/advert, with a will that empties it when the
Thing drops off, and publishes its status on wpw/v1/things/ID/status.
listen() connects with the Things' own client (wpwithin.mqtt), subscribes
once to wpw/v1/things/+/+ and feeds each message to a Fleet, which keeps
per serverID the last advert (None once emptied: the Thing is gone), the
last status and when each came. Statuses are not retained (the broker
keeps only adverts), so a Thing's status comes at its status interval and
a Thing whose will emptied its advert is seen going down only by a
listener that was there (`wpw fleet --watch`). An advert whose serverID is not its
topic's, or that is not a valid broadcast message, is refused and counted.
Never prints or keeps the broker password beyond the connection.
"""
import asyncio
import json
import time

from wpwithin import mqtt, wire
from wpwithin.consumer import parse_broadcast
from wpwithin.errors import ProtocolError

PREFIX = "wpw/v1/things/"
TOPICS = PREFIX + "+/+"
MAX_PACKET = 16384  # a status lists units per service: larger than anything the client on a board accepts


def parse_broker(url):
    """(tls, host, port) of mqtt://HOST[:PORT] or mqtts://HOST[:PORT]; ValueError naming what is wrong."""
    try:
        return mqtt.parse_url(url)  # the board's own check of network.broker
    except ValueError as exc:
        raise ValueError("broker URL %s, not %r" % (exc, url))


class Thing:
    def __init__(self, server_id):
        self.server_id = server_id
        self.advert = None  # the broadcast message, None when none is retained or it was emptied
        self.cleared = None  # when an empty advert (its will, or its goodbye) came, if one did
        self.status = None
        self.advert_at = self.status_at = None  # when each last came (time.time())

    @property
    def up(self):
        return self.advert is not None

    def since(self):
        """When it went up or down as far as we know: the status's own clock, else when we heard it."""
        if not self.up:
            return self.cleared
        started = (self.status or {}).get("upSince")
        return started if isinstance(started, (int, float)) else self.advert_at


class Fleet:
    """The Things heard from the broker, by serverID."""

    def __init__(self):
        self.things = {}
        self.refused = 0  # messages under wpw/v1/things/ that were not what their topic says

    def take(self, topic, payload, now=None):
        now = time.time() if now is None else now
        parts = topic.split("/")
        if not topic.startswith(PREFIX) or len(parts) != 5 or parts[4] not in ("advert", "status"):
            return
        server_id, kind = parts[3], parts[4]
        if kind == "advert" and not payload:
            thing = self.things.setdefault(server_id, Thing(server_id))
            thing.advert, thing.cleared = None, now
            return
        try:
            obj = wire.decode_json(payload, kind)
            if kind == "advert":
                obj = parse_broadcast(obj)
                if obj["serverID"] != server_id:
                    raise ProtocolError(422, "advert of %s under %s" % (obj["serverID"], server_id))
            elif not isinstance(obj, dict):
                raise ProtocolError(422, "status is not an object")
        except ProtocolError:
            self.refused += 1
            return
        thing = self.things.setdefault(server_id, Thing(server_id))
        if kind == "advert":
            thing.advert, thing.advert_at, thing.cleared = obj, now, None
        else:
            thing.status, thing.status_at = obj, now

    def forget_up(self):
        """Drop the Things that are up (after a reconnect the broker says again which are); keep the down ones."""
        for key in [k for k, t in self.things.items() if t.up]:
            del self.things[key]

    def reported(self):
        """Every Thing with an advert has sent a status (statuses are not retained: each comes at its interval)."""
        return all(t.status is not None for t in self.things.values() if t.up)

    def sorted(self):
        return [self.things[k] for k in sorted(self.things)]


def client(url, user, password, ca, client_id, timeout_ms):
    """A wpwithin.mqtt Client for the broker at url; over mqtts the CA file is required and checked."""
    tls, host, port = parse_broker(url)
    context = None
    if tls:
        if not ca:
            raise ValueError("an mqtts:// broker needs the CA that signs its certificate: --broker-ca FILE "
                             "(or --ca, $WPW_BROKER_CA)")
        from wpwithin.tls import tls_context

        try:
            context = tls_context(cafile=ca)
        except OSError:
            raise ValueError("cannot read the broker CA file %s" % ca)
    return mqtt.Client(host, port, client_id, username=user, password=password, keepalive=30, ssl=context,
                       max_packet=MAX_PACKET, timeout_ms=timeout_ms)


async def connect(c, timeout_ms):
    """Connect and subscribe to every Thing's advert and status."""
    await c.connect(timeout_ms)
    await c.subscribe(TOPICS)


async def listen(c, fleet, seconds, changed=None, enough=None):
    """Feed the broker's messages to fleet for `seconds` (None: until cancelled); changed() after each.
    With `enough` (seconds) it ends once that long has passed and every Thing with an advert has sent a status."""
    began = time.monotonic()
    while True:
        now = time.monotonic()
        if enough is not None and now - began >= enough and fleet.reported():
            return
        left = 1000 if seconds is None else int((began + seconds - now) * 1000)
        if left <= 0:
            return
        got = await c.recv(min(left, 250 if enough is not None else 1000))
        if got is not None:
            fleet.take(got[0], got[1])
            if changed is not None:
                changed()


async def reachable(host, port, timeout):
    """None if a TCP connection to host:port opens within timeout s, else why not."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except asyncio.TimeoutError:
        return "no answer from %s:%d within %g s" % (host, port, timeout)
    except OSError as exc:
        return "connect to %s:%d failed: %s" % (host, port, exc.strerror or exc)
    writer.close()
    return None


def status_fields(thing):
    """The fleet row of one Thing as JSON."""
    s = thing.status or {}
    a = thing.advert
    return {"serverID": thing.server_id, "up": thing.up, "since": thing.since(),
            "description": a["deviceDescription"] if a else s.get("description"),
            "address": "%s:%d%s" % (a["hostname"], a["portNumber"], a["urlPrefix"]) if a else None,
            "heapFree": s.get("heapFree"), "ordersOpen": s.get("ordersOpen"), "unitsSold": s.get("unitsSold"),
            "lastError": s.get("lastError"), "statusAt": thing.status_at}


def clock(at):
    return "-" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def status_line(row):
    sold = row["unitsSold"]
    if isinstance(sold, dict):
        sold = " ".join("%s:%s" % (k, sold[k]) for k in sorted(sold)) or "0"
    heap = row["heapFree"]
    return "%-22s %-24.24s %-22s %-4s since %-19s heap %-7s orders %-3s sold %s%s" % (
        row["serverID"], row["description"] or "", row["address"] or "-", "up" if row["up"] else "DOWN",
        clock(row["since"]), "-" if heap is None else "%dK" % (heap // 1024), "-" if row["ordersOpen"] is None
        else row["ordersOpen"], "-" if sold is None else sold,
        "  last error: %s" % row["lastError"] if row["lastError"] else "")


def table(fleet):
    rows = [status_fields(t) for t in fleet.sorted()]
    return rows, [status_line(r) for r in rows] or ["no Things on the broker"]


def dumps(rows):
    return json.dumps({"things": rows}, indent=2, sort_keys=True)
