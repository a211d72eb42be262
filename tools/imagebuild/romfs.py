"""Builds romfs.img with `mpremote romfs build --no-mpy` from the compiled lib tree.

The image holds lib/wpwithin/*.mpy only: a board mounts ROMFS at /rom and
puts /rom and /rom/lib on sys.path, but runs boot.py and main.py from its
writable filesystem, so those stay on LittleFS. mpremote writes the format
(it is what `mpremote romfs deploy` flashes); --no-mpy because the files
are already compiled for xtensawin. Must never recompile, and never write
anything but the image.
"""
import os
import shutil
import subprocess
import tempfile

from imagebuild import BuildError

ROMFS_MAGIC = b"\xd2\xcd\x31"


def build(mpremote, lib_tree, image):
    """Write a ROMFS image holding `lib_tree` (a folder) as /lib; returns its size."""
    with tempfile.TemporaryDirectory(prefix="wpw-romfs-") as staging:
        shutil.copytree(lib_tree, os.path.join(staging, "lib"))
        cmd = [mpremote, "romfs", "--no-mpy", "--output", image + ".part", "build", staging]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except OSError as exc:
            raise BuildError("cannot run %s: %s" % (mpremote, exc))
    if proc.returncode != 0 or not os.path.isfile(image + ".part"):
        _remove(image + ".part")
        raise BuildError("`mpremote romfs build` failed:\n%s" % (proc.stderr or proc.stdout).strip())
    with open(image + ".part", "rb") as f:
        if f.read(len(ROMFS_MAGIC)) != ROMFS_MAGIC:
            _remove(image + ".part")
            raise BuildError("`mpremote romfs build` wrote something that is not a ROMFS image")
    os.replace(image + ".part", image)
    return os.path.getsize(image)


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass
