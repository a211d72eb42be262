"""Things on this host for the network tests: producers and consumers as processes, with clean-up.

A producer is `tools/thing --config ... --runtime R` (what a user runs); a
consumer is `tools/consumer_main.py` under runtime R. Every process is
started in its own session and stopped with its whole process group when
the test ends, whatever happened; every wait has a deadline. Ports come
from the kernel (bound to port 0, then released), so runs never collide.
"""
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

from gatewaysim.merchants import DEFAULT_CLIENT_KEY as CLIENT_KEY  # the simulator's test merchant
from gatewaysim.merchants import DEFAULT_SERVICE_KEY as SERVICE_KEY

import mpy
from benchlib.procs import free_ports
from wpwithin.heap_report import HEAP_QUERY

ROOT = mpy.ROOT
THING = os.path.join(ROOT, "tools", "thing")
CONSUMER = os.path.join(ROOT, "tools", "consumer_main.py")
RUNTIMES = ("micropython", "cpython")
LOOPBACK_BROADCAST = "127.255.255.255"

CARD = {"name": "Net Test", "number": "4444333322221111", "expiryMonth": 12, "expiryYear": 2031, "cvc": "123"}
DECLINED_CARD = dict(CARD, number="4000000000000002")
SERVICES = [
    {"id": 1, "name": "Car charge", "description": "Electric vehicle charging", "prices": [
        {"id": 1, "amount": 30, "currency": "GBP", "unitId": 1, "unitDescription": "kWh",
         "description": "Up to 10 kWh", "maxUnits": 10},
        {"id": 2, "amount": 25, "currency": "GBP", "unitId": 1, "unitDescription": "kWh",
         "description": "11 kWh and more", "minUnits": 11, "maxUnits": 100}]},
    {"id": 2, "name": "Parking", "description": "One bay", "capacity": 100000, "prices": [
        {"id": 7, "amount": 5, "currency": "GBP", "unitId": 2, "unitDescription": "minute",
         "description": "Per minute"}]},
]


def free_port(kind=socket.SOCK_STREAM):
    """A port no one uses now on 127.0.0.1 (TCP by default, or UDP)."""
    return free_ports(1, kind)[0]


def udp_ports(n):
    """n distinct UDP ports no one uses now (all held at once, so none is handed out twice)."""
    return free_ports(n, socket.SOCK_DGRAM)


def runtime_command(runtime, script, heap=None):
    """(argv, extra environment) to run a tools/ script's lib code under `runtime`."""
    if runtime == "cpython":
        return [sys.executable, script], {"PYTHONPATH": os.path.join(ROOT, "lib")}
    cmd = [mpy.micropython_path()]
    if heap:
        cmd += ["-X", "heapsize=%s" % heap]
    return cmd + [script], {"MICROPYPATH": os.pathsep.join([mpy.LIB, ".frozen"])}


