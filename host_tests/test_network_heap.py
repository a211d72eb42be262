"""A producer in a capped MicroPython heap: 8 consumers at once, 20 purchases, no heap kept.

The producer runs the compiled bundle (tools/build --only mpy
--producer-only: the very .mpy files that get flashed) under
`micropython -X heapsize=HEAP_CAP`, with the heap report on
(network.debugHeap). After a warm-up that fills its ledger's memory of
used-up tokens (so each new one pushes out the first to expire, the
steady state of a Thing in service), it reports its heap after a full collection; then 8
consumers at once make 20 purchases (select, pay through the simulated
gateway over HTTPS, delivery in two sessions each) and the heap is
measured again: it must be back within 1 KB.

HEAP_CAP is 16 KB above the smallest cap, in 16 KB steps, at which this
passes on this 64-bit build today (the sizes of a 64-bit build are up to
twice an ESP32's): the loaded code, a connection slot per consumer, the
gateway's TLS context and HTTP client. Issue 16's target is 126k.
WPW_HEAP_CAP overrides it, to try another cap.
"""
import os
import socket
import time

from gatewaysim.simulator import Simulator

from harness.process import free_port
from harness.shopping import shop
from harness.things import Things, heap_report, idle_heap

# The smallest cap in 16k steps that passes today is 216k (200k passed 1 run of 3: a 500 on a payment,
# or a reset; 2026-12); 16k above it, so heap fragmentation cannot make this flaky. Issue 16's scale
# clause asks for the .mpy min-heap target plus one 16k step (126k): footprint work is open.
HEAP_CAP = os.environ.get("WPW_HEAP_CAP") or "232k"
CONSUMERS = 8
PURCHASES = 20
WARM_UP = 24  # more than maxOrders: the used-up tokens kept are at their bound before we measure
MAX_ORDERS = 16
# Bytes the heap may grow by, after against before. Lower after is no leak: the reading before held
# garbage a stale pointer kept alive (MicroPython's GC is conservative; -2.5 KB twice in CI-like runs).
KEPT_LIMIT = 1024


def purchases(sim, port, count, consumers):
    """`count` purchases of 4 units, each taken in two sessions (3, 1), by `consumers` at once; the 503s met."""
    return shop(port, sim.url, sim.ca_path, consumers, purchases=count, seconds=60, parts=(3, 1),
                name="heap-car")["busyRetries"]


def test_producer_in_a_capped_heap_serves_8_consumers_20_purchases_and_keeps_no_heap(tmp_path, bundle,
                                                                                     record_property):
    things = Things(tmp_path)
    try:
        with Simulator(db=str(tmp_path / "gateway.db"), tls_dir=str(tmp_path / "tls"), log=lambda *a: None) as sim:
            heap_port = free_port(socket.SOCK_DGRAM)
            producer = things.producer(
                "heap-test", "micropython", sim.url, sim.ca_path, heap=HEAP_CAP, lib=bundle,
                # One slot per consumer: all 8 are served at once, the most heap connections can take.
                network={"debugHeap": heap_port, "maxConnections": CONSUMERS}, producer={"maxOrders": MAX_ORDERS})
            port, process = producer["port"], producer["process"]
            started = heap_report(heap_port, process)

            purchases(sim, port, WARM_UP, CONSUMERS)
            before = idle_heap(heap_port, process)
            began = time.monotonic()
            busy = purchases(sim, port, PURCHASES, CONSUMERS)
            seconds = time.monotonic() - began
            after = idle_heap(heap_port, process)

            assert process.proc.poll() is None, process.text()
            assert "Error" not in process.text(), process.text()
            charged = [o for o in sim.ledger.orders() if o["status"] == "SUCCESS"]
            assert len(charged) == WARM_UP + PURCHASES
            assert sim.ledger.reconcile()["consistent"]
    finally:
        things.close()
    kept = after["memAlloc"] - before["memAlloc"]
    for name, value in (("heap_cap", HEAP_CAP), ("heap_at_start", started["memAlloc"]),
                        ("heap_before", before["memAlloc"]), ("heap_after", after["memAlloc"]),
                        ("purchases_per_s", round(PURCHASES / seconds, 1))):
        record_property(name, value)
    print("\nproducer under micropython -X heapsize=%s (.mpy): heap in use %d B at start, %d B before and %d B "
          "after %d purchases by %d consumers at once (%+d B); %.1f purchases/s (%.0f requests/s), %d busy answers"
          % (HEAP_CAP, started["memAlloc"], before["memAlloc"], after["memAlloc"], PURCHASES, CONSUMERS, kept,
             PURCHASES / seconds, PURCHASES * 6 / seconds, busy))
    # Every purchase was delivered in full: no open order is left, only used-up tokens (bounded).
    assert after["connections"] == 0 and before["orders"] == after["orders"] == 0, (before, after)
    assert kept <= KEPT_LIMIT, (before, after)
