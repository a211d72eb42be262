"""Load: 32 consumers buying at once from one MicroPython producer in a capped heap, for a while.

The producer runs the compiled bundle (what gets flashed) under
`micropython -X heapsize=LOAD_HEAP` with the device defaults (4
connection slots, so most consumers meet 503 and retry, as they would on
a board), its gateway the simulator over HTTPS. After a warm-up (all 32 at once, one purchase each) that
fills its memory of used-up tokens, 32 consumers buy (select, pay, delivery) in a loop for
WPW_LOAD_SECONDS (CI 20 s; the full run: WPW_LOAD_SECONDS=300) while the
producer's heap is sampled. Every purchase must succeed, every unit paid
must be delivered, the gateway's ledger must reconcile, and the heap once
idle must be back within 1 KB of where it was before the load.

LOAD_HEAP is 240k: 32k above 208k, the smallest cap in 16k steps that
passes on a quick machine (192k fails). One step of margin (224k) was not
enough on a slower one: what the GC finds free under load depends on how
requests interleave, and a payment that finds no block is answered 500
(the consumer holds it as pending). Issue 16's scale clause asks for the
.mpy min-heap target plus one 16k step (126k): footprint work is still
open (see test_network_heap.py). When this test fails, pytest shows the
producer's last lines.

The second test rushes a producer capped below what 32 at once need: it
must answer again once they are gone (MicroPython's own accept loop died
on the first MemoryError and the producer never accepted again).
"""
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request

from gatewaysim.simulator import Simulator

from harness.process import free_port
from harness.shopping import shop
from harness.things import Things, heap_report, idle_heap

CONSUMERS = 32
SECONDS = float(os.environ.get("WPW_LOAD_SECONDS") or 20)
LOAD_HEAP = os.environ.get("WPW_LOAD_HEAP") or "240k"
MAX_ORDERS = 16
KEPT_LIMIT = 2048  # growth allowed: two runs of 20 s differ in what the GC happens to keep by up to ~1 KB;
# lower after is no leak (garbage a stale pointer kept alive at the first reading)


def buying(sim, port, consumers, seconds):
    """Consumers buying 2 units and taking both, each at least once and again until `seconds` have passed.

    32 cars at one charger with 4 connection slots: patient ones (20 tries, ~30 s), and ids of one
    length, so the heap before and after holds orders of the same size.
    """
    return shop(port, sim.url, sim.ca_path, consumers, seconds=seconds, name="load-car", busy_retries=20)


def test_32_consumers_buy_for_a_while_with_no_failure_and_bounded_heap(tmp_path, bundle, record_property):
    things = Things(tmp_path)
    samples = []
    try:
        with Simulator(db=str(tmp_path / "gateway.db"), tls_dir=str(tmp_path / "tls"), log=lambda *a: None) as sim:
            heap_port = free_port(socket.SOCK_DGRAM)
            producer = things.producer("load-test", "micropython", sim.url, sim.ca_path, heap=LOAD_HEAP, lib=bundle,
                                       network={"debugHeap": heap_port}, producer={"maxOrders": MAX_ORDERS})
            port, process = producer["port"], producer["process"]

            # Warm-up: all 32 at once, one purchase each: every connection slot made, the ledger's
            # tables at their largest, its used-up tokens at their bound (MAX_ORDERS).
            buying(sim, port, CONSUMERS, 0)
            before = idle_heap(heap_port, process)
            done = threading.Event()

            def sample():
                while not done.wait(0.5):
                    samples.append(heap_report(heap_port, process, timeout=5)["memAlloc"])

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            began = time.monotonic()
            try:
                totals = buying(sim, port, CONSUMERS, SECONDS)
            finally:
                done.set()
                sampler.join(10)
            seconds = time.monotonic() - began
            after = idle_heap(heap_port, process)

            assert process.proc.poll() is None, process.text()
            assert "Error" not in process.text(), process.text()
            summary = sim.ledger.reconcile()
            assert summary["consistent"], summary
    finally:
        said(things)
    purchases = totals["bought"] // 2
    kept = after["memAlloc"] - before["memAlloc"]
    for name, value in (("purchases", purchases), ("heap_before", before["memAlloc"]),
                        ("heap_after", after["memAlloc"]), ("heap_peak_sampled", max(samples or [0]))):
        record_property(name, value)
    print("\n%d consumers for %.0f s against a producer under micropython -X heapsize=%s (.mpy, 4 slots): "
          "%d purchases (%.1f/s), %d units paid and %d delivered, %d busy answers retried; heap in use %d B "
          "before, %d B after (%+d B), at most %d B in %d samples during the load"
          % (CONSUMERS, seconds, LOAD_HEAP, purchases, purchases / seconds, totals["bought"], totals["delivered"],
             totals["busyRetries"], before["memAlloc"], after["memAlloc"], kept, max(samples or [0]), len(samples)))
    assert purchases >= CONSUMERS and totals["delivered"] == totals["bought"], totals
    assert kept <= KEPT_LIMIT, ("heap kept %+d B" % kept, before, after)


# Too small for 32 at once (the load above needs 208k): the heap runs out in every rush tried (44-63
# MemoryErrors at 168k-176k; at 184k one rush of two never ran out, since the producer interns fewer
# names). Much smaller caps are not a test of this: the idle producer with 16 orders no longer fits, or
# its loop itself meets the MemoryError (a board's app.py then resets; here the process ends).
SHORT_HEAP = os.environ.get("WPW_SHORT_HEAP") or "176k"


def test_a_producer_whose_heap_ran_out_under_load_serves_again_once_it_is_gone(tmp_path, bundle):
    """Out of heap, a request is answered 500 or its connection closed, and nothing else is lost.
    (asyncio's own accept loop ended for good on a MemoryError, a poller entry or a task it could not
    make, and the producer listened on without ever accepting again.)"""
    things = Things(tmp_path)
    try:
        with Simulator(db=str(tmp_path / "gateway.db"), tls_dir=str(tmp_path / "tls"), log=lambda *a: None) as sim:
            producer = things.producer("short-heap", "micropython", sim.url, sim.ca_path, heap=SHORT_HEAP, lib=bundle,
                                       producer={"maxOrders": MAX_ORDERS})
            port, process = producer["port"], producer["process"]
            rush = shop(port, sim.url, sim.ca_path, CONSUMERS, seconds=5, name="rush-car", busy_retries=20,
                        count_failures=True)
            ran_out = process.text().count("MemoryError")
            print("rush at %s: %d purchases, %d failed, %d MemoryErrors said" % (
                SHORT_HEAP, rush["completed"], rush["failures"], ran_out))
            # Its ledger may be full of what the rush paid for and did not take (a 503 for a new
            # quote, rightly), and its sweep settling what the rush left in doubt (a 500 while its
            # gateway calls take the heap): the routes that need no order show that it serves.
            for path in ("/service/discover", "/service/1/prices", "/service/2/prices"):
                assert served(port, path, time.monotonic() + 30), (path, process.text())
            assert process.proc.poll() is None, process.text()
            assert sim.ledger.reconcile()["consistent"]
    finally:
        said(things)


def served(port, path, deadline):
    """GET path answered 200 with JSON before the deadline (a 500 or 503 before that is tried again)."""
    while True:
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as answer:
                return answer.status == 200 and json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            if exc.code not in (500, 503) or time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def said(things):
    """Stop them all and print what each said last (pytest shows it when the test fails)."""
    started = list(things.processes)
    things.close()
    for process in started:
        print("--- %s said (its last 40 lines):\n%s" % (process.name, "".join(process.text().splitlines(True)[-40:])))
