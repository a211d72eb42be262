"""Figures 4 and 6: requests per second for the price list, purchases per second, purchase latency.

Throughput: one CPython load generator (load.py), the same number of
client threads, against our producer and against the microdot app, each
a MicroPython process with the .mpy code and the run heap (512 KiB);
keep-alive, then a new connection per request. The two sides take turns
for a few rounds and the median round counts, so a burst of other load
on the machine does not land on one side only. microdot answers
HTTP/1.0 and closes every connection, so its keep-alive figure pays a
connect per request (the details count connections). Purchases per
second: CPython consumers (harness.shopping) against our producer and the
simulated gateway with no injected latency. Latency: a MicroPython
consumer (mp_consumer.py buy) against the MicroPython producer, one
purchase at a time, loopback.
"""
import math

from benchlib import load, report
from benchlib.context import PRICES_PATH
from harness.shopping import shop

GROUP_RPS = "4. Throughput"
GROUP_LATENCY = "6. Purchase latency (MicroPython consumer and producer, loopback)"


def percentile(values, fraction):
    """The nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _body_length(server):
    status, body = load.request(server.port, PRICES_PATH)
    if status != 200:
        raise RuntimeError("GET %s answered %d" % (PRICES_PATH, status))
    return len(body)


def _rounds(bench, servers):
    """{side: {keep_alive: [load.run result per round]}}, the sides taking turns round by round."""
    s = bench.settings
    lengths = {side: _body_length(server) for side, server in servers.items()}
    out = {side: {True: [], False: []} for side in servers}
    for _ in range(s["rounds"]):
        for side, server in servers.items():
            for keep in (True, False):
                out[side][keep].append(load.run(server.port, PRICES_PATH, s["clients"], s["seconds"], keep,
                                                lengths[side]))
    return out


def _summary(runs):
    """The median round (by requests/s) of one side and mode, with every round's rate."""
    chosen = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
    return dict(chosen, rounds=[round(r["rps"], 1) for r in runs], errors=sum(r["errors"] for r in runs))


def throughput(bench):
    out = {}
    servers = {}
    try:
        try:
            servers["ours"] = bench.start_producer()
        except Exception as exc:  # noqa: reported as FAILED
            out["ours"] = {"error": str(exc)}
        try:
            servers["anchor"] = bench.runtime.start_anchor(bench.prices_file)
        except Exception as exc:  # noqa: reported as FAILED
            out["anchor"] = {"error": str(exc)}
        for side, runs in _rounds(bench, servers).items():
            out[side] = {keep: _summary(runs[keep]) for keep in runs}
    finally:
        for server in servers.values():
            server.stop()
    records = []
    goal = report.target(">= 2x microdot", "ratio_min", 2.0)
    clients = bench.settings["clients"]
    for keep, fid, title in ((True, "rps_keepalive", "GET prices/s, keep-alive"),
                             (False, "rps_new_connection", "GET prices/s, new connection each")):
        ours = out["ours"].get(keep)
        anchor = out["anchor"].get(keep)
        details = {"ours": ours, "anchor": anchor, "notes": []}
        what = "microdot, same client, %d clients" % clients
        if anchor is None:
            details["notes"].append("anchor FAILED: %s" % out["anchor"]["error"])
        elif anchor["errors"]:
            details["notes"].append("anchor errors: %s" % anchor["kinds"])
        if keep and anchor is not None and anchor["connects"] >= anchor["ok"]:
            details["notes"].append("microdot closes every connection (HTTP/1.0): a connect per request")
        if ours is None:
            records.append(report.failed(fid, GROUP_RPS, title, "per_s", out["ours"]["error"],
                                         anchor and anchor["rps"], what, goal, details))
            continue
        if ours["errors"]:
            details["notes"].append("ours: %d errors %s" % (ours["errors"], ours["kinds"]))
        records.append(report.figure(fid, GROUP_RPS, title, "per_s", ours["rps"], anchor and anchor["rps"], what,
                                     goal, details))
    records.append(purchases_per_second(bench))
    return records


def purchases_per_second(bench):
    s = bench.settings
    title = "full purchases/s, %d consumers" % s["shoppers"]
    what = "none: microdot has no purchase"
    try:
        server = bench.start_producer()
        try:
            result = shop(server.port, bench.gateway.url, bench.gateway.ca_path, s["shoppers"],
                          seconds=s["seconds"] * s["rounds"], name="bench", count_failures=True)
        finally:
            server.stop()
    except Exception as exc:  # noqa: reported as FAILED
        return report.failed("purchases_per_s", GROUP_RPS, title, "per_s", str(exc), None, what)
    result["notes"] = ["gateway: simulator over %s, no injected latency; %d failures"
                       % (bench.gateway.url.split(":")[0], result["failures"])]
    if result["failures"]:
        result["notes"].append("failures: %s" % result["kinds"])
    return report.figure("purchases_per_s", GROUP_RPS, title, "per_s", result["completed"] / result["seconds"],
                         None, what, None, result)


def latency(bench):
    s = bench.settings
    what = "none: microdot has no purchase"
    titles = (("latency_median", "purchase latency, median"), ("latency_p95", "purchase latency, 95th percentile"))
    try:
        server = bench.start_producer()
        try:
            result = bench.runtime.consumer(["buy", s["latency_purchases"], "127.0.0.1", server.port,
                                             bench.gateway.url] + ([bench.gateway.ca_path] if bench.gateway.ca_path
                                                                   else []), 120)
        finally:
            server.stop()
        if result["failed"] or not result["ms"]:
            raise RuntimeError("%d of %d purchases failed: %s" % (result["failed"], s["latency_purchases"],
                                                                 result["errors"]))
    except Exception as exc:  # noqa: reported as FAILED
        return [report.failed(fid, GROUP_LATENCY, title, "ms", str(exc), None, what) for fid, title in titles]
    result["notes"] = []
    values = (median(result["ms"]), percentile(result["ms"], 0.95))
    records = []
    for (fid, title), value in zip(titles, values):
        details = dict(result, notes=["%d purchases after one not timed" % len(result["ms"])] if fid == "latency_median"
                       else [])
        records.append(report.figure(fid, GROUP_LATENCY, title, "ms", value, None, what, None, details))
    return records
