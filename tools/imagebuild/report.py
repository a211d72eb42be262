"""The size report: per module .py and .mpy bytes, per image bytes, as a table or JSON.

Pure formatting over the report dict cli.py assembles; the ESP32 figures
it compares against are MicroPython's stock partition tables. Must never
read or write files.
"""

KIB = 1024
# MicroPython's ESP32 boards (since 1.26 the vfs partition runs from the end of
# the app to the end of flash): on a 4 MiB module it is 2 MiB at 0x200000.
ESP32_VFS_OFFSET = 0x200000
ESP32_4MIB_VFS_SIZE = 0x200000
# partitions-4MiB-romfs.csv: the romfs partition of ESP32 builds with ROMFS enabled.
ESP32_ROMFS_OFFSET = 0x1E0000
ESP32_ROMFS_SIZE = 0x20000


def kib(n):
    """Bytes as "2 MiB", "172 KiB" or "1.5 KiB"."""
    if n and n % (KIB * KIB) == 0:
        return "%d MiB" % (n // (KIB * KIB))
    return "%.1f KiB" % (n / KIB) if n % KIB else "%d KiB" % (n // KIB)


def table(report):
    """The report as the text tools/build prints at the end."""
    modules = report["modules"]
    width = max([len(m["module"]) for m in modules] + [24])
    lines = ["", "Size report: mpy-cross %s, %s" % (report["compiler"]["flags"], report["compiler"]["version"]), ""]
    lines.append("%-*s  %10s  %10s" % (width, "module", ".py bytes", ".mpy bytes"))
    for m in modules:
        lines.append("%-*s  %10d  %10d" % (width, m["module"], m["py"], m["mpy"]))
    total = report["totals"]
    lines.append("%-*s  %10d  %10d" % (width, "total: %d modules" % len(modules), total["py"], total["mpy"]))
    lines.append("entry points (stay .py on the board): %s" % ", ".join(
        "%s %d" % (name, size) for name, size in sorted(report["entry_points"].items())))
    if report["excluded"]:
        lines.append("left out (--producer-only): %s" % ", ".join(report["excluded"]))
    lines.append("")
    lines.append("%-14s  %10s  %s" % ("image", "bytes", "contents"))
    images = report["images"]
    if "mpy" in images:
        lines.append("%-14s  %10d  %d files: lib/wpwithin/*.mpy, boot.py, main.py"
                     % ("mpy/", images["mpy"]["bytes"], images["mpy"]["files"]))
    if "romfs" in images:
        size = images["romfs"]["bytes"]
        lines.append("%-14s  %10d  lib/wpwithin/*.mpy; %d%% of a %s ESP32 romfs partition"
                     % ("romfs.img", size, 100 * size // ESP32_ROMFS_SIZE, kib(ESP32_ROMFS_SIZE)))
    if "littlefs" in images:
        lfs = images["littlefs"]
        lines.append("%-14s  %10d  LittleFS v2, %d x %d-byte blocks; %s used, %s free%s"
                     % ("littlefs.img", lfs["bytes"], lfs["blocks"], lfs["block_size"], kib(lfs["used"]),
                        kib(lfs["free"]), "; holds " + ", ".join(lfs["extras"]) if lfs["extras"] else ""))
    for warning in report["warnings"]:
        lines.append("warning: %s" % warning)
    for note in report["notes"]:
        lines.append("note: %s" % note)
    return "\n".join(lines) + "\n"


def notes(report):
    """Advice the figures call for (partition fit)."""
    out = []
    images = report["images"]
    if "littlefs" in images and images["littlefs"]["bytes"] != ESP32_4MIB_VFS_SIZE:
        out.append("littlefs.img mounts only on a partition of exactly its size; stock MicroPython on ESP32 has "
                   "its vfs partition from 0x%X to the end of flash (2 MiB on a 4 MiB board, 6 MiB on 8 MiB), "
                   "so build with --fs-size 2M (or 6M) to flash it there with esptool" % ESP32_VFS_OFFSET)
    if "romfs" in images and images["romfs"]["bytes"] > ESP32_ROMFS_SIZE:
        out.append("romfs.img is larger than the %s romfs partition of partitions-4MiB-romfs.csv"
                   % kib(ESP32_ROMFS_SIZE))
    if "littlefs" in images and "secrets.json" in images["littlefs"]["extras"]:
        out.append("littlefs.img holds secrets.json: keep the image private (firmware/build/ is git-ignored)")
    return out
