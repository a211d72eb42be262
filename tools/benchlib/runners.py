"""Starts the MicroPython runners (mp_producer, mp_microdot, mp_consumer) with a heap cap and code source.

A server runner is started as a harness Process under `micropython -X
heapsize=N -m RUNNER`, with its code from the .mpy bundle on MICROPYPATH
("mpy") or from a ROMFS image ("romfs": then no copy of that code is on
MICROPYPATH at all). start_*() wait for its "listening on" line and
return a Server holding the heap figures it printed. Sampler queries go
to its UDP control port (mp_heap.Sampler).
"""
import json
import os
import re
import socket

from harness.process import Failed, Process, free_port
from harness.things import runtime_command
from wpwithin.gateway_client import parse_url

MODES = ("mpy", "romfs")
READY_S = 30.0  # a runner must be listening within this
KEEP_LINES = 200  # output lines kept per process, for failure reasons


class Server:
    def __init__(self, child, port, image, imported, control=0):
        self.child = child
        self.port = port
        self.image = image  # heap bytes of the ROMFS image buffer (0 for .mpy)
        self.imported = imported  # heap in use after import, the buffer left out
        self.control = control

    def heap(self, what=b"peak", timeout=3.0):
        """The sampler's answer, {"now", "peak", "samples"} (bytes; image buffer left out)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(what, ("127.0.0.1", self.control))
            try:
                return json.loads(sock.recv(256))
            except socket.timeout:
                raise Failed("%s: no heap answer on UDP %d; output: %s"
                             % (self.child.name, self.control, self.child.tail()), self.child)

    def stop(self):
        self.child.stop()


class Runtime:
    """Where the interpreter, the runners and each side's code are."""

    def __init__(self, runners, ours, anchor, lib_source, workdir):
        self.runners = runners  # folder of mp_*.mpy
        self.code = {"ours": (ours["lib"], ours["romfs"]), "anchor": (anchor["lib"], anchor["romfs"])}
        self.lib_source = lib_source  # lib/ as source, for the consumer runner
        self.workdir = workdir
        self._count = 0

    def folder(self, name):
        """A new folder of the work directory for one run."""
        self._count += 1
        path = os.path.join(self.workdir, "runs", "%03d-%s" % (self._count, name))
        os.makedirs(path)
        return path

    def start(self, name, runner, heap, path, args, cwd):
        argv, env = runtime_command("micropython", ["-m", runner], heap, [self.runners] + list(path))
        return Process(name, argv + list(args), env, cwd, keep=KEEP_LINES)

    def _server(self, side, runner, args, heap, mode, control, cwd):
        lib, image = self.code[side]
        path = [lib] if mode == "mpy" else []
        return self._launch("%s (%s, heap %s)" % (runner, mode, heap or "default"), runner, heap, path,
                            args + [image if mode == "romfs" else "-"] + ([control] if control else []), cwd,
                            control)

    def _launch(self, name, runner, heap, path, args, cwd, control=0):
        """Start a server runner and wait for its "heap ..." and "listening on ..." lines."""
        child = self.start(name, runner, heap, path, args, cwd)
        try:
            line = child.expect("heap ", READY_S)
            figures = dict(part.split("=") for part in line.split()[1:])
            ready = child.expect("listening on ", READY_S)
        except BaseException:
            child.stop()
            raise
        port = int(re.search(r":(\d+)", ready).group(1))
        return Server(child, port, int(figures["image"]), int(figures["imported"]), control)

    def start_producer(self, config, secrets, heap=None, mode="mpy", control=0):
        """Our producer (mp_producer) from `config`, with its code from the bundle or the ROMFS image."""
        return self._server("ours", "mp_producer", [config, secrets], heap, mode, control,
                            os.path.dirname(config))

    def start_anchor(self, prices_file, heap=None, mode="mpy", control=0):
        """The microdot app (mp_microdot) serving the JSON in prices_file, on a free port."""
        port = free_port()
        cwd = self.folder("microdot")
        return self._server("anchor", "mp_microdot", [port, prices_file], heap, mode, control, cwd)

    def start_floor(self, gateway_url, ca_path, body_file, heap=None):
        """mp_floor: a bare asyncio server making one HTTPS call to the gateway per request, on a free port."""
        _, host, gateway_port, _ = parse_url(gateway_url)
        args = [free_port(), host, gateway_port, ca_path, body_file]
        return self._launch("mp_floor (heap %s)" % (heap or "default"), "mp_floor", heap, [], args,
                            self.folder("floor"))

    def consumer(self, args, timeout):
        """Run mp_consumer with `args` to its end; its JSON result line as a dict."""
        child = self.start("mp_consumer %s" % args[0], "mp_consumer", None, [self.lib_source], args,
                           self.folder("consumer"))
        try:
            line = child.expect("{", timeout)
            child.wait(10)
        finally:
            child.stop()
        return json.loads(line)
