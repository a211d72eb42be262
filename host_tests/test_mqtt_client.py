"""lib/'s MQTT client against a real mosquitto (the harness's, with passwords, ACLs and TLS), under both runtimes.

The checks are one coroutine, _checks, run in this process (CPython) and,
as source, in a MicroPython subprocess; both must see the same outcomes:
a retained advert with a will that clears it when the Thing drops off and
not when it says DISCONNECT, QoS 1 acknowledged, pings answered, the
CONNACK codes of a wrong password and of no user, and mqtts verified
against the test CA (a wrong host name refused); a consumer's scan with a
broker hears an advert, drops it when the will empties it, and with a
wrong password hears nothing and says why.
"""
import asyncio
import inspect

import mpy
from wpwithin import mqtt
from wpwithin.tls import tls_context

ADVERT = "wpw/v1/things/thing-a/advert"


async def _checks(port, tls_port, ca, thing_pw, car_pw):
    """What both runtimes must see; returns a list of outcome words."""
    out = []

    def client(user, password, **kw):
        return mqtt.Client("127.0.0.1", port, user + "-c", user, password, **kw)

    will = (ADVERT, b"", True)
    thing = client("thing-a", thing_pw, will=will, keepalive=10)
    await thing.connect(3000)
    await thing.publish(ADVERT, b'{"serverID": "thing-a"}', retain=True, qos=1)
    car = client("car", car_pw)
    await car.connect(3000)
    out.append("qos%d" % await car.subscribe("wpw/v1/things/+/advert", 1))
    got = await car.recv(3000)
    out.append("retained" if got == (ADVERT, b'{"serverID": "thing-a"}', True) else repr(got))
    await thing.ping()
    out.append("pong")
    thing.close()  # dropped off, no DISCONNECT: the broker publishes the will
    got = await car.recv(3000)
    out.append("will" if got == (ADVERT, b"", False) else repr(got))
    await car.disconnect()

    late = client("car", car_pw)  # a later subscriber: the will cleared the retained advert
    await late.connect(3000)
    await late.subscribe("wpw/v1/things/#")
    out.append("cleared" if await late.recv(500) is None else "still retained")

    polite = client("thing-a", thing_pw, will=(ADVERT, b"", True))
    await polite.connect(3000)
    await polite.publish(ADVERT, b"back", retain=True)
    got = await late.recv(3000)
    out.append("live" if got == (ADVERT, b"back", False) else repr(got))
    await polite.disconnect()  # DISCONNECT: no will
    out.append("no will" if await late.recv(500) is None else "will")
    late.close()

    for user, password in (("car", "wrong"), (None, None)):
        try:
            await mqtt.Client("127.0.0.1", port, "x", user, password).connect(3000)
            out.append("accepted")
        except mqtt.MQTTError as exc:
            out.append("code %s" % exc.code)

    ctx = tls_context(cafile=ca)
    tls = mqtt.Client("127.0.0.1", tls_port, "car-tls", "car", car_pw, ssl=ctx)
    await tls.connect(3000)
    await tls.ping()
    await tls.disconnect()
    out.append("tls")
    try:
        await mqtt.Client("127.0.0.1", tls_port, "car-tls", "car", car_pw, ssl=ctx,
                          server_hostname="wrong.example").connect(3000)
        out.append("accepted")
    except mqtt.MQTTError as exc:
        out.append("tls refused" if exc.message.startswith("TLS with broker 127.0.0.1:") else exc.message)

    # A consumer's scan with a broker (consumer.broker): the advert heard, then dropped when the will empties it.
    from wpwithin import scanner, wire

    seller = client("thing-a", thing_pw, will=will, keepalive=10)
    await seller.connect(3000)
    await seller.publish(ADVERT, wire.encode_json(wire.broadcast("thing-a", "Bay 1", "127.0.0.1", 64521)), True, 1)
    await seller.publish("wpw/v1/things/thing-a/other", b"{}", True, 1)  # not an advert: never taken
    ways = {}
    found = await scanner.scan(1000, 0, broker=client("car", car_pw), ways=ways, wanted="thing-a", log=out.append)
    out.append("heard %s by %s" % (",".join(found), ways.get("thing-a")))

    async def drop_off():
        await asyncio.sleep(0.5)
        seller.close()  # its will empties the advert while the next scan listens
    dropping = asyncio.create_task(drop_off())
    found = await scanner.scan(1500, 0, broker=client("car", car_pw), log=out.append)
    await dropping
    out.append("after the will: %s" % (",".join(found) or "none"))
    found = await scanner.scan(500, 0, broker=client("car", "wrong"), log=lambda m: out.append(
        m.replace(str(port), "PORT")))
    return out


EXPECTED = ["qos1", "retained", "pong", "will", "cleared", "live", "no will", "code 5", "code 5", "tls",
            "tls refused", "heard thing-a by ['broker']", "after the will: none",
            "scan: broker 127.0.0.1:PORT refused: CONNACK code 5: not authorised; hearing broadcasts only"]


def _args(b):
    return b.port, b.tls_port, b.ca_path, b.password("thing-a"), b.password("car")


def test_client_with_mosquitto_under_cpython(broker):
    b = broker(things=["thing-a"], consumers=["car"])
    assert asyncio.run(_checks(*_args(b))) == EXPECTED


def test_client_with_mosquitto_under_micropython(broker, tmp_path):
    b = broker(things=["thing-a"], consumers=["car"])
    script = tmp_path / "mqtt_checks.py"
    script.write_text("import asyncio, sys\nfrom wpwithin import mqtt\nfrom wpwithin.tls import tls_context\n"
                      "ADVERT = %r\n" % ADVERT + inspect.getsource(_checks) +
                      "print('RESULTS', '|'.join(asyncio.run(_checks(*[int(a) if a.isdigit() else a "
                      "for a in sys.argv[1:]]))))\n")
    proc = mpy.run([str(script)] + [str(a) for a in _args(b)], timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULTS ")]
    assert line and line[0][len("RESULTS "):].split("|") == EXPECTED, proc.stdout + proc.stderr
