"""The application supervisor main.py runs: safe mode, configuration, the Thing, restarts.

Theory of operation: run() decides whether to start at all (no SAFE_MODE
marker file, safe-mode button not held, fewer than MAX_BOOT_CRASHES
crashed boots in a row), loads config.json and secrets.json (a bad one
prints the field at fault and stays in safe mode), replays the journal,
starts the Thing, then watches it: WiFi is brought back when it drops and
the broadcaster restarted with the new address; a task that dies is logged
and restarted with backoff; too many crashes in a row write the SAFE_MODE
marker so the next boot stops at the REPL instead of looping. Every
message goes through log(), which prints and keeps the last few for
status(). Never prints a secret.
"""
import asyncio
import os

from wpwithin import config as config_file
from wpwithin.compat import const
from wpwithin.journal import JournalCorrupt
from wpwithin.thing import Thing

SAFE_MODE_FILE = "SAFE_MODE"
CRASH_FILE = "crashes"
MAX_BOOT_CRASHES = const(3)
MAX_TASK_CRASHES = const(5)
STABLE_AFTER_S = const(60)

state = {"thing": None, "mode": "not started", "messages": []}


def log(message):
    print("[wpw] %s" % message)
    messages = state["messages"]
    messages.append(message)
    del messages[:-10]


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _read_int(path):
    try:
        with open(path) as f:
            return int(f.read() or "0")
    except (OSError, ValueError):
        return 0


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def enter_safe_mode(why):
    """Stop starting the app at boot until SAFE_MODE is removed."""
    _write(SAFE_MODE_FILE, why + "\n")
    log("safe mode: %s. The REPL is yours; fix the cause, then os.remove('%s') and reset"
        % (why, SAFE_MODE_FILE))


def should_start(board):
    """(True, "") or (False, reason) for safe mode."""
    if _exists(SAFE_MODE_FILE):
        return False, "the %s file is present" % SAFE_MODE_FILE
    if board.button_held():
        return False, "the safe-mode button was held at reset"
    if _read_int(CRASH_FILE) >= MAX_BOOT_CRASHES:
        return False, "the app crashed on %d boots in a row" % MAX_BOOT_CRASHES
    return True, ""


def load(board, config_path="config.json", secrets_path="secrets.json"):
    try:
        return config_file.load(config_path, secrets_path)
    except config_file.ConfigError as exc:
        log("configuration error: %s" % exc)
        return None, None


async def supervise(name, factory, crashes=None):
    """Run factory() until cancelled, restarting it with backoff when it raises."""
    crashes = crashes if crashes is not None else [0]
    delay = 1
    while True:
        try:
            await factory()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any task's bug: log it, restart the task, count it
            crashes[0] += 1
            log("task %s crashed (%r); restart %d in %d s" % (name, exc, crashes[0], delay))
            if crashes[0] >= MAX_TASK_CRASHES:
                enter_safe_mode("task %s crashed %d times" % (name, crashes[0]))
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60)


async def run(board, config_path="config.json", secrets_path="secrets.json", hooks=None, wifi_check_s=5):
    """Start the app, or stay in safe mode; returns when the app stops."""
    start, why = should_start(board)
    if not start:
        state["mode"] = "safe"
        log("safe mode: %s; app not started" % why)
        return
    config, secrets = load(board, config_path, secrets_path)
    if config is None:
        state["mode"] = "safe"
        log("safe mode: the app needs a valid configuration")
        return
    _write(CRASH_FILE, str(_read_int(CRASH_FILE) + 1))
    ca = None
    if config.gateway["ca"]:
        with open(config.gateway["ca"], "rb") as f:
            ca = f.read()
    crashes = [0]
    thing = Thing(config, secrets, board, hooks=hooks, log=log, gateway_ca=ca,
                  spawn=lambda name, factory: asyncio.create_task(supervise(name, factory, crashes)))
    state["thing"] = thing
    try:
        await thing.start()
    except JournalCorrupt as exc:
        enter_safe_mode("journal damaged: %s" % exc)
        state["mode"] = "safe"
        return
    state["mode"] = "running"
    log("running: %s" % thing.status().get("listening", "consumer"))
    try:
        await supervise("wifi", lambda: _watch_wifi(board, secrets, thing, wifi_check_s), crashes)
    finally:
        await thing.stop()
        state["mode"] = "stopped"


async def _watch_wifi(board, secrets, thing, check_s):
    up_for = 0
    while True:
        board.feed()
        await asyncio.sleep(check_s)
        up_for += check_s
        if up_for >= STABLE_AFTER_S and _exists(CRASH_FILE):
            os.remove(CRASH_FILE)  # a stable run: earlier crashes no longer count
        if not board.wifi_connected():
            log("wifi down; reconnecting")
            if board.wifi_up(secrets.wifi_ssid, secrets.wifi_password):
                log("wifi up at %s; restarting the broadcaster" % board.ip_address())
                await thing.restart_discovery(board.ip_address())
