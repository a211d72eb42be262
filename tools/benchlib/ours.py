"""Our side of the bench: the producer-only bundle, the bench runners compiled, a producer's config.

build_bundle() runs `tools/build --only romfs --producer-only` (the .mpy
tree is always built with it) into the work directory and returns its
size report's figures. compile_runners() compiles the mp_*.py scripts of
this package to .mpy, so a runner's own source is never compiled inside a
measured heap. producer_files() writes a config.json and secrets.json like
the ones a board holds: defaults, except what a loopback-only host needs
(addresses, ports, the simulated gateway) and the settings passed in.
"""
import glob
import json
import os
import subprocess
import sys

from gatewaysim.merchants import DEFAULT_CLIENT_KEY as CLIENT_KEY  # the simulator's test merchant
from gatewaysim.merchants import DEFAULT_SERVICE_KEY as SERVICE_KEY
from imagebuild import compiler

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER_ID = "bench-producer"
SERVICES = [
    {"id": 1, "name": "Car charge", "description": "Electric vehicle charging", "prices": [
        {"id": 1, "amount": 30, "currency": "GBP", "unitId": 1, "unitDescription": "kWh",
         "description": "Up to 10 kWh", "maxUnits": 10},
        {"id": 2, "amount": 25, "currency": "GBP", "unitId": 1, "unitDescription": "kWh",
         "description": "11 kWh and more", "minUnits": 11, "maxUnits": 100}]},
]


def build_bundle(root, workdir):
    """tools/build's producer-only .mpy tree and ROMFS image; a dict of paths and sizes."""
    out = os.path.join(workdir, "build")
    proc = subprocess.run([sys.executable, os.path.join(root, "tools", "build"), "--only", "romfs",
                           "--producer-only", "--out", out, "--json"], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError("tools/build failed: %s" % (proc.stderr or proc.stdout)[-800:])
    report = json.loads(proc.stdout)
    return {"lib": os.path.join(out, "mpy", "lib"), "romfs": os.path.join(out, "romfs.img"),
            "romfs_bytes": report["images"]["romfs"]["bytes"], "mpy_bytes": report["totals"]["mpy"],
            "modules": len(report["modules"]), "excluded": report["excluded"],
            "entry_points": report["entry_points"], "compiler": report["compiler"]["version"]}


def compile_runners(mpy_cross, workdir):
    """workdir/runners/mp_*.mpy; returns that folder."""
    out = os.path.join(workdir, "runners")
    for source in sorted(glob.glob(os.path.join(HERE, "mp_*.py"))):
        name = os.path.basename(source)
        compiler.compile_module(mpy_cross, source, os.path.join(out, name[:-3] + ".mpy"), name)
    return out


def producer_files(folder, gateway_url, ca_path, ports, network=None):
    """Write folder/config.json and folder/secrets.json; returns their paths.

    ports: (broadcast port, probe port). `network` overrides network settings.
    """
    os.makedirs(folder, exist_ok=True)
    net = {"host": "127.0.0.1", "hostname": "127.0.0.1", "port": 0, "broadcastAddress": "127.255.255.255",
           "broadcastPort": ports[0], "probePort": ports[1]}
    net.update(network or {})
    config = {
        "device": {"description": "Bench producer", "serverId": SERVER_ID},
        "network": net,
        "gateway": {"url": gateway_url, "ca": ca_path, "timeout": 10},
        "producer": {"enabled": True, "journal": os.path.join(folder, "ledger.journal"), "services": SERVICES},
    }
    secrets = {"merchantClientKey": CLIENT_KEY, "merchantServiceKey": SERVICE_KEY,
               "tokenSigningSecret": os.urandom(32).hex()}
    paths = []
    for name, obj in (("config.json", config), ("secrets.json", secrets)):
        path = os.path.join(folder, name)
        with open(path, "w") as f:
            json.dump(obj, f, indent=1)
        paths.append(path)
    return paths
