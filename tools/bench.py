#!/usr/bin/env python3
"""tools/bench.py: our producer against microdot, side by side, on one MicroPython unix port build.

    .venv/bin/python tools/bench.py [--quick] [--json FILE] [--only 1,4,...] [--gateway-tls]
                                    [--workdir DIR] [--keep]

Builds our producer-only bundle (tools/build), installs the anchor
(microdot, pinned in requirements.txt) if it is missing and compiles it
to .mpy in a work directory, then measures, each figure with microdot's
figure from the same run and the ratio where microdot has an equivalent:
  1 minimum heap (bisection on -X heapsize): our producer doing 20 purchases,
    microdot serving the price list 20 times; code as .mpy and from ROMFS;
    and the floor: a bare asyncio server making one HTTPS call per request
  2 heap in use after import and at peak (gc.mem_alloc, from inside)
  3 code size (.mpy bytes; ROMFS image bytes), and the heap each module takes at import
  4 price-list requests/s (one load generator; keep-alive, new connection each),
    full purchases/s against the simulated gateway
  5 discovery time, fast probe and broadcast only
  6 purchase latency, median and 95th percentile (MicroPython on both ends)
  7 purchases done by 1, 8 and 32 consumers, producer capped at 126 KiB
  8 heap after start and at peak with the MQTT broker link up (real mosquitto),
    next to the same producer without it
Prints a table (and --json FILE: every figure with its raw measurements).
Targets are reported, never asserted: the exit status is 0 when the bench
ran, whatever the figures; 1 when it could not set up; 130 when interrupted.
Loopback only; every child process is stopped on exit. Progress goes to
stderr. The full run takes a few minutes; --quick under a minute.
MICROPYTHON=FILE runs both sides on another unix port build, e.g. a 32-bit
(i686) one, whose word size is an ESP32's; the table says which it was.
"""
import argparse
import datetime
import os
import shutil
import signal
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "lib"), os.path.join(ROOT, "tools")]

from benchlib import fig_discovery, fig_heap, fig_link, fig_scale, fig_size, fig_speed, report  # noqa: E402
from benchlib.context import RUN_HEAP, Bench  # noqa: E402
from harness import process  # noqa: E402

