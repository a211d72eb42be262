"""The consumer's discovery scanner: listens for producers' broadcasts, optionally probing first.

Anyone can send anything to the broadcast port, so every datagram is
decoded and checked (consumer.parse_broadcast) and what is not a valid
broadcast message is ignored. Consumer-only: producer-only images leave
it out. Never sends anything but one probe.
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


async def scan(timeout_ms, port=discovery.BROADCAST_PORT, probe_to=None, probe_port=discovery.PROBE_PORT, enough=0,
               wanted=None, ways=None):
    """Producers heard within timeout_ms: {serverID: broadcast message}.

    With probe_to (an address such as 255.255.255.255 or 127.255.255.255)
    a probe is sent first and answers are taken as they come; with
    `enough` the scan ends as soon as that many producers are known, with
    `wanted` (a serverID) as soon as that one is. A `ways` dict gets, for
    each serverID, how it was heard: ["broadcast"], ["probe"] or both.
    """
    found = {}
    enough_found = asyncio.Event()
    listeners = [discovery.udp_socket(port)]
    tasks = []

    async def listen(sock, way):
        while True:
            data, _ = await discovery.recvfrom(sock)
            message = parse_datagram(data)
            if message is not None:
                found[message["serverID"]] = message
                if ways is not None:
                    heard = ways.setdefault(message["serverID"], [])
                    if way not in heard:
                        heard.append(way)
                if (enough and len(found) >= enough) or message["serverID"] == wanted:
                    enough_found.set()

    try:
        if probe_to:
            prober = discovery.udp_socket(broadcast=True)
            listeners.append(prober)
            prober.sendto(discovery.PROBE, discovery.address(probe_to, probe_port))
        tasks = [asyncio.create_task(listen(s, "probe" if i else "broadcast")) for i, s in enumerate(listeners)]
        try:
            await asyncio.wait_for(enough_found.wait(), timeout_ms / 1000)
        except asyncio.TimeoutError:
            pass
    finally:
        await discovery.cancel_all(tasks)
        for sock in listeners:
            sock.close()
    return found
