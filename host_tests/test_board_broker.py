"""Two virtual boards, deployed with tools/deploy, that meet only through mosquitto.

The producer board sets network.broker (plain MQTT); its broadcasts and
probe answers use ports nobody else listens on, so the consumer board can
find it only by the advert it keeps on the broker. The consumer board sets
consumer.broker over mqtts, with the broker's CA beside its config (deploy
copies it). Over the serial REPL, as a user driving a board's consumer
would (or its own main.py), it starts the Thing of its deployed config,
discovers the producer and buys from it; `wpw fleet --json`
shows the producer board with what it sold. A broker the consumer cannot
reach costs only the adverts: the scan still ends, saying why on the
console.
"""
import json
import os
import shutil
import subprocess

from harness.process import free_port
from harness.things import WPW, WPW_ENV
from harness.vboard import board_files

from test_vboard import deploy

STATUS_S = 5


def consumer_code(seller, scan_ms=6000):
    """What a board's own program does with the consumer, typed at its REPL (Ctrl-C stopped the app):
    the Thing from the deployed config, started; the producer discovered, 2 units bought and taken."""
    return "\n".join([
        "import asyncio, gc, json",
        "from wpwithin import app",
        "from wpwithin.thing import Thing",
        "app.state['thing'] = None",
        "gc.collect()",
        "board = app.make_board()",
        "config, secrets, ca = app.load(board)",
        "t = Thing(config, secrets, board, log=app.log, gateway_ca=ca)",
        "async def go():",
        "    await t.start()",
        "    try:",
        "        found = await t.consumer.discover(%d, wanted=%r)" % (scan_ms, seller),
        "        out = {'found': [p.server_id for p in found]}",
        "        if found:",
        "            purchase = await t.consumer.buy(found[0], 1, 1, 2)",
        "            end = await t.consumer.deliver(found[0], purchase, 2)",
        "            out.update(paid=purchase.total['totalPrice'], left=end['unitsRemaining'], host=found[0].host)",
        "        return out",
        "    finally:",
        "        await t.stop()",
        "print('RESULT', json.dumps(asyncio.run(go())))"])


def result(out):
    return json.loads(out.split("RESULT ", 1)[1].splitlines()[0])


def test_a_board_consumer_finds_a_board_producer_through_the_broker_and_buys(vboards, broker, gateway, tmp_path):
    port = free_port()
    seller = "vboard-%d" % port
    b = broker(things=[seller], consumers=["car-board", "operator"])
    sold = board_files(tmp_path / "seller", gateway, port, network={"broker": b.url, "brokerStatusInterval": STATUS_S},
                       secrets={"brokerPassword": b.password(seller)})
    car_folder = tmp_path / "car"
    car_folder.mkdir()
    shutil.copyfile(b.ca_path, str(car_folder / "broker-ca.pem"))
    car = board_files(car_folder, gateway, free_port(), producer={"enabled": False},
                      consumer={"broker": b.tls_url, "brokerCa": "broker-ca.pem", "wallet": "wallet.journal"},
                      secrets={"brokerUsername": "car-board", "brokerPassword": b.password("car-board")})
    producer_board, consumer_board = vboards("seller"), vboards("car")
    for board, config in ((producer_board, sold), (consumer_board, car)):
        proc = deploy(board.port, "--config", config, "--wait", "30")
        assert proc.returncode == 0, proc.stdout + proc.stderr + board.log()
    assert "copied    broker-ca.pem" in proc.stdout
    producer_board.wait_log("broker %s: connected" % b.url)

    bought = result(consumer_board.exec(consumer_code(seller), timeout=60))
    assert bought == {"found": [seller], "paid": 60, "left": 0, "host": "127.0.0.1"}, consumer_board.log()[-2000:]
    assert b.password("car-board") not in consumer_board.log()

    env = dict(os.environ, **WPW_ENV)
    env.update(WPW_BROKER_USER="operator", WPW_BROKER_PASSWORD=b.password("operator"))
    proc = subprocess.run(WPW + ["fleet", "--json", "--quiet", "--seconds", str(STATUS_S + 3), "--broker", b.url],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["serverID"]: r for r in json.loads(proc.stdout)["things"]}
    assert list(rows) == [seller]
    row = rows[seller]
    assert row["up"] and row["address"] == "127.0.0.1:%d" % port and row["unitsSold"] == {"1": 2}, row
    assert isinstance(row["heapFree"], int)

    b.stop()  # the consumer's broker gone: the scan ends on time, hears nothing, and says why
    alone = result(consumer_board.exec(consumer_code(seller, 1500), timeout=60))
    assert alone == {"found": []}
    assert "scan: connecting to broker 127.0.0.1:%d failed" % b.tls_port in consumer_board.log()
