"""Runtime shims so one source runs on MicroPython and CPython, and forget() for modules used once.

Must never import anything CPython-only or touch hardware.
"""
import sys

MICROPYTHON = sys.implementation.name == "micropython"

try:
    from micropython import const  # noqa: F401  (the compiler folds const() in lib/)
except ImportError:  # CPython

    def const(value):
        return value


def forget(name):
    """Drop module `name` ("wpwithin.settle") from sys.modules and the package, so its code is freed
    once nothing holds it (a module loaded for a rare path or once at start)."""
    sys.modules.pop(name, None)
    package = sys.modules.get("wpwithin")
    if package is not None and name[9:] in dir(package):
        delattr(package, name[9:])
