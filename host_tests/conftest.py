"""Test-suite wiring: puts lib/ and tools/ on the path and loads the dual-runtime plugin.

Tests under host_tests/dual/ are written once and collected twice, as
``test_x[cpython]`` and ``test_x[micropython]``; see dual_runtime.py.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (os.path.join(ROOT, "lib"), os.path.join(ROOT, "tools"), HERE, os.path.join(HERE, "dual")):
    if path not in sys.path:
        sys.path.insert(0, path)

pytest_plugins = ["dual_runtime"]
