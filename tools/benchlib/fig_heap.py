"""Figures 1 and 2: minimum heap (bisection) and heap in use after import and at peak, ours vs microdot.

The floor (mp_floor) is what the heap targets are up against: the least
heap a bare asyncio server needs to answer the price list 20 times when
each answer waits for one HTTPS round trip to the gateway, as a payment
does. No producer can need less on the same build.

Workloads, each in a fresh MicroPython process:
  ours    20 purchases, one after another, by a CPython consumer: all six
          routes, the gateway's token and order calls, token signing, the
          journal (a new, empty one per process);
  anchor  20 GETs of the price list, each answer checked against ours.
A run passes when every purchase or answer was right and the process is
still running after them; a heap passes when 3 runs in a row pass (2 with
--quick; heapsearch says why). For code from ROMFS the image is read into one
heap buffer (the unix port cannot map flash): the figure is the heapsize
found minus that buffer's heap (measured around its allocation).
Heap in use comes from inside the process (mp_heap.Sampler): after import
is gc.mem_alloc() after a full collection once the modules are imported;
peak is the most live heap seen at any scheduler round while the workload
ran (3 purchases; 20 GETs), buffer left out, at the run heap of 512 KiB.
"""
import json
import socket

from benchlib import heapsearch, load, report
from benchlib.context import PRICES_PATH
from benchlib.runners import MODES
from harness.process import Failed, free_port
from harness.shopping import shop

SIDES = ("ours", "anchor")
PROFILE_HEAP = 512 * 1024
TRIAL_TIMEOUT = 2  # s for any answer on loopback: a process stuck after a MemoryError fails fast
GROUP_MIN = "1. Minimum heap (-X heapsize, bisection)"
GROUP_USE = "2. Heap in use (gc.mem_alloc)"
# 64-bit unix port to an ESP32's word size, for min heap: the same source built both ways (issue 16).
TO_ESP32 = {"mpy": 0.73, "romfs": 0.66}
USE_GOALS = {("imported", "mpy"): report.target("<= 72 KiB", "max", 72 * 1024),
             ("working", "mpy"): report.target("<= 28 KiB", "max", 28 * 1024)}
ESP32_BUDGET = 100 * 1024  # GC heap left for the app on a stock ESP32 without PSRAM, WiFi and one HTTPS up


def esp32_record(mode, found):
    """The min heap converted to an ESP32's word size, judged against a stock ESP32's budget."""
    factor, ours = TO_ESP32[mode], found.get("min")
    title = "  at ESP32 word size (x%.2f)" % factor
    goal = report.target("<= 100 KiB", "max", ESP32_BUDGET)
    if ours is None:
        return report.failed("min_heap_%s_esp32" % mode, GROUP_MIN, title, "bytes", "no min heap", None,
                             "none: the 64-bit min heap x%.2f" % factor, goal)
    value = int(ours * factor)
    fits = value <= ESP32_BUDGET
    if mode == "mpy":
        note = "%s a stock ESP32 without PSRAM (~100 KiB of GC heap for the app, code as .mpy on LittleFS)" % (
            "fits" if fits else "does NOT fit")
    else:
        note = ("stock ESP32 firmware has no ROMFS: a custom build (MICROPY_VFS_ROM) %s in ~100 KiB"
                % ("fits" if fits else "does NOT fit"))
    return report.figure("min_heap_%s_esp32" % mode, GROUP_MIN, title, "bytes", value, None,
                         "none: the 64-bit min heap x%.2f (+-5 %%)" % factor, goal, {"notes": [note]})


def short_reason(child, fallback):
    """The MemoryError a failed run printed, else `fallback`."""
    return (child.memory_error() or fallback)[:160]


def start(bench, side, heap, mode, control=0):
    if side == "ours":
        return bench.start_producer(heap, mode, control)
    return bench.runtime.start_anchor(bench.prices_file, heap, mode, control)


