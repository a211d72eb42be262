"""The anchor, microdot: installed from PyPI if missing, compiled to .mpy, packed into a ROMFS image.

The version is the one pinned in requirements.txt. microdot's source is
read from the installed wheel and compiled, with the same mpy-cross and
flags as our lib (imagebuild.compiler), into a folder of the bench's work
directory; nothing of it is ever copied into the repository. The .mpy
compared is what `from microdot import Microdot` loads: the package's
__init__ and its microdot module (the other modules are optional
extensions an app imports only if it uses them).
"""
import importlib.metadata
import os
import re
import subprocess
import sys

from imagebuild import compiler, romfs

PACKAGE = "microdot"
MODULES = ("__init__.py", "microdot.py")


def pinned_version(root):
    """microdot's version in requirements.txt."""
    with open(os.path.join(root, "requirements.txt")) as f:
        for line in f:
            match = re.match(r"\s*microdot\s*==\s*([^\s#]+)", line)
            if match:
                return match.group(1)
    raise RuntimeError("requirements.txt pins no microdot version")


def installed_version():
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


def ensure_installed(root, log):
    """The installed microdot's source folder; pip-installs the pinned version first if needed."""
    wanted = pinned_version(root)
    if installed_version() != wanted:
        if sys.prefix == sys.base_prefix:
            raise RuntimeError("%s %s is not installed, and %s is not a virtual environment to install it "
                               "into: run `make venv`, then .venv/bin/python tools/bench.py"
                               % (PACKAGE, wanted, sys.executable))
        log("installing the anchor: pip install %s==%s" % (PACKAGE, wanted))
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
                               "%s==%s" % (PACKAGE, wanted)], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError("pip install %s==%s failed: %s" % (PACKAGE, wanted, (proc.stderr or proc.stdout)[-500:]))
        importlib.invalidate_caches()
    dist = importlib.metadata.distribution(PACKAGE)
    folder = os.path.join(str(dist.locate_file("")), PACKAGE)
    for name in MODULES:
        if not os.path.isfile(os.path.join(folder, name)):
            raise RuntimeError("%s %s has no %s in %s" % (PACKAGE, dist.version, name, folder))
    return folder, dist.version


def compile_anchor(mpy_cross, source_folder, lib_out):
    """Compile microdot into lib_out/microdot/*.mpy; returns {module: .mpy bytes}."""
    sizes = {}
    for name in MODULES:
        target = os.path.join(lib_out, PACKAGE, name[:-3] + ".mpy")
        sizes["%s/%s" % (PACKAGE, name)] = compiler.compile_module(
            mpy_cross, os.path.join(source_folder, name), target, "%s/%s" % (PACKAGE, name))
    return sizes


def build(root, mpy_cross, mpremote, workdir, log):
    """Everything the bench needs of the anchor, in workdir/anchor: a dict of paths and sizes."""
    source, version = ensure_installed(root, log)
    out = os.path.join(workdir, "anchor")
    lib = os.path.join(out, "lib")
    sizes = compile_anchor(mpy_cross, source, lib)
    image = os.path.join(out, "romfs.img")
    romfs.build(mpremote, lib, image)
    return {"name": "microdot %s" % version, "version": version, "lib": lib, "romfs": image,
            "romfs_bytes": os.path.getsize(image), "mpy": sizes, "mpy_bytes": sum(sizes.values())}
