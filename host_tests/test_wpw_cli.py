"""The wpw command, driven as a user would: subprocesses against a real gateway and a MicroPython producer."""
import json
import os
import socket
import subprocess
import sys

import pytest

import demo  # tools/demo.py: its charger and merchant keys
from harness.process import free_ports
from harness.things import Things

WPW = os.path.join(os.path.dirname(sys.executable), "wpw")


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """A simulated gateway (HTTPS) and a producer under MicroPython; yields what the CLI needs."""
    work = tmp_path_factory.mktemp("market")
    with Things(work) as things:
        gateway = things.gateway(db=str(work / "gateway.db"), merchants=["%s:%s" % (demo.CLIENT_KEY, demo.SERVICE_KEY)])
        ports = free_ports(2, socket.SOCK_DGRAM)
        charger = demo.CHARGER
        producer = things.producer(charger["serverId"], "micropython", gateway.url, gateway.ca_path, ports=ports,
                                   services=charger["services"], keys=charger["keys"],
                                   description=charger["description"])
        cards = {}
        for name, number in (("good", "5555555555554444"), ("declined", "4000000000000002")):
            cards[name] = str(work / ("%s-card.json" % name))
            with open(cards[name], "w") as f:
                json.dump({"name": "Test Shopper", "number": number, "expiryMonth": 12, "expiryYear": 2031,
                           "cvc": "321"}, f)
        yield {"url": gateway.url, "ca": gateway.ca_path, "address": "%s:%d" % (producer["host"], producer["port"]),
               "ports": ports, "cards": cards, "work": work}


def wpw(market, *args, card="good", check=None):
    env = dict(os.environ, WPW_GATEWAY=market["url"], WPW_GATEWAY_CA=market["ca"],
               WPW_CARD=market["cards"][card], WPW_HOME=str(market["work"] / "home"))
    proc = subprocess.run([WPW] + list(args), capture_output=True, text=True, timeout=60, env=env)
    if check is not None:
        assert proc.returncode == check, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_help_lists_the_commands():
    proc = subprocess.run([WPW, "--help"], capture_output=True, text=True)
    for command in ("scan", "services", "buy", "redeem", "tokens", "pending", "resume", "producer", "consumer"):
        assert command in proc.stdout
    assert "130 interrupted" in proc.stdout and "6 a payment's outcome is not known" in proc.stdout
    proc = subprocess.run([WPW, "buy", "--help"], capture_output=True, text=True)
    assert "--payment-timeout" in proc.stdout and "3 x its gateway timeout" in " ".join(proc.stdout.split())


def test_scan_finds_the_producer_by_probe(market):
    proc = wpw(market, "scan", "--json", "--seconds", "2", "--probe-address", "127.255.255.255",
               "--broadcast-port", str(market["ports"][0]), "--probe-port", str(market["ports"][1]), check=0)
    producers = json.loads(proc.stdout)["producers"]
    assert [p["serverID"] for p in producers] == ["charger-bay-3"]
    assert "%s:%d" % (producers[0]["host"], producers[0]["port"]) == market["address"]
    assert "listening" in proc.stderr  # progress while it waits


def test_services_lists_prices(market):
    proc = wpw(market, "services", market["address"], check=0)
    assert "service 1: Car charge" in proc.stdout
    assert "price 2: GBP 0.25 per kWh (11 kWh and more)" in proc.stdout


def test_buy_then_redeem_in_parts_then_tokens(market):
    trace = market["work"] / "buy.svg"
    proc = wpw(market, "buy", market["address"], "--service", "1", "--price", "1", "--units", "6", "--json",
               "--trace", str(trace), check=0)
    receipt = json.loads(proc.stdout)
    assert receipt["units"] == 6 and receipt["totalPaid"] == 180 and receipt["currency"] == "GBP"
    assert receipt["card"] == "**** **** **** 4444"
    assert "5555555555554444" not in proc.stdout + proc.stderr
    svg = trace.read_text()
    assert svg.startswith("<svg") and "POST /payment" in svg and "POST /v1/tokens" in svg and "POST /orders" in svg
    token = receipt["token"][:10]
    proc = wpw(market, "redeem", token, "--units", "4", "--parts", "2", "--json", check=0)
    assert json.loads(proc.stdout)["sessions"] == [{"supplied": 2, "remaining": 4}, {"supplied": 2, "remaining": 2}]
    proc = wpw(market, "tokens", "--json", check=0)
    held = [t for t in json.loads(proc.stdout)["tokens"] if t["token"] == receipt["token"]]
    assert held[0]["remaining"] == 2 and held[0]["units"] == 6
    proc = wpw(market, "redeem", token, "--units", "3", check=1)
    assert "2 units left" in proc.stderr
    home = market["work"] / "home"
    assert oct(home.stat().st_mode & 0o777) == "0o700"
    for name in os.listdir(home):  # the journal, its lock: the tokens are bearer credentials
        assert oct((home / name).stat().st_mode & 0o777) == "0o600", name


def test_declined_card_exits_4_and_says_nothing_was_charged(market):
    proc = wpw(market, "buy", market["address"], "--service", "1", "--price", "1", "--units", "1",
               card="declined", check=4)
    assert "declined" in proc.stderr and "nothing was charged" in proc.stderr


def test_unreachable_producer_exits_3(market):
    proc = wpw(market, "services", "127.0.0.1:9", "--timeout", "2", check=3)
    assert "check the address" in proc.stderr


def test_bad_arguments_exit_2_with_a_message(market):
    proc = wpw(market, "buy", "not-an-address", "--service", "1", "--price", "1", "--units", "1", check=2)
    assert "HOST:PORT" in proc.stderr
    proc = wpw(market, "buy", market["address"], "--service", "1", "--price", "1", "--units", "0", check=2)
    assert "--units must be at least 1" in proc.stderr
    proc = wpw(market, "redeem", "zzzzzzzz", "--units", "1", check=2)
    assert "wpw tokens" in proc.stderr


def test_unknown_service_is_refused_with_exit_1(market):
    proc = wpw(market, "buy", market["address"], "--service", "9", "--price", "1", "--units", "1", check=1)
    assert "does not offer service 9" in proc.stderr and "wpw services" in proc.stderr
