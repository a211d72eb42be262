"""Discovery on loopback: broadcasts, fast probes, and junk on the port."""
import asyncio
import sys

from wpwithin import discovery, scanner, wire

# Each runtime gets its own ports so runs never hear each other.
BASE = 18980 if sys.implementation.name == "cpython" else 28980
SCAN_PORT, PROBE_PORT = BASE, BASE + 1
LOOP = "127.255.255.255"  # this host's loopback broadcast


def message(server_id):
    return wire.broadcast(server_id, "A charger", "127.0.0.1", 64521)


async def with_tasks(coros, body):
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        await asyncio.sleep(0.05)
        return await body()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.sleep(0.05)


def test_scanner_hears_broadcasts_once_per_server():
    async def main():
        casters = [discovery.Broadcaster(message("a"), LOOP, SCAN_PORT, 50),
                   discovery.Broadcaster(message("b"), LOOP, SCAN_PORT, 50)]

        ways = {}

        async def body():
            return await scanner.scan(400, SCAN_PORT, ways=ways)
        found = await with_tasks([c.run() for c in casters], body)
        assert sorted(found) == ["a", "b"], found
        assert ways == {"a": ["broadcast"], "b": ["broadcast"]}
        assert found["a"] == message("a")
        assert casters[0].sent >= 2 and not casters[0].failing
    asyncio.run(main())


def test_probe_is_answered_at_once_without_waiting_for_the_interval():
    async def main():
        caster = discovery.Broadcaster(message("slow"), LOOP, SCAN_PORT + 10, 60000)
        responders = [discovery.ProbeResponder(message("p1"), PROBE_PORT),
                      discovery.ProbeResponder(message("p2"), PROBE_PORT)]

        ways = {}

        async def body():
            return await scanner.scan(3000, SCAN_PORT, probe_to=LOOP, probe_port=PROBE_PORT, enough=2, ways=ways)
        found = await with_tasks([caster.run()] + [r.run() for r in responders], body)
        assert sorted(found) == ["p1", "p2"], found
        assert ways == {"p1": ["probe"], "p2": ["probe"]}
    asyncio.run(main())


def test_scan_with_enough_returns_early():
    async def main():
        caster = discovery.Broadcaster(message("a"), LOOP, SCAN_PORT + 2, 20)

        async def body():
            return await scanner.scan(60000, SCAN_PORT + 2, enough=1)
        assert list(await with_tasks([caster.run()], body)) == ["a"]
    asyncio.run(main())


def test_junk_datagrams_are_ignored():
    async def main():
        junk = [b"", b"\xff\xfe", b"{", b"[]", b'{"serverID": 5}', b'{"hostname": "x"}',
                discovery.PROBE, b"x" * 2000, wire.encode_json(message("good"))]

        async def send():
            sock = discovery.udp_socket(broadcast=True)
            await asyncio.sleep(0.05)
            for datagram in junk:
                try:
                    sock.sendto(datagram, discovery.address(LOOP, SCAN_PORT + 3))
                except OSError:
                    pass
            sock.close()

        async def body():
            return await scanner.scan(300, SCAN_PORT + 3)
        found = await with_tasks([send()], body)
        assert list(found) == ["good"], found
    asyncio.run(main())


def test_parse_datagram():
    assert scanner.parse_datagram(wire.encode_json(message("s")))["serverID"] == "s"
    assert scanner.parse_datagram(b"not json") is None
    assert scanner.parse_datagram(discovery.PROBE) is None
