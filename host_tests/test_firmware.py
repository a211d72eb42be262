"""The firmware (boot.py, main.py, lib/wpwithin/app.py, repl.py) booted on virtual boards, and the app's safety nets.

Boards boot the images tools/build makes (or a folder holding its .mpy
tree), under the unix port with the chip-like heap cap, and are driven
over their serial REPL with mpremote, as a person would: a purchase
against the booted firmware, then the REPL helpers; safe mode from the
marker file, a bad config naming the field, Ctrl-C then repl.status()
and repl.restart(). The app's reactions to a held button, crashed boots
and a crashing task run app.run() directly with a stand-in board, under
both runtimes.
"""
import json
import os
import socket
import subprocess
import sys
import urllib.request

import pytest

import mpy
from harness.process import free_port
from harness.things import SERVICE_KEY, thing_files
from harness.vboard import board_files, board_folder, card_file, wpw


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True


def discover(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/service/discover" % port, timeout=10) as answer:
        return json.loads(answer.read())


def secrets_of(config):
    with open(os.path.join(os.path.dirname(config), "secrets.json")) as f:
        return json.load(f)


def test_a_purchase_against_firmware_booted_from_the_image(vboards, firmware, gateway, tmp_path):
    port = free_port()
    config = board_files(tmp_path / "thing", gateway, port)
    board = vboards("b", "--image", os.path.join(firmware, "littlefs.img"), "--config", config)
    board.wait_log("[wpw] running: 127.0.0.1:%d" % port)
    card, wallet = card_file(tmp_path), str(tmp_path / "wallet.json")
    bought = wpw("buy", "127.0.0.1:%d" % port, "--service", "1", "--price", "1", "--units", "3",
                 "--gateway", gateway.url, "--ca", gateway.ca_path, "--card", card, "--wallet", wallet)
    assert bought["totalPaid"] == 90 and bought["serverID"] == "vboard-%d" % port
    redeemed = wpw("redeem", bought["token"][:8], "--units", "1", "--wallet", wallet)
    assert redeemed["remaining"] == 2
    assert gateway.ledger.orders_by_customer_order_code(bought["paymentReferenceID"] + ".1")[0]["status"] == "SUCCESS"

    # Over the serial REPL: Ctrl-C stops the app, and the state is there to read.
    state = board.snapshot()
    assert state["mode"] == "stopped" and state["roles"] == ["producer"] and state["services"] == ["Car charge"]
    assert state["wifi"] == "127.0.0.1" and state["clockSet"] is True
    (order,) = state["orders"]
    assert (order["ref"], order["state"], order["units"], order["delivered"]) == \
        (bought["paymentReferenceID"], "paid", 3, 1)
    assert state["lastErrors"] == [] and state["taskCrashes"] == 0 and state["bootCrashes"] == 0
    assert 0 < state["heap"]["alloc"] < 256 * 1024
    printed = board.exec("from wpwithin import repl\nrepl.status()")
    for line in ("mode:      stopped", "wifi:      up at 127.0.0.1", "clock:     set", "orders:    1 open of 1",
                 "%s paid: 3 units, 1 delivered, 0 in flight, 2 left, total 90" % bought["paymentReferenceID"],
                 "errors:    none", "stopped by Ctrl-C"):
        assert line in printed, (line, printed)
    secrets = secrets_of(config)
    for secret in (secrets["merchantServiceKey"], secrets["tokenSigningSecret"], SERVICE_KEY):
        assert secret not in printed + json.dumps(state) + board.log()


def test_safe_mode_marker_keeps_the_app_stopped_until_cleared(vboards, firmware, gateway, tmp_path):
    port = free_port()
    folder = board_folder(tmp_path / "fs", firmware, board_files(tmp_path / "thing", gateway, port))
    with open(os.path.join(folder, "SAFE_MODE"), "w") as f:
        f.write("test\n")
    board = vboards("b", "--dir", folder)
    board.wait_log("[wpw] safe mode: the SAFE_MODE file is present (it says: test)%s" % WAY_OUT)
    assert refused(port)
    state = board.snapshot()
    assert state["mode"] == "safe" and state["safeModeFile"] and "roles" not in state
    assert "leave_safe_mode" in board.exec("from wpwithin import repl\nrepl.status()")
    board.exec("from wpwithin import repl\nrepl.leave_safe_mode()")
    board.mpremote("reset")
    board.wait_log("[wpw] running: 127.0.0.1:%d" % port)
    assert discover(port)["serverID"] == "vboard-%d" % port


def test_a_bad_config_names_the_field_and_stays_at_the_repl(vboards, firmware, gateway, tmp_path):
    port = free_port()
    config = board_files(tmp_path / "thing", gateway, port, producer={"services": [{"id": 1, "name": "x", "prices": [
        {"id": 1, "amount": "30", "currency": "GBP", "unitId": 1, "unitDescription": "kWh"}]}]})
    board = vboards("b", "--image", os.path.join(firmware, "littlefs.img"), "--config", config)
    field = "config.producer.services[0].prices[0].amount"
    at = board.wait_log("[wpw] configuration error: %s" % field)
    board.wait_log("[wpw] safe mode: the app needs a valid configuration; fix the file named above and reset",
                   after=at)
    assert field in board.stderr()  # tools/vboard warned too, and started the board anyway
    assert refused(port)
    state = board.snapshot()
    assert state["mode"] == "safe" and any(field in m for m in state["messages"])
    assert not state["safeModeFile"]  # fixing config.json is enough: nothing to clear


def test_ctrl_c_leaves_state_to_inspect_and_repl_restart_runs_the_app_again(vboards, firmware, gateway, tmp_path):
    port = free_port()
    folder = board_folder(tmp_path / "fs", firmware, board_files(tmp_path / "thing", gateway, port))
    board = vboards("b", "--dir", folder)
    first = board.wait_log("[wpw] running: 127.0.0.1:%d" % port)
    assert discover(port)["services"][0]["ServiceName"] == "Car charge"
    state = board.snapshot()  # mpremote's Ctrl-C: KeyboardInterrupt in the app
    assert state["mode"] == "stopped" and state["serverID"] == "vboard-%d" % port
    assert refused(port)  # the server was closed, so a restart can bind it again
    assert state["bootCrashes"] == 0 and not os.path.exists(os.path.join(folder, "crashes"))
    board.mpremote("exec", "--no-follow", "from wpwithin import repl\nrepl.restart()")
    board.wait_log("[wpw] running: 127.0.0.1:%d" % port, after=first)
    assert discover(port)["serverID"] == "vboard-%d" % port
    state = board.snapshot()
    assert state["mode"] == "stopped"
    assert [m for m in state["messages"] if m.startswith("running")] == ["running: 127.0.0.1:%d" % port] * 2


# --- the app's safety nets, with a stand-in board, under both runtimes ------------------------------

STAND_IN = """
import asyncio, json, os, socket, sys
from wpwithin import app
from wpwithin.board_host import HostBoard


class Board(HostBoard):
    def __init__(self, button=False, feed_fails=0):
        HostBoard.__init__(self, id_file="board-id")
        self.button = button
        self.feed_fails = feed_fails

    def button_held(self):
        return self.button

    def feed(self):  # the watcher calls it every check: a crash on demand
        if self.feed_fails:
            self.feed_fails -= 1
            raise RuntimeError("watchdog feed failed")


def listening(port):
    s = socket.socket()
    try:
        s.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
        return True
    except OSError:
        return False
    finally:
        s.close()


async def stop(run):
    run.cancel()
    try:
        await run
    except asyncio.CancelledError:
        pass


app.RESTART_DELAY_S = 0.01
%(scenario)s
print("\\x1eREPORT " + json.dumps(report))
"""

BUTTON = """
app.main(Board(button=True))
report = {"mode": app.state["mode"], "messages": app.state["messages"]}
"""

BOOT_CRASHES = """
with open("crashes", "w") as f:
    f.write("3")
app.main(Board())
report = {"mode": app.state["mode"], "messages": app.state["messages"]}
"""

PORT_TAKEN = """
taken = socket.socket()
taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
taken.bind(socket.getaddrinfo("127.0.0.1", %(port)d)[0][-1])
taken.listen(1)
app.main(Board())
report = {"mode": app.state["mode"], "messages": app.state["messages"], "crashes": open("crashes").read(),
          "port": %(port)d}
taken.close()
"""

CRASHING_TASK = """
async def scenario():
    run = asyncio.create_task(app.run(Board(feed_fails=%(fails)d), wifi_check_s=0.01))
    await asyncio.sleep(0.8)
    seen = {"mode": app.state["mode"], "listening": listening(%(port)d), "crashes": app.state["crashes"]}
    await stop(run)
    return seen

report = asyncio.run(scenario())
report["messages"] = app.state["messages"]
report["safeModeFile"] = open("SAFE_MODE").read() if "SAFE_MODE" in os.listdir(".") else None
report["after"] = listening(%(port)d)
report["nextBoot"] = app.should_start(Board())
"""


NO_CLOCK = """
class NoClock(Board):
    asked = None

    def time_known(self):
        return False

    def sync_time(self, server=None, attempts=3):
        self.asked = server
        return False

    def clock_problem(self):
        return "no answer from NTP server %%s" %% self.asked


async def scenario():
    run = asyncio.create_task(app.run(NoClock(), wifi_check_s=0.01))
    await asyncio.sleep(0.3)
    await stop(run)

asyncio.run(scenario())
report = {"messages": app.state["messages"]}
"""


def run_stand_in(runtime, folder, scenario, **values):
    port = free_port()
    values["port"] = port
    thing_files(str(folder), "stand-in", "http://127.0.0.1:9/v1", port=port, network={"ntpServer": "ntp.bench.example"},
                services=[{"id": 1, "name": "c", "prices": [
        {"id": 1, "amount": 30, "currency": "GBP", "unitId": 1, "unitDescription": "kWh"}]}])
    script = STAND_IN % {"scenario": scenario % values}
    if runtime == "micropython":
        proc = mpy.run(["-c", script], heap="256k", cwd=str(folder), timeout=60)
    else:
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                              cwd=str(folder), env=dict(os.environ, PYTHONPATH=mpy.LIB))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = [x for x in proc.stdout.split("\n") if x.startswith("\x1eREPORT ")][-1]
    return json.loads(line[len("\x1eREPORT "):]), proc.stdout + proc.stderr


