"""Figure 5: discovery, from a consumer starting to look until it has the producer.

Our producer (MicroPython, .mpy, default 5 s broadcast interval) and a
MicroPython consumer (mp_consumer.py) on loopback. Fast: a probe to
127.255.255.255, answered at once; trials one after another. Broadcast
only: the reference's way and the anchor of the fast figure; scans whose
start phases are spread evenly over one interval, so the median is about
half an interval.
"""
from benchlib import report
from benchlib.fig_speed import median, percentile
from benchlib.ours import SERVER_ID

GROUP = "5. Discovery (MicroPython consumer, loopback)"
INTERVAL_MS = 5000  # the reference's default, and ours


def figures(bench):
    s = bench.settings
    broadcast_port, probe_port = bench.udp
    runs = {}
    try:
        server = bench.start_producer(network={"broadcastIntervalMs": INTERVAL_MS})
        try:
            runs["fast"] = bench.runtime.consumer(
                ["fast", s["fast_trials"], broadcast_port, probe_port, SERVER_ID], 60)
            runs["broadcast"] = bench.runtime.consumer(
                ["broadcast", s["broadcast_trials"], broadcast_port, INTERVAL_MS, SERVER_ID],
                3 * INTERVAL_MS / 1000 + 30)
        finally:
            server.stop()
    except Exception as exc:  # noqa: reported as FAILED
        runs["error"] = str(exc)
    stats = {}
    for kind in ("fast", "broadcast"):
        run = runs.get(kind)
        if run and run["ms"] and not run["failed"]:
            stats[kind] = {"median": median(run["ms"]), "p95": percentile(run["ms"], 0.95), "trials": len(run["ms"]),
                           "ms": run["ms"]}
        else:
            stats[kind] = {"error": runs.get("error") or "%s trials missed the producer" % (run or {}).get("failed")}
    fast, broadcast = stats["fast"], stats["broadcast"]
    records = []
    what = "broadcast only, %d ms interval (the reference's way)" % INTERVAL_MS
    details = {"fast": fast, "broadcast": broadcast,
               "notes": ["fast p95 %.1f ms over %d probes" % (fast["p95"], fast["trials"])] if "median" in fast else []}
    goal = report.target("< 50 ms", "below", 50)
    if "median" in fast:
        records.append(report.figure("discovery_fast", GROUP, "fast probe, median", "ms", fast["median"],
                                     broadcast.get("median"), what, goal, details))
    else:
        records.append(report.failed("discovery_fast", GROUP, "fast probe, median", "ms", fast["error"],
                                     broadcast.get("median"), what, goal, details))
    details = {"broadcast": broadcast, "notes": ["p95 %.0f ms over %d scans" % (broadcast["p95"], broadcast["trials"])]
               if "median" in broadcast else []}
    if "median" in broadcast:
        records.append(report.figure("discovery_broadcast", GROUP, "broadcast only, median", "ms",
                                     broadcast["median"], None, "none: the reference's way is this figure",
                                     None, details))
    else:
        records.append(report.failed("discovery_broadcast", GROUP, "broadcast only, median", "ms",
                                     broadcast["error"], None, "none", None, details))
    return records
