"""Writes a LittleFS v2 image; runs inside the MicroPython unix port, not CPython.

Usage: micropython lfs_writer.py PLAN.json   (MICROPYPATH must hold this folder)
PLAN: {"image": out path, "size": bytes, "block_size": bytes,
       "files": [[board path, host path], ...]}
Formats a RAM block device with the interpreter's own vfs.VfsLfs2 (the
code the firmware mounts flash with), copies the files in, mounts the
result afresh and reads every file back before writing the image, then
prints one JSON line of statistics. File times are not stored, so the
same inputs give the same image bytes. Must never write anything but the
image, and never leave a partial image behind on failure.
"""
import json
import sys
import vfs

from ramdisk import RamBlockDevice, erased

_ENOSPC = 28
_EEXIST = 17
EXIT_NO_SPACE = 3


def fail(message, code=2):
    sys.stderr.write(message + "\n")
    sys.exit(code)


def make_dirs(fs, path):
    parts = path.strip("/").split("/")[:-1]
    for i in range(len(parts)):
        try:
            fs.mkdir("/" + "/".join(parts[:i + 1]))
        except OSError as exc:
            if exc.args[0] != _EEXIST:
                raise


def read_host(path):
    with open(path, "rb") as f:
        return f.read()


def main(plan_path):
    with open(plan_path) as f:
        plan = json.load(f)
    block_size = plan["block_size"]
    bdev = RamBlockDevice(erased(plan["size"], block_size), block_size)
    vfs.VfsLfs2.mkfs(bdev)
    fs = vfs.VfsLfs2(bdev, mtime=False)
    for board_path, host_path in plan["files"]:
        try:
            make_dirs(fs, board_path)
            with fs.open(board_path, "wb") as f:
                f.write(read_host(host_path))
        except OSError as exc:
            if exc.args[0] == _ENOSPC:
                fail("no space left writing %s into a %d-byte LittleFS image" % (board_path, plan["size"]),
                     EXIT_NO_SPACE)
            raise
    # Read back through a fresh mount: what a board sees after reset.
    fs = vfs.VfsLfs2(bdev, mtime=False)
    for board_path, host_path in plan["files"]:
        with fs.open(board_path, "rb") as f:
            if f.read() != read_host(host_path):
                fail("read-back mismatch for %s" % board_path)
    stat = fs.statvfs("/")
    with open(plan["image"], "wb") as f:
        f.write(bdev.data)
    print(json.dumps({"block_size": stat[0], "blocks": stat[2], "free_blocks": stat[3]}))


main(sys.argv[1])
