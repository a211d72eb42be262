"""One bench run's set-up: tools found, both sides built, runners compiled, gateway up, price list taken.

Bench(root, workdir, quick, log) builds our producer-only bundle and ROMFS
image (tools/build), installs and compiles the anchor (anchor.py),
compiles the MicroPython runners, starts the simulated gateway and asks
our producer once for its price list: the JSON the microdot app serves
(so both serve the same object) and the body length the load generator
expects. close() stops everything it started. `settings` holds the sizes
of every measurement, smaller with --quick.
"""
import json
import os
import socket
import subprocess

from benchlib import anchor, load, ours, runners
from harness import process
from harness.things import SERVICES, Things, thing_files
from imagebuild import toolchain

PRICES_PATH = "/service/1/prices"
RUN_HEAP = 512 * 1024  # the heap of every run that is not a heap measurement, ours and the anchor's alike

FULL = {"purchases": 20, "anchor_requests": 20, "heap_step": 1024, "repeats": 3, "search_seconds": 150,
        "profile_purchases": 3, "clients": 4, "seconds": 5.0, "rounds": 3, "shoppers": 4, "fast_trials": 50,
        "broadcast_trials": 20, "latency_purchases": 100, "scale_each": 3, "scale_heap": (110 + 16) * 1024,
        "scale_fallback_heap": RUN_HEAP}
QUICK = dict(FULL, heap_step=4096, repeats=2, search_seconds=60, profile_purchases=2, seconds=1.5,
             rounds=1, fast_trials=5, broadcast_trials=4, latency_purchases=10, scale_each=1)


class Bench:
    def __init__(self, root, workdir, quick=False, log=None, gateway_tls=False):
        self.root = root
        self.workdir = workdir
        self.log = log or (lambda message: None)
        self.settings = QUICK if quick else FULL
        self.gateway = None
        mpy_cross = toolchain.find("mpy-cross", root)
        mpremote = toolchain.find("mpremote", root)
        self.micropython = toolchain.find("micropython", root)
        self.log("building our producer-only bundle and ROMFS image (tools/build)")
        self.ours = ours.build_bundle(root, workdir)
        self.anchor = anchor.build(root, mpy_cross, mpremote, workdir, self.log)
        self.log("anchor: %s, compiled to .mpy in %s" % (self.anchor["name"], self.anchor["lib"]))
        self.runtime = runners.Runtime(ours.compile_runners(mpy_cross, workdir), self.ours, self.anchor,
                                       os.path.join(root, "lib"), workdir)
        self.things = Things(workdir, keep=runners.KEEP_LINES)
        # Its own process, so its Python threads never share a GIL with the bench's load generator.
        # Plain HTTP unless gateway_tls, so the figures are the producer's own: with TLS the unix port
        # adds about 4 KB of GC heap for the context and its CA and 3.4 KB per open session (mbedTLS's
        # record buffers are malloc'd outside the GC heap, as an ESP32 keeps them in the ESP-IDF heap).
        self.gateway = self.things.gateway(tls=gateway_tls)
        self.log("simulated gateway at %s" % self.gateway.url)
        self.udp = process.free_ports(2, socket.SOCK_DGRAM)  # broadcast port, probe port
        self.prices_body, self.prices_file = self._price_list()
        self.prices = json.loads(self.prices_body)

    def interpreter(self):
        """`micropython --version`-like line: sys.version and the build's implementation."""
        proc = subprocess.run([self.micropython, "-c", "import sys; print(sys.version, sys.implementation._machine, "
                               "sys.implementation._build)"], capture_output=True, text=True, timeout=30)
        return proc.stdout.strip()

    def word_bits(self):
        """64 or 32: the word size of the interpreter's build (objects' sizes go with it)."""
        proc = subprocess.run([self.micropython, "-c", "import sys; print(64 if sys.maxsize > 1 << 31 else 32)"],
                              capture_output=True, text=True, timeout=30)
        return int(proc.stdout)

    def producer_files(self, name="producer", network=None, secrets=None):
        """(config, secrets) of a fresh producer in a new folder (its own, empty journal): one service."""
        config = thing_files(self.runtime.folder(name), ours.SERVER_ID, self.gateway.url, self.gateway.ca_path,
                             self.udp, network=network, services=SERVICES[:1], description="Bench producer",
                             secrets=secrets)
        return config, os.path.join(os.path.dirname(config), "secrets.json")

    def start_producer(self, heap=RUN_HEAP, mode="mpy", control=0, network=None):
        config, secrets = self.producer_files(network=network)
        return self.runtime.start_producer(config, secrets, heap, mode, control)

    def _price_list(self):
        server = self.start_producer()
        try:
            status, body = load.request(server.port, PRICES_PATH)
        finally:
            server.stop()
        if status != 200:
            raise RuntimeError("our producer answered %d to GET %s" % (status, PRICES_PATH))
        path = os.path.join(self.workdir, "prices.json")
        with open(path, "wb") as f:
            f.write(body)
        return body, path

    def close(self):
        if self.gateway is not None:
            self.things.close()
        process.stop_all()
