# Runs named test functions of one dual-runtime test module under MicroPython.
#
# Usage: micropython mp_runner.py TEST_DIR MODULE NAME [NAME ...]
# For each NAME prints one line "\x1eRESULT <json>" with {"name", "ok", "error"}
# so the pytest side can tell results apart from anything a test prints.
import sys
import io
import json

_MARK = "\x1eRESULT "


def _report(name, ok, error):
    sys.stdout.write(_MARK + json.dumps({"name": name, "ok": ok, "error": error}) + "\n")


def main(argv):
    test_dir, module_name, names = argv[1], argv[2], argv[3:]
    sys.path.insert(0, test_dir)
    module = __import__(module_name)
    for name in names:
        try:
            getattr(module, name)()
        except BaseException as exc:  # report every failure, including MemoryError
            buf = io.StringIO()
            sys.print_exception(exc, buf)
            _report(name, False, buf.getvalue())
            if isinstance(exc, KeyboardInterrupt):
                raise
        else:
            _report(name, True, None)


main(sys.argv)
