"""Figure 7: purchases completed by 1, 8 and 32 consumers at once, one producer capped at 126 KiB.

The cap is the .mpy min-heap target (110 KiB, what fits a stock ESP32
once converted to its word size) plus one 16 KiB step, as the footprint
issue sets it. Each level gets a fresh producer (MicroPython, .mpy,
default settings: 4 connections, 32 open orders) under -X heapsize=126k
and CPython consumers (harness.shopping) making a few purchases each;
failures must be zero (a 503 the consumer retried is not a failure).
When the producer cannot run at the cap, the level is FAILED with the reason, and the
same level is run at the run heap (512 KiB) so the figure still says
how the producer scales; that run is in the details and a note.
"""
from benchlib import report
from benchlib.fig_heap import short_reason
from harness.process import Failed
from harness.shopping import shop

GROUP = "7. Scale (one producer, heap capped)"
LEVELS = (1, 8, 32)


def level(bench, consumers, heap):
    """{"completed", "failures", ...} of one level at `heap`; {"error"} when the producer fails."""
    each = bench.settings["scale_each"]
    try:
        server = bench.start_producer(heap)
    except Failed as exc:
        why = short_reason(exc.process, exc.args[0][-160:])
        return {"error": "producer did not start at %d KiB: %s" % (heap // 1024, why)}
    try:
        result = shop(server.port, bench.gateway.url, bench.gateway.ca_path, consumers, each=each, seconds=120,
                      name="bench", count_failures=True)
        result["wanted"] = consumers * each
        if not server.child.alive():
            result["error"] = "producer exited: %s" % short_reason(server.child, server.child.tail())
        return result
    finally:
        server.stop()


def figures(bench):
    s = bench.settings
    heap, fallback = s["scale_heap"], s["scale_fallback_heap"]
    records = []
    for consumers in LEVELS:
        fid, title = "scale_%d" % consumers, "%d consumer%s, purchases done" % (consumers, "s" if consumers > 1 else "")
        goal = report.target("0 failures at %d KiB" % (heap // 1024), "no_failures", 0)
        what = "none: microdot has no purchase"
        result = level(bench, consumers, heap)
        details = dict(result, heap=heap, notes=[])
        if result.get("failures"):
            details["notes"].append("%d of %d failed: %s" % (result["failures"], result["wanted"], result["kinds"]))
        if "error" not in result:
            records.append(report.figure(fid, GROUP, title, "count", result["completed"], None, what, goal, details))
            continue
        reason = result["error"]
        backup = level(bench, consumers, fallback)
        details["fallback"] = dict(backup, heap=fallback)
        if "error" in backup:
            details["notes"].append("at %d KiB too: %s" % (fallback // 1024, backup["error"]))
        else:
            details["notes"].append("at %d KiB instead: %d of %d done, %d failures%s" % (
                fallback // 1024, backup["completed"], backup["wanted"], backup["failures"],
                " %s" % backup["kinds"] if backup["failures"] else ""))
        records.append(report.failed(fid, GROUP, title, "count", reason, None, what, goal, details))
    return records
