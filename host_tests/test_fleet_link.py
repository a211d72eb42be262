"""A producer with network.broker set, under each runtime, against the harness's real mosquitto.

Its advert is retained on wpw/v1/things/ID/advert with the broadcast's
fields and cleared by its will when the process is SIGKILLed; its status
comes at the interval with the units sold; with the broker stopped it goes
on selling, and its advert and status come back once the broker is back;
behind a relay that holds every byte from the broker back for seconds,
its HTTP API answers as it did before (latency measured and printed, next
to the same measurement with the broker answering at once).
"""
import asyncio
import json
import signal
import socket
import time

import pytest

from relay import Relay
from harness.shopping import shop
from harness.things import Things
from wpwithin import mqtt

RUNTIMES = ["micropython", "cpython"]
ADVERT_KEYS = {"deviceDescription", "hostname", "portNumber", "serverID", "urlPrefix", "scheme"}
STATUS_KEYS = {"upSince", "heapFree", "ordersOpen", "unitsSold", "lastError"}
INTERVAL = 5  # network.brokerStatusInterval here (s), the smallest allowed


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    from gatewaysim.simulator import Simulator

    folder = tmp_path_factory.mktemp("gateway")
    with Simulator(db=str(folder / "gateway.db"), log=lambda *a: None) as sim:
        yield sim


def start_producer(things, b, sid, runtime, gateway, port=None, tls_ca=None):
    """A producer announcing itself on broker b (through `port` instead of the broker's, when given;
    over mqtts with the CA file tls_ca, when given)."""
    url = "mqtt://127.0.0.1:%d" % (port or b.port)
    network = {"broker": url, "brokerStatusInterval": INTERVAL}
    if tls_ca:
        network.update(broker=b.tls_url, brokerCa=tls_ca)
        url = b.tls_url
    started = things.producer(sid, runtime, gateway.url, network=network, secrets={"brokerPassword": b.password(sid)})
    started["url"] = url
    return started


def connected(things, sid, runtime, gateway):
    """A broker with users for sid and "car", and sid's producer once its link says it is connected."""
    b = things.broker(things=[sid], consumers=["car"])
    p = start_producer(things, b, sid, runtime, gateway)
    p["process"].expect("broker %s: connected" % p["url"], 15)
    return b, p


def listen(b, topic_filter, seconds, until=None, user="car", then=None):
    """Messages (topic, payload, retain) heard on b within `seconds`, or until until(messages) holds;
    then() is called once subscribed, before listening."""
    async def main():
        client = mqtt.Client("127.0.0.1", b.port, "%s-%d" % (user, time.monotonic_ns()), user, b.password(user))
        await client.connect(5000)
        got = []
        try:
            await client.subscribe(topic_filter)
            if then is not None:
                await asyncio.get_running_loop().run_in_executor(None, then)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not (until and until(got)):
                message = await client.recv(int((deadline - time.monotonic()) * 1000) + 1)
                if message is not None:
                    got.append(message)
        finally:
            await client.disconnect()
        return got
    return asyncio.run(main())


def adverts(messages):
    return [m for m in messages if m[0].endswith("/advert")]


def statuses(messages):
    return [json.loads(m[1]) for m in messages if m[0].endswith("/status")]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_advert_retained_status_sent_and_the_will_clears_the_advert(runtime, gateway, tmp_path):
    sid = "fleet-a-" + runtime
    with Things(tmp_path) as things:
        b, p = connected(things, sid, runtime, gateway)
        # "connected" is logged before the advert goes out: a subscriber that came first would get it
        # live, with the retain flag clear (MQTT 3.1.1, 3.3.1.3). Once it is out, a new subscriber
        # must be handed it by the broker, retained.
        assert adverts(listen(b, "wpw/v1/things/%s/advert" % sid, 10, adverts)), "no advert within 10 s"
        heard = listen(b, "wpw/v1/things/%s/#" % sid, 3 * INTERVAL, lambda got: adverts(got) and statuses(got))
        advert = adverts(heard)[0]
        assert advert[2] is True, "not retained: %r" % (advert,)
        body = json.loads(advert[1])
        assert set(body) == ADVERT_KEYS
        assert (body["serverID"], body["hostname"], body["portNumber"], body["scheme"], body["urlPrefix"]) == (
            sid, "127.0.0.1", p["port"], "http://", "")
        status = statuses(heard)[0]
        assert set(status) == STATUS_KEYS, status
        assert (status["ordersOpen"], status["unitsSold"], status["lastError"]) == (0, {}, None)
        assert isinstance(status["upSince"], int)
        assert isinstance(status["heapFree"], int) if runtime == "micropython" else status["heapFree"] is None
        text = json.dumps(status) + advert[1].decode()
        assert "T_C_" not in text and "T_S_" not in text and "TEST_SU_" not in text  # no key or token

        result = shop(p["port"], gateway.url, purchases=2, seconds=60, parts=(3,))
        assert result["completed"] == 2
        later = listen(b, "wpw/v1/things/%s/status" % sid, 3 * INTERVAL,
                       lambda got: any(s["unitsSold"] for s in statuses(got)))
        assert [s["unitsSold"] for s in statuses(later) if s["unitsSold"]][0] == {"1": 6}

        kill = lambda: p["process"].stop(signal.SIGKILL)  # noqa: E731  (no goodbye: the broker sends the will)
        cleared = listen(b, "wpw/v1/things/%s/advert" % sid, 10, lambda got: len(got) == 2, then=kill)
        assert cleared[1:] == [("wpw/v1/things/%s/advert" % sid, b"", False)], cleared
        assert listen(b, "wpw/v1/things/#", 1) == []  # nothing retained for a newcomer


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_over_mqtts_the_broker_certificate_is_verified(runtime, gateway, tmp_path):
    from gatewaysim import tlsca

    with Things(tmp_path) as things:
        b = things.broker(things=["fleet-t-" + runtime, "fleet-u-" + runtime], consumers=["car"])
        good = start_producer(things, b, "fleet-t-" + runtime, runtime, gateway, tls_ca=b.ca_path)
        good["process"].expect("broker %s: connected" % b.tls_url, 20)
        other = tlsca.ensure_credentials(str(tmp_path / "other-ca")).ca_cert
        bad = start_producer(things, b, "fleet-u-" + runtime, runtime, gateway, tls_ca=other)
        line = bad["process"].expect("broker %s: " % b.tls_url, 20)
        assert "TLS with broker 127.0.0.1:%d failed" % b.tls_port in line and "sales go on" in line, line
        heard = listen(b, "wpw/v1/things/+/advert", 5, lambda got: got)
        assert [json.loads(m[1])["serverID"] for m in heard] == ["fleet-t-" + runtime]
        assert shop(bad["port"], gateway.url, purchases=1)["completed"] == 1


