"""The anchor in one MicroPython process: a microdot app serving our price list on our route.

    micropython -X heapsize=H -m mp_microdot PORT PRICES_JSON [IMAGE|-] [CONTROL_PORT]

What an ESP32 developer would write with microdot: one route,
GET /service/<id>/prices, answering the JSON object in PRICES_JSON (our
producer's own answer, read once at start and encoded by microdot on every
request, as a handler returning a dict is) with our Content-Type, and 404
for another service. microdot comes from sys.path (its .mpy on
MICROPYPATH) or from the ROMFS image IMAGE. Prints the same lines as
mp_producer.py ("heap image=N imported=N", "listening on HOST:PORT") and
takes the same CONTROL_PORT.
"""
import gc
import sys


def say(line):
    sys.stdout.write(line + "\n")
    flush = getattr(sys.stdout, "flush", None)
    if flush is not None:
        flush()


def main(argv):
    port = int(argv[1])
    image = argv[3] if len(argv) > 3 and argv[3] != "-" else None
    control = int(argv[4]) if len(argv) > 4 else 0
    held = 0
    if image or control:
        import mp_heap

        if image:
            held = mp_heap.mount(image)
    import asyncio
    import json

    from microdot import Microdot

    gc.collect()
    say("heap image=%d imported=%d" % (held, gc.mem_alloc() - held))
    with open(argv[2]) as f:
        prices = json.loads(f.read())
    service_id = 1
    headers = {"Content-Type": "application/json;charset=UTF-8"}
    app = Microdot()

    @app.route("/service/<int:sid>/prices")
    async def price_list(request, sid):
        if sid != service_id:
            return {"HTTPStatusCode": 404, "message": "service not found", "errorCode": 0}, 404, headers
        return prices, 200, headers

    async def serve():
        asyncio.create_task(app.start_server(host="127.0.0.1", port=port))
        while getattr(app, "server", None) is None:  # start_server binds, then sets app.server
            await asyncio.sleep_ms(5)
        if control:
            asyncio.create_task(mp_heap.Sampler(control, held).run())
        say("listening on 127.0.0.1:%d" % port)
        while True:
            await asyncio.sleep(3600)

    asyncio.run(serve())


main(sys.argv)
