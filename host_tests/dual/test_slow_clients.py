"""Slow clients: 100 connections that send nothing or trickle bytes do not starve honest ones."""
import asyncio

from wpwithin import wire
from wpwithin.http_client import request
from wpwithin.http_server import Server

HOST = "127.0.0.1"


async def handler(method, path, headers, body):
    return 200, wire.encode_json({"path": path})


async def attacker(port, trickle, stop):
    """Connect once; send nothing, or one byte of a request every 50 ms, until dropped."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 2)
    except (OSError, asyncio.TimeoutError):
        return
    try:
        data = b"GET /service/discover HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 1000
        i = 0
        while not stop.is_set():
            if trickle:
                writer.write(data[i % len(data):i % len(data) + 1])
                await writer.drain()
                i += 1
            await asyncio.sleep(0.05)
    except OSError:
        pass  # dropped by the server: what it should do
    finally:
        writer.close()


def test_honest_requests_are_served_while_100_slow_clients_hold_on():
    async def main():
        server = Server(handler, HOST, 0, max_connections=4, read_timeout=5, request_timeout=10,
                        idle_timeout=5, stall_timeout=0.3, log=lambda m: None)
        await server.start()
        stop = asyncio.Event()
        attackers = [asyncio.create_task(attacker(server.port, i % 2 == 0, stop)) for i in range(100)]
        await asyncio.sleep(0.5)  # every slot is now held by a slow client
        statuses = []
        for i in range(20):
            status, _, body = await request("GET", HOST, server.port, "/service/%d" % i, timeout=3)
            statuses.append(status)
        stop.set()
        await asyncio.sleep(0.2)
        for task in attackers:
            task.cancel()
        await asyncio.sleep(0.1)
        server.close()
        await server.wait_closed()
        assert statuses == [200] * 20, statuses
    asyncio.run(main())
