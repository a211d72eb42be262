"""Our producer in one MicroPython process, for tools/bench.py: heap figures taken from inside it.

    micropython -X heapsize=H -m mp_producer CONFIG SECRETS [IMAGE|-] [CONTROL_PORT]

Runs the lib found on sys.path (the .mpy bundle on MICROPYPATH), or the
one in the ROMFS image IMAGE (mounted at /rom, see mp_heap). Prints, each
line flushed:
    heap image=N imported=N     the image buffer's heap bytes; heap in use after
                                importing the producer (a full collection; buffer left out)
    listening on HOST:PORT      once the producer serves
then serves until killed. With CONTROL_PORT, mp_heap's Sampler answers
heap queries on that UDP port. The same as tools/thing_main.py otherwise:
the figures are those of the code a board runs.
"""
import gc
import sys


def say(line):
    sys.stdout.write(line + "\n")
    flush = getattr(sys.stdout, "flush", None)
    if flush is not None:
        flush()


def main(argv):
    image = argv[3] if len(argv) > 3 and argv[3] != "-" else None
    control = int(argv[4]) if len(argv) > 4 else 0
    held = 0
    if image:  # mp_heap's names are interned before ours then, as they must be to mount the image
        import mp_heap

        held = mp_heap.mount(image)
    import asyncio

    from wpwithin.board_host import HostBoard
    from wpwithin.thing import Thing

    gc.collect()
    say("heap image=%d imported=%d" % (held, gc.mem_alloc() - held))
    if control:  # after the figure: its names could take the qstr pools to the next one (~7.4 KiB)
        import mp_heap
    from wpwithin import checked_config as config_file

    config, secrets = config_file.load(argv[1], argv[2])  # as app.py does on a board
    del config_file
    ca = None
    if config.gateway["ca"]:  # an absolute path (the bench's config names it so)
        with open(config.gateway["ca"], "rb") as f:
            ca = f.read()
    board = HostBoard(ip="127.0.0.1", id_file=argv[1] + ".board-id")
    thing = Thing(config, secrets, board, log=say, gateway_ca=ca)

    async def serve():
        await thing.start()
        if control:
            asyncio.create_task(mp_heap.Sampler(control, held).run())
        say("listening on 127.0.0.1:%d" % thing.server.port)
        while True:
            await asyncio.sleep(3600)

    asyncio.run(serve())


main(sys.argv)
