"""Helpers for debugging a Thing at its serial REPL.

    >>> from wpwithin import repl
    >>> repl.status()           # mode (and why safe mode), WiFi, clock, services, open orders, errors, heap
    >>> repl.restart()          # start the app again after Ctrl-C or a fix (Ctrl-C stops it)
    >>> repl.safe_mode()        # stop starting the app at boot
    >>> repl.leave_safe_mode()  # start it at boot again
    >>> repl.snapshot()         # what status() prints, as a dict (for scripts and tests)
    >>> repl.config()           # the configuration in effect, defaults filled in, secrets shown as set or not

Shows no secret: the Thing's part comes from thing_status(), which has
none, and config() shows each secret only as "set" or "not set". Loaded only when a person
imports it: main.py does not, which keeps its 3.6 KB of heap (64-bit unix
port, .mpy) free on a running board.
"""
import gc

from wpwithin import app
from wpwithin.ledger import QUOTED

STATUS_ORDERS = 8  # orders thing_status() lists; it counts them all


def thing_status(thing):
    """A Thing's roles, address, services, open orders and units left, last errors: no secrets."""
    out = {"serverID": thing.server_id, "roles": []}
    role = thing.producer
    if role is not None:
        ledger = role.core.ledger
        out["roles"].append("producer")
        out["listening"] = thing.address()
        out["broadcasts"] = thing.broadcaster.sent
        out["broadcastFailing"] = thing.broadcaster.failing
        out["services"] = [s["ServiceName"] for s in role.core.catalogue.service_entries()]
        open_orders = [o for o in ledger.orders.values() if o.state != QUOTED and o.remaining()]
        out["orderCount"] = len(ledger.orders)
        out["orders"] = [  # the first few with units left: enough for a person at the REPL
            {"ref": o.ref, "state": ("quoted", "paying", "paid")[o.state], "units": o.units,
             "delivered": o.delivered, "inFlight": o.in_flight, "total": o.total}
            for o in open_orders[:STATUS_ORDERS]]
        out["lastErrors"] = list(role.last_errors)
    if thing.consumer is not None:
        out["roles"].append("consumer")
        out["clientID"] = thing.consumer.client_id
    if thing.heap_report is not None:
        out["heapReport"] = thing.heap_report.port
    return out


def snapshot():
    """The state as a dict: mode, board, the Thing's status, task crashes, heap, last messages."""
    out = {"mode": app.state["mode"], "safeModeFile": app.exists(app.SAFE_MODE_FILE),
           "safeModeReason": app.safe_mode_reason(),
           "bootCrashes": app._read_int(app.CRASH_FILE), "taskCrashes": app.state["crashes"]}
    board = app.state["board"]
    if board is not None:
        out["wifi"] = board.ip_address() if board.wifi_connected() else None
        out["clockSet"] = board.time_known()
    thing = app.state["thing"]
    if thing is not None:
        out.update(thing_status(thing))
    gc.collect()
    if hasattr(gc, "mem_alloc"):  # MicroPython
        out["heap"] = {"alloc": gc.mem_alloc(), "free": gc.mem_free()}
    out["messages"] = list(app.state["messages"])
    return out


def status():
    """Print the state for a person at the REPL."""
    s = snapshot()
    mode = s["mode"]
    if s["safeModeFile"]:
        mode += " (SAFE_MODE file present: repl.leave_safe_mode() clears it)"
        if s["safeModeReason"]:
            mode += "\n  because: " + s["safeModeReason"]
    print("mode:      %s" % mode)
    if "wifi" in s:
        print("wifi:      %s" % ("up at " + s["wifi"] if s["wifi"] else "down"))
        print("clock:     %s" % ("set" if s["clockSet"] else "not set (the producer sells nothing until it is)"))
    if "roles" in s:
        print("roles:     %s  serverID %s" % (", ".join(s["roles"]) or "none", s["serverID"]))
    if "listening" in s:
        print("listening: %s  broadcasts sent %d%s" % (s["listening"], s["broadcasts"],
                                                       "  (failing)" if s["broadcastFailing"] else ""))
        print("services:  %s" % ", ".join(s["services"]))
        print("orders:    %d open of %d" % (len(s["orders"]), s["orderCount"]))
        for o in s["orders"]:
            print("  %s %s: %d units, %d delivered, %d in flight, %d left, total %d"
                  % (o["ref"], o["state"], o["units"], o["delivered"], o["inFlight"],
                     o["units"] - o["delivered"], o["total"]))
        print("errors:    %s" % ("; ".join(s["lastErrors"]) or "none"))
    if "clientID" in s:
        print("consumer:  %s" % s["clientID"])
    print("crashes:   %d task restarts this run, %d unfinished boots" % (s["taskCrashes"], s["bootCrashes"]))
    if "heap" in s:
        print("heap:      %d bytes used, %d free" % (s["heap"]["alloc"], s["heap"]["free"]))
    print("messages:")
    for message in s["messages"]:
        print("  " + message)


def restart():
    """Run the app again in the foreground (Ctrl-C stops it)."""
    board = app.state["board"] or app.make_board()
    app.main(board, app.make_hooks(board))


def safe_mode():
    app.enter_safe_mode("asked for at the REPL")


def leave_safe_mode():
    app._remove(app.SAFE_MODE_FILE)
    app._remove(app.CRASH_FILE)
    print("safe mode off; reset the board or call repl.restart()")


def settings():
    """The configuration in effect as a dict (the running Thing's, else config.json's); secrets masked."""
    thing = app.state["thing"]
    if thing is not None:
        cfg, secrets = thing.config, thing._secrets
    else:
        from wpwithin import config as config_file

        try:
            cfg, secrets = config_file.load("config.json", "secrets.json", unload=True)
        except config_file.ConfigError as exc:
            return {"error": str(exc)}
    out = {}
    for section in ("device", "network", "gateway", "producer", "consumer"):
        out[section] = dict(getattr(cfg, section))
    if cfg.catalogue is not None:
        out["producer"]["services"] = [
            {"id": s.service_id, "name": s.name, "capacity": s.capacity,
             "prices": ["%d: %d %s per %s, %d..%d units" % (p.price_id, p.amount, p.currency, p.unit_description,
                                                           p.min_units, p.max_units)
                        for p in (s.prices[k] for k in sorted(s.prices))]}
            for s in (cfg.catalogue.services[k] for k in sorted(cfg.catalogue.services))]
    out["secrets"] = dict((name, "set" if value else "not set") for name, value in (
        ("wifiSsid", secrets.wifi_ssid), ("wifiPassword", secrets.wifi_password),
        ("merchantClientKey", secrets.client_key), ("merchantServiceKey", secrets.service_key),
        ("tokenSigningSecret", secrets.signing_secret), ("card", secrets.card)))
    return out


def config():
    """Print the configuration in effect, defaults filled in; secrets only as set or not set."""
    for section, values in settings().items():
        if not isinstance(values, dict):
            print("%s: %s" % (section, values))
            continue
        print("%s:" % section)
        for key in sorted(values):
            print("  %-20s %r" % (key, values[key]))
