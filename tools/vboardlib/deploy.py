"""tools/deploy: build the firmware and put it, with a config, onto a board through mpremote.

    tools/deploy --port PORT [--config FILE [--secrets FILE] [--ca FILE]]
                 [--producer-only] [--build-dir DIR] [--wait S] [--mpremote CMD]

Works the same on a real board (/dev/ttyUSB0, COM3) running stock
MicroPython and on a virtual board (tools/vboard's /dev/pts/N). Steps,
each reported as it happens:
  1. check the config and secrets with the lib's own loader (a mistake is
     named, field and all, before anything touches the board)
  2. build the .mpy tree (tools/build --only mpy) in a temporary folder,
     or take the one in --build-dir
  3. connect (mpremote soft-resets the board, which stops the app), read
     its platform and free space, make /lib/wpwithin
  4. remove what the new firmware replaces: modules it no longer has (a
     stale .py would shadow its .mpy), the SAFE_MODE marker and the crash
     count
  5. copy the lib, boot.py and main.py (unchanged files are skipped by
     hash), then config.json, secrets.json and the CA file
  6. check every copied file's SHA-256 on the board
  7. hard-reset the board (machine.reset()) and watch its console up to
     --wait seconds for the app to say it is running or why it is not
Exit status: 0 deployed (and running, when watched), 1 deployed but the
board says it did not start, 2 bad arguments or configuration, 3 the
board or mpremote failed. Never prints the contents of secrets.json, and
never writes anything but the files listed above.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from imagebuild import BuildError, toolchain
from vboardlib import boardfiles

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
LIB = "lib/wpwithin"
MPREMOTE_TIMEOUT = 120  # s for one mpremote run; a real board copies ~70 KB in well under a minute
DEFAULT_WAIT = 30  # s to watch the board start: an ESP32 may spend some joining WiFi

# Runs on the board (any MicroPython): its platform, free bytes, and /lib/wpwithin made.
PROBE = """
import os, sys, json
for d in ("lib", "lib/wpwithin"):
    try:
        os.mkdir(d)
    except OSError:
        pass
s = os.statvfs("/")
v = sys.implementation.version
print(json.dumps({"platform": sys.platform, "version": "%d.%d.%d" % v[:3], "free": s[0] * s[3],
                  "lib": sorted(os.listdir("lib/wpwithin"))}))
"""

# Runs on the board: removes the modules the new build does not have, and the app's markers.
CLEAN = """
import os
for name in %(stale)r:
    os.remove("lib/wpwithin/" + name)
    print("removed lib/wpwithin/" + name)
for name in ("SAFE_MODE", "crashes"):
    try:
        os.remove(name)
        print("removed " + name)
    except OSError:
        pass
"""

# Runs on the board: SHA-256 of each deployed file, as JSON.
HASHES = """
import hashlib, json
from binascii import hexlify
out = {}
for path in %(paths)r:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while True:
                chunk = f.read(512)
                if not chunk:
                    break
                h.update(chunk)
        out[path] = hexlify(h.digest()).decode()
    except OSError:
        out[path] = None
