"""What mosquitto, run with docs/mqtt.md's configuration, enforces against our MQTT client (wpwithin.mqtt).

A Thing may write only under its own serverID and a consumer only reads:
what either publishes elsewhere is dropped by the broker, which we see
with a subscriber that gets a marker published after it (the broker
handles one client's QoS 1 PUBLISH, and forwards it, before it sends the
PUBACK, so anything it let through would arrive before the marker) and
with a fresh subscriber that is given only the retained messages the
owners published. Over mqtts a broker certified by another CA is refused
(test_mqtt_client covers passwords, the will and a wrong host name).
"""
import asyncio

import pytest

from gatewaysim import tlsca
from wpwithin import mqtt
from wpwithin.tls import tls_context

ADVERT = "wpw/v1/things/%s/advert"
EVERYTHING = "wpw/v1/things/#"


def client(b, user, name=None, tls=False, ca=None):
    port, context = b.port, None
    if tls:
        port, context = b.tls_port, tls_context(cafile=ca or b.ca_path)
    return mqtt.Client("127.0.0.1", port, name or user, username=user, password=b.password(user), ssl=context)


async def connected(b, user, name=None, **options):
    c = client(b, user, name, **options)
    await c.connect()
    return c


async def messages_until(c, marker_topic, timeout_ms=5000):
    """What c receives up to and including the first message on marker_topic."""
    got = []
    while True:
        message = await c.recv(timeout_ms)
        assert message is not None, "no marker on %s within %d ms; got %r" % (marker_topic, timeout_ms, got)
        got.append(message[:2])
        if message[0] == marker_topic:
            return got


async def retained(b, topic_filter, marker_topic):
    """The retained messages a new consumer is given, up to the one on marker_topic."""
    c = await connected(b, "car", "late-car")
    try:
        await c.subscribe(topic_filter)
        return await messages_until(c, marker_topic)
    finally:
        await c.disconnect()


@pytest.fixture
def fleet_broker(broker):
    return broker(things=["charger-a", "charger-b"], consumers=["car"])


def test_a_thing_cannot_publish_under_another_things_id(fleet_broker):
    b = fleet_broker

    async def main():
        watcher = await connected(b, "car", "watcher")
        await watcher.subscribe(EVERYTHING)
        a, owner = await connected(b, "charger-a"), await connected(b, "charger-b")
        await a.publish(ADVERT % "charger-b", b'{"forged": true}', retain=True, qos=1)
        await a.publish("wpw/v1/things/charger-b/status", b'{"forged": true}', retain=True, qos=1)
        await owner.publish(ADVERT % "charger-b", b'{"owner": true}', retain=True, qos=1)
        seen = await messages_until(watcher, ADVERT % "charger-b")
        assert seen == [(ADVERT % "charger-b", b'{"owner": true}')]
        assert await retained(b, EVERYTHING, ADVERT % "charger-b") == seen  # no forged status retained
        await a.publish(ADVERT % "charger-a", b'{"own": true}', qos=1)  # its own topic it may write
        assert await messages_until(watcher, ADVERT % "charger-a") == [(ADVERT % "charger-a", b'{"own": true}')]
        for c in (watcher, a, owner):
            await c.disconnect()
    asyncio.run(main())


def test_a_consumer_cannot_publish_adverts(fleet_broker):
    b = fleet_broker

    async def main():
        watcher = await connected(b, "car", "watcher")
        await watcher.subscribe(EVERYTHING)
        car, thing = await connected(b, "car", "forger"), await connected(b, "charger-a")
        await car.publish(ADVERT % "charger-a", b'{"forged": true}', retain=True, qos=1)
        await car.publish(ADVERT % "car", b'{"forged": true}', retain=True, qos=1)
        await thing.publish(ADVERT % "charger-a", b'{"owner": true}', retain=True, qos=1)
        seen = await messages_until(watcher, ADVERT % "charger-a")
        assert seen == [(ADVERT % "charger-a", b'{"owner": true}')]
        assert await retained(b, EVERYTHING, ADVERT % "charger-a") == seen
        for c in (watcher, car, thing):
            await c.disconnect()
    asyncio.run(main())


def test_mqtts_is_refused_with_a_certificate_of_another_ca(fleet_broker, tmp_path):
    b = fleet_broker
    other_ca = tlsca.ensure_credentials(str(tmp_path / "other-ca")).ca_cert

    async def main():
        c = await connected(b, "car", tls=True)
        await c.subscribe(EVERYTHING)
        thing = await connected(b, "charger-a", tls=True)
        await thing.publish(ADVERT % "charger-a", b"{}", qos=1)
        assert await messages_until(c, ADVERT % "charger-a") == [(ADVERT % "charger-a", b"{}")]
        with pytest.raises(mqtt.MQTTError) as refused:
            await connected(b, "car", "wrong-ca", tls=True, ca=other_ca)
        assert str(refused.value).startswith("TLS with broker 127.0.0.1:%d failed" % b.tls_port)
        for one in (c, thing):
            await one.disconnect()
    asyncio.run(main())
