"""The MQTT client against a scripted hostile broker: a clear MQTTError in bounded time, never a hang.

Each test runs a small asyncio TCP server that reads what the client sends
and answers with the bytes of its script (oversize, malformed, silent,
trickling, closing), then checks the client's error and that it closed.
"""
import asyncio
import sys

from wpwithin import mqtt
from wpwithin.mqtt import MQTTError

HOST = "127.0.0.1"
# Each runtime gets its own ports so runs never meet.
BASE = 18930 if sys.implementation.name == "cpython" else 28930
CONNACK = b"\x20\x02\x00\x00"
READ = 1  # script steps besides bytes to send and seconds (a float) to sleep
CLOSE = 2


async def serve(port, script):
    """A broker on port that plays script for each connection: bytes are sent, a float is slept,
    READ waits for the client's next bytes, CLOSE hangs up; afterwards it waits to be closed."""
    async def session(reader, writer):
        try:
            await reader.read(512)  # CONNECT
            for step in script:
                if isinstance(step, bytes):
                    writer.write(step)
                    await writer.drain()
                elif step == READ:
                    await reader.read(512)
                elif step == CLOSE:
                    break
                else:
                    await asyncio.sleep(step)
            else:
                await reader.read(512)  # until the client hangs up
        except OSError:
            pass
        writer.close()
        await writer.wait_closed()
    return await asyncio.start_server(session, HOST, port)


async def failure(coro):
    try:
        await coro
    except MQTTError as exc:
        return exc
    raise AssertionError("no MQTTError")


def run(n, script, body):
    """Start the scripted broker on port BASE + n, run body(client), stop the broker."""
    async def main():
        server = await serve(BASE + n, script)
        client = mqtt.Client(HOST, BASE + n, "hostile-test", keepalive=0, timeout_ms=300)
        try:
            return await body(client)
        finally:
            client.close()
            server.close()
            await server.wait_closed()
    return asyncio.run(main())


def test_a_broker_that_never_answers_connect():
    async def body(c):
        exc = await failure(c.connect(300))
        assert exc.message == "no CONNACK from broker 127.0.0.1:%d within 300 ms" % (BASE + 0), exc.message
        assert not c.connected
    run(0, [5.0], body)


def test_connect_refused_by_the_broker_names_the_code():
    async def body(c):
        exc = await failure(c.connect(1000))
        assert exc.code == 5 and exc.message == "CONNACK code 5: not authorised", exc.message
        assert not c.connected
    run(1, [b"\x20\x02\x00\x05"], body)


def test_nobody_listening():
    async def main():
        c = mqtt.Client(HOST, BASE + 2, "x")
        exc = await failure(c.connect(1000))
        assert exc.message.startswith("connecting to broker 127.0.0.1:%d failed: " % (BASE + 2)), exc.message
    asyncio.run(main())


def test_garbage_instead_of_connack():
    async def body(c):
        exc = await failure(c.connect(1000))
        assert exc.message == "broker 127.0.0.1:%d: remaining length is longer than 4 bytes" % (BASE + 3)
        assert not c.connected
    run(3, [b"\xff" * 64], body)


def test_an_oversize_publish_is_refused_from_its_header():
    async def body(c):
        await c.connect(1000)
        exc = await failure(c.recv(2000))
        assert exc.message.endswith(": packet of 268435455 bytes is over the 2048-byte limit"), exc.message
        assert not c.connected
    run(4, [CONNACK, b"\x30\xff\xff\xff\x7f" + b"x" * 4096, b"x" * 65536], body)


def test_a_malformed_publish_is_refused():
    async def body(c):
        await c.connect(1000)
        exc = await failure(c.recv(2000))
        assert exc.message.endswith(": topic holds a wildcard"), exc.message
    run(5, [CONNACK, b"\x30\x05\x00\x03a/#"], body)


def test_closed_mid_packet():
    async def body(c):
        await c.connect(1000)
        exc = await failure(c.recv(2000))
        assert exc.message == "broker 127.0.0.1:%d closed the connection" % (BASE + 6), exc.message
    run(6, [CONNACK, b"\x30\x10\x00\x03a/b", CLOSE], body)


def test_a_trickled_packet_is_kept_across_timeouts():
    async def body(c):
        await c.connect(1000)
        assert await c.recv(100) is None  # half a packet in, the rest 0.3 s later: not lost, not a hang
        assert len(c._pending) == 5
        assert await c.recv(2000) == ("a/b", b"hi", False)
    run(7, [CONNACK, b"\x30\x07\x00\x03a", 0.3, b"/bhi"], body)


