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

if MICROPYTHON:
    from asyncio import wait_for  # noqa: F401
else:
    import asyncio

    async def wait_for(awaitable, seconds):
        """asyncio.wait_for that never loses a cancel: CPython 3.11's returns the result when what it
        awaits finished in the same loop round as the caller was cancelled (python/cpython#86296), so a
        Ctrl-C (asyncio.run cancels the main task) landing just as a send completed was lost and the
        command went on to its end."""
        result = await asyncio.wait_for(awaitable, seconds)
        if asyncio.current_task().cancelling():
            raise asyncio.CancelledError
        return result
