"""The application supervisor main.py runs: safe mode, configuration, the network, the Thing, restarts.

Theory of operation: main() runs run() in the foreground and turns Ctrl-C
into a clean stop (tasks cancelled, server, sockets and journal closed)
that leaves the state in `state` for the REPL helpers (repl.py) and lets
main() run again. run() decides whether to start at all (no SAFE_MODE
marker file, safe-mode button not held, fewer than MAX_BOOT_CRASHES
crashed boots in a row), loads config.json and secrets.json (a bad one
logs the field at fault and stays in safe mode), brings WiFi up and sets
the clock (without it the producer sells nothing: token expiry needs real
time), replays the journal, starts the Thing, then watches it: WiFi is
brought back when it drops and the broadcaster restarted with the new
address, the clock is set as soon as it can be. A task that dies is
logged and restarted with backoff; MAX_TASK_CRASHES in a row (a run of
STABLE_AFTER_S clears the count) stop the app and write the SAFE_MODE
marker, so the next boot stops at the REPL instead of looping. A boot
counts as crashed until the app has run STABLE_AFTER_S or was stopped by
hand. Every message goes through log(), which prints and keeps the last
few for status(). Never prints a secret.
"""
import asyncio
import os
import sys

from wpwithin.compat import MICROPYTHON, const
from wpwithin.journal import JournalCorrupt, exists
from wpwithin.thing import Thing

try:
    from time import ticks_diff, ticks_ms
except ImportError:  # CPython
    from time import monotonic

    def ticks_ms():
        return int(monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

SAFE_MODE_FILE = "SAFE_MODE"
CRASH_FILE = "crashes"
MAX_BOOT_CRASHES = const(3)
MAX_TASK_CRASHES = const(5)
STABLE_AFTER_S = const(60)
MESSAGES_KEPT = const(10)
RESTART_DELAY_S = 1  # first restart of a crashed task; doubles up to 60 s (tests make it shorter)

# What the REPL helpers show. board: the board main() ran with; thing: the
# Thing of the last run (kept after it stops, for inspection); mode: "not
# started", "safe", "running", "stopped" or "crashed"; crashes: task
# crashes this run; messages: the last MESSAGES_KEPT log lines.
state = {"board": None, "thing": None, "mode": "not started", "crashes": 0, "messages": [],
         "watcher": None, "stopped": True}


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


def log(message):
    print("[wpw] %s" % message)
    messages = state["messages"]
    messages.append(message)
    del messages[:-MESSAGES_KEPT]


def _read_int(path):
    try:
        with open(path) as f:
            return int(f.read() or "0")
    except (OSError, ValueError):
        return 0


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass  # not there


def enter_safe_mode(why):
    """Stop starting the app at boot until SAFE_MODE is removed."""
    _write(SAFE_MODE_FILE, why + "\n")
    log("safe mode: %s. The REPL is yours: fix the cause, then repl.leave_safe_mode() and reset" % why)


def safe_mode_reason():
    """The first line of the SAFE_MODE file (why the app is not started), or None without one."""
    try:
        with open(SAFE_MODE_FILE) as f:
            return f.readline(512).rstrip("\n")
    except (OSError, ValueError):  # no file, or not text
        return None


def should_start(board):
    """(True, "") or (False, reason) for safe mode."""
    if exists(SAFE_MODE_FILE):
        return False, "the %s file is present (it says: %s)" % (SAFE_MODE_FILE, safe_mode_reason())
    if board.button_held():
        return False, "the safe-mode button was held at reset"
    if _read_int(CRASH_FILE) >= MAX_BOOT_CRASHES:
        return False, "the app crashed on %d boots in a row" % MAX_BOOT_CRASHES
    return True, ""


def load(board, config_path="config.json", secrets_path="secrets.json"):
    """(Config, Secrets, CA bytes or None), or (None, None, None) after logging the field at fault."""
    from wpwithin import checked_config  # the host-checked form; the full checker only for a hand edit

    try:
        config, secrets = checked_config.load(config_path, secrets_path)
    except checked_config.ConfigError as exc:
        log("configuration error: %s" % exc)
        return None, None, None
    ca = None
    if config.gateway["ca"]:
        try:
            with open(config.gateway["ca"], "rb") as f:
                ca = f.read()
        except OSError:
            log("configuration error: config.gateway.ca: cannot read %s" % config.gateway["ca"])
            return None, None, None
    return config, secrets, ca


async def supervise(name, factory, give_up=None):
    """Run factory() until it returns or is cancelled, restarting it with backoff when it raises.

    After MAX_TASK_CRASHES crashes in a row it enters safe mode, calls
    give_up() and returns; a run of STABLE_AFTER_S clears the count.
    """
    crashes = 0
    delay = RESTART_DELAY_S
    while True:
        started = ticks_ms()
        try:
            await factory()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any task's bug: log it, restart the task, count it
            if ticks_diff(ticks_ms(), started) >= STABLE_AFTER_S * 1000:
                crashes, delay = 0, RESTART_DELAY_S
            crashes += 1
            state["crashes"] += 1
            if crashes >= MAX_TASK_CRASHES:
                log("task %s crashed (%r), %d times in a row" % (name, exc, crashes))
                enter_safe_mode("task %s crashed %d times in a row" % (name, crashes))
                if give_up is not None:
                    give_up()
                return
            log("task %s crashed (%r); restart %d in %s s" % (name, exc, crashes, delay))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60)


