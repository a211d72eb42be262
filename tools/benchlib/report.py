"""Figures as records, their targets judged, printed as a table and written as JSON.

A figure is a dict: id, group, title, unit, ours, anchor (the anchor's
figure measured in the same run, or None where microdot has no
equivalent: then `anchorWhat` says so), ratio (ours / anchor), target
(text, kind, value), met (True, False, or None when there is no target or
no figure), status ("ok" or "FAILED", with `reason`), details (the raw
measurements). A measurement that cannot run gives FAILED records with
the reason; it never stops the others.
"""
import json

UNITS = ("bytes", "ms", "per_s", "count")


def figure(fid, group, title, unit, ours, anchor=None, anchor_what="", target=None, details=None):
    assert unit in UNITS, unit
    record = {"id": fid, "group": group, "title": title, "unit": unit, "ours": ours, "anchor": anchor,
              "anchorWhat": anchor_what, "ratio": None, "target": target, "met": None, "status": "ok",
              "reason": None, "details": details or {}}
    if isinstance(ours, (int, float)) and isinstance(anchor, (int, float)) and anchor:
        record["ratio"] = float("%.4g" % (ours / anchor))
    record["met"] = judge(record)
    return record


def failed(fid, group, title, unit, reason, anchor=None, anchor_what="", target=None, details=None):
    record = figure(fid, group, title, unit, None, anchor, anchor_what, target, details)
    record.update(status="FAILED", reason=reason)  # figure() judged it: no figure, so not met
    return record


def target(text, kind, value):
    """kind: max (ours <= value), below (ours < value), ratio_max, ratio_min, no_failures."""
    return {"text": text, "kind": kind, "value": value}


def judge(record):
    goal = record["target"]
    if goal is None:
        return None
    if record["status"] != "ok" or record["ours"] is None:
        return False
    kind, value = goal["kind"], goal["value"]
    if kind == "max":
        return record["ours"] <= value
    if kind == "below":
        return record["ours"] < value
    if kind in ("ratio_max", "ratio_min"):
        if record["ratio"] is None:
            return None
        return record["ratio"] <= value if kind == "ratio_max" else record["ratio"] >= value
    if kind == "no_failures":
        return record["details"].get("failures", 1) == 0
    raise ValueError("unknown target kind %s" % kind)


def show(value, unit):
    if value is None:
        return "-"
    if unit == "bytes":
        return "%.1f KiB" % (value / 1024)
    if unit == "ms":
        return "%.1f ms" % value if value < 100 else "%.0f ms" % value
    if unit == "per_s":
        return "%.0f/s" % value if value >= 10 else "%.1f/s" % value
    return "%d" % value


def show_ratio(ratio):
    """4.58x; a ratio below 0.1 as a fraction (1/7400x), which a fixed number of decimals would show as 0."""
    if ratio is None:
        return "-"
    if ratio < 0.1:
        return "1/%.0fx" % (1 / ratio) if ratio else "0x"
    return "%.2fx" % ratio


COLUMNS = ("figure", "ours", "anchor (microdot)", "ratio", "target", "met")


def table(figures, width=44):
    """The figures as a text table, grouped; a FAILED figure's reason and notes follow its row."""
    rows = []
    group = None
    for rec in figures:
        if rec["group"] != group:
            group = rec["group"]
            rows.append(("group", group))
        met = {True: "yes", False: "NO", None: "-"}[rec["met"]]
        ours = "FAILED" if rec["status"] != "ok" else show(rec["ours"], rec["unit"])
        anchor = show(rec["anchor"], rec["unit"]) if rec["anchor"] is not None else "n/a"
        ratio = show_ratio(rec["ratio"])
        goal = rec["target"]["text"] if rec["target"] else "-"
        rows.append(("row", (rec["title"][:width], ours, anchor, ratio, goal, met)))
        if rec["status"] != "ok":
            rows.append(("note", "FAILED: %s" % rec["reason"]))
        for note in rec["details"].get("notes", []):
            rows.append(("note", note))
    widths = [max([len(COLUMNS[i])] + [len(r[1][i]) for r in rows if r[0] == "row"]) for i in range(len(COLUMNS))]
    line = "  ".join("%-*s" % (w, c) for w, c in zip(widths, COLUMNS))
    out = [line, "-" * len(line)]
    for kind, content in rows:
        if kind == "group":
            out.append(content)
        elif kind == "row":
            cells = [("%-*s" if i == 0 else "%*s") % (w, c) for i, (w, c) in enumerate(zip(widths, content))]
            out.append("  ".join(cells))
        else:
            out.append("      " + content)
    return "\n".join(out) + "\n"


def targets_summary(figures):
    """[{"id", "target", "met"}] for every figure with a target."""
    return [{"id": r["id"], "title": r["title"], "target": r["target"]["text"], "met": r["met"]}
            for r in figures if r["target"]]


def write_json(path, meta, figures):
    with open(path, "w") as f:
        json.dump({"bench": meta, "figures": figures, "targets": targets_summary(figures)}, f, indent=2,
                  sort_keys=True)
        f.write("\n")
