"""The README's main command works end to end and leaves nothing running."""
import json
import os
import re
import subprocess
import sys

import mpy

FLASH_FILES = """
import json, os, sys, vfs
from binascii import hexlify
sys.path.append(%(tools)r)
from flashdev import FlashFile
vfs.mount(vfs.VfsLfs2(FlashFile(%(image)r)), "/flash", readonly=True)

def walk(path):
    for entry in os.ilistdir(path):
        full = path + "/" + entry[0]
        if entry[1] == 0x4000:
            walk(full)
        else:
            with open(full, "rb") as f:
                found[full[len("/flash/"):]] = hexlify(f.read()).decode()

found = {}
walk("/flash")
print(json.dumps(found))
"""


def flash_files(image):
    """{path: bytes} of every file on a board's LittleFS flash image, read by the unix port's own vfs."""
    proc = mpy.run(["-c", FLASH_FILES % {"tools": os.path.join(mpy.ROOT, "tools", "vboardlib"), "image": image}])
    assert proc.returncode == 0, proc.stderr
    return dict((path, bytes.fromhex(data)) for path, data in json.loads(proc.stdout).items())


def demo_processes():
    """Processes whose command line names a demo work directory (gateway, producer)."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    if b"wpw-demo-" in f.read():
                        found.append(int(pid))
            except OSError:
                pass
    return found


SERVICE_KEY = "T_S_f50ecb46-ca82-44a7-9c40-421818af5996"
CARD_FORMS = [b"4444333322221111", b"4444 3333 2222 1111", b"4444-3333-2222-1111", b"444433332222"]


DEMO = os.path.join(mpy.ROOT, "tools", "demo.py")


def test_demo_buys_delivers_in_two_sessions_and_sees_a_decline(tmp_path):
    workdir = tmp_path / "wpw-demo-work"
    proc = subprocess.run([sys.executable, DEMO, "--workdir", str(workdir)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert out.count("on a virtual board") == 2 and "firmware image" in out
    assert "found charger-bay-3" in out and "found meter-mill-lane" in out
    assert "quote: 12 kWh at price 2 = GBP 3.00" in out  # the volume tier
    assert "delivery ended, 5 kWh supplied, 7 kWh left" in out  # partial consumption...
    assert "delivery ended, 7 kWh supplied, 0 kWh left" in out  # ...over two sessions
    assert "refused, as it must be: 409" in out
    assert "delivery ended, 45 minutes supplied" in out
    assert "declined, nothing charged: 402" in out
    assert '"charged": 525' in out and '"refunded": 0' in out
    assert "sequence diagram: demo-purchase.svg" in out  # in the current folder, where it says
    svg = (tmp_path / "demo-purchase.svg").read_text()
    assert svg.startswith("<svg") and "charger-bay-3" in svg and "meter-mill-lane" in svg
    for phase in ("Discover", "Select", "Pay", "Release"):  # the phase bands
        assert ">%s</text>" % phase in svg
    for label in ("probe to 127.255.255.255", "probe answer: charger-bay-3", "requestTotal: 12 kWh at price 1",
                  "200: 12 kWh at price 2 = GBP 3.00", "POST /payment: pay GBP 3.00",
                  "POST /orders: charge GBP 3.00 to the token", ">charged GBP 3.00<", "delivery/begin: 5 kWh",
                  "200: 5 kWh supplied, 7 left", "45 minutes at price 1", ">refused: nothing charged<",
                  ">402 payment declined"):
        assert label in svg, label
    assert out.rstrip().endswith("demo passed")
    assert demo_processes() == []
    # Secrets: the card (any formatting), its CVC and the service key appear in no output and
    # no file the run wrote, but the producer's own secrets file (on its host side and on its flash).
    seen = [("output", (out + proc.stderr).encode()), ("diagram", svg.encode())]
    for folder, _, files in os.walk(workdir):
        for name in files:
            path = os.path.join(folder, name)
            if name == "flash.img":
                seen += [(board_name, data) for board_name, data in flash_files(path).items()
                         if board_name != "secrets.json"]
            elif name != "secrets.json":
                with open(path, "rb") as f:
                    seen.append((name, f.read()))
    assert {name for name, _ in seen} >= {"output", "ledger.journal", "gateway.db", "processes.log", "console.log",
                                          "lib/wpwithin/producer.mpy"}
    for name, data in seen:
        # Ports, hex keys and uuids may hold the digits 9731 by chance: look for the CVC as a value of its own.
        assert not re.search(rb"(?<![0-9A-Za-z_-])9731(?![0-9A-Za-z_-])", data), name
        for secret in CARD_FORMS + [SERVICE_KEY.encode()]:
            assert secret not in data, (secret, name)


def test_a_failed_demo_shows_the_failing_steps_log_and_keeps_its_work_folder(tmp_path):
    """A heap too small for the firmware: the first board cannot start its app."""
    proc = subprocess.run([sys.executable, DEMO, "--heap", "16k"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=dict(os.environ, TMPDIR=str(tmp_path)))
    assert proc.returncode == 1 and proc.stdout.rstrip().endswith("demo FAILED")
    err = proc.stderr
    assert 'demo failed in step "boot the producer charger-bay-3"' in err
    assert "MemoryError" in err  # the board's console
    kept = [name for name in os.listdir(tmp_path) if name.startswith("wpw-demo-")]
    assert len(kept) == 1 and "the work folder %s is kept" % (tmp_path / kept[0]) in err
    assert "last " in err and "gateway: " in err  # the tail of processes.log, which is still there
    assert (tmp_path / kept[0] / "processes.log").exists()
    assert demo_processes() == []
