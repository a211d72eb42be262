"""Things on this host: their config and secrets, and Things, consumers and the gateway started as a group.

thing_files() writes the config.json and secrets.json of a Thing (and
config.checked, as tools/deploy does) on
loopback (or at another address, e.g. in a network namespace): the
device defaults except what a host needs (addresses, ports, the simulated
gateway) and what is passed in. Things starts processes for one test, run
or demo and stops them all in close(), whatever happened: a producer as a
user runs it (`tools/thing --runtime R`), or, given a built lib (the .mpy
bundle that gets flashed), `thing_main.py` under MicroPython with only
that lib on its path and a heap cap; a consumer (`consumer_main.py`) run
to its end; the simulated gateway (`tools/gateway`). Every start waits,
with a deadline, until the process says it listens. Ports come from the
kernel (bound to port 0, then released), so runs never collide.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time

from gatewaysim.merchants import DEFAULT_CLIENT_KEY as CLIENT_KEY  # the simulator's test merchant
from gatewaysim.merchants import DEFAULT_SERVICE_KEY as SERVICE_KEY
from imagebuild import toolchain

from harness.process import Failed, Process, free_ports
from wpwithin.heap_report import HEAP_QUERY

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIB = os.path.join(ROOT, "lib")
THING = os.path.join(ROOT, "tools", "thing")
THING_MAIN = os.path.join(ROOT, "tools", "thing_main.py")
CONSUMER = os.path.join(ROOT, "tools", "consumer_main.py")
GATEWAY = os.path.join(ROOT, "tools", "gateway")
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


def thing_files(folder, server_id, gateway_url, ca=None, ports=None, host="127.0.0.1", port=0,
                broadcast_address=LOOPBACK_BROADCAST, interval_ms=5000, network=None, producer=None, gateway=None,
                consumer=False, services=SERVICES, keys=(CLIENT_KEY, SERVICE_KEY), card=None, description=None,
                ca_beside=False, secrets=None):
    """Write config.json and secrets.json of a Thing into folder; the config path.

    ports: (broadcast port, probe port), free UDP ports when None. ca: the
    gateway's CA file, named by its path, or with ca_beside copied beside
    the config and named so (a board reads it from its own flash).
    network, producer and gateway update those sections, secrets the secrets;
    consumer is True/False or the consumer section's settings (enabled then).
    """
    os.makedirs(folder, exist_ok=True)
    broadcast_port, probe_port = ports or free_ports(2, socket.SOCK_DGRAM)
    net = {"host": host, "hostname": host, "port": port, "broadcastAddress": broadcast_address,
           "broadcastPort": broadcast_port, "probePort": probe_port, "broadcastIntervalMs": interval_ms}
    net.update(network or {})
    if ca and ca_beside:
        shutil.copyfile(ca, os.path.join(folder, os.path.basename(ca)))
        ca = os.path.basename(ca)
    section = {"enabled": True, "journal": "ledger.journal", "services": services}
    section.update(producer or {})
    config = {"device": {"description": description or "%s (network test)" % server_id, "serverId": server_id},
              "network": net, "gateway": dict({"url": gateway_url, "ca": ca, "timeout": 10}, **(gateway or {})),
              "producer": section,
              "consumer": dict({"enabled": True}, **consumer) if isinstance(consumer, dict) else {"enabled": consumer}}
    secrets_obj = {"merchantClientKey": keys[0], "merchantServiceKey": keys[1],
                   "tokenSigningSecret": os.urandom(32).hex()}
    if consumer:
        secrets_obj["card"] = card or CARD
    secrets_obj.update(secrets or {})
    for name, obj in (("config.json", config), ("secrets.json", secrets_obj)):
        with open(os.path.join(folder, name), "w") as f:
            json.dump(obj, f, indent=1)
    from wpwithin import config as config_file

    try:  # config.checked, as tools/deploy writes it: a Thing starts from it without the checker
        checked = config_file.checked_form(os.path.join(folder, "config.json"), os.path.join(folder, "secrets.json"))
    except config_file.ConfigError:
        checked = None  # a config made to be refused: the Thing's own check says so
    if checked is not None:
        with open(os.path.join(folder, "config.checked"), "w") as f:
            f.write(checked)
    return os.path.join(folder, "config.json")


WPW = [sys.executable, "-m", "wpwcli.main"]  # this checkout's wpw, with WPW_ENV (not .venv/bin/wpw's install)
WPW_ENV = {"PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "tools"), LIB])}


def runtime_command(runtime, script, heap=None, path=(LIB,)):
    """(argv, extra environment) to run a script (or ["-m", MODULE]) under `runtime` with the folders of
    `path` to import from; heap caps MicroPython's."""
    script = script if isinstance(script, list) else [script]
    if runtime == "cpython":
        return [sys.executable] + script, {"PYTHONPATH": os.pathsep.join(path)}
    cmd = [toolchain.find("micropython", ROOT)]
    if heap:
        cmd += ["-X", "heapsize=%s" % heap]
    return cmd + script, {"MICROPYPATH": os.pathsep.join(list(path) + [".frozen"])}


