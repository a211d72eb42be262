# boot.py: runs first at every reset, and on mpremote's soft reset too, so it
# must return at once: it only starts the WiFi connection (without waiting)
# so the link is up sooner. main.py (lib/wpwithin/app.py) waits for WiFi,
# sets the clock and keeps retrying. Any failure is printed and boot goes on:
# the REPL must always be reachable.
import sys


def _start_wifi():
    if sys.platform != "esp32":  # the unix port (a virtual board) has no radio
        return
    import os

    try:
        os.stat("SAFE_MODE")
        return  # safe mode: touch nothing
    except OSError:
        pass
    from wpwithin.board_esp32 import Esp32Board

    board = Esp32Board()  # also drives the relay pin off from the first moment
    if board.button_held():
        return
    import json

    with open("secrets.json") as f:
        secrets = json.load(f)
    board.wifi_begin(secrets.get("wifiSsid"), secrets.get("wifiPassword"))


try:
    _start_wifi()
except Exception as exc:  # boot must never lock the board
    print("[boot] wifi not started: %r; main.py tries again" % (exc,))
del _start_wifi
