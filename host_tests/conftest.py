"""Test-suite wiring: puts lib/ and tools/ on the path, loads the dual-runtime plugin, and the shared fixtures.

Tests under host_tests/dual/ are written once and collected twice, as
``test_x[cpython]`` and ``test_x[micropython]``; see dual_runtime.py.
Processes, Things, boards and the gateway come from tools/harness/.
"""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (os.path.join(ROOT, "lib"), os.path.join(ROOT, "tools"), HERE, os.path.join(HERE, "dual")):
    if path not in sys.path:
        sys.path.insert(0, path)

from harness.broker import Broker  # noqa: E402
from harness.things import built  # noqa: E402
from harness.vboard import VBoard  # noqa: E402

pytest_plugins = ["dual_runtime"]


@pytest.fixture(scope="session")
def bundle(tmp_path_factory):
    """The producer-only .mpy bundle (tools/build --only mpy --producer-only): the files a board runs."""
    out = tmp_path_factory.mktemp("bundle")
    built(ROOT, str(out), "--only", "mpy", "--producer-only")
    return str(out / "mpy" / "lib")


@pytest.fixture(scope="session")
def firmware(tmp_path_factory):
    """tools/build's outputs (mpy/, littlefs.img, romfs.img) from this checkout, built once."""
    out = str(tmp_path_factory.mktemp("firmware") / "build")
    built(ROOT, out)
    return out


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """The simulated gateway over TLS, in this process."""
    from gatewaysim.simulator import Simulator

    with Simulator(tls_dir=str(tmp_path_factory.mktemp("gateway-tls"))) as gw:
        yield gw


@pytest.fixture
def vboards(tmp_path):
    """Start boards with vboards(name, *args); all are stopped (and checked) at the end of the test."""
    started = []

    def start(name, *args):
        board = VBoard(tmp_path / name, *args)
        started.append(board)
        return board

    yield start
    for board in started:
        board.stop()


@pytest.fixture
def broker(tmp_path):
    """Start mosquitto with broker(things=[serverIDs], consumers=[users], ...) (harness.broker.Broker's
    arguments); every one started is stopped at the end of the test, also when it fails."""
    started = []

    def start(things=(), consumers=("consumer",), **options):
        started.append(Broker(tmp_path / ("broker-%d" % len(started)), things, consumers, **options))
        return started[-1]

    yield start
    for one in started:
        one.stop()
