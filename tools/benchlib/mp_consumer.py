"""A MicroPython consumer for tools/bench.py: times discovery and full purchases from inside.

    micropython -m mp_consumer fast N BROADCAST_PORT PROBE_PORT SERVER_ID
    micropython -m mp_consumer broadcast N BROADCAST_PORT INTERVAL_MS SERVER_ID
    micropython -m mp_consumer buy N HOST PORT GATEWAY_URL [CA_FILE]

Uses the lib's ConsumerRole (its source lib/ on MICROPYPATH: the consumer
modules are not in a producer-only bundle). Prints one JSON line
{"ms": [...], "failed": n, "errors": [...]}: per trial, milliseconds (ticks_us)
from the consumer starting to look until it has the producer, or for one
whole purchase (discover and price list, total, card to token at the
gateway, payment, delivery begin and end).
fast: N probes one after another (127.255.255.255, the loopback broadcast).
broadcast: no probe; N scans at once, scan i starting i/N of an interval
late, so their phases against the producer's broadcast clock are spread
evenly over one interval (a scan waits on average half an interval).
buy: one purchase first, not timed (imports, first connections), then N.
"""
import asyncio
import json
import sys
from time import ticks_diff, ticks_ms, ticks_us

from wpwithin import discovery
from wpwithin.card import Card
from wpwithin.consumer_role import ConsumerRole, Producer
from wpwithin.gateway_client import GatewayClient

CARD = Card("Bench Consumer", "4444333322221111", 12, 2031, "123")


def say(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    flush = getattr(sys.stdout, "flush", None)
    if flush is not None:
        flush()


async def look(role, port, probe_to, probe_port, server_id, timeout_ms):
    """Milliseconds until `server_id` is heard, or None."""
    began = ticks_us()
    found = await role.discover(timeout_ms, probe_to, 0, port, probe_port, server_id)
    ms = ticks_diff(ticks_us(), began) / 1000
    for producer in found:
        if producer.server_id == server_id:
            return ms
    return None


async def fast(n, port, probe_port, server_id):
    role = ConsumerRole("bench-scan", None, None)
    times = []
    for _ in range(n):
        times.append(await look(role, port, "127.255.255.255", probe_port, server_id, 2000))
    return times


async def broadcast(n, port, interval_ms, server_id):
    role = ConsumerRole("bench-scan", None, None)
    times = [None] * n

    async def one(i):
        await asyncio.sleep_ms(interval_ms * i // n)
        times[i] = await look(role, port, None, discovery.PROBE_PORT, server_id, 2 * interval_ms + 1000)

    await asyncio.gather(*[one(i) for i in range(n)])
    return times


async def buy(n, host, port, gateway_url, ca_file):
    ca = None
    if ca_file:
        with open(ca_file, "rb") as f:
            ca = f.read()
    role = ConsumerRole("bench-buyer", CARD, GatewayClient(gateway_url, ca=ca, timeout=10), timeout=10)
    producer = Producer(host, port)
    times = []
    errors = []
    for i in range(n + 1):
        began = ticks_us()
        try:
            purchase = await role.buy(producer, 1, 1, 2)
            await role.deliver(producer, purchase, 2)
        except Exception as exc:  # noqa: a failure is a figure too
            errors.append(repr(exc))
            if i:
                times.append(None)
            continue
        if i:
            times.append(ticks_diff(ticks_us(), began) / 1000)
    return times, errors


def main(argv):
    mode, n = argv[1], int(argv[2])
    started = ticks_ms()
    errors = []
    if mode == "fast":
        times = asyncio.run(fast(n, int(argv[3]), int(argv[4]), argv[5]))
    elif mode == "broadcast":
        times = asyncio.run(broadcast(n, int(argv[3]), int(argv[4]), argv[5]))
    else:
        times, errors = asyncio.run(buy(n, argv[3], int(argv[4]), argv[5], argv[6] if len(argv) > 6 else None))
    say({"ms": [t for t in times if t is not None], "failed": len([t for t in times if t is None]),
         "errors": errors[:5], "wallMs": ticks_diff(ticks_ms(), started)})


main(sys.argv)
