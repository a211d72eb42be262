"""The simulated payment gateway for the bench: tools/gateway as its own process, no injected latency.

Its own process, so its Python threads never share a GIL with the bench's
load generator. Plain HTTP by default, so the figures are the producer's
own: with TLS the unix port adds about 4 KB of GC heap for the context
and its CA and 3.4 KB per open session (mbedTLS's record buffers are
malloc'd outside the GC heap, as an ESP32 keeps them in the ESP-IDF
heap). tls=True serves HTTPS with the simulator's own test CA.
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
