"""Virtual boards: tools/vboard processes, driven with the real mpremote, and stopped without a trace.

VBoard starts `tools/vboard ARGS` as a Process, reads the serial port
from its first line, and runs mpremote against that port (`resume` unless
asked otherwise, so the app is interrupted, never soft-reset, unless the
caller wants that). stop() sends SIGTERM to tools/vboard alone and checks
that its board process is gone too; every wait has a deadline.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

from imagebuild import toolchain

from harness.process import Failed, Process
from harness.things import CARD, ROOT, SERVICES, thing_files

VBOARD = os.path.join(ROOT, "tools", "vboard")
RUNNING = "[wpw] running: "
NOT_RUNNING = ("[wpw] safe mode", "[wpw] app crashed", "MemoryError")  # a MemoryError before it runs: boot failed


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
    def __init__(self, folder, *args, log=None):
        self.folder = str(folder)
        os.makedirs(self.folder, exist_ok=True)
        self.log_path = os.path.join(self.folder, "console.log")
        self.process = Process("tools/vboard", [sys.executable, VBOARD, "--log", self.log_path] + list(args), log=log)
        self.proc = self.process.proc
        self.board_pids = []
        try:
            self.port = self.process.expect("/dev/", 15)
            deadline = time.monotonic() + 5
            while not self.board_pids and time.monotonic() < deadline:
                self.board_pids = children(self.proc.pid)
                time.sleep(0.02)
        except BaseException:
            self.stop()
            raise

    def stderr(self):
        """What tools/vboard itself printed (its port, then its messages)."""
        return self.process.text()

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
                raise Failed("no %r on the board console within %s s; console:\n%s" % (text, timeout, log))
            time.sleep(0.05)

    def wait_running(self, timeout=30):
        """The address the board's app serves at, once its console says it runs; Failed if it will not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            log = self.log()
            if RUNNING in log:
                return log.split(RUNNING, 1)[1].split()[0]
            if any(text in log for text in NOT_RUNNING):
                break
            time.sleep(0.05)
        raise Failed("the firmware did not start its app; console (%s):\n%s" % (self.log_path, self.log()[-2000:]))

    def mpremote(self, *args, resume=True, timeout=30, check=True):
        argv = [toolchain.find("mpremote", ROOT), "connect", self.port] + (["resume"] if resume else []) + list(args)
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
        code = self.process.stop(grace=timeout, group=False)
        left = [pid for pid in self.board_pids if alive(pid)]
        deadline = time.monotonic() + 5
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = [pid for pid in left if alive(pid)]
        for pid in left:
            os.kill(pid, signal.SIGKILL)  # ours, and it should not be there: fail below
        assert not left, "board processes %s outlived tools/vboard" % left
        return code


def board_files(folder, gateway, port, **settings):
    """config.json, secrets.json and ca.der of a board's loopback producer (serverId vboard-PORT) in folder;
    the config path. gateway: a Simulator with TLS; settings: thing_files'."""
    charger = dict(SERVICES[0], prices=SERVICES[0]["prices"][:1])
    return thing_files(folder, "vboard-%d" % port, gateway.url, os.path.join(os.path.dirname(gateway.ca_path), "ca.der"),
                       port=port, interval_ms=1000, services=[charger], description="virtual charger", ca_beside=True,
                       **settings)


def board_folder(folder, firmware, config=None):
    """A board filesystem folder with the built firmware (and the files of config); its path."""
    shutil.copytree(os.path.join(firmware, "mpy"), folder)
    if config:
        here = os.path.dirname(config)
        for name in ("config.json", "secrets.json", "ca.der", "config.checked"):
            if name != "config.checked" or os.path.isfile(os.path.join(here, name)):
                shutil.copyfile(os.path.join(here, name), os.path.join(folder, name))
    return str(folder)


def card_file(folder, card=CARD):
    """A test card's JSON file in folder (for wpw --card); its path."""
    path = os.path.join(str(folder), "card.json")
    with open(path, "w") as f:
        json.dump(card, f)
    return path


def wpw(*args, timeout=60):
    """The wpw command (CPython consumer); its parsed --json output. Fails with its stderr."""
    proc = subprocess.run([sys.executable, "-m", "wpwcli.main"] + list(args) + ["--json", "--quiet"],
                          capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "lib"),
                                                                           os.path.join(ROOT, "tools")])))
    assert proc.returncode == 0, "wpw %s: exit %s\n%s%s" % (" ".join(args), proc.returncode, proc.stdout, proc.stderr)
    return json.loads(proc.stdout)
