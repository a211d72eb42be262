"""Helpers for debugging a Thing at its serial REPL (and what main.py uses to build the board).

    >>> from wpwithin import repl
    >>> repl.status()      # roles, address, services, orders and units left, last errors
    >>> repl.restart()     # start the app again after Ctrl-C or a fix
    >>> repl.safe_mode()   # stop starting the app at boot
    >>> repl.leave_safe_mode()

Shows no secret: status comes from Thing.status(), which has none.
"""
import asyncio
import os
import sys

from wpwithin import app


def make_board():
    """The board of this platform: ESP32 hardware, or the host stand-in elsewhere."""
    if sys.platform == "esp32":
        from wpwithin.board_esp32 import Esp32Board

        return Esp32Board()
    from wpwithin.board_host import HostBoard

    return HostBoard()


def make_hooks(board):
    """The example service's hooks: the relay is on while units are delivered."""
    from wpwithin.charging import ChargingHooks

    return ChargingHooks(board.relay, board.led)


def status():
    thing = app.state["thing"]
    print("mode:", app.state["mode"])
    if thing is not None:
        for key, value in thing.status().items():
            if key == "orders":
                print("orders:")
                for order in value:
                    print("  %(ref)s %(state)s units %(units)d delivered %(delivered)d in flight %(inFlight)d"
                          % order)
            else:
                print("%s: %s" % (key, value))
    print("last messages:")
    for message in app.state["messages"]:
        print("  " + message)


def restart():
    """Run the app again in the foreground (Ctrl-C stops it)."""
    board = make_board()
    try:
        asyncio.run(app.run(board, hooks=make_hooks(board)))
    except KeyboardInterrupt:
        print("[wpw] stopped")


def safe_mode():
    app.enter_safe_mode("asked for at the REPL")


def leave_safe_mode():
    try:
        os.remove(app.SAFE_MODE_FILE)
    except OSError:
        pass
    try:
        os.remove(app.CRASH_FILE)
    except OSError:
        pass
    print("safe mode off; reset the board or call repl.restart()")
