"""The simulated payment gateway for the bench: tools/gateway as its own process, no injected latency.

Its own process, so its Python threads never share a GIL with the bench's
load generator. Plain HTTP by default: on the unix port mbedTLS allocates
from the MicroPython GC heap, while on an ESP32 a TLS session lives in
the ESP-IDF heap, outside it, so heap figures taken with TLS to the
gateway would charge the producer for memory a board does not take from
its GC heap. tls=True serves HTTPS with the simulator's own test CA.
"""
import os
import sys

from benchlib import procs


class Gateway:
    def __init__(self, root, workdir, tls=False):
        argv = [sys.executable, os.path.join(root, "tools", "gateway"), "--port", "0", "--quiet"]  # ledger in memory
        self.ca_path = None
        if tls:
            argv += ["--tls", os.path.join(workdir, "gateway-tls")]
            self.ca_path = os.path.join(workdir, "gateway-tls", "ca.pem")
        self.child = procs.Child("gateway", argv)
        try:
            self.url = self.child.expect("http", 30).strip()
        except BaseException:
            self.child.stop()
            raise

    def stop(self):
        self.child.stop()
