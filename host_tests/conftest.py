"""Test-suite wiring: puts lib/ and tools/ on the path and loads the dual-runtime plugin.

Tests under host_tests/dual/ are written once and collected twice, as
``test_x[cpython]`` and ``test_x[micropython]``; see dual_runtime.py.
"""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (os.path.join(ROOT, "lib"), os.path.join(ROOT, "tools"), HERE, os.path.join(HERE, "dual")):
    if path not in sys.path:
        sys.path.insert(0, path)

pytest_plugins = ["dual_runtime"]


@pytest.fixture(scope="session")
def bundle(tmp_path_factory):
    """The producer-only .mpy bundle (tools/build --only mpy --producer-only): the files a board runs."""
    out = tmp_path_factory.mktemp("bundle")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "build"), "--only", "mpy",
                           "--producer-only", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return str(out / "mpy" / "lib")
