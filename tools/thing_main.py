"""Runs one Thing on a host from its configuration; the same code under MicroPython or CPython.

Usage: thing_main.py CONFIG SECRETS
Prints "listening on HOST:PORT serverID ID" once the producer serves (and
"consumer CLIENTID ready" once the consumer is), then runs until
interrupted: SIGINT (KeyboardInterrupt, on both runtimes) stops the Thing,
closing its server and journal, prints "stopped" and exits 0. tools/thing
starts it with the runtime asked for, and turns its own SIGTERM into that
SIGINT. Every line is flushed at once: a parent reads them from a pipe.
"""
import asyncio
import sys

from wpwithin.board_host import HostBoard
from wpwithin.thing import Thing


def say(message):
    sys.stdout.write(message + "\n")
    flush = getattr(sys.stdout, "flush", None)  # CPython buffers a pipe; MicroPython does not
    if flush is not None:
        flush()


async def run(thing):
    await thing.start()
    if thing.producer is not None:
        say("listening on %s serverID %s" % (thing.address(), thing.server_id))
    if thing.consumer is not None:
        say("consumer %s ready" % thing.consumer.client_id)
    if thing.heap_report is not None:
        say("heap report on UDP %d (network.debugHeap)" % thing.heap_report.port)
    while True:
        await asyncio.sleep(3600)


def spawn(name, factory):
    """The Thing's tasks restarted when they crash, as app.py's supervisor does on a board (a sweep
    that met a full heap once must not stop settling payments for good)."""
    async def keep():
        while True:
            try:
                return await factory()
            except Exception as exc:  # noqa: any crash: said, and the task runs again
                say("task %s crashed (%r); restarting it in 1 s" % (name, exc))
                await asyncio.sleep(1)

    return asyncio.create_task(keep())


def beside(config_path, path):
    """A file named in the config, relative to the config file (as on a board, where both are in /)."""
    if not path.startswith("/") and "/" in config_path:
        return config_path.rsplit("/", 1)[0] + "/" + path
    return path


def main(argv):
    if len(argv) != 3:
        say("usage: thing_main.py CONFIG SECRETS")
        return 2
    from wpwithin import checked_config as config_file  # as on a board: config.checked, else the checker

    try:
        config, secrets = config_file.load(argv[1], argv[2])
    except config_file.ConfigError as exc:
        say("configuration error: %s" % exc)
        return 2
    del config_file
    for section in (config.network, config.consumer):
        if section.get("brokerCa"):
            section["brokerCa"] = beside(argv[1], section["brokerCa"])  # read when the Thing starts
    ca = None
    if config.gateway["ca"]:
        path = beside(argv[1], config.gateway["ca"])
        try:
            with open(path, "rb") as f:
                ca = f.read()
        except OSError:
            say("configuration error: config.gateway.ca: cannot read %s" % path)
            return 2
    board = HostBoard(ip=config.network["hostname"] or "127.0.0.1", id_file=argv[1] + ".board-id")
    thing = Thing(config, secrets, board, log=say, gateway_ca=ca, spawn=spawn)
    try:
        asyncio.run(run(thing))
    except KeyboardInterrupt:
        try:
            asyncio.run(thing.stop())
        except KeyboardInterrupt:
            pass  # interrupted twice (Ctrl-C reaches tools/thing's whole group): stop as things are
        say("stopped")
    except OSError as exc:
        from wpwithin.listen_problem import listen_problem

        why = listen_problem(thing, exc)
        if why is None:
            raise
        say("cannot start: %s" % why)
        return 1
    return 0


sys.exit(main(sys.argv))