print(json.dumps(out))
"""


class Failure(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def say(message):
    print("deploy: %s" % message, flush=True)


def parse(argv):
    parser = argparse.ArgumentParser(prog="tools/deploy", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
                                     epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    __import__("version").add_option(parser)
    parser.add_argument("--port", required=True, help="the board's serial port (or a virtual board's /dev/pts/N)")
    parser.add_argument("--config", metavar="FILE", help="the Thing's config.json")
    parser.add_argument("--secrets", metavar="FILE", help="its secrets.json (default: beside the config)")
    parser.add_argument("--ca", metavar="FILE", help="the CA file config.gateway.ca names (default: beside the config)")
    parser.add_argument("--producer-only", action="store_true", help="leave the consumer-only modules out")
    parser.add_argument("--build-dir", metavar="DIR", help="deploy DIR/mpy from an earlier tools/build; no build")
    parser.add_argument("--wait", type=float, default=DEFAULT_WAIT, metavar="S",
                        help="seconds to watch the board start after the reset (0: do not watch; default %d)"
                        % DEFAULT_WAIT)
    parser.add_argument("--mpremote", metavar="CMD", help="the mpremote command (default: $MPREMOTE, else the one "
                        "beside this Python)")
    args = parser.parse_args(argv)
    if (args.secrets or args.ca) and not args.config:
        parser.error("--secrets and --ca go with --config")
    return args


def mpremote_command(explicit):
    if explicit:
        return [explicit]
    try:
        return [toolchain.find("mpremote", ROOT)]  # $MPREMOTE, beside this Python, .venv, PATH
    except BuildError as exc:
        raise Failure(2, "%s, or give --mpremote CMD" % exc)


def check_config(args):
    """[(host path, board path)] for the config files; Failure naming the problem."""
    if not args.config:
        say("[1/7] no --config: the board keeps the config.json and secrets.json it has")
        return []
    files = boardfiles.plan(args.config, args.secrets, args.ca)
    if files.problems:
        raise Failure(2, "; ".join(files.problems))
    problem = boardfiles.check(args.config, dict((b, h) for h, b in files.files)["secrets.json"])
    if problem:
        raise Failure(2, "%s (nothing was deployed)" % problem)
    say("[1/7] config %s and its secrets are valid; the board gets %s and config.checked"
        % (args.config, ", ".join(board for _, board in files.files)))
    return files.files


def build(args, scratch):
    """The .mpy tree to deploy (a folder with lib/, boot.py, main.py)."""
    if args.build_dir:
        tree = os.path.join(args.build_dir, "mpy")
        if not os.path.isfile(os.path.join(tree, "main.py")):
            raise Failure(2, "--build-dir %s has no mpy/main.py: run tools/build first" % args.build_dir)
        say("[2/7] using the build in %s" % tree)
        return tree
    out = os.path.join(scratch, "build")
    command = [sys.executable, os.path.join(ROOT, "tools", "build"), "--only", "mpy", "--out", out]
    if args.producer_only:
        command.append("--producer-only")
    say("[2/7] building: %s" % " ".join(["tools/build"] + command[2:]))
    proc = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
    for line in proc.stderr.splitlines():
        print("  " + line, flush=True)
    if proc.returncode:
        raise Failure(3 if proc.returncode != 2 else 2, "the build failed")
    return os.path.join(out, "mpy")


class Board:
    """mpremote runs against one port; the first connects with a soft reset, the rest resume."""

    def __init__(self, command, port):
        self.command = command
        self.port = port
        self.connected = False

    def run(self, *args, show=None):
        """Run mpremote with args; its stdout, each line passed to show() as it comes."""
        argv = self.command + ["connect", self.port] + ([] if not self.connected else ["resume"]) + list(args)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = []
        try:
            deadline = time.monotonic() + MPREMOTE_TIMEOUT
            for line in proc.stdout:
                lines.append(line)
                if show is not None:
                    show(line.rstrip("\n"))
                if time.monotonic() > deadline:
                    break
            proc.wait(max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        error = proc.stderr.read().strip()
        proc.stdout.close()
        proc.stderr.close()
        if proc.returncode:
            raise Failure(3, "mpremote %s failed on %s (exit %s): %s"
                          % (args[0], self.port, proc.returncode, error or "".join(lines).strip() or "no output"))
        self.connected = True
        return "".join(lines)

    def exec(self, code):
        return self.run("exec", code)

    def json(self, code):
        out = self.exec(code)
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise Failure(3, "the board on %s answered %r, not JSON: is it running MicroPython?"
                          % (self.port, out[-200:]))


class CopyReport:
    """Turns mpremote's "cp SRC DEST" / "Up to date: DEST" lines into one line per file."""

    def __init__(self, tree):
        self.tree = tree
        self.pending = None
        self.copied = self.unchanged = 0

    def line(self, text):
        if text.startswith("cp "):
            self.done()
            source, dest = text[3:].rsplit(" ", 1)
            if dest.endswith("/") or dest == ":":  # into a folder: the board path ends like the build's
                self.pending = source.replace(self.tree + os.sep, "")
            else:
                self.pending = dest[1:]
        elif text.startswith("Up to date:") and self.pending is not None:
            print("  unchanged %s" % self.pending, flush=True)
            self.pending = None
            self.unchanged += 1
        elif text.strip():
            print("  " + text, flush=True)

    def done(self):
        if self.pending is not None:
            print("  copied    %s" % self.pending, flush=True)
            self.pending = None
            self.copied += 1


