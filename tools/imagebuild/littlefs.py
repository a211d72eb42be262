"""Builds littlefs.img, the board filesystem, by running lfs_writer.py in the MicroPython unix port.

Letting MicroPython's own vfs.VfsLfs2 format and fill the image means the
on-flash format is exactly what the firmware mounts. Must never write
outside the image path, and must never leave a partial image behind.
"""
import json
import os
import subprocess
import tempfile

from imagebuild import BuildError

BLOCK_SIZE = 4096  # ESP32 flash erase sector; MicroPython's esp32.Partition block size
HERE = os.path.dirname(os.path.abspath(__file__))
_EXIT_NO_SPACE = 3
HEAP_MARGIN = 1 << 20  # littlefs buffers, the files being copied, the interpreter


def parse_size(text):
    """Bytes from "524288", "512K", "512KiB", "2M" or "2MiB" (binary units); ValueError if bad."""
    value = text.strip().upper()
    for suffix, factor in (("KIB", 1024), ("MIB", 1 << 20), ("K", 1024), ("M", 1 << 20), ("B", 1)):
        if value.endswith(suffix):
            value, scale = value[:-len(suffix)], factor
            break
    else:
        scale = 1
    if not value.isdigit():
        raise ValueError("%r is not a size (examples: 524288, 512K, 2M)" % text)
    size = int(value) * scale
    if size % BLOCK_SIZE or size < 2 * BLOCK_SIZE:
        raise ValueError("%r is not a whole number of %d-byte blocks (at least 2)" % (text, BLOCK_SIZE))
    return size


def build(micropython, files, image, size):
    """Write `files` ([(board path, host path)]) into a `size`-byte LittleFS v2 image at `image`."""
    plan = {"image": os.path.abspath(image) + ".part", "size": size, "block_size": BLOCK_SIZE,
            "files": [[board, os.path.abspath(host)] for board, host in files]}
    with tempfile.TemporaryDirectory(prefix="wpw-lfs-") as work:
        plan_path = os.path.join(work, "plan.json")
        with open(plan_path, "w") as f:
            json.dump(plan, f)
        env = dict(os.environ, MICROPYPATH=HERE)
        try:
            heap = "-X", "heapsize=%d" % (size + HEAP_MARGIN)  # the image is held in RAM whole
            proc = subprocess.run([micropython, *heap, os.path.join(HERE, "lfs_writer.py"), plan_path],
                                  capture_output=True, text=True, timeout=120, env=env)
        except OSError as exc:
            raise BuildError("cannot run %s: %s" % (micropython, exc))
    if proc.returncode != 0:
        _remove(plan["image"])
        if proc.returncode == _EXIT_NO_SPACE:
            raise BuildError("%s; give a larger --fs-size" % proc.stderr.strip())
        raise BuildError("the MicroPython unix port failed to write the LittleFS image:\n%s"
                         % (proc.stderr or proc.stdout).strip())
    os.replace(plan["image"], image)
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    used = (stats["blocks"] - stats["free_blocks"]) * stats["block_size"]
    return {"bytes": os.path.getsize(image), "block_size": stats["block_size"],
            "blocks": stats["blocks"], "used": used, "free": stats["free_blocks"] * stats["block_size"]}


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass
