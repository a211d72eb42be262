"""Two subnets with no broadcast path between them, one MQTT broker: the consumer finds and buys from both.

Namespace R routes between subnet 1 (10.78.1.0/24: a bridge in R with
the MicroPython producer in A and the consumer in C) and subnet 2
(10.78.2.0/24: the CPython producer in B, on a veth to R). R also holds
mosquitto (docs/mqtt.md's configuration, TLS on 8883) and the simulated
gateway, at 10.78.1.254. Every Thing runs with the reference's discovery
defaults (broadcasts to 255.255.255.255:8980, probes on 8981), so a
broadcast or a probe from C reaches A and never B: a router does not
forward them. Both producers set network.broker to the broker over
mqtts, each with its own user. The consumer is wpw in C, as a user runs
it: `wpw scan` alone hears A only, with --broker it finds both; it buys
from each; `wpw fleet --json` shows both with what they sold; a
producer killed with SIGKILL has its advert emptied by its will and the
fleet shows it down.

Needs root to create namespaces (skipped otherwise, saying why); the
namespaces and every process are removed afterwards, also on failure.
"""
import json
import os
import shutil
import signal

import pytest

from harness import netns
from harness.things import WPW, WPW_ENV, Things

ROUTER = "10.78.1.254"
PRODUCERS = {"a": ("micropython", "site1-mp", "10.78.1.1"), "b": ("cpython", "site2-cpy", "10.78.2.1")}
CONSUMER = "10.78.1.3"
STATUS_S = 5  # network.brokerStatusInterval: its least


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    reason = netns.unavailable()
    if reason:
        pytest.skip("network namespaces unavailable: " + reason)
    spaces = netns.Namespaces(("r", "a", "b", "c"), tag="wpwm")
    try:
        spaces.sysctl("r", "net.ipv4.ip_forward=1")
        spaces.ip("r", "link", "add", "br1", "type", "bridge")
        spaces.ip("r", "addr", "add", ROUTER + "/24", "dev", "br1")
        spaces.ip("r", "link", "set", "br1", "up")
        for role, address, via in (("a", "10.78.1.1", ROUTER), ("c", CONSUMER, ROUTER), ("b", "10.78.2.1", None)):
            port = "to-" + role
            spaces.ip("r", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", spaces.names[role])
            if via:
                spaces.ip("r", "link", "set", port, "master", "br1")
            else:
                spaces.ip("r", "addr", "add", "10.78.2.254/24", "dev", port)
            spaces.ip("r", "link", "set", port, "up")
            spaces.ip(role, "addr", "add", address + "/24", "dev", "eth0")
            spaces.ip(role, "link", "set", "eth0", "up")
            spaces.ip(role, "route", "add", "default", "via", via or "10.78.2.254")
        yield spaces
    finally:
        spaces.close()


@pytest.fixture(scope="module")
def market(sites, tmp_path_factory):
    folder = tmp_path_factory.mktemp("subnets")
    things = Things(folder)
    try:
        broker = things.broker(things=[sid for _, sid, _ in PRODUCERS.values()], consumers=["car", "operator"],
                               host=ROUTER, prefix=sites.prefix("r"))
        gateway = things.gateway(db=str(folder / "gateway.db"), host=ROUTER, prefix=sites.prefix("r"))
        producers = {}
        for role, (runtime, server_id, address) in PRODUCERS.items():
            home = folder / server_id
            home.mkdir()
            shutil.copyfile(broker.ca_path, str(home / "broker-ca.pem"))  # beside its config, as on a board
            producers[role] = things.producer(
                server_id, runtime, gateway.url, gateway.ca_path, ports=(8980, 8981), prefix=sites.prefix(role),
                host=address, broadcast_address="255.255.255.255", interval_ms=300,
                network={"port": 64521, "broker": broker.tls_url, "brokerCa": "broker-ca.pem",
                         "brokerStatusInterval": STATUS_S},
                secrets={"brokerPassword": broker.password(server_id)})
        card = folder / "card.json"
        card.write_text(json.dumps({"name": "Car Two", "number": "5555555555554444", "expiryMonth": 12,
                                    "expiryYear": 2031, "cvc": "321"}))
        env = dict(WPW_ENV, WPW_HOME=str(folder / "home"), WPW_GATEWAY=gateway.url, WPW_GATEWAY_CA=gateway.ca_path,
                   WPW_CARD=str(card), WPW_BROKER_CA=broker.ca_path)
        market = {"things": things, "broker": broker, "producers": producers, "env": env, "sites": sites}
        watch = wpw_process(market, "operator", "fleet", "--watch", "--json", "--broker", broker.tls_url)
        market["watch"] = watch
        up_both = until(watch, lambda rows: all(r["up"] and r["unitsSold"] is not None for r in rows.values())
                        and len(rows) == 2)
        assert sorted(up_both) == sorted(sid for _, sid, _ in PRODUCERS.values())
        yield market
    finally:
        things.close()


def wpw_process(market, user, *args):
    env = dict(market["env"], WPW_BROKER_USER=user, WPW_BROKER_PASSWORD=market["broker"].password(user))
    return market["things"].start("wpw " + args[0], WPW + list(args), env=env, prefix=market["sites"].prefix("c"))


def wpw(market, *args, user="car", timeout=60):
    """wpw ARGS in the consumer's namespace: (exit status, output)."""
    process = wpw_process(market, user, *args)
    return process.wait(timeout), process.text()


def until(watch, done, timeout=60):
    """The first fleet (serverID: row) printed by `wpw fleet --watch --json` for which done(rows) holds."""
    while True:
        rows = {r["serverID"]: r for r in json.loads(watch.expect('{"things"', timeout))["things"]}
        if done(rows):
            return rows


def test_broadcast_alone_finds_only_the_producer_on_its_own_subnet(market):
    code, text = wpw(market, "scan", "--json", "--quiet", "--seconds", "1.5")
    assert code == 0, text
    found = json.loads(text)["producers"]
    assert [(p["serverID"], p["host"], sorted(p["foundBy"])) for p in found] == [
        ("site1-mp", "10.78.1.1", ["broadcast", "probe"])]


def test_the_broker_finds_both_and_the_consumer_buys_from_each(market):
    code, text = wpw(market, "scan", "--json", "--quiet", "--seconds", "1.5", "--broker", market["broker"].tls_url)
    assert code == 0, text
    found = {p["serverID"]: p for p in json.loads(text)["producers"]}
    assert sorted(found) == ["site1-mp", "site2-cpy"]
    assert sorted(found["site1-mp"]["foundBy"]) == ["broadcast", "broker", "probe"]
    assert found["site2-cpy"]["foundBy"] == ["broker"] and found["site2-cpy"]["stale"] is None
    assert (found["site2-cpy"]["host"], found["site2-cpy"]["port"]) == ("10.78.2.1", 64521)
    for server_id, p in sorted(found.items()):
        code, text = wpw(market, "buy", "%s:%d" % (p["host"], p["port"]), "--service", "2", "--price", "7",
                         "--units", "4", "--json", "--quiet", "--client-id", "car-" + server_id)
        assert code == 0, text
        receipt = json.loads(text)
        assert (receipt["serverID"], receipt["units"], receipt["totalPaid"]) == (server_id, 4, 20)
    rows = until(market["watch"], lambda rows: all((r["unitsSold"] or {}).get("2") == 4 for r in rows.values()),
                 timeout=3 * STATUS_S + 10)
    assert all(r["ordersOpen"] == 1 for r in rows.values()), rows
    code, text = wpw(market, "fleet", "--json", "--quiet", "--seconds", str(STATUS_S + 2), "--broker",
                     market["broker"].tls_url, user="operator")
    assert code == 0, text
    fleet = {r["serverID"]: r for r in json.loads(text)["things"]}
    assert sorted(fleet) == ["site1-mp", "site2-cpy"]
    for _, server_id, address in PRODUCERS.values():
        row = fleet[server_id]
        assert row["up"] and row["address"] == "%s:64521" % address, row
        assert row["unitsSold"] == {"2": 4} and row["ordersOpen"] == 1, row
    assert isinstance(fleet["site1-mp"]["heapFree"], int)  # MicroPython says its heap; CPython has none to say


def test_a_killed_producer_is_shown_down_once_its_will_clears_its_advert(market):
    market["producers"]["b"]["process"].stop(signal.SIGKILL)
    rows = until(market["watch"], lambda rows: not rows["site2-cpy"]["up"])
    assert rows["site1-mp"]["up"]
    code, text = wpw(market, "scan", "--json", "--quiet", "--seconds", "1", "--broker", market["broker"].tls_url)
    assert code == 0, text
    assert [p["serverID"] for p in json.loads(text)["producers"]] == ["site1-mp"]