# group number -> (what, function(bench) -> figure records); run in this order, shown by number
GROUPS = {
    3: ("code size", fig_size.figures),
    1: ("minimum heap and heap in use", fig_heap.figures),  # figures 1 and 2 come from the same runs
    4: ("throughput", fig_speed.throughput),
    5: ("discovery", fig_discovery.figures),
    6: ("purchase latency", fig_speed.latency),
    7: ("scale", fig_scale.figures),
    8: ("MQTT broker link", fig_link.figures),
}
WORD = {64: "64-bit: objects up to twice an ESP32's", 32: "32-bit, as an ESP32"}
METHOD = [
    "one MicroPython unix port build (%s) runs both sides",
    "ROMFS: the image is read into one heap buffer (the unix port has no flash to map); "
    "figures leave that buffer out (heapsize found minus the buffer's heap, measured)",
    "runs that measure no heap use -X heapsize=%d KiB for both sides" % (RUN_HEAP // 1024),
    "gateway: the simulator as its own process, no injected latency; plain HTTP unless --gateway-tls "
    "(with TLS: ~4 KB of GC heap for the context, ~3.4 KB per session; mbedTLS's buffers are outside it)",
    "peak heap: most live heap after a full collection at any asyncio scheduler round",
]

START = time.monotonic()
# Every child's environment holds MARK=<the run's work directory>, so a test can tell whether
# anything of a run is still running, whatever its command line.
MARK = "WPW_BENCH_RUN"


def log(message):
    sys.stderr.write("bench %6.1fs  %s\n" % (time.monotonic() - START, message))
    sys.stderr.flush()


def parse(argv):
    parser = argparse.ArgumentParser(
        prog="tools/bench.py", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
        epilog="\n\n".join(__doc__.split("\n\n")[2:]), formatter_class=argparse.RawDescriptionHelpFormatter)
    __import__("version").add_option(parser)
    parser.add_argument("--quick", action="store_true", help="a short run: coarser bisection, fewer trials")
    parser.add_argument("--json", metavar="FILE", help="write every figure, with raw measurements, to FILE")
    parser.add_argument("--only", metavar="N,N", help="run only these figure groups (1 also gives 2), e.g. 3,4")
    parser.add_argument("--gateway-tls", action="store_true", help="the simulated gateway over HTTPS")
    parser.add_argument("--workdir", metavar="DIR", help="work here (a new or empty folder); implies --keep")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (builds, configs, logs)")
    args = parser.parse_args(argv)
    if args.only:
        try:
            wanted = {int(n) for n in args.only.split(",")}
        except ValueError:
            parser.error("--only takes group numbers, e.g. 1,4")
        wanted = {1 if n == 2 else n for n in wanted}
        unknown = wanted - set(GROUPS)
        if unknown:
            parser.error("--only: no group %s (groups: 1-8)" % ", ".join(map(str, sorted(unknown))))
        args.groups = [n for n in GROUPS if n in wanted]
    else:
        args.groups = list(GROUPS)
    if args.workdir:
        if os.path.isdir(args.workdir) and os.listdir(args.workdir):
            parser.error("--workdir %s is not empty" % args.workdir)
        args.keep = True
    return args


def group_number(record):
    return int(record["group"].split(".")[0])


def run(args, workdir):
    """(meta, figure records); raises on a set-up failure."""
    bench = Bench(ROOT, workdir, args.quick, log, args.gateway_tls)
    figures = []
    try:
        for number in args.groups:
            what, measure = GROUPS[number]
            log("measuring %s" % what)
            try:
                figures += measure(bench)
            except Exception as exc:  # noqa: one group's bug must not lose the others' figures
                figures.append(report.failed("group_%d" % number, "%d. %s" % (number, what), what, "count",
                                             "%s: %s" % (type(exc).__name__, exc)))
        meta = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "quick": args.quick, "settings": bench.settings, "micropython": bench.interpreter(),
            "mpyCross": bench.ours["compiler"], "anchor": bench.anchor["name"], "gateway": bench.gateway.url,
            "runHeap": RUN_HEAP, "cpus": os.cpu_count(),
            "method": [METHOD[0] % WORD[bench.word_bits()]] + METHOD[1:],
        }
    finally:
        bench.close()
    figures.sort(key=group_number)  # stable: each group's own order is kept
    meta["seconds"] = round(time.monotonic() - START, 1)
    return meta, figures


def main(argv):
    args = parse(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix="wpw-bench-")
    os.makedirs(workdir, exist_ok=True)
    process.ENV[MARK] = workdir

    def terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        meta, figures = run(args, workdir)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except Exception as exc:  # noqa: set-up failed (build, anchor, gateway): nothing to compare
        log("set-up failed: %s: %s" % (type(exc).__name__, exc))
        return 1
    finally:
        process.stop_all()
        if args.keep:
            log("work directory kept: %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    sys.stdout.write("Within producer vs %s, %s%s, %.0f s\n\n" % (
        meta["anchor"], meta["micropython"], " (--quick)" if args.quick else "", meta["seconds"]))
    sys.stdout.write(report.table(figures))
    sys.stdout.write("\nMethod:\n" + "".join("  - %s\n" % line for line in meta["method"]))
    goals = report.targets_summary(figures)
    sys.stdout.write("\nTargets met: %d of %d\n" % (sum(1 for g in goals if g["met"]), len(goals)))
    for goal in goals:
        sys.stdout.write("  %-4s %s: %s\n" % ({True: "yes", False: "NO", None: "?"}[goal["met"]], goal["title"],
                                              goal["target"]))
    if args.json:
        report.write_json(args.json, meta, figures)
        sys.stdout.write("JSON: %s\n" % args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
