"""Full purchases over loopback in every pairing of runtimes, against the simulated gateway over HTTPS.

Two producers run as a user runs them (`tools/thing --runtime R`), one
under MicroPython and one under CPython; consumers are
`tools/consumer_main.py` under either runtime. Each pairing discovers its
producer by fast probe on 127.255.255.255, selects 12 kWh (the volume
tier answers with price 2), pays through the gateway (card to one-use
token, token to the producer, who charges it) and takes the units in two
delivery sessions; the gateway's ledger then holds exactly that charge.
Discovery by broadcast alone is checked too, as is a declined card.
"""
import json
import os
import socket

import pytest
from gatewaysim.simulator import Simulator

from harness.process import free_port, free_ports
from harness.things import CARD, DECLINED_CARD, LOOPBACK_BROADCAST, Things, step

PRODUCERS = {"micropython": "mp-producer", "cpython": "cpy-producer"}
PAIRINGS = [("micropython", "cpython"), ("cpython", "micropython"), ("micropython", "micropython"),
            ("cpython", "cpython")]


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """The simulated gateway (HTTPS) and one producer per runtime, broadcasting every 250 ms."""
    folder = tmp_path_factory.mktemp("market")
    things = Things(folder)
    ports = free_ports(3, socket.SOCK_DGRAM)  # broadcasts, probes, and one nobody sends to
    try:
        with Simulator(db=str(folder / "gateway.db"), tls_dir=str(folder / "tls"), log=lambda *a: None) as sim:
            producers = {}
            for runtime, server_id in PRODUCERS.items():
                producers[runtime] = things.producer(server_id, runtime, sim.url, sim.ca_path, ports=ports[:2],
                                                     interval_ms=250)
            yield {"sim": sim, "things": things, "ports": ports, "producers": producers}
    finally:
        things.close()


def consumer_args(market, server_id, *extra):
    sim = market["sim"]
    return ["--gateway", sim.url, "--ca", sim.ca_path, "--probe-address", LOOPBACK_BROADCAST,
            "--broadcast-port", str(market["ports"][0]), "--probe-port", str(market["ports"][1]),
            "--server-id", server_id, "--scan-ms", "3000"] + list(extra)


@pytest.mark.parametrize("producer_runtime,consumer_runtime", PAIRINGS,
                         ids=["%s-producer-%s-consumer" % p for p in PAIRINGS])
def test_full_purchase_over_loopback(market, producer_runtime, consumer_runtime):
    producer = market["producers"][producer_runtime]
    client_id = "car-%s-buys-from-%s" % (consumer_runtime, producer_runtime)
    code, records, output = market["things"].consumer(consumer_runtime, consumer_args(
        market, producer["serverID"], "--service", "1", "--price", "1", "--units", "12", "--parts", "2",
        "--client-id", client_id))
    assert code == 0, output
    (discover,) = step(records, "discover")
    assert discover["chosen"] == producer["serverID"]
    assert {"serverID": producer["serverID"], "host": "127.0.0.1", "port": producer["port"], "urlPrefix": "",
            "description": "%s (network test)" % producer["serverID"]} in discover["heard"]
    (select,) = step(records, "select")
    assert (select["priceID"], select["units"], select["totalPrice"], select["currency"]) == (2, 12, 300, "GBP")
    (pay,) = step(records, "pay")
    assert pay["totalPaid"] == 300 and pay["card"] == "**** **** **** 1111"
    assert [(d["supplied"], d["remaining"]) for d in step(records, "deliver")] == [(6, 6), (6, 0)]
    (summary,) = step(records, "summary")
    assert summary["ok"] and summary["purchases"] == 1 and summary["clientID"] == client_id
    assert "4444333322221111" not in output and '"123"' not in output
    ledger = market["sim"].ledger
    (order,) = ledger.orders_by_customer_order_code(select["paymentReferenceID"] + ".1")  # its first attempt
    assert (order["status"], order["charged"], order["refunded"]) == ("SUCCESS", 300, 0), order
    assert ledger.reconcile()["consistent"]


@pytest.mark.parametrize("consumer_runtime", ["micropython", "cpython"])
def test_discovery_by_broadcast_alone_hears_both_producers(market, consumer_runtime):
    """No probe: the periodic broadcasts to 127.255.255.255 carry each producer's address."""
    code, records, output = market["things"].consumer(consumer_runtime, [
        "--action", "scan", "--probe-address", "", "--broadcast-port", str(market["ports"][0]),
        "--probe-port", str(market["ports"][1]), "--scan-ms", "1000"])
    assert code == 0, output
    (discover,) = step(records, "discover")
    heard = {(p["serverID"], p["port"]) for p in discover["heard"]}
    assert heard == {(p["serverID"], p["port"]) for p in market["producers"].values()}, output


