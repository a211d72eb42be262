"""Our side of the bench: the producer-only bundle and the bench runners compiled.

build_bundle() runs `tools/build --only romfs --producer-only` (the .mpy
tree is always built with it) into the work directory and returns its
size report's figures. compile_runners() compiles the mp_*.py scripts of
this package to .mpy, so a runner's own source is never compiled inside a
measured heap.
"""
import glob
import json
import os

from harness.things import built
from imagebuild import compiler

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER_ID = "bench-producer"


def build_bundle(root, workdir):
    """tools/build's producer-only .mpy tree and ROMFS image; a dict of paths and sizes."""
    out = os.path.join(workdir, "build")
    report = json.loads(built(root, out, "--only", "romfs", "--producer-only", "--json"))
    return {"lib": os.path.join(out, "mpy", "lib"), "romfs": os.path.join(out, "romfs.img"),
            "romfs_bytes": report["images"]["romfs"]["bytes"], "mpy_bytes": report["totals"]["mpy"],
            "modules": len(report["modules"]), "excluded": report["excluded"],
            "entry_points": report["entry_points"], "compiler": report["compiler"]["version"]}


def compile_runners(mpy_cross, workdir):
    """workdir/runners/mp_*.mpy; returns that folder."""
    out = os.path.join(workdir, "runners")
    for source in sorted(glob.glob(os.path.join(HERE, "mp_*.py"))):
        name = os.path.basename(source)
        compiler.compile_module(mpy_cross, source, os.path.join(out, name[:-3] + ".mpy"), name)
    return out
