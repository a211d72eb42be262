"""`wpw scan --broker` and `wpw fleet` against the harness's mosquitto, run as a user runs them.

A real MicroPython producer broadcasts on loopback and keeps its advert
on the broker (network.broker), with a status every 5 s. Two stand-ins
(our MQTT client publishing what a producer publishes) add an advert
whose address nobody serves any more (stale) and one that drops off, so
its will empties its advert. wpw runs from this checkout.
"""
import asyncio
import json
import os
import signal
import socket
import subprocess

import pytest

from harness.process import Process, free_port, free_ports
from harness.things import WPW, WPW_ENV, Things
from wpwcli import main as wpw_main
from wpwithin import mqtt, wire



STATUS_S = 5  # bay-1's network.brokerStatusInterval


def advert(server_id, port, description="A charger"):
    return wire.encode_json(wire.broadcast(server_id, description, "127.0.0.1", port))


async def stand_in(b, server_id, port):
    """A Thing's MQTT side: its advert retained, with its will; the connected client."""
    topic = "wpw/v1/things/%s/" % server_id
    c = mqtt.Client("127.0.0.1", b.port, server_id, username=server_id, password=b.password(server_id),
                    will=(topic + "advert", b"", True))
    await c.connect()
    await c.publish(topic + "advert", advert(server_id, port), retain=True, qos=1)
    return c


async def advert_of(b, server_id, close=None):
    """Wait until the broker holds server_id's advert (empty: with `close`, closed first without DISCONNECT,
    until the broker has published its will)."""
    watcher = mqtt.Client("127.0.0.1", b.port, "watch-" + server_id, username="operator",
                          password=b.password("operator"))
    await watcher.connect()
    await watcher.subscribe("wpw/v1/things/%s/advert" % server_id)
    if close is not None:
        close.close()
    while True:
        got = await watcher.recv(20000)
        assert got is not None, "no advert from %s within 20 s" % server_id
        if (got[1] == b"") == (close is not None):
            break
    await watcher.disconnect()


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    work = tmp_path_factory.mktemp("fleet")
    with Things(work) as things:
        b = things.broker(things=["bay-1", "bay-2", "bay-3"], consumers=["operator"])
        ports = free_ports(2, socket.SOCK_DGRAM)
        producer = things.producer("bay-1", "micropython", "http://127.0.0.1:9/v1", ports=ports, interval_ms=200,
                                   network={"broker": b.url, "brokerStatusInterval": STATUS_S},
                                   secrets={"brokerPassword": b.password("bay-1")})
        loop = asyncio.new_event_loop()
        loop.run_until_complete(advert_of(b, "bay-1"))
        clients = [loop.run_until_complete(stand_in(b, "bay-2", free_port()))]
        gone = loop.run_until_complete(stand_in(b, "bay-3", free_port()))
        loop.run_until_complete(advert_of(b, "bay-3", close=gone))  # dropped off: the broker publishes its will
        yield {"broker": b, "ports": ports, "producer": producer, "work": work, "loop": loop, "clients": clients}
        for c in clients:
            loop.run_until_complete(c.disconnect())
        loop.close()


def env(market, **extra):
    settings = dict(WPW_ENV, WPW_HOME=str(market["work"] / "home"), WPW_BROKER_USER="operator",
                    WPW_BROKER_PASSWORD=market["broker"].password("operator"))
    return dict(os.environ, **dict(settings, **extra))


def wpw(market, *args, check=None, **extra):
    proc = subprocess.run(WPW + list(args), capture_output=True, text=True, timeout=60, env=env(market, **extra))
    if check is not None:
        assert proc.returncode == check, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert market["broker"].password("operator") not in proc.stdout + proc.stderr
    return proc


def test_scan_merges_broadcasts_probes_and_the_broker_and_marks_what_is_gone(market):
    b, (broadcast_port, probe_port) = market["broker"], market["ports"]
    proc = wpw(market, "scan", "--json", "--seconds", "1.5", "--probe-address", "127.255.255.255",
               "--broadcast-port", str(broadcast_port), "--probe-port", str(probe_port), "--broker", b.url, check=0)
    found = json.loads(proc.stdout)
    by_id = {p["serverID"]: p for p in found["producers"]}
    assert sorted(by_id) == ["bay-1", "bay-2"]
    assert sorted(by_id["bay-1"]["foundBy"]) == ["broadcast", "broker", "probe"] and by_id["bay-1"]["stale"] is None
    assert by_id["bay-1"]["port"] == market["producer"]["port"]
    assert by_id["bay-2"]["foundBy"] == ["broker"]
    assert by_id["bay-2"]["stale"].startswith("retained advert, but connect to 127.0.0.1:")
    assert found["gone"] == []  # bay-3's will emptied its advert before the scan: nothing of it is left

    human = wpw(market, "scan", "--seconds", "1", "--no-probe", "--broadcast-port", str(broadcast_port),
                "--broker", b.url, check=0).stdout.splitlines()
    assert [line.split()[:3] for line in human[:2]] == [
        ["bay-1", "127.0.0.1:%d" % market["producer"]["port"], "broadcast+broker"],
        ["bay-2", by_id["bay-2"]["host"] + ":%d" % by_id["bay-2"]["port"], "broker"]]
    assert "STALE" in human[1] and len(human) == 2


