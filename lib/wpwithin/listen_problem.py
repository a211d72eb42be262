"""What to tell a person when a Thing's server could not listen: the address, the port and what to change.

Its own small module, loaded only after such a crash (by app.py and
tools/thing), so the message never needs the config checker's heap.
Never raises, logs or writes.
"""
import sys


def listen_problem(thing, exc):
    """What to tell a person when a Thing's server could not listen (`exc`); None for any other error."""
    import errno

    server = thing.server if thing is not None else None
    if not isinstance(exc, OSError) or server is None or server._server is not None:
        return None
    net = thing.config.network
    code = exc.args[0] if exc.args else None
    if code == errno.EADDRINUSE:
        return ("%s:%d is already in use (another program, or this Thing started twice): stop that, or set "
                "network.port to a free port (0: any)" % (net["host"], net["port"]))
    # EADDRNOTAVAIL: MicroPython's errno has no name for it (99 on Linux, 125 in ESP-IDF's newlib)
    if code == (125 if sys.platform == "esp32" else 99):
        return ("network.host %s is not an address of this machine: set it to one of its addresses, "
                "or 0.0.0.0 for all of them" % net["host"])
    return "cannot listen on %s:%d (%r): check network.host and network.port" % (net["host"], net["port"], exc)