def firmware_files(tree):
    """[(host path, board path)] of the lib, boot.py and main.py in a built tree."""
    files = []
    lib = os.path.join(tree, LIB)
    for name in sorted(os.listdir(lib)):
        files.append((os.path.join(lib, name), "%s/%s" % (LIB, name)))
    for name in ("boot.py", "main.py"):
        files.append((os.path.join(tree, name), name))
    return files


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def deploy(args):
    mpremote = mpremote_command(args.mpremote)
    extras = check_config(args)
    scratch = tempfile.mkdtemp(prefix="deploy-")
    try:
        if extras:  # the checked form the board starts from (secrets.json's host path from the plan)
            extras.append(boardfiles.write_checked(args.config, dict((b, h) for h, b in extras)["secrets.json"],
                                                   scratch))
        tree = build(args, scratch)
        files = firmware_files(tree)
        size = sum(os.path.getsize(h) for h, _ in files + extras)

        board = Board(mpremote, args.port)
        say("[3/7] connecting to %s (a soft reset stops the app)" % args.port)
        seen = board.json(PROBE)
        say("  %s, MicroPython %s; %d KB free, %d KB to copy"
            % (seen["platform"], seen["version"], seen["free"] // 1024, size // 1024))
        if seen["free"] < size // 2:  # unchanged files are skipped, so only a rough check
            raise Failure(3, "the board has %d KB free; the firmware needs about %d KB"
                          % (seen["free"] // 1024, size // 1024))

        new = set(board_path.rsplit("/", 1)[1] for _, board_path in files if board_path.startswith(LIB))
        stale = sorted(name for name in seen["lib"] if name not in new)
        say("[4/7] removing %d stale modules and the safe-mode markers" % len(stale))
        for line in board.exec(CLEAN % {"stale": stale}).splitlines():
            print("  " + line, flush=True)

        say("[5/7] copying %d files" % (len(files) + len(extras)))
        copies = CopyReport(tree)
        lib_files = [h for h, b in files if b.startswith(LIB)]
        board.run("fs", "cp", *(lib_files + [":%s/" % LIB]), "+",
                  "fs", "cp", os.path.join(tree, "boot.py"), os.path.join(tree, "main.py"), ":", show=copies.line)
        if extras:
            chain = []
            for host, board_path in extras:
                chain += ["+", "fs", "cp", host, ":" + board_path]
            board.run(*chain[1:], show=copies.line)
        copies.done()
        say("  %d copied, %d unchanged" % (copies.copied, copies.unchanged))

        say("[6/7] checking what landed")
        everything = files + extras
        found = board.json(HASHES % {"paths": [b for _, b in everything]})
        wrong = [b for h, b in everything if found.get(b) != sha256(h)]
        if wrong:
            raise Failure(3, "these files did not arrive intact: %s" % ", ".join(wrong))
        say("  %d files match (SHA-256)" % len(everything))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    say("[7/7] resetting the board")
    return watch(args.port, args.wait)


def watch(port, wait):
    """Hard-reset the board and read its console until the app reports; the exit status."""
    from mpremote.transport_serial import SerialTransport, TransportError

    try:
        transport = SerialTransport(port, baudrate=115200)
        try:
            transport.enter_raw_repl(soft_reset=False)
            transport.exec_raw_no_follow("import machine\nmachine.reset()")
            if wait <= 0:
                say("done; not watching (--wait 0). See it start: mpremote connect %s repl" % port)
                return 0
            return _read_boot(transport.serial, wait)
        finally:
            try:
                transport.close()
            except OSError:
                pass
    except (TransportError, OSError) as exc:
        raise Failure(3, "resetting the board on %s failed: %s" % (port, exc))


def _read_boot(serial, wait):
    deadline = time.monotonic() + wait
    line = b""
    serial.timeout = 0.2
    while time.monotonic() < deadline:
        chunk = serial.read(256)
        line += chunk
        while b"\n" in line:
            text, line = line.split(b"\n", 1)
            text = text.decode("utf-8", "replace").strip()
            if not text.startswith("[wpw]") and not text.startswith("[boot]"):
                continue
            print("  board: " + text, flush=True)
            if text.startswith("[wpw] running"):
                say("done: the app is running")
                return 0
            if text.startswith("[wpw] safe mode") or text.startswith("[wpw] app crashed"):
                say("deployed, but the app did not start (see above); fix it, then run tools/deploy again")
                return 1
    say("deployed; the app has not said it is running after %g s (an ESP32 may still be joining WiFi)" % wait)
    return 1


def main(argv):
    args = parse(argv)
    try:
        return deploy(args)
    except Failure as exc:
        print("deploy: error: %s" % exc, file=sys.stderr, flush=True)
        return exc.status
    except subprocess.TimeoutExpired as exc:
        print("deploy: error: %s timed out" % " ".join(exc.cmd[:2]), file=sys.stderr, flush=True)
        return 3