class Gateway:
    """The simulated gateway as a process of a Things group: its url, its CA (with TLS) and the process."""

    def __init__(self, things, folder, tls=True, db=None, merchants=(), host=None, prefix=()):
        argv = [sys.executable, GATEWAY, "--port", "0", "--quiet"]
        self.ca_path = None
        if host:
            argv += ["--host", host]
        if tls:
            argv += ["--tls", os.path.join(folder, "gateway-tls")]
            self.ca_path = os.path.join(folder, "gateway-tls", "ca.pem")
        if db:
            argv += ["--db", db]
        for merchant in merchants:
            argv += ["--merchant", merchant]
        self.process = things.start("gateway", argv, prefix=prefix)
        self.url = self.process.expect("http", 30)

    def stop(self):
        self.process.stop()


class Things:
    """Starts Things, consumers and the gateway for one test (or module, or run); close() stops them all."""

    def __init__(self, folder, keep=None, log=None):
        self.folder = str(folder)
        self.keep = keep  # output lines kept per process (None: all)
        self.log = log
        self.processes = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self, name, argv, env=None, cwd=None, prefix=()):
        process = Process(name, argv, env, cwd, prefix, self.keep, self.log)
        self.processes.append(process)
        return process

    def gateway(self, tls=True, db=None, merchants=(), host=None, prefix=()):
        return Gateway(self, self.folder, tls, db, merchants, host, prefix)

    def broker(self, things=(), consumers=("consumer",), host="127.0.0.1", names=(), prefix=()):
        """mosquitto with users for `things` (serverIDs) and `consumers`, stopped with the group (harness.broker)."""
        from harness.broker import Broker

        return Broker(os.path.join(self.folder, "broker"), things, consumers, host, names, prefix, self.start)

    def thing(self, config, runtime="micropython", heap=None, lib=None, prefix=(), timeout=20):
        """Start the Thing of `config` and wait until it listens: {host, port, serverID, process, folder}.

        With lib (a built lib folder) it is thing_main.py under MicroPython
        with only that lib to import from; else tools/thing, as a user runs it.
        """
        folder = os.path.dirname(config)
        if lib:
            argv, env = runtime_command("micropython", THING_MAIN, heap, (lib,))
            argv, cwd = argv + [config, os.path.join(folder, "secrets.json")], folder
        else:
            argv = [sys.executable, THING, "--config", config, "--runtime", runtime] + (["--heap", heap] if heap else [])
            env = cwd = None
        with open(config) as f:
            server_id = json.load(f)["device"]["serverId"]
        process = self.start(server_id, argv, env, cwd, prefix)
        line = process.expect("listening on", timeout)  # listening on HOST:PORT serverID ID
        host, port = line.split()[2].split("/")[0].rsplit(":", 1)
        return {"host": host, "port": int(port), "serverID": server_id, "process": process, "folder": folder}

    def producer(self, server_id, runtime, gateway_url, ca=None, prefix=(), heap=None, lib=None, **config):
        """A producer in folder/server_id (thing_files' settings), started with thing()."""
        path = thing_files(os.path.join(self.folder, server_id), server_id, gateway_url, ca, **config)
        return self.thing(path, runtime, heap, lib, prefix)

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
        process = self.start("consumer under %s" % runtime, argv + list(args), env=env, prefix=prefix)
        code = process.wait(timeout)
        text = process.text()
        return code, [json.loads(line) for line in text.splitlines() if line.startswith("{")], text

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
            raise Failed("no heap report from the producer (exit %s); its output:\n%s"
                         % (process.proc.poll(), process.text()), process)


def idle_heap(port, process, deadline_s=5.0, settle_s=3.0, longest_s=12.0):
    """The producer's heap once it has no connection open (the last ones close after the answers).

    The least of the reports taken every 0.25 s once no connection is open,
    until none has been lower for `settle_s` seconds (at most `longest_s`).
    Some of what the last requests made is let go only after a delay (4 KB
    of it about 2.5 s after a burst of 32 consumers), and MicroPython's GC
    is conservative: a stale pointer left on the stack or in a spare slot
    of a table can keep garbage alive for a while (2.5 KB for over 3 s once,
    after 8 consumers). A leak shows in every report.
    """
    deadline = time.monotonic() + deadline_s
    while True:
        report = heap_report(port, process)
        if report["connections"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    began = time.monotonic()
    until = began + settle_s
    while time.monotonic() < until:
        time.sleep(0.25)
        again = heap_report(port, process)
        if again["connections"] == 0 and again["memAlloc"] < report["memAlloc"]:
            report = again
            until = min(time.monotonic() + settle_s, began + longest_s)
    return report


def step(records, name):
    """The records of one step of a consumer's output, in order."""
    return [r for r in records if r.get("step") == name]


def built(root, out, *options):
    """Run tools/build --out OUT OPTIONS; its stdout. Failed with its stderr if it fails."""
    proc = subprocess.run([sys.executable, os.path.join(root, "tools", "build"), "--out", out] + list(options),
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise Failed("tools/build %s failed: %s" % (" ".join(options), (proc.stderr or proc.stdout)[-800:]))
    return proc.stdout
