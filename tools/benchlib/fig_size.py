"""Figure 3: code size, the .mpy bytes of a producer-only image against microdot's .mpy.

Ours: the lib's .mpy files tools/build --producer-only puts on a board
(its size report's total; boot.py and main.py, shipped as source, are
listed in the details), and the ROMFS image holding them. Anchor: the
.mpy of what `from microdot import Microdot` loads, compiled with the same
mpy-cross and flags (anchor.py), and its ROMFS image. Then the heap each
module of a running producer takes once imported from .mpy (mp_modules),
in the order of their imports, what the first payment loads and the rare
paths' module last: where a cut would pay.
"""
import ast
import os
import re

from benchlib import report

GROUP = "3. Code size"
# What a producer Thing imports at start (thing_main's board and config), then what the first payment
# loads (kept) and what a rare path loads (dropped after).
AT_START = ("thing", "board_host", "checked_config", "catalogue")
LATER = ("http_client", "settle")
NO_ANCHOR = "none: where our producer's heap after import goes"


def figures(bench):
    ours, anchor = bench.ours, bench.anchor
    mpy = report.figure(
        "code_mpy", GROUP, "producer-only .mpy bytes", "bytes", ours["mpy_bytes"], anchor["mpy_bytes"],
        "microdot .mpy (%s)" % ", ".join(sorted(anchor["mpy"])), report.target("<= 40 KiB", "max", 40 * 1024),
        {"modules": ours["modules"], "excluded": ours["excluded"], "entryPointsSource": ours["entry_points"],
         "anchorModules": anchor["mpy"], "compiler": ours["compiler"],
         "notes": ["%d modules; boot.py and main.py add %d bytes of source" % (
             ours["modules"], sum(ours["entry_points"].values()))]})
    image = report.figure("code_romfs", GROUP, "ROMFS image bytes", "bytes", ours["romfs_bytes"],
                          anchor["romfs_bytes"], "microdot in a ROMFS image")
    return [mpy, image, module_heap(bench)]


def _imports(root, name):
    """The wpwithin modules `name` imports when it is imported (module level; not inside functions)."""
    with open(os.path.join(root, "lib", "wpwithin", name + ".py")) as f:
        tree = ast.parse(f.read())
    out = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "wpwithin":
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("wpwithin."):
            out.append(node.module[9:])
    return out


def import_order(root, names):
    """`names` and what they import, each after its own imports."""
    order = []

    def visit(name):
        if name not in order:
            for dep in _imports(root, name):
                visit(dep)
            order.append(name)

    for name in names:
        visit(name)
    return order


def module_heap(bench):
    title = "heap of each module at import (.mpy)"
    order = import_order(bench.root, AT_START + LATER)
    child = bench.runtime.start("mp_modules", "mp_modules", None, [bench.ours["lib"]], order, bench.workdir)
    try:
        child.wait(60)
    finally:
        child.stop()
    rows = re.findall(r"n_pool=(\d+).*\nmodule (\w+) (\d+)", child.text())
    if len(rows) != len(order):
        return report.failed("heap_modules", GROUP, title, "bytes", "mp_modules said: %s" % child.text()[-300:],
                             None, NO_ANCHOR)
    taken = [(name, int(n), int(pools)) for pools, name, n in rows]
    notes, line, pools = [], [], 0
    for name, n, now in taken:
        line.append("%s %.1f%s" % (name, n / 1024, " (+pool)" if now > pools and pools else ""))
        pools = now
        if len(line) == 6:
            notes.append(", ".join(line))
            line = []
    notes += [", ".join(line)] if line else []
    notes.append("KiB each, imported in this order (%s and %s last: the first payment, the rare paths); "
                 "(+pool): it made a qstr pool, %d in all" % (LATER[0], LATER[1], pools))
    return report.figure("heap_modules", GROUP, title, "bytes", sum(n for _, n, _ in taken), None, NO_ANCHOR,
                         None, {"modules": [[name, n] for name, n, _ in taken], "pools": pools, "notes": notes})