def test_connack_twice_is_refused():
    async def body(c):
        await c.connect(1000)
        exc = await failure(c.recv(1000))
        assert exc.message == "broker 127.0.0.1:%d sent CONNACK twice" % (BASE + 8), exc.message
    run(8, [CONNACK, CONNACK], body)


def test_a_puback_that_never_comes():
    async def body(c):
        await c.connect(1000)
        exc = await failure(c.publish("t", b"x", qos=1))
        assert exc.message == "no PUBACK from broker 127.0.0.1:%d within 300 ms" % (BASE + 9), exc.message
        assert not c.connected
        exc = await failure(c.publish("t", b"x"))
        assert exc.message == "not connected to broker 127.0.0.1:%d" % (BASE + 9), exc.message
    run(9, [CONNACK, 5.0], body)


def test_messages_while_waiting_for_puback_are_kept():
    async def body(c):
        await c.connect(1000)
        await c.publish("t", b"x", qos=1)
        assert await c.recv(100) == ("a/b", b"1", False)
        assert await c.recv(100) == ("a/b", b"2", True)
        assert await c.recv(100) is None
    run(10, [CONNACK, READ, b"\x30\x06\x00\x03a/b1\x31\x06\x00\x03a/b2", b"\x40\x02\x00\x01"], body)


def test_a_flood_while_waiting_for_puback_is_bounded():
    async def body(c):
        await c.connect(1000)
        exc = await failure(c.publish("t", b"x", qos=1))
        assert exc.message == "more than 8 messages from broker 127.0.0.1:%d while waiting for PUBACK" % (
            BASE + 11), exc.message
    run(11, [CONNACK, READ, b"\x30\x06\x00\x03a/b1" * 20], body)


def test_a_broker_that_stops_answering_pings():
    async def main():
        server = await serve(BASE + 12, [CONNACK, 5.0])
        c = mqtt.Client(HOST, BASE + 12, "x", keepalive=1, timeout_ms=300)
        try:
            await c.connect(1000)
            exc = await failure(c.ping())
            assert exc.message.startswith("no PINGRESP from broker"), exc.message
            await c.connect(1000)  # a new connection; recv pings after half the keepalive by itself
            exc = await failure(c.recv(5000))
            assert exc.message == "no PINGRESP from broker 127.0.0.1:%d within 500 ms" % (BASE + 12), exc.message
        finally:
            c.close()
            server.close()
            await server.wait_closed()
    asyncio.run(main())


def test_qos1_publish_from_the_broker_is_acknowledged():
    got = []

    async def main():
        async def session(reader, writer):
            await reader.read(512)
            writer.write(CONNACK + b"\x32\x09\x00\x03a/b\x00\x2ahi")
            await writer.drain()
            got.append(await reader.read(512))
            writer.close()
            await writer.wait_closed()
        server = await asyncio.start_server(session, HOST, BASE + 13)
        c = mqtt.Client(HOST, BASE + 13, "x")
        try:
            await c.connect(1000)
            assert await c.recv(1000) == ("a/b", b"hi", False)
            await asyncio.sleep(0.1)
        finally:
            c.close()
            server.close()
            await server.wait_closed()
    asyncio.run(main())
    assert got == [b"\x40\x02\x00\x2a"], got


def test_broker_urls():
    assert mqtt.parse_url("mqtt://10.0.0.2") == (False, "10.0.0.2", 1883)
    assert mqtt.parse_url("mqtts://broker.example") == (True, "broker.example", 8883)
    assert mqtt.parse_url("mqtts://broker.example:9883") == (True, "broker.example", 9883)
    assert mqtt.parse_url("mqtt://[::1]:1884") == (False, "::1", 1884)
    assert mqtt.parse_url("mqtt://[::1]") == (False, "::1", 1883)
    for bad in ("http://x", "mqtt://", "mqtt://x:0", "mqtt://x:99999", "mqtt://x:port", "mqtt://u@x",
                "mqtt://x/path", "x:1883", "mqtt://a b"):
        try:
            mqtt.parse_url(bad)
        except ValueError as exc:
            assert str(exc) == "must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"
            continue
        raise AssertionError("accepted %s" % bad)
