"""pytest plugin: every test in host_tests/dual/ runs under CPython and MicroPython.

Each test function becomes two items, ``name[cpython]`` (called in this
process) and ``name[micropython]`` (called by mp_runner.py inside the real
MicroPython unix port; one interpreter process per test module, started on
the first MicroPython item of that module). ``--runtime`` picks one runtime.
A missing ``micropython`` command stops the session with an error; it is
never skipped.
"""
import importlib
import json
import os
import subprocess
import sys

import pytest

import mpy

RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mp_runner.py")
RUNTIMES = ("cpython", "micropython")
MARK = "\x1eRESULT "


def pytest_addoption(parser):
    parser.addoption(
        "--runtime", choices=RUNTIMES + ("both",), default="both",
        help="run dual-runtime tests under one runtime only (default: both)",
    )


def pytest_configure(config):
    for runtime in RUNTIMES:
        config.addinivalue_line("markers", "%s: dual-runtime test run under %s" % (runtime, runtime))


def pytest_sessionstart(session):
    if session.config.getoption("runtime") in ("both", "micropython"):
        try:
            mpy.micropython_path()
        except mpy.MicroPythonMissing as exc:
            raise pytest.UsageError("MicroPython is required: %s" % exc)


def _selected(config):
    choice = config.getoption("runtime")
    return RUNTIMES if choice == "both" else (choice,)


def pytest_pycollect_makemodule(module_path, parent):
    if os.path.basename(os.path.dirname(str(module_path))) == "dual":
        return DualModule.from_parent(parent, path=module_path)
    return None


class DualModule(pytest.File):
    """A test module whose functions run under both runtimes."""

    _mp_results = None

    def collect(self):
        test_dir = str(self.path.parent)
        if test_dir not in sys.path:
            sys.path.insert(0, test_dir)
        module = importlib.import_module(self.path.stem)
        tests = [
            (fn.__code__.co_firstlineno, name) for name, fn in vars(module).items()
            if name.startswith("test_") and callable(fn)
        ]
        self.test_names = [name for _, name in sorted(tests)]
        for name in self.test_names:
            for runtime in _selected(self.config):
                item = DualItem.from_parent(
                    self, name="%s[%s]" % (name, runtime),
                    function=getattr(module, name), runtime=runtime,
                )
                item.add_marker(runtime)
                yield item

    def micropython_result(self, name):
        if self._mp_results is None:
            self._mp_results = self._run_micropython()
        return self._mp_results.get(name)

    def _run_micropython(self):
        try:
            proc = mpy.run([RUNNER, str(self.path.parent), self.path.stem] + self.test_names, timeout=300)
        except subprocess.TimeoutExpired as exc:
            stuck = "MicroPython did not finish this module within %d s; output so far:\n%s" % (
                exc.timeout, (exc.stdout or b"")[-2000:])
            return dict((name, {"name": name, "ok": False, "error": stuck}) for name in self.test_names)
        results = {}
        for line in proc.stdout.split("\n"):
            if line.startswith(MARK):
                record = json.loads(line[len(MARK):])
                results[record["name"]] = record
        if proc.returncode != 0:
            died = "MicroPython exited with %d\n%s%s" % (
                proc.returncode, proc.stdout[-2000:], proc.stderr[-4000:])
            for name in self.test_names:
                results.setdefault(name, {"name": name, "ok": False, "error": died})
        return results


class MicroPythonFailure(Exception):
    pass


class DualItem(pytest.Item):
    def __init__(self, *, function, runtime, **kwargs):
        super().__init__(**kwargs)
        self.function = function
        self.runtime = runtime

    def runtest(self):
        if self.runtime == "cpython":
            self.function()
            return
        result = self.parent.micropython_result(self.function.__name__)
        if result is None:
            raise MicroPythonFailure("no result from MicroPython for %s" % self.function.__name__)
        if not result["ok"]:
            raise MicroPythonFailure(result["error"])

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, MicroPythonFailure):
            return "under MicroPython:\n%s" % excinfo.value
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, self.function.__code__.co_firstlineno - 1, self.name
