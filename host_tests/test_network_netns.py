"""Discovery over real broadcast between network namespaces joined by a virtual bridge, then purchases.

The test builds a small LAN: namespace HUB holds a bridge (and the
simulated gateway, at 10.77.0.254), and three namespaces A, B, C are each
plugged into it with a veth pair (10.77.0.1-3/24, default route on the
link so the limited broadcast 255.255.255.255 goes out, as on a WiFi
LAN). Every Thing runs with the reference's defaults: broadcasts to
255.255.255.255:8980, probes on 8981, REST API on 64521. A MicroPython
producer lives in A, a CPython one in B; consumers in C, under either
runtime, hear both over the bridge by broadcast alone and by a probe,
and each buys from the producer of the other runtime over the bridge,
paying through the gateway over HTTPS.

Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to create namespaces; where
the kernel refuses, the tests are skipped saying so. The namespaces and
every process are removed afterwards, also on failure.
"""
import pytest

from harness import netns
from harness.things import Things, step

SUBNET = "10.77.0.%d"
HUB_ADDRESS = SUBNET % 254
MEMBERS = {"a": 1, "b": 2, "c": 3}
PRODUCERS = {"a": ("micropython", "lan-mp-producer"), "b": ("cpython", "lan-cpy-producer")}


@pytest.fixture(scope="module")
def lan(tmp_path_factory):
    """Namespaces {hub, a, b, c} joined by a bridge in hub; removed at the end whatever happens."""
    reason = netns.unavailable()
    if reason:
        pytest.skip("network namespaces unavailable: " + reason)
    spaces = netns.Namespaces(("hub", "a", "b", "c"))
    try:
        spaces.ip("hub", "link", "add", "br0", "type", "bridge")
        spaces.ip("hub", "addr", "add", HUB_ADDRESS + "/24", "dev", "br0")
        spaces.ip("hub", "link", "set", "br0", "up")
        for role, number in MEMBERS.items():
            port = "port-" + role
            spaces.ip("hub", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", spaces.names[role])
            spaces.ip("hub", "link", "set", port, "master", "br0")
            spaces.ip("hub", "link", "set", port, "up")
            spaces.ip(role, "addr", "add", SUBNET % number + "/24", "dev", "eth0")
            spaces.ip(role, "link", "set", "eth0", "up")
            spaces.ip(role, "route", "add", "default", "dev", "eth0")  # a route for 255.255.255.255
        yield {"names": spaces.names, "folder": tmp_path_factory.mktemp("lan")}
    finally:
        spaces.close()


def in_ns(lan, role):
    return ["ip", "netns", "exec", lan["names"][role]]


@pytest.fixture(scope="module")
def market(lan):
    """The gateway in the hub; producers in A (MicroPython) and B (CPython), all on the default ports."""
    folder = lan["folder"]
    things = Things(folder)
    try:
        gateway = things.gateway(db=str(folder / "gateway.db"), host=HUB_ADDRESS, prefix=in_ns(lan, "hub"))
        url, ca = gateway.url, gateway.ca_path
        assert url.startswith("https://"), url
        producers = {}
        for role, (runtime, server_id) in PRODUCERS.items():
            address = SUBNET % MEMBERS[role]
            producers[role] = things.producer(
                server_id, runtime, url, ca, ports=(8980, 8981), prefix=in_ns(lan, role), host=address,
                broadcast_address="255.255.255.255", interval_ms=300, network={"port": 64521})
        yield {"things": things, "url": url, "ca": ca, "producers": producers, "db": str(folder / "gateway.db")}
    finally:
        things.close()


def heard(records):
    (discover,) = step(records, "discover")
    return sorted((p["serverID"], p["host"], p["port"]) for p in discover["heard"])


EVERYONE = sorted((server_id, SUBNET % MEMBERS[role], 64521) for role, (_, server_id) in PRODUCERS.items())


@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_broadcasts_cross_the_bridge(lan, market, runtime):
    code, records, output = market["things"].consumer(runtime, ["--action", "scan", "--probe-address", "",
                                                                "--scan-ms", "1000"], prefix=in_ns(lan, "c"))
    assert code == 0, output
    assert heard(records) == EVERYONE, output


@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_a_probe_to_the_subnet_is_answered_across_the_bridge(lan, market, runtime):
    code, records, output = market["things"].consumer(runtime, [
        "--action", "scan", "--probe-address", SUBNET % 255, "--broadcast-port", "18980", "--scan-ms", "500"],
        prefix=in_ns(lan, "c"))  # nobody broadcasts to 18980: only the probe's answers can arrive
    assert code == 0, output
    assert heard(records) == EVERYONE, output


@pytest.mark.parametrize("consumer_runtime,seller", [("micropython", "b"), ("cpython", "a")])
def test_a_consumer_buys_from_a_producer_in_another_namespace(lan, market, consumer_runtime, seller):
    _, server_id = PRODUCERS[seller]
    code, records, output = market["things"].consumer(consumer_runtime, [
        "--server-id", server_id, "--gateway", market["url"], "--ca", market["ca"], "--service", "2",
        "--price", "7", "--units", "40", "--parts", "2", "--client-id", "lan-car-" + consumer_runtime],
        prefix=in_ns(lan, "c"))
    assert code == 0, output
    (discover,) = step(records, "discover")
    assert discover["chosen"] == server_id
    (pay,) = step(records, "pay")
    assert pay["totalPaid"] == 200
    assert [d["remaining"] for d in step(records, "deliver")] == [20, 0]