def _network_up(board, secrets, ntp_server):
    """Bring WiFi up and set the clock, once, at start; the watcher keeps trying after."""
    if not board.wifi_connected():
        if board.wifi_up(secrets.wifi_ssid, secrets.wifi_password):
            log("wifi up at %s" % board.ip_address())
        else:
            log("wifi not up yet; retrying in the background")
    if not board.time_known():
        if board.wifi_connected() and board.sync_time(ntp_server):
            log("clock set")
        else:
            log("clock not set yet (%s): selling nothing until it is; retrying in the background"
                % board.clock_problem())


async def run(board, config_path="config.json", secrets_path="secrets.json", hooks=None, wifi_check_s=5):
    """Start the app, or stay in safe mode; returns when the app stops."""
    state["board"] = board
    state["crashes"] = 0
    start, why = should_start(board)
    if not start:
        state["mode"] = "safe"
        log("safe mode: %s; app not started. To start it: from wpwithin import repl; repl.leave_safe_mode(); "
            "then reset" % why)
        return
    config, secrets, ca = load(board, config_path, secrets_path)
    if config is None:
        state["mode"] = "safe"
        log("safe mode: the app needs a valid configuration; fix the file named above and reset")
        return
    _write(CRASH_FILE, str(_read_int(CRASH_FILE) + 1))
    _network_up(board, secrets, config.network["ntpServer"])
    gave_up = asyncio.Event()
    thing = Thing(config, secrets, board, hooks=hooks, log=log, gateway_ca=ca,
                  spawn=lambda name, factory: asyncio.create_task(supervise(name, factory, gave_up.set)))
    state["thing"] = thing
    state["stopped"] = False
    try:
        try:
            await thing.start()
        except JournalCorrupt as exc:  # anything but a torn last record: sell nothing rather than guess
            enter_safe_mode("journal damaged: %s" % exc)
            state["mode"] = "safe"
            return
        state["mode"] = "running"
        log("running: %s" % (thing.address() or "consumer"))
        state["watcher"] = asyncio.create_task(supervise(
            "wifi", lambda: _watch_network(board, secrets, thing, wifi_check_s), gave_up.set))
        await gave_up.wait()
        state["mode"] = "safe"
    finally:
        await stop()


async def stop():
    """Stop the app's tasks and its Thing (server, sockets, journal); the Thing stays for inspection."""
    watcher, state["watcher"] = state["watcher"], None
    if watcher is not None:
        watcher.cancel()
        try:
            await watcher
        except asyncio.CancelledError:
            pass
    if not state["stopped"]:
        state["stopped"] = True
        await state["thing"].stop()


def main(board, hooks=None, config_path="config.json", secrets_path="secrets.json"):
    """Run the app in the foreground until it stops (main.py, repl.restart()); Ctrl-C stops it cleanly."""
    if MICROPYTHON:
        asyncio.new_event_loop()  # drop whatever an interrupted run left queued
    try:
        asyncio.run(run(board, config_path, secrets_path, hooks))
    except KeyboardInterrupt:
        # Stopped by a person, not a crash: this boot does not count towards safe mode.
        _remove(CRASH_FILE)
        _stop_now()
        state["mode"] = "stopped"
        log("stopped by Ctrl-C. from wpwithin import repl; repl.status() shows the state, "
            "repl.restart() starts the app again")
    except Exception as exc:  # a crash outside any supervised task, e.g. the port is taken
        _stop_now()
        state["mode"] = "crashed"
        from wpwithin.listen_problem import listen_problem  # loaded again only for this message

        why = listen_problem(state["thing"], exc)
        log("app crashed: %s; repl.status() shows the state, repl.restart() starts it again" % (why or repr(exc)))
        if why is not None:
            return  # a setting to change, said above: no traceback
        if MICROPYTHON:
            sys.print_exception(exc)
        else:
            sys.excepthook(type(exc), exc, exc.__traceback__)


def _stop_now():
    try:
        asyncio.run(stop())
    except KeyboardInterrupt:
        pass  # Ctrl-C again while stopping: leave things as they are


async def _watch_network(board, secrets, thing, check_s):
    up_for = 0
    hostname = thing.config.network["hostname"]
    while True:
        board.feed()
        await asyncio.sleep(check_s)
        up_for += check_s
        if up_for >= STABLE_AFTER_S and exists(CRASH_FILE):
            os.remove(CRASH_FILE)  # a stable run: earlier crashes no longer count
        if not board.wifi_connected():
            log("wifi down; reconnecting")
            if board.wifi_up(secrets.wifi_ssid, secrets.wifi_password, attempts=1):
                log("wifi up at %s; restarting the broadcaster" % board.ip_address())
                if thing.server is not None:
                    await thing.restart_discovery(hostname or board.ip_address())
        if not board.time_known() and board.wifi_connected():
            if board.sync_time(thing.config.network["ntpServer"], 1):
                log("clock set")
