"""The README's main command works end to end and leaves nothing running."""
import os
import subprocess
import sys

import mpy


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


def test_demo_buys_delivers_in_two_sessions_and_sees_a_decline():
    proc = subprocess.run([sys.executable, os.path.join(mpy.ROOT, "tools", "demo.py")],
                          capture_output=True, text=True, timeout=120)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "producer under MicroPython" in out
    assert "quotes 12 kWh at price 2 (volume tier): GBP 3.00" in out
    assert "delivery ended: 5 kWh supplied, 7 kWh left" in out
    assert "delivery ended: 7 kWh supplied, 0 kWh left" in out
    assert "refused, as it must be: 409" in out
    assert "declined, nothing charged: 402" in out
    assert '"charged": 300' in out and '"refunded": 0' in out
    assert out.rstrip().endswith("demo passed")
    assert "4444333322221111" not in out + proc.stderr
    assert demo_processes() == []
