"""Runtime shims so one source runs on MicroPython and CPython.

Must never import anything CPython-only or touch hardware.
"""
import sys

MICROPYTHON = sys.implementation.name == "micropython"

try:
    from micropython import const  # noqa: F401  (the compiler folds const() in lib/)
except ImportError:  # CPython

    def const(value):
        return value