def workload(bench, side, server, count):
    """(passed, why) after `count` purchases (ours) or price-list GETs (anchor)."""
    if side == "ours":
        result = shop(server.port, bench.gateway.url, bench.gateway.ca_path, 1, each=count, seconds=120,
                      name="bench", count_failures=True, timeout=TRIAL_TIMEOUT)
        if result["failures"]:
            return False, "%d of %d purchases failed: %s" % (result["failures"], count, result["kinds"])
    else:
        for i in range(count):
            try:
                status, body = load.request(server.port, PRICES_PATH, timeout=TRIAL_TIMEOUT)
                if status != 200 or json.loads(body) != bench.prices:
                    return False, "GET %d: status %d or a different price list" % (i + 1, status)
            except (OSError, ValueError, load.BadAnswer) as exc:
                return False, "GET %d: %s" % (i + 1, exc)
    if not server.child.alive():
        return False, "the process exited"
    return True, ""


def trial(bench, side, mode):
    count = bench.settings["purchases"] if side == "ours" else bench.settings["anchor_requests"]

    def run(heap):
        try:
            server = start(bench, side, heap, mode)
        except Failed as exc:
            return False, "at start: " + exc.args[0][-160:]
        try:
            passed, why = workload(bench, side, server, count)
            return passed, why and short_reason(server.child, why)
        finally:
            server.stop()

    return run


def profile(bench, side, mode):
    """{"image", "imported", "idle", "peak"} from one run at PROFILE_HEAP with the sampler on."""
    return profile_server(bench, side, start(bench, side, PROFILE_HEAP, mode, free_port(socket.SOCK_DGRAM)))


def profile_server(bench, side, server):
    """profile()'s figures from a server started at PROFILE_HEAP with a control port; stops it."""
    try:
        idle = server.heap(b"reset")["now"]
        count = bench.settings["profile_purchases"] if side == "ours" else bench.settings["anchor_requests"]
        passed, why = workload(bench, side, server, count)
        if not passed:
            raise RuntimeError("workload failed at %d bytes: %s" % (PROFILE_HEAP, why))
        sample = server.heap(b"peak")
        return {"image": server.image, "imported": server.imported, "idle": idle, "peak": sample["peak"],
                "samples": sample["samples"]}
    finally:
        server.stop()


def measure(bench, side, mode):
    """Profile then minimum heap for one side and code source; errors are returned, not raised."""
    out = {}
    try:
        out.update(profile(bench, side, mode))
    except Exception as exc:  # noqa: reported as FAILED, the other figures go on
        return {"error": "profile run: %s" % exc}
    image = out["image"]
    bench.log("%s, %s: after import %d, peak %d; searching the minimum heap"
              % (side, mode, out["imported"], out["peak"]))
    s = bench.settings
    try:
        found = heapsearch.minimum(trial(bench, side, mode), out["imported"] + image,
                                   int((out["peak"] + image) * 1.25), s["heap_step"], s["search_seconds"],
                                   lambda m: bench.log("  %s %s %s" % (side, mode, m)), s["repeats"])
    except heapsearch.NotFound as exc:
        out["min_error"] = str(exc)
        return out
    out["heapsize"] = found["heap"]
    out["min"] = found["heap"] - image
    out["trials"] = found["trials"]
    out["lowestPass"], out["highestFail"] = heapsearch.band(found["log"])
    return out


def floor(bench):
    """{"min": bytes, ...}: the least heap mp_floor serves the price list in, each GET after one HTTPS
    round trip to the gateway; or {"error": why}."""
    own = bench.gateway.ca_path is None  # the bench's gateway is plain HTTP unless --gateway-tls
    tls = bench.things.gateway(tls=True) if own else bench.gateway
    count = bench.settings["anchor_requests"]

    def run(heap):
        try:
            server = bench.runtime.start_floor(tls.url, tls.ca_path, bench.prices_file, heap)
        except Failed as exc:
            if not exc.process.memory_error():  # e.g. a build without ssl: more heap will not help
                raise heapsearch.NotFound("at start: " + exc.args[0][-160:])
            return False, "at start: " + exc.args[0][-160:]
        try:
            for i in range(count):
                try:
                    status, body = load.request(server.port, PRICES_PATH, timeout=TRIAL_TIMEOUT)
                except (OSError, load.BadAnswer) as exc:
                    return False, short_reason(server.child, "GET %d: %s" % (i + 1, exc))
                if status != 200 or body != bench.prices_body:
                    return False, "GET %d: status %d or another body" % (i + 1, status)
            return server.child.alive(), "the process exited"
        finally:
            server.stop()

    s = bench.settings
    try:
        found = heapsearch.minimum(run, 8 * 1024, 32 * 1024, s["heap_step"], s["search_seconds"],
                                   lambda m: bench.log("  floor %s" % m), s["repeats"])
    except heapsearch.NotFound as exc:
        return {"error": str(exc)}
    finally:
        if own:
            tls.stop()
    return {"min": found["heap"], "trials": found["trials"]}


