"""The producer with its code in ROMFS, as a board runs it, completes purchases in a capped heap.

A guard on the figure that matters on a board: the bench's minimum heap
with code from ROMFS (tools/bench.py, group 1) is bisected and only
reported; this runs the same workload once at a fixed cap, so a change
that makes the producer need more heap fails CI. The bench's own runner
(benchlib/mp_producer, compiled to .mpy) mounts the producer-only ROMFS
image from one heap buffer, which the cap adds on top; the gateway is the
simulator over plain HTTP, as in the bench. 20 purchases by one consumer:
all six routes, the gateway's token and order calls, token signing and
the journal.

ROMFS_CAP is 16 KiB above the bench's minimum today (114 KiB on the
64-bit unix port): fragmentation moves the edge by a few KiB from run to
run. WPW_ROMFS_CAP overrides it (bytes or NNk), to try another.
"""
import os

import pytest
from gatewaysim.simulator import Simulator

from benchlib import ours
from harness.shopping import shop
from harness.things import ROOT, SERVICES, Things, built, runtime_command, thing_files
from imagebuild import toolchain

PURCHASES = 20


def _cap():
    text = os.environ.get("WPW_ROMFS_CAP") or "130k"
    return int(text[:-1]) * 1024 if text.endswith("k") else int(text)


@pytest.fixture(scope="module")
def romfs(tmp_path_factory):
    """(image path, folder of the compiled bench runners)."""
    out = tmp_path_factory.mktemp("romfs")
    built(ROOT, str(out), "--only", "romfs", "--producer-only")
    runners = ours.compile_runners(toolchain.find("mpy-cross", ROOT), str(out))
    return str(out / "romfs.img"), runners


def test_producer_from_romfs_completes_purchases_in_a_capped_heap(tmp_path, romfs, record_property):
    image, runners = romfs
    buffer = os.path.getsize(image)  # the image's heap buffer (GC block rounding is lost in the margin)
    heap = buffer + _cap()
    with Simulator(log=lambda *a: None) as sim, Things(tmp_path) as things:
        config = thing_files(str(tmp_path / "producer"), "romfs-producer", sim.url, services=SERVICES[:1])  # the bench's
        folder = os.path.dirname(config)
        argv, env = runtime_command("micropython", ["-m", "mp_producer"], heap, (runners,))
        process = things.start("producer (ROMFS)", argv + [config, os.path.join(folder, "secrets.json"), image], env,
                               folder)
        port = int(process.expect("listening on", 20).rsplit(":", 1)[1])
        result = shop(port, sim.url, None, 1, each=PURCHASES, seconds=120, count_failures=True, timeout=5)
        alive = process.alive()
    output = process.text()
    record_property("heapsize", heap)
    print("\nproducer from ROMFS under -X heapsize=%d (image buffer %d + %d): %d of %d purchases, %d failures"
          % (heap, buffer, heap - buffer, result["completed"], PURCHASES, result["failures"]))
    assert result["completed"] == PURCHASES and result["failures"] == 0, (result, output)
    assert alive and "MemoryError" not in output and "Traceback" not in output, output
