"""Figure 3: code size, the .mpy bytes of a producer-only image against microdot's .mpy.

Ours: the lib's .mpy files tools/build --producer-only puts on a board
(its size report's total; boot.py and main.py, shipped as source, are
listed in the details), and the ROMFS image holding them. Anchor: the
.mpy of what `from microdot import Microdot` loads, compiled with the same
mpy-cross and flags (anchor.py), and its ROMFS image.
"""
from benchlib import report

GROUP = "3. Code size"


def figures(bench):
    ours, anchor = bench.ours, bench.anchor
    mpy = report.figure(
        "code_mpy", GROUP, "producer-only .mpy bytes", "bytes", ours["mpy_bytes"], anchor["mpy_bytes"],
        "microdot .mpy (%s)" % ", ".join(sorted(anchor["mpy"])), report.target("<= 40 KiB", "max", 40 * 1024),
        {"modules": ours["modules"], "excluded": ours["excluded"], "entryPointsSource": ours["entry_points"],
         "anchorModules": anchor["mpy"], "compiler": ours["compiler"],
         "notes": ["%d modules; boot.py and main.py add %d bytes of source" % (
             ours["modules"], sum(ours["entry_points"].values()))]})
    image = report.figure("code_romfs", GROUP, "ROMFS image bytes", "bytes", ours["romfs_bytes"],
                          anchor["romfs_bytes"], "microdot in a ROMFS image")
    return [mpy, image]
