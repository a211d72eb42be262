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

ROMFS_CAP is 16 KiB above the bench's minimum today (95 KiB on the
64-bit unix port): fragmentation moves the edge by a few KiB from run to
run. WPW_ROMFS_CAP overrides it (bytes or NNk), to try another.

The same workload from the .mpy bundle checks the names the producer
interns (qstrs, never freed): MicroPython keeps them in pools of 20, 40,
80, 160, 320, 640... entries, each pool made when the last is full, so
620 names take five pools and the 621st makes a sixth of 7.4 KiB (64-bit;
~3.8 KiB on an ESP32) in one block. Today's producer, with the bench's
runner and sampler, interns ~610: ten names more and the bench's .mpy
minimum heap grows by that pool (133 KiB, 147 before the cut).
"""
import os
import re
import socket

import pytest
from gatewaysim.simulator import Simulator

from benchlib import ours
from harness.process import free_port
from harness.shopping import shop
from harness.things import ROOT, SERVICES, Things, built, runtime_command, thing_files
from imagebuild import toolchain

PURCHASES = 20


def _cap():
    text = os.environ.get("WPW_ROMFS_CAP") or "112k"
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



@pytest.fixture(scope="module")
def mpy_bundle(tmp_path_factory):
    """(the producer-only .mpy lib, folder of the compiled bench runners)."""
    out = tmp_path_factory.mktemp("mpy")
    built(ROOT, str(out), "--only", "mpy", "--producer-only")
    return str(out / "mpy" / "lib"), ours.compile_runners(toolchain.find("mpy-cross", ROOT), str(out))


def test_producer_from_mpy_interns_few_enough_names_for_five_qstr_pools(tmp_path, mpy_bundle, record_property):
    lib, runners = mpy_bundle
    with Simulator(log=lambda *a: None) as sim, Things(tmp_path) as things:
        config = thing_files(str(tmp_path / "producer"), "mpy-producer", sim.url, services=SERVICES[:1])  # the bench's
        folder = os.path.dirname(config)
        control = free_port(socket.SOCK_DGRAM)
        argv, env = runtime_command("micropython", ["-m", "mp_producer"], "512k", (runners, lib))
        process = things.start("producer (.mpy)", argv + [config, os.path.join(folder, "secrets.json"), "-",
                                                          str(control)], env, folder)
        port = int(process.expect("listening on", 20).rsplit(":", 1)[1])
        result = shop(port, sim.url, None, 1, each=PURCHASES, seconds=120, count_failures=True, timeout=5)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ask:
            ask.settimeout(5)
            ask.sendto(b"names", ("127.0.0.1", control))
            ask.recv(200)
        line = process.expect("qstr pool:", 10)
    pools, names = (int(n) for n in re.search(r"n_pool=(\d+), n_qstr=(\d+)", line).groups())
    record_property("names", names)
    print("\nproducer from .mpy after %d purchases: %d names interned in %d pools" % (PURCHASES, names, pools))
    assert result["completed"] == PURCHASES and result["failures"] == 0, (result, process.text())
    assert pools <= 5, "%d names: a sixth qstr pool (7.4 KiB) was made; find who interns them" % names
