# boot.py: board bring-up before main.py. Tiny and safe: WiFi and the clock,
# and any failure is printed and boot goes on, so the REPL is always reachable.
import sys


def _bring_up():
    if sys.platform != "esp32":  # the unix port (a virtual board) has no radio
        return
    import os

    try:
        os.stat("SAFE_MODE")
        return
    except OSError:
        pass
    from wpwithin.board_esp32 import Esp32Board

    board = Esp32Board()
    if board.button_held():
        return
    import json

    with open("secrets.json") as f:
        secrets = json.load(f)
    if board.wifi_up(secrets.get("wifiSsid"), secrets.get("wifiPassword")):
        print("[boot] wifi up at", board.ip_address())
        # Until the clock is set the producer sells nothing (token expiry needs real time);
        # main.py keeps trying.
        print("[boot] clock", "set" if board.sync_time() else "not set yet")
    else:
        print("[boot] wifi not up yet; main.py keeps trying")


try:
    _bring_up()
except Exception as exc:  # boot must never lock the board
    print("[boot] bring-up failed: %r; continuing" % (exc,))
