"""The consumer's discovery scanner: listens for producers' broadcasts, optionally probing first.

Anyone can send anything to the broadcast port, so every datagram is
decoded and checked (consumer.parse_broadcast) and what is not a valid
broadcast message is ignored. With a broker (consumer.broker), the
adverts producers keep there (wpw/v1/things/{serverID}/advert, the same
message) are heard too, each checked the same way and taken only under
its own serverID's topic; a broker that cannot be reached costs only its
adverts. Consumer-only: producer-only images leave it out. Never sends
anything but one probe (and, to a broker, a subscription).
"""
import asyncio

from wpwithin import discovery, wire
from wpwithin.consumer import parse_broadcast
from wpwithin.errors import ProtocolError


def parse_datagram(data):
    """A broadcast message from a datagram, or None for anything else (anyone can send anything)."""
    try:
        return parse_broadcast(wire.decode_json(data, "datagram"))
    except ProtocolError:
        return None


ADVERT = "wpw/v1/things/%s/advert"  # fleet_link's topic of a producer's advert


async def hear_broker(client, note, gone, log):
    """note(message, "broker") for each valid advert the broker holds or is sent, gone(serverID) for each
    emptied (a Thing's will), until cancelled."""
    from wpwithin.mqtt import MQTTError  # only with a broker

    try:
        await client.connect()
        await client.subscribe(ADVERT % "+")
        while True:
            got = await client.recv(1000)
            if got is None:
                continue
            topic, payload = got[0], got[1]
            if not payload:  # an empty advert is a Thing's will: it is gone
                gone(topic.split("/")[3])
                continue
            message = parse_datagram(payload)
            if message is not None and topic == ADVERT % message["serverID"]:
                note(message, "broker")
    except MQTTError as exc:  # a refusal says the broker's code only: the address is said here
        why = exc.message if exc.code is None else "broker %s:%s refused: %s" % (client.host, client.port, exc.message)
        log("scan: %s; hearing broadcasts only" % why)
    finally:
        client.close()


async def scan(timeout_ms, port=discovery.BROADCAST_PORT, probe_to=None, probe_port=discovery.PROBE_PORT, enough=0,
               wanted=None, ways=None, broker=None, log=print):
    """Producers heard within timeout_ms: {serverID: broadcast message}.

    With probe_to (an address such as 255.255.255.255 or 127.255.255.255)
    a probe is sent first and answers are taken as they come; with
    `enough` the scan ends as soon as that many producers are known, with
    `wanted` (a serverID) as soon as that one is. With `broker` (an
    unconnected mqtt.Client) its adverts are heard too, and a broker
    failure is told to log(); a producer heard only there whose advert is
    emptied meanwhile (its will) is dropped. A `ways` dict gets, for each
    serverID, how it was heard: "broadcast", "probe", "broker", in order.
    """
    found = {}
    ways = {} if ways is None else ways
    enough_found = asyncio.Event()
    listeners = [discovery.udp_socket(port)]
    tasks = []

    def note(message, way):
        found[message["serverID"]] = message
        heard = ways.setdefault(message["serverID"], [])
        if way not in heard:
            heard.append(way)
        if (enough and len(found) >= enough) or message["serverID"] == wanted:
            enough_found.set()

    def gone(server_id):  # its advert emptied on the broker: gone, unless heard on the network too
        if ways.get(server_id) == ["broker"]:
            del found[server_id], ways[server_id]

    async def listen(sock, way):
        while True:
            data, _ = await discovery.recvfrom(sock)
            message = parse_datagram(data)
            if message is not None:
                note(message, way)

    try:
        if probe_to:
            prober = discovery.udp_socket(broadcast=True)
            listeners.append(prober)
            prober.sendto(discovery.PROBE, discovery.address(probe_to, probe_port))
        tasks = [asyncio.create_task(listen(s, "probe" if i else "broadcast")) for i, s in enumerate(listeners)]
        if broker is not None:
            tasks.append(asyncio.create_task(hear_broker(broker, note, gone, log)))
        try:
            await asyncio.wait_for(enough_found.wait(), timeout_ms / 1000)
        except asyncio.TimeoutError:
            pass
    finally:
        await discovery.cancel_all(tasks)
        for sock in listeners:
            sock.close()
    return found
