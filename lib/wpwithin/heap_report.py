"""The heap report of a Thing on a test bench: HEAP_QUERY datagrams answered on a UDP port.

Loaded only when config network.debugHeap names the port (thing.py
imports it then), so a board that does not debug its heap carries none of
it. Never part of the producer's REST API or broadcasts.
"""
import gc
import sys

from wpwithin import discovery, wire

HEAP_QUERY = b"WPWITHIN-HEAP/1"


def start(thing):
    """Answer on thing.config.network["debugHeap"] as one of the Thing's tasks, bound before it returns."""
    report = thing.heap_report = HeapReport(thing, thing.config.network["debugHeap"])
    report.open()
    thing.tasks.append(thing._spawn("heap report", report.run))


class HeapReport:
    """Answers HEAP_QUERY datagrams on a UDP port with the heap in use after a full collection.

    For leak tests and bench debugging only: off unless config
    network.debugHeap names the port, and never part of the producer's
    REST API or broadcasts. The answer is JSON: memAlloc and memFree
    (bytes; null on CPython, which has no such figures), connections
    open on the producer's server and orders in its ledger, so a caller
    can tell an idle Thing from a busy one; connection slots made, used-up
    tokens remembered, errors kept for status() and modules loaded, so a
    heap that grew says what grew with it. Holds no secret, tells none.
    """

    def __init__(self, thing, port):
        self.thing = thing
        self.port = port
        self.answered = 0
        self.sock = None

    def open(self):
        """Bind the port now, so a query sent as soon as the Thing is up is answered."""
        if self.sock is None:
            self.sock = discovery.udp_socket(self.port)

    async def run(self):
        self.open()
        sock = self.sock
        try:
            while True:
                data, sender = await discovery.recvfrom(sock, 64)
                if data == HEAP_QUERY:
                    try:
                        sock.sendto(self.report(), sender)
                        self.answered += 1
                    except OSError:
                        pass  # the asker went away
        finally:
            sock.close()
            self.sock = None

    def report(self):
        gc.collect()
        mem_alloc = getattr(gc, "mem_alloc", None)  # MicroPython only
        used = mem_alloc() if mem_alloc else None
        free = gc.mem_free() if mem_alloc else None
        thing = self.thing
        server, role = thing.server, thing.producer
        ledger = role.core.ledger if role is not None else None
        return wire.encode_json({
            "memAlloc": used, "memFree": free,
            "connections": server.connections if server is not None else 0,
            "slots": len(server.slots) if server is not None else 0,
            "orders": len(ledger.orders) if ledger is not None else 0,
            "spent": len(ledger.spent) if ledger is not None else 0,
            "errors": len(role.last_errors) if role is not None else 0,
            "modules": len(sys.modules)})
