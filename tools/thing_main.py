"""Runs one Thing on a host from its configuration; the same code under MicroPython or CPython.

Usage: thing_main.py CONFIG SECRETS
Prints "listening on HOST:PORT" once the producer serves, then runs until
killed. Started by tools/thing, which picks the runtime.
"""
import asyncio
import sys

from wpwithin import config as config_file
from wpwithin.board_host import HostBoard
from wpwithin.config import ConfigError
from wpwithin.thing import Thing


def log(message):
    print(message)


async def run(thing):
    await thing.start()
    status = thing.status()
    if "listening" in status:
        print("listening on %s serverID %s" % (status["listening"], thing.server_id))
    else:
        print("consumer %s ready" % status["clientID"])
    while True:
        await asyncio.sleep(3600)


def main(argv):
    if len(argv) != 3:
        print("usage: thing_main.py CONFIG SECRETS")
        return 2
    try:
        config, secrets = config_file.load(argv[1], argv[2])
    except ConfigError as exc:
        print("configuration error: %s" % exc)
        return 2
    ca = None
    if config.gateway["ca"]:
        path = config.gateway["ca"]
        if not path.startswith("/") and "/" in argv[1]:
            path = argv[1].rsplit("/", 1)[0] + "/" + path  # relative to the config file
        try:
            with open(path, "rb") as f:
                ca = f.read()
        except OSError:
            print("configuration error: config.gateway.ca: cannot read %s" % path)
            return 2
    board = HostBoard(ip=config.network["hostname"] or "127.0.0.1", id_file=argv[1] + ".board-id")
    thing = Thing(config, secrets, board, log=log, gateway_ca=ca)
    try:
        asyncio.run(run(thing))
    except KeyboardInterrupt:
        pass
    return 0


sys.exit(main(sys.argv))