RUNTIMES = ("micropython", "cpython")
WAY_OUT = "; app not started. To start it: from wpwithin import repl; repl.leave_safe_mode(); then reset"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_safe_mode_button_held_at_reset_keeps_the_app_stopped(runtime, tmp_path):
    report, _ = run_stand_in(runtime, tmp_path, BUTTON)
    assert report["mode"] == "safe"
    assert report["messages"] == ["safe mode: the safe-mode button was held at reset" + WAY_OUT]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_three_crashed_boots_in_a_row_enter_safe_mode(runtime, tmp_path):
    report, _ = run_stand_in(runtime, tmp_path, BOOT_CRASHES)
    assert report["mode"] == "safe"
    assert report["messages"] == ["safe mode: the app crashed on 3 boots in a row" + WAY_OUT]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_crashing_task_is_restarted_and_the_app_keeps_running(runtime, tmp_path):
    report, _ = run_stand_in(runtime, tmp_path, CRASHING_TASK, fails=2)
    assert report["mode"] == "running" and report["listening"] and report["crashes"] == 2
    restarts = [m for m in report["messages"] if m.startswith("task wifi crashed")]
    assert restarts == ["task wifi crashed (RuntimeError('watchdog feed failed',)); restart 1 in 0.01 s",
                        "task wifi crashed (RuntimeError('watchdog feed failed',)); restart 2 in 0.02 s"] \
        or restarts == ["task wifi crashed (RuntimeError('watchdog feed failed')); restart 1 in 0.01 s",
                        "task wifi crashed (RuntimeError('watchdog feed failed')); restart 2 in 0.02 s"]
    assert report["safeModeFile"] is None and not report["after"]
    assert report["nextBoot"] == [True, ""]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_task_crashing_again_and_again_stops_the_app_in_safe_mode(runtime, tmp_path):
    report, _ = run_stand_in(runtime, tmp_path, CRASHING_TASK, fails=99)
    assert report["mode"] == "safe" and not report["listening"] and report["crashes"] == 5
    assert report["safeModeFile"] == "task wifi crashed 5 times in a row\n"
    assert [m for m in report["messages"] if "restart" in m][-1].endswith("restart 4 in 0.08 s")
    assert report["nextBoot"] == [False, "the SAFE_MODE file is present (it says: task wifi crashed 5 times in a row)"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_crash_outside_any_task_is_logged_and_counted_and_the_repl_stays(runtime, tmp_path):
    report, output = run_stand_in(runtime, tmp_path, PORT_TAKEN)
    assert report["mode"] == "crashed" and report["crashes"] == "1"  # a crashed boot: counts towards safe mode
    assert report["messages"][-1] == ("app crashed: 127.0.0.1:%d is already in use (another program, or this "
                                      "Thing started twice): stop that, or set network.port to a free port (0: any); "
                                      "repl.status() shows the state, repl.restart() starts it again" % report["port"])
    assert "Traceback" not in output  # a setting to change, not a bug


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_clock_that_cannot_be_set_is_said_with_the_ntp_server_asked(runtime, tmp_path):
    report, _ = run_stand_in(runtime, tmp_path, NO_CLOCK)
    assert ("clock not set yet (no answer from NTP server ntp.bench.example): selling nothing until it is; "
            "retrying in the background") in report["messages"], report["messages"]


SETTINGS = """
from wpwithin import repl
before = repl.settings()  # no Thing yet: read from config.json
async def scenario():
    run = asyncio.create_task(app.run(Board(), wifi_check_s=0.01))
    await asyncio.sleep(0.3)
    seen = repl.settings()
    await stop(run)
    return seen
report = {"before": before, "running": asyncio.run(scenario())}
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_repl_config_shows_the_settings_in_effect_with_defaults_and_masks_secrets(runtime, tmp_path):
    report, output = run_stand_in(runtime, tmp_path, SETTINGS)
    with open(os.path.join(str(tmp_path), "secrets.json")) as f:
        secrets = json.load(f)
    for seen in (report["before"], report["running"]):
        assert seen["network"]["ntpServer"] == "ntp.bench.example" and seen["network"]["maxConnections"] == 4
        assert seen["producer"]["tokenLifetime"] == 604800 and seen["gateway"]["timeout"] == 10
        assert seen["producer"]["services"][0]["prices"] == ["1: 30 GBP per kWh, 1..1000000000 units"]
        assert seen["secrets"]["merchantServiceKey"] == "set" and seen["secrets"]["card"] == "not set"
    shown = json.dumps(report) + output
    for key in ("merchantClientKey", "merchantServiceKey", "tokenSigningSecret"):
        assert secrets[key] not in shown


def test_each_documented_flashing_path_gives_a_board_that_starts(vboards, firmware, gateway, tmp_path):
    """docs/esp32.md's (a) mpremote cp list, CA included, and (b) tools/build --config --secrets into littlefs.img."""
    port = free_port()
    config = board_files(tmp_path / "thing", gateway, port)  # config.json, secrets.json and ca.der beside it
    here = os.path.dirname(config)
    tree = os.path.join(firmware, "mpy")
    board = vboards("a")  # stock MicroPython, empty filesystem
    board.mpremote("cp", "-r", os.path.join(tree, "lib"), ":", resume=False)
    board.mpremote("cp", os.path.join(tree, "boot.py"), os.path.join(tree, "main.py"), ":")
    board.mpremote("cp", config, ":config.json")
    board.mpremote("cp", os.path.join(here, "secrets.json"), ":secrets.json")
    board.mpremote("cp", os.path.join(here, "ca.der"), ":ca.der")
    board.mpremote("reset", check=False)
    board.wait_log("[wpw] running: 127.0.0.1:%d" % port)
    assert discover(port)["serverID"] == "vboard-%d" % port
    board.stop()

    out = str(tmp_path / "build")
    proc = subprocess.run([sys.executable, os.path.join(mpy.ROOT, "tools", "build"), "--out", out, "--only",
                           "littlefs", "--config", config, "--secrets", os.path.join(here, "secrets.json")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    board = vboards("b", "--image", os.path.join(out, "littlefs.img"))  # nothing put on it but the image
    board.wait_log("[wpw] running: 127.0.0.1:%d" % port)
    assert discover(port)["serverID"] == "vboard-%d" % port