def figures(bench):
    found = {(side, mode): measure(bench, side, mode) for mode in MODES for side in SIDES}
    s = bench.settings
    records = []
    goals = {"mpy": report.target("<= 110 KiB", "max", 110 * 1024),
             "romfs": report.target("<= 84 KiB", "max", 84 * 1024)}
    notes = {"mpy": ["bisection to %d bytes, a heap passes when %d runs in a row pass; ours: %d purchases, "
                     "anchor: %d GETs" % (s["heap_step"], s["repeats"], s["purchases"], s["anchor_requests"])],
             "romfs": []}
    ours, anchor = found[("ours", "romfs")], found[("anchor", "romfs")]
    if "heapsize" in ours and "heapsize" in anchor:
        notes["romfs"].append("heapsize found minus the image buffer: ours %d - %d, anchor %d - %d" % (
            ours["heapsize"], ours["image"], anchor["heapsize"], anchor["image"]))
    for mode in MODES:
        for side in SIDES:
            low, high = found[(side, mode)].get("lowestPass"), found[(side, mode)].get("highestFail")
            if low is not None and high is not None and high >= low:  # pass and fail overlap: noise
                notes[mode].append("%s: heap use varies run to run; single runs passed at %d and failed at %d"
                                   % (side, low, high))
    for mode in MODES:
        title = "min heap, code as .mpy files" if mode == "mpy" else "min heap, code from ROMFS (buffer excluded)"
        records.append(_record(found, mode, "min", "min_heap_%s" % mode, GROUP_MIN, title,
                               "microdot app serving the price list", goals[mode], notes[mode]))
        records.append(esp32_record(mode, found[("ours", mode)]))
    bench.log("floor: a bare asyncio server making one HTTPS call per request; searching its minimum heap")
    least = floor(bench)
    title, what = "min heap floor: no protocol code", "none: the floor is no producer"
    notes = ["a bare asyncio server answering the price list, each GET after one HTTPS round trip to the "
             "gateway (certificate checked): no producer can need less on this build"]
    if "min" in least:
        records.append(report.figure("min_heap_floor", GROUP_MIN, title, "bytes", least["min"], None, what,
                                     None, {"floor": least, "notes": notes}))
    else:
        records.append(report.failed("min_heap_floor", GROUP_MIN, title, "bytes", least["error"], None, what,
                                     None, {"notes": notes}))
    for mode in MODES:
        for key, what, anchor_what in (("imported", "after import", "microdot after import"),
                                       ("peak", "peak during a purchase", "microdot peak serving the price list"),
                                       ("working", "working set (peak - after import)", "microdot's")):
            for side in SIDES:
                one = found[(side, mode)]
                if key == "working" and "peak" in one and "imported" in one:
                    one["working"] = one["peak"] - one["imported"]
            goal = USE_GOALS.get((key, mode))
            records.append(_record(found, mode, key, "heap_%s_%s" % (key, mode), GROUP_USE,
                                   "heap %s (%s)" % (what, "ROMFS" if mode == "romfs" else ".mpy"),
                                   anchor_what, goal, []))
    return records


def _record(found, mode, key, fid, group, title, anchor_what, goal, notes):
    ours, anchor = found[("ours", mode)], found[("anchor", mode)]
    details = {"ours": ours, "anchor": anchor, "notes": list(notes)}
    anchor_value = anchor.get(key)
    if anchor_value is None:
        details["notes"].append("anchor FAILED: %s" % (anchor.get("error") or anchor.get("min_error")))
    if ours.get(key) is None:
        return report.failed(fid, group, title, "bytes", ours.get("error") or ours.get("min_error") or "not measured",
                             anchor_value, anchor_what, goal, details)
    return report.figure(fid, group, title, "bytes", ours[key], anchor_value, anchor_what, goal, details)
