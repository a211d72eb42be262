"""tools/vboard: start a virtual board; the first line printed is its serial port.

    tools/vboard [--dir DIR | --image IMG [--flash FILE] | --flash FILE] [--heap 256k]
                 [--config FILE [--secrets FILE] [--ca FILE]] [--log FILE]

The firmware runs under the MicroPython unix port with a capped GC heap,
on a board filesystem: a folder (--dir), a LittleFS flash image (--image
writes IMG onto the board's flash first; --flash FILE keeps that flash
across runs), or, with neither, an empty temporary folder, like a board
freshly flashed with stock MicroPython. --config
puts config.json (with secrets.json and the CA it names) onto the board
at first power-on. The port (/dev/pts/N) works with mpremote, screen,
pyserial: raw REPL, fs cp, exec, repl; a soft reset restarts the board as
firmware does. SIGTERM or Ctrl-C powers it off (exit 0) and removes the
temporary files. Never writes outside --dir, --flash, --log and its own
temporary folder.
"""
import argparse
import os
import re
import shutil
import signal
import sys
import tempfile

from vboardlib import boardfiles
from vboardlib.supervisor import Supervisor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_HEAP = "256k"  # the producer, its code as .mpy files, needs about 170 KB of it on this 64-bit build


def parse(argv):
    parser = argparse.ArgumentParser(prog="tools/vboard", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
                                     epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    __import__("version").add_option(parser)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--dir", metavar="DIR", help="board filesystem folder (created if missing; kept)")
    where.add_argument("--image", metavar="IMG", help="LittleFS image (tools/build's littlefs.img) to flash first")
    parser.add_argument("--flash", metavar="FILE",
                        help="the board's flash: kept across runs (default with --image: a temporary copy)")
    parser.add_argument("--heap", default=DEFAULT_HEAP,
                        help="GC heap cap, like a chip's RAM (default %s)" % DEFAULT_HEAP)
    parser.add_argument("--config", metavar="FILE", help="put FILE onto the board as /config.json at power-on")
    parser.add_argument("--secrets", metavar="FILE", help="its secrets.json (default: beside the config)")
    parser.add_argument("--ca", metavar="FILE", help="the CA file config.gateway.ca names (default: beside the config)")
    parser.add_argument("--log", metavar="FILE", help="append everything the board prints to FILE")
    args = parser.parse_args(argv)
    if not re.match(r"^[0-9]+[kKmM]?$", args.heap):
        parser.error("--heap %s: give bytes, e.g. 256k or 1m" % args.heap)
    if args.flash and args.dir:
        parser.error("--flash and --dir are two different filesystems: give one")
    if args.flash and not args.image and not os.path.isfile(args.flash):
        parser.error("--flash %s does not exist: give --image IMG to flash it first" % args.flash)
    if args.image and not os.path.isfile(args.image):
        parser.error("--image %s does not exist (tools/build makes firmware/build/littlefs.img)" % args.image)
    if (args.secrets or args.ca) and not args.config:
        parser.error("--secrets and --ca go with --config")
    return parser, args


def main(argv):
    parser, args = parse(argv)
    sys.path.insert(0, os.path.join(ROOT, "lib"))  # the lib's own config check
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from imagebuild import BuildError, toolchain

    try:
        micropython = toolchain.find("micropython", ROOT)
    except BuildError as exc:
        parser.error(str(exc))
    put = []
    if args.config:
        files = boardfiles.plan(args.config, args.secrets, args.ca, secrets_required=False)
        if files.problems:
            parser.error("; ".join(files.problems))
        for host, board in files.files:
            put += ["--put", host, board]
        found = boardfiles.check(args.config, dict((b, h) for h, b in files.files).get("secrets.json"))
        if found:  # the board will say so too: that is worth seeing, so it still starts
            print("vboard: warning: %s" % found, file=sys.stderr)

    state = tempfile.mkdtemp(prefix="vboard-")
    if args.config and not found and "secrets.json" in dict((b, h) for h, b in files.files):
        put += ["--put"] + list(boardfiles.write_checked(
            args.config, dict((b, h) for h, b in files.files)["secrets.json"], state))
    try:
        if args.dir:
            os.makedirs(args.dir, exist_ok=True)
            fs_args, where = ["--dir", os.path.abspath(args.dir)], "folder %s" % os.path.abspath(args.dir)
        elif args.image or args.flash:
            flash = os.path.abspath(args.flash or os.path.join(state, "flash.img"))
            if args.image and os.path.abspath(args.image) != flash:
                shutil.copyfile(args.image, flash)
            fs_args, where = ["--flash", flash], "flash image %s" % flash
        else:
            folder = os.path.join(state, "fs")
            os.mkdir(folder)
            fs_args, where = ["--dir", folder], "empty temporary folder %s" % folder
        home = os.path.join(state, "home")  # the unix port keeps its REPL history in $HOME
        os.mkdir(home)
        env = dict(os.environ, HOME=home, MICROPYPATH=".frozen")
        command = [micropython, "-X", "heapsize=%s" % args.heap, "-i", os.path.join(HERE, "boardshell.py")]
        board = Supervisor(command, fs_args, put, env=env, cwd=state, log_path=args.log)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, board.stop)
        print(board.path, flush=True)
        print("vboard: serial port %s; board filesystem: %s; heap %s. Try: mpremote connect %s repl. "
              "Stop with Ctrl-C or SIGTERM." % (board.path, where, args.heap, board.path), file=sys.stderr, flush=True)
        board.run()
    finally:
        shutil.rmtree(state, ignore_errors=True)
    return 0
