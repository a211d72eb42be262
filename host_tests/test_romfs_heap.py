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
import subprocess
import sys

import pytest
from gatewaysim.simulator import Simulator

import mpy
from benchlib import ours, shoppers
from imagebuild import toolchain
from network_things import Process, udp_ports

PURCHASES = 20


def _cap():
    text = os.environ.get("WPW_ROMFS_CAP") or "130k"
    return int(text[:-1]) * 1024 if text.endswith("k") else int(text)


@pytest.fixture(scope="module")
def romfs(tmp_path_factory):
    """(image path, folder of the compiled bench runners)."""
    out = tmp_path_factory.mktemp("romfs")
    proc = subprocess.run([sys.executable, os.path.join(mpy.ROOT, "tools", "build"), "--only", "romfs",
                           "--producer-only", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runners = ours.compile_runners(toolchain.find("mpy-cross", mpy.ROOT), str(out))
    return str(out / "romfs.img"), runners


def test_producer_from_romfs_completes_purchases_in_a_capped_heap(tmp_path, romfs, record_property):
    image, runners = romfs
    buffer = os.path.getsize(image)  # the image's heap buffer (GC block rounding is lost in the margin)
    heap = buffer + _cap()
    with Simulator(log=lambda *a: None) as sim:
        config, secrets = ours.producer_files(str(tmp_path), sim.url, None, udp_ports(2))
        process = Process("producer (ROMFS)", [
            mpy.micropython_path(), "-X", "heapsize=%d" % heap, "-m", "mp_producer", config, secrets, image],
            env={"MICROPYPATH": os.pathsep.join([runners, ".frozen"])}, cwd=str(tmp_path))
        try:
            port = int(process.expect("listening on", 20).rsplit(":", 1)[1])
            result = shoppers.shop(port, sim.url, None, 1, PURCHASES, 120, timeout=5)
            alive = process.proc.poll() is None
        finally:
            process.stop()
    output = "".join(process.output)
    record_property("heapsize", heap)
    print("\nproducer from ROMFS under -X heapsize=%d (image buffer %d + %d): %d of %d purchases, %d failures"
          % (heap, buffer, heap - buffer, result["completed"], PURCHASES, result["failures"]))
    assert result["completed"] == PURCHASES and result["failures"] == 0, (result, output)
    assert alive and "MemoryError" not in output and "Traceback" not in output, output
