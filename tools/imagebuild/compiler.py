"""Compiles lib modules to .mpy for ESP32 with mpy-cross, and reads .mpy headers.

Every module is compiled with -march=xtensawin (the ESP32's native
architecture) and -s naming it by its bare module name, so tracebacks on
the board say File "ledger" and no host path ends up in the image: the
bare name is interned anyway (the package's attribute for the module),
where "wpwithin/ledger.py" was one more name per module (18 names,
0.5 KiB of a producer's heap after import, .mpy, 64-bit).
Line numbers are left out (-X no-source-lines) unless asked for: they
cost 2.6 KiB of a producer's heap from .mpy (6 % of the .mpy bytes),
and a traceback still names the file and the function (every line
reads "line 1"). `tools/build --source-lines` keeps them, to debug.
Must never write anywhere but the destination it is given, and never
hide a compiler error: mpy-cross's own message (file, line) is passed on.
"""
import os
import subprocess

from imagebuild import BuildError

ARCH = "xtensawin"
MPY_VERSION = 6
# Native architecture codes of the .mpy header (py/persistentcode.h, MP_NATIVE_ARCH_*).
ARCH_NAMES = ("none", "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp",
              "armv7emdp", "xtensa", "xtensawin", "rv32imc", "rv64imc")
SMALL_INT_BITS_ESP32 = 31  # a 32-bit target


def compile_module(mpy_cross, source, target, source_name, source_lines=False):
    """Compile `source` to `target` (.mpy) for xtensawin; returns the .mpy size."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    lines = [] if source_lines else ["-X", "no-source-lines"]
    name = source_name.rsplit("/", 1)[-1]
    name = name[:-3] if name.endswith(".py") else name
    cmd = [mpy_cross, "-march=" + ARCH] + lines + ["-s", name, "-o", target, source]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except OSError as exc:
        raise BuildError("cannot run %s: %s" % (mpy_cross, exc))
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip() or "exit status %d" % proc.returncode
        raise BuildError("mpy-cross failed on %s:\n%s" % (source, message))
    return os.path.getsize(target)


def read_header(data):
    """The 4-byte .mpy header as a dict; ValueError if `data` is not a .mpy file.

    The architecture is only recorded when a module holds native code
    (@micropython.native/viper); bytecode-only modules carry arch "none"
    and load on any MicroPython with the same .mpy version.
    """
    if len(data) < 4 or data[0:1] != b"M":
        raise ValueError("not a .mpy file (no 'M' header)")
    arch = (data[2] >> 2) & 0x2F
    return {
        "version": data[1],
        "arch": ARCH_NAMES[arch] if arch < len(ARCH_NAMES) else "unknown(%d)" % arch,
        "sub_version": data[2] & 3,
        "native": arch != 0,
        "small_int_bits": data[3],
    }


def loads_on_esp32(header):
    """Whether an ESP32 running MicroPython >= 1.19 can import a module with this header."""
    return (header["version"] == MPY_VERSION and header["arch"] in ("none", ARCH)
            and header["small_int_bits"] <= SMALL_INT_BITS_ESP32)