def test_broadcast_alone_finds_only_what_broadcasts(market):
    proc = wpw(market, "scan", "--json", "--seconds", "1", "--no-probe", "--broadcast-port",
               str(market["ports"][0]), check=0)
    assert [(p["serverID"], p["foundBy"]) for p in json.loads(proc.stdout)["producers"]] == [("bay-1", ["broadcast"])]


def test_fleet_json_has_one_row_per_thing(market):
    proc = wpw(market, "fleet", "--json", "--seconds", str(STATUS_S + 1), "--broker", market["broker"].url, check=0)
    rows = {r["serverID"]: r for r in json.loads(proc.stdout)["things"]}
    assert sorted(rows) == ["bay-1", "bay-2"]  # bay-3's advert is gone and statuses are not retained
    assert rows["bay-1"]["up"] and rows["bay-1"]["address"] == "127.0.0.1:%d" % market["producer"]["port"]
    assert (rows["bay-1"]["ordersOpen"], rows["bay-1"]["unitsSold"], rows["bay-1"]["lastError"]) == (0, {}, None)
    assert isinstance(rows["bay-1"]["heapFree"], int) and isinstance(rows["bay-1"]["since"], int)
    assert rows["bay-2"]["up"] and rows["bay-2"]["heapFree"] is None  # a stale advert: no status comes


def test_fleet_over_mqtts_verifies_the_broker(market, tmp_path):
    b = market["broker"]
    proc = wpw(market, "fleet", "--seconds", "0.5", "--broker", b.tls_url, "--broker-ca", b.ca_path, check=0)
    assert [line.split()[0] for line in proc.stdout.splitlines()] == ["bay-1", "bay-2"]
    from gatewaysim import tlsca
    other = tlsca.ensure_credentials(str(tmp_path / "other-ca")).ca_cert
    proc = wpw(market, "fleet", "--broker", b.tls_url, "--broker-ca", other, check=3)
    assert "TLS with broker" in proc.stderr and "certificate verify failed" in proc.stderr
    proc = wpw(market, "fleet", "--broker", b.tls_url, check=2)
    assert "needs the CA" in proc.stderr


def test_a_wrong_password_is_refused_with_a_clear_error(market):
    proc = wpw(market, "fleet", "--broker", market["broker"].url, check=1, WPW_BROKER_PASSWORD="not-it")
    assert "refused user operator: CONNACK code 5: not authorised" in proc.stderr
    assert "not-it" not in proc.stderr


def test_fleet_watch_shows_a_thing_go_down_when_its_will_clears_its_advert(market):
    b = market["broker"]
    loop = market["loop"]
    c = loop.run_until_complete(stand_in(b, "bay-3", free_port()))  # back up
    watch = Process("wpw fleet --watch", WPW + ["fleet", "--watch", "--broker", b.url], env=env(market))
    try:
        while " up " not in watch.expect("bay-3", 20):
            pass
        loop.run_until_complete(advert_of(b, "bay-3", close=c))
        while "DOWN" not in watch.expect("bay-3", 20):
            pass
        assert watch.stop(signal.SIGINT, group=False) == 0  # Ctrl-C ends --watch, exit 0
    finally:
        watch.stop()
    assert "Traceback" not in watch.text()


def test_fleet_watch_rides_out_a_broker_restart(market):
    """The broker restarts (forgetting every retained advert): --watch says so, reconnects, and shows bay-1
    again once the producer has reconnected and advertised itself again."""
    b = market["broker"]
    watch = Process("wpw fleet --watch", WPW + ["fleet", "--watch", "--broker", b.url], env=env(market))
    try:
        while " up " not in watch.expect("bay-1", 20):
            pass
        b.restart()
        while "retrying in" not in watch.expect("wpw fleet  ", 20):  # the header says the broker went away
            pass
        while "retrying in" in watch.expect("wpw fleet  ", 60):  # and, once it is back, no longer
            pass
        while " up " not in watch.expect("bay-1", 60):  # its link's backoff, then its advert again
            pass
        assert market["producer"]["process"].alive()
    finally:
        watch.stop()
    assert "Traceback" not in watch.text()


def test_every_scan_and_fleet_option_has_help():
    sub = next(a for a in wpw_main.parser()._actions if a.dest == "command")
    for name in ("scan", "fleet"):
        missing = [a.option_strings for a in sub.choices[name]._actions if not a.help]
        assert not missing, "%s options without help: %s" % (name, missing)
