"""Virtual boards for tests: tools/vboard processes, driven with the real mpremote, and stopped without a trace.

VBoard starts `tools/vboard ARGS` in a session of its own, reads the
serial port from its first line, and runs mpremote against that port
(`resume` unless asked otherwise, so the app is interrupted, never
soft-reset, unless a test wants that). stop() sends SIGTERM and checks
the supervisor and its board process are gone; every wait has a
deadline. firmware() builds the images once per test session;
thing_files() writes a producer's config, secrets and CA into a folder.
"""
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from gatewaysim.merchants import DEFAULT_CLIENT_KEY as CLIENT_KEY  # the simulator's test merchant
from gatewaysim.merchants import DEFAULT_SERVICE_KEY as SERVICE_KEY

import mpy
from network_things import free_port

ROOT = mpy.ROOT
VBOARD = os.path.join(ROOT, "tools", "vboard")
DEPLOY = os.path.join(ROOT, "tools", "deploy")
BUILD = os.path.join(ROOT, "tools", "build")
MPREMOTE = os.path.join(os.path.dirname(sys.executable), "mpremote")
CARD = {"name": "Board Test", "number": "4444333322221111", "expiryMonth": 12, "expiryYear": 2031, "cvc": "123"}


def children(pid):
    """Pids whose parent is pid (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class VBoard:
    def __init__(self, folder, *args):
        self.folder = str(folder)
        os.makedirs(self.folder, exist_ok=True)
        self.log_path = os.path.join(self.folder, "console.log")
        self.err_path = os.path.join(self.folder, "vboard.err")
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, VBOARD, "--log", self.log_path] + [str(a) for a in args],
                                         stdout=subprocess.PIPE, stderr=err, start_new_session=True)
        self.board_pids = []
        try:
            self.port = self._first_line(15)
            deadline = time.monotonic() + 5
            while not self.board_pids and time.monotonic() < deadline:
                self.board_pids = children(self.proc.pid)
                time.sleep(0.02)
        except BaseException:
            self.stop()
            raise

    def _first_line(self, timeout):
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        line = b""
        deadline = time.monotonic() + timeout
        while not line.endswith(b"\n"):
            if not selector.select(max(0, deadline - time.monotonic())):
                raise AssertionError("tools/vboard printed no port within %s s: %s" % (timeout, self.stderr()))
            byte = os.read(self.proc.stdout.fileno(), 1)  # unbuffered: select() sees what is left
            if not byte:
                raise AssertionError("tools/vboard exited %s: %s" % (self.proc.wait(5), self.stderr()))
            line += byte
        selector.close()
        return line.decode().strip()

    def stderr(self):
        with open(self.err_path) as f:
            return f.read()

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, text, timeout=20, after=0):
        """Wait until the console log holds text past offset `after`; returns the offset just past it."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log()
            at = log.find(text, after)
            if at >= 0:
                return at + len(text)
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError("no %r on the board console within %s s; console:\n%s" % (text, timeout, log))
            time.sleep(0.05)

    def mpremote(self, *args, resume=True, timeout=30, check=True):
        argv = [MPREMOTE, "connect", self.port] + (["resume"] if resume else []) + list(args)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check:
            assert proc.returncode == 0, "mpremote %s: exit %s\n%s%s\nconsole:\n%s" % (
                " ".join(args), proc.returncode, proc.stdout, proc.stderr, self.log()[-3000:])
        return proc

    def exec(self, code, **kwargs):
        return self.mpremote("exec", code, **kwargs).stdout

    def snapshot(self):
        """repl.snapshot() over the serial REPL (Ctrl-C first: the app stops)."""
        out = self.exec("from wpwithin import repl\nimport json\nprint(json.dumps(repl.snapshot()))")
        return json.loads(out.strip().splitlines()[-1])

    def stop(self, timeout=10):
        """SIGTERM; the exit status. Fails if the supervisor or its board process outlives it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc.stdout.close()
        left = [pid for pid in self.board_pids if alive(pid)]
        deadline = time.monotonic() + 5
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = [pid for pid in left if alive(pid)]
        for pid in left:
            os.kill(pid, signal.SIGKILL)  # ours, and it should not be there: fail below
        assert not left, "board processes %s outlived tools/vboard" % left
        return self.proc.returncode


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


_built = {}


@pytest.fixture(scope="session")
def firmware(tmp_path_factory):
    """tools/build's outputs (mpy/, littlefs.img, romfs.img) from this checkout, built once."""
    if "out" not in _built:
        out = str(tmp_path_factory.mktemp("firmware") / "build")
        proc = subprocess.run([sys.executable, BUILD, "--out", out], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        _built["out"] = out
    return _built["out"]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """The simulated gateway over TLS, in this process."""
    from gatewaysim.simulator import Simulator

    with Simulator(tls_dir=str(tmp_path_factory.mktemp("gateway-tls"))) as gw:
        yield gw


def thing_files(folder, gateway, port, producer=None, **network):
    """config.json, secrets.json and ca.der of a loopback producer in folder; the config path."""
    os.makedirs(folder, exist_ok=True)
    net = {"host": "127.0.0.1", "hostname": "127.0.0.1", "port": port, "broadcastAddress": "127.255.255.255",
           "broadcastPort": free_port(socket.SOCK_DGRAM), "probePort": free_port(socket.SOCK_DGRAM),
           "broadcastIntervalMs": 1000}
    net.update(network)
    section = {"enabled": True, "services": [{"id": 1, "name": "Car charge", "description": "EV charging", "prices": [
        {"id": 1, "amount": 30, "currency": "GBP", "unitId": 1, "unitDescription": "kWh",
         "description": "per kWh", "maxUnits": 10}]}]}
    section.update(producer or {})
    config = {"device": {"description": "virtual charger", "serverId": "vboard-%d" % port}, "network": net,
              "gateway": {"url": gateway.url, "ca": "ca.der", "timeout": 10}, "producer": section}
    secrets = {"merchantClientKey": CLIENT_KEY, "merchantServiceKey": SERVICE_KEY,
               "tokenSigningSecret": os.urandom(32).hex()}
    for name, obj in (("config.json", config), ("secrets.json", secrets)):
        with open(os.path.join(folder, name), "w") as f:
            json.dump(obj, f, indent=1)
    shutil.copyfile(os.path.join(os.path.dirname(gateway.ca_path), "ca.der"), os.path.join(folder, "ca.der"))
    return os.path.join(folder, "config.json")


def board_folder(folder, firmware, config=None):
    """A board filesystem folder with the built firmware (and the files of config); its path."""
    shutil.copytree(os.path.join(firmware, "mpy"), folder)
    if config:
        here = os.path.dirname(config)
        for name in ("config.json", "secrets.json", "ca.der"):
            shutil.copyfile(os.path.join(here, name), os.path.join(folder, name))
    return str(folder)


def card_file(folder):
    """A test card's JSON file in folder (for wpw --card); its path."""
    path = os.path.join(str(folder), "card.json")
    with open(path, "w") as f:
        json.dump(CARD, f)
    return path


def wpw(*args, timeout=60):
    """The wpw command (CPython consumer); its parsed --json output. Fails with its stderr."""
    proc = subprocess.run([sys.executable, "-m", "wpwcli.main"] + list(args) + ["--json", "--quiet"],
                          capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "lib"),
                                                                           os.path.join(ROOT, "tools")])))
    assert proc.returncode == 0, "wpw %s: exit %s\n%s%s" % (" ".join(args), proc.returncode, proc.stdout, proc.stderr)
    return json.loads(proc.stdout)