class Process:
    """A child process whose output lines are collected by a thread; stop() ends its process group."""

    def __init__(self, name, argv, env=None, cwd=None, prefix=()):
        self.name = name
        self.lines = queue.Queue()
        self.output = []
        environ = dict(os.environ, **(env or {}))
        environ.pop("PYTHONUNBUFFERED", None)  # as on a machine without it: output must be flushed anyway
        self.proc = subprocess.Popen(list(prefix) + list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, cwd=cwd, env=environ, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def expect(self, prefix, timeout=20):
        """The first output line starting with `prefix` (stripped); fails with the output so far."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(0.01, left))
            except queue.Empty:
                line = ""
                if left > 0:
                    continue
            if line is None or left <= 0:
                raise AssertionError("%s: no line starting %r within %s s (exit %s); output:\n%s"
                                     % (self.name, prefix, timeout, self.proc.poll(), "".join(self.output)))
            if line.startswith(prefix):
                return line.strip()

    def stop(self, sig=signal.SIGTERM, timeout=5):
        """Signal the process group and wait; SIGKILL if it lingers. Returns the exit status."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything of its group left behind
        except (ProcessLookupError, PermissionError):
            pass
        return self.proc.returncode


def producer_config(folder, server_id, gateway_url, ca_path, broadcast_port, probe_port, host="127.0.0.1",
                    broadcast_address=LOOPBACK_BROADCAST, interval_ms=5000, network=None, producer=None,
                    consumer=False, keys=(CLIENT_KEY, SERVICE_KEY), card=None):
    """Write config.json and secrets.json for a producer into folder; returns the config path."""
    os.makedirs(folder, exist_ok=True)
    net = {"host": host, "hostname": host, "port": 0, "broadcastAddress": broadcast_address,
           "broadcastPort": broadcast_port, "probePort": probe_port, "broadcastIntervalMs": interval_ms}
    net.update(network or {})
    section = {"enabled": True, "journal": "ledger.journal", "services": SERVICES}
    section.update(producer or {})
    config = {"device": {"description": "%s (network test)" % server_id, "serverId": server_id},
              "network": net, "gateway": {"url": gateway_url, "ca": ca_path, "timeout": 10},
              "producer": section, "consumer": {"enabled": consumer}}
    secrets = {"merchantClientKey": keys[0], "merchantServiceKey": keys[1], "tokenSigningSecret": os.urandom(32).hex()}
    if consumer:
        secrets["card"] = card or CARD
    for name, obj in (("config.json", config), ("secrets.json", secrets)):
        with open(os.path.join(folder, name), "w") as f:
            json.dump(obj, f, indent=1)
    return os.path.join(folder, "config.json")


class Things:
    """Starts producers and consumers for one test (or module) and stops them all in close()."""

    def __init__(self, folder):
        self.folder = str(folder)
        self.processes = []

    def start(self, name, argv, env=None, cwd=None, prefix=()):
        process = Process(name, argv, env, cwd, prefix)
        self.processes.append(process)
        return process

    def producer(self, server_id, runtime, gateway_url, ca_path, broadcast_port, probe_port, prefix=(),
                 heap=None, **config):
        """Start a producer with tools/thing; returns {host, port, serverID, process, folder}."""
        folder = os.path.join(self.folder, server_id)
        path = producer_config(folder, server_id, gateway_url, ca_path, broadcast_port, probe_port, **config)
        argv = [sys.executable, THING, "--config", path, "--runtime", runtime]
        if heap:
            argv += ["--heap", heap]
        process = self.start(server_id, argv, prefix=prefix)
        line = process.expect("listening on")  # listening on HOST:PORT serverID ID
        host, port = line.split()[2].split("/")[0].rsplit(":", 1)
        return {"host": config.get("host", "127.0.0.1"), "port": int(port), "serverID": server_id,
                "process": process, "folder": folder}

    def consumer(self, runtime, args, timeout=30, prefix=(), card=CARD):
        """Run tools/consumer_main.py to the end: (exit status, JSON records, raw output).

        `card` is written to a card file and passed with --card (None: not passed).
        """
        argv, env = runtime_command(runtime, CONSUMER)
        if card is not None:
            card_path = os.path.join(self.folder, "card-%s.json" % card["number"][-4:])
            with open(card_path, "w") as f:
                json.dump(card, f)
            argv += ["--card", card_path]
        process = self.start("consumer", argv + list(args), env=env, prefix=prefix)
        try:
            process.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            process.stop(signal.SIGKILL)
            raise AssertionError("consumer under %s did not finish within %d s; output:\n%s"
                                 % (runtime, timeout, "".join(process.output)))
        process.reader.join(5)  # it has read every line once it ends
        text = "".join(process.output)
        records = []
        for line in text.splitlines():
            if line.startswith("{"):
                records.append(json.loads(line))
        return process.proc.returncode, records, text

    def close(self):
        for process in reversed(self.processes):
            process.stop()
        self.processes = []


def heap_report(port, process, timeout=2.0):
    """The producer's heap report (network.debugHeap), asked over UDP."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(HEAP_QUERY, ("127.0.0.1", port))
        try:
            return json.loads(sock.recv(512))
        except socket.timeout:
            raise AssertionError("no heap report from the producer (exit %s); its output:\n%s"
                                 % (process.proc.poll(), "".join(process.output)))


def idle_heap(port, process, deadline_s=5.0, samples=5):
    """The producer's heap once it has no connection open (the last ones close after the answers).

    MicroPython's GC is conservative: a stale pointer left on the stack or in a
    spare slot of a table can keep a few hundred bytes of garbage alive for a
    moment. The least of `samples` reports, 0.1 s apart, is the heap the producer
    really holds; a leak shows in every one of them.
    """
    deadline = time.monotonic() + deadline_s
    while True:
        report = heap_report(port, process)
        if report["connections"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for _ in range(samples - 1):
        time.sleep(0.1)
        again = heap_report(port, process)
        if again["connections"] == 0 and again["memAlloc"] < report["memAlloc"]:
            report = again
    return report


def step(records, name):
    """The records of one step, in order."""
    return [r for r in records if r.get("step") == name]