def test_deploying_a_config_with_a_broker_ca_copies_it_to_the_board(tmp_path):
    from vboardlib import boardfiles

    (tmp_path / "config.json").write_text(json.dumps({"network": {"broker": "mqtts://b:8883", "brokerCa": "fleet.der"},
                                                      "gateway": {"ca": "gw.der"}}))
    (tmp_path / "gw.der").write_bytes(b"x")
    plan = boardfiles.plan(str(tmp_path / "config.json"), secrets_required=False)
    assert plan.problems == ["config.network.brokerCa names fleet.der, which is not beside the config"]
    (tmp_path / "fleet.der").write_bytes(b"y")
    plan = boardfiles.plan(str(tmp_path / "config.json"), secrets_required=False)
    assert not plan.problems and sorted(board for _, board in plan.files) == ["config.json", "fleet.der", "gw.der"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_sales_go_on_while_the_broker_is_down_and_the_link_comes_back(runtime, gateway, tmp_path):
    sid = "fleet-b-" + runtime
    with Things(tmp_path) as things:
        b, p = connected(things, sid, runtime, gateway)
        b.stop()
        p["process"].expect("broker %s: " % p["url"], 3 * INTERVAL)  # it noticed: the next status failed
        result = shop(p["port"], gateway.url, purchases=3, seconds=60, parts=(2,))
        assert result["completed"] == 3, result
        b.restart()
        line = p["process"].expect("broker %s: connected again" % p["url"], 40)
        print("\n%s" % line)
        assert adverts(listen(b, "wpw/v1/things/%s/advert" % sid, 10, adverts)), "no advert within 10 s"
        heard = listen(b, "wpw/v1/things/%s/#" % sid, 3 * INTERVAL, lambda got: adverts(got) and statuses(got))
        assert adverts(heard) and adverts(heard)[0][2] is True  # the advert is back, retained
        assert statuses(heard)[0]["unitsSold"] == {"1": 6}


def latencies(port, n=40, gap=0.05):
    """Round-trip times (ms) of n GET /service/discover, each on a new connection, `gap` s apart."""
    out = []
    for _ in range(n):
        start = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /service/discover HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        out.append((time.perf_counter() - start) * 1000)
        assert data.startswith(b"HTTP/1.1 200 "), data[:100]
        time.sleep(gap)
    return out


def summary(ms):
    ms = sorted(ms)
    return "median %.1f ms, 95th %.1f ms, max %.1f ms" % (ms[len(ms) // 2], ms[int(len(ms) * 0.95)], ms[-1])


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_slow_broker_does_not_hold_up_http_serving(runtime, gateway, tmp_path):
    sid = "fleet-c-" + runtime
    with Things(tmp_path) as things:
        b = things.broker(things=[sid], consumers=["car"])
        relay = Relay(b.port)
        try:
            p = start_producer(things, b, sid, runtime, gateway, port=relay.port)
            p["process"].expect("broker %s: connected" % p["url"], 15)
            anchor = latencies(p["port"])  # the broker answering at once
            relay.delay = 4.0  # every answer of the broker 4 s late: under the 5 s deadline, then over it
            slow = latencies(p["port"], n=60, gap=0.1)
            relay.delay = 7.0
            slower = latencies(p["port"], n=60, gap=0.1)
            gave_up = p["process"].expect("broker %s: no PUBACK from" % p["url"], 4 * INTERVAL)
            held = relay.delayed
        finally:
            relay.close()
        print("\nHTTP round trip under %s, broker answering at once: %s" % (runtime, summary(anchor)))
        print("HTTP round trip under %s, broker 4 s late:           %s" % (runtime, summary(slow)))
        print("HTTP round trip under %s, broker 7 s late:           %s (%d chunks from the broker held)"
              % (runtime, summary(slower), held))
        print("the link meanwhile: %s" % gave_up)  # it waited its 5 s deadline on a PUBACK, then gave up
        assert held > 0
        assert shop(p["port"], gateway.url, purchases=1)["completed"] == 1
