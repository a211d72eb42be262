"""The heap each of our modules takes once imported, in one MicroPython process, for tools/bench.py.

    micropython -m mp_modules MODULE [MODULE ...]

Imports what every producer imports first (asyncio, socket, json, ssl),
then each wpwithin.MODULE in the order given (each one's own imports
first: fig_size orders them), and prints a line per module:
    module NAME BYTES POOLS
BYTES is gc.mem_alloc() after a full collection, after the import less
before it; POOLS the qstr pools then (from micropython.qstr_info(), which
prints its own line first). A module's bytes include any qstr pool it
made: a new pool holds as many names as all the earlier ones.
"""
import gc
import sys

import asyncio  # noqa: F401  (what every producer imports first)
import json  # noqa: F401
import micropython
import socket  # noqa: F401

try:
    import ssl  # noqa: F401
except ImportError:
    pass


def main(names):
    for name in names:
        gc.collect()
        before = gc.mem_alloc()
        __import__("wpwithin." + name)
        gc.collect()
        taken = gc.mem_alloc() - before
        micropython.qstr_info()
        sys.stdout.write("module %s %d\n" % (name, taken))


main(sys.argv[1:])
