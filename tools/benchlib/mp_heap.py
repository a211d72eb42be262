"""Heap figures from inside a MicroPython bench process: a ROMFS image mounted, a peak sampler.

Runs under MicroPython only (imported by the mp_*.py runners, never by
the host side). mount() reads a ROMFS image into one heap buffer (the
unix port has no flash to map it from), mounts it at /rom and puts
/rom/lib first on sys.path; it returns the buffer's size on the heap so
the runner can leave it out of the figures it prints. Sampler answers
datagrams on a UDP port of 127.0.0.1 with the heap in use now and at
peak: after a full collection, once per round of the asyncio scheduler,
so "peak" is the most live data seen at any await point. A b"names"
datagram prints micropython.qstr_info() (the names interned so far, and
the pools holding them) to stdout before the answer.
"""
import gc
import sys

_held = []  # the image buffer stays referenced for the life of the process


def mount(path):
    """Mount the ROMFS image at `path` on /rom; returns the heap bytes its buffer takes."""
    import os
    import vfs

    size = os.stat(path)[6]
    gc.collect()
    before = gc.mem_alloc()
    buf = bytearray(size)  # one allocation, exactly the image: f.read() would grow and copy
    held = gc.mem_alloc() - before  # the object and its data, in whole GC blocks
    with open(path, "rb") as f:
        f.readinto(buf)
    vfs.mount(vfs.VfsRom(buf), "/rom")
    sys.path.insert(0, "/rom/lib")
    _held.append(buf)
    return held


def used():
    """Heap bytes in use after a full collection."""
    gc.collect()
    return gc.mem_alloc()


class Sampler:
    """Samples the heap at every scheduler round; answers b"peak", b"reset" and b"names" datagrams with JSON.

    `held` (the image buffer) is subtracted from every figure it reports.
    """

    def __init__(self, port, held=0):
        import socket

        self.held = held
        self.peak = 0
        self.now = 0
        self.samples = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
        self.sock.setblocking(False)

    async def run(self):
        import asyncio

        while True:
            self.now = used() - self.held
            self.samples += 1
            if self.now > self.peak:
                self.peak = self.now
            try:
                data, sender = self.sock.recvfrom(16)
            except OSError:
                data = None  # nothing asked (EAGAIN)
            if data:
                if data == b"names":
                    import micropython

                    micropython.qstr_info()
                if data == b"reset":
                    self.peak = self.now
                    self.samples = 0
                answer = '{"now": %d, "peak": %d, "samples": %d}' % (self.now, self.peak, self.samples)
                try:
                    self.sock.sendto(answer.encode(), sender)
                except OSError:
                    pass  # the asker went away
            await asyncio.sleep_ms(0)