@pytest.mark.parametrize("consumer_runtime", ["micropython", "cpython"])
def test_probe_is_answered_by_both_producers_at_once(market, consumer_runtime):
    """A scan with a probe on a port nobody broadcasts to: only the probe's answers can be heard."""
    code, records, output = market["things"].consumer(consumer_runtime, [
        "--action", "scan", "--probe-address", LOOPBACK_BROADCAST, "--broadcast-port",
        str(market["ports"][2]), "--probe-port", str(market["ports"][1]), "--scan-ms", "500"])
    assert code == 0, output
    (discover,) = step(records, "discover")
    assert sorted(p["serverID"] for p in discover["heard"]) == sorted(PRODUCERS.values()), output


@pytest.mark.parametrize("producer_runtime,consumer_runtime", [("micropython", "micropython"),
                                                               ("cpython", "micropython")])
def test_a_declined_card_is_refused_and_nothing_is_charged(market, producer_runtime, consumer_runtime):
    producer = market["producers"][producer_runtime]
    code, records, output = market["things"].consumer(consumer_runtime, consumer_args(
        market, producer["serverID"], "--service", "2", "--price", "7", "--units", "30"), card=DECLINED_CARD)
    assert code == 4, output  # declined
    (summary,) = step(records, "summary")
    assert summary["status"] == 402 and "Refused by the card issuer" in summary["message"], summary
    assert step(records, "pay") == []
    (select,) = step(records, "select")
    (order,) = market["sim"].ledger.orders_by_customer_order_code(select["paymentReferenceID"] + ".1")  # its first attempt
    assert (order["status"], order["charged"]) == ("FAILED", 0), order


@pytest.mark.parametrize("consumer_runtime", ["micropython", "cpython"])
def test_the_consumer_takes_its_settings_from_a_config_file(market, consumer_runtime, tmp_path):
    """Paths in the file are relative to it; a producer address skips discovery; purchases repeat."""
    producer = market["producers"]["micropython"]
    (tmp_path / "card.json").write_text(json.dumps(CARD))
    (tmp_path / "shopping.json").write_text(json.dumps({
        "producer": "127.0.0.1:%d" % producer["port"], "serviceId": 2, "priceId": 7, "units": 10, "purchases": 2,
        "gateway": market["sim"].url, "ca": os.path.relpath(market["sim"].ca_path, str(tmp_path)),
        "card": "card.json", "clientId": "configured-car"}))
    code, records, output = market["things"].consumer(consumer_runtime, ["--config", str(tmp_path / "shopping.json")],
                                                      card=None)
    assert code == 0, output
    assert step(records, "discover") == []
    assert [p["totalPaid"] for p in step(records, "pay")] == [50, 50]
    (summary,) = step(records, "summary")
    assert (summary["purchases"], summary["totalPaid"], summary["units"]) == (2, 100, 20)


@pytest.mark.parametrize("consumer_runtime", ["micropython", "cpython"])
def test_consumer_exit_codes_say_what_went_wrong(market, consumer_runtime):
    run = market["things"].consumer
    sim = market["sim"]
    producer = "127.0.0.1:%d" % market["producers"]["cpython"]["port"]
    buy = ["--gateway", sim.url, "--ca", sim.ca_path, "--price", "1", "--units", "1"]
    code, records, output = run(consumer_runtime, ["--help"], card=None)  # the docstring, read from the file
    assert code == 0 and records == [] and "--service N --price N --units N" in output, output
    code, records, output = run(consumer_runtime, buy)  # no --service
    assert code == 2 and step(records, "summary")[0]["message"] == "serviceId is required (option --service)", output
    code, records, output = run(consumer_runtime, buy + ["--service", "9", "--producer", producer])
    assert code == 1 and "does not offer service 9" in step(records, "summary")[0]["message"], output
    closed = "127.0.0.1:%d" % free_port()
    code, records, output = run(consumer_runtime, buy + ["--service", "1", "--producer", closed])
    assert code == 3 and "cannot connect" in step(records, "summary")[0]["message"], output
    code, records, output = run(consumer_runtime, buy + ["--service", "1", "--server-id", "nobody", "--scan-ms",
                                                         "300", "--broadcast-port", str(market["ports"][0]),
                                                         "--probe-address", LOOPBACK_BROADCAST])
    assert code == 3 and "no producer nobody heard" in step(records, "summary")[0]["message"], output
