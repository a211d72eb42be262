"""Child processes of the bench: started in their own session, read by a thread, always stopped.

Every child is registered in CHILDREN as it starts; stop_all() (bench.py
calls it on exit, also on Ctrl-C or SIGTERM) ends each one's process group:
SIGTERM, then SIGKILL after a grace period. Every wait has a deadline.
Also hands out free loopback ports.
"""
import os
import queue
import signal
import socket
import subprocess
import threading
import time

CHILDREN = []
# Every child's environment holds MARK=<the run's work directory> (set_mark), so a test can tell
# whether anything of a run is still running, whatever its command line.
MARK = "WPW_BENCH_RUN"
_mark = {}
KEEP_LINES = 200  # output lines kept per child, for error messages


class ChildFailed(RuntimeError):
    """A child exited or did not say what was expected in time; the message has its last output."""


class Child:
    def __init__(self, name, argv, env=None, cwd=None):
        self.name = name
        self.lines = queue.Queue()
        self.output = []
        environ = dict(os.environ)
        environ.update(_mark)
        environ.update(env or {})
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     text=True, cwd=cwd, env=environ, start_new_session=True,
                                     errors="replace")
        CHILDREN.append(self)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.output.append(line.rstrip("\n"))
            del self.output[:-KEEP_LINES]
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def alive(self):
        return self.proc.poll() is None

    def tail(self, n=6):
        """The last n output lines, one string (for a failure reason)."""
        return " | ".join(self.output[-n:]) or "(no output)"

    def expect(self, prefix, timeout):
        """The first output line starting with `prefix`; ChildFailed if it exits or the time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChildFailed("%s: no %r within %.0f s; output: %s" % (self.name, prefix, timeout, self.tail()))
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(5)
                raise ChildFailed("%s exited (status %s) before %r; output: %s"
                                  % (self.name, self.proc.returncode, prefix, self.tail()))
            if line.startswith(prefix):
                return line

    def wait(self, timeout):
        """Exit status, waiting at most `timeout` s; ChildFailed (after stopping it) if it lingers."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise ChildFailed("%s did not finish within %.0f s; output: %s" % (self.name, timeout, self.tail()))

    def stop(self, grace=3.0):
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.reader.join(1.0)
        if self.proc.stdout:
            self.proc.stdout.close()
        if self in CHILDREN:
            CHILDREN.remove(self)


def set_mark(workdir):
    _mark[MARK] = workdir


def stop_all():
    for child in list(reversed(CHILDREN)):
        child.stop(grace=1.0)


def free_ports(n, kind=socket.SOCK_STREAM):
    """n distinct ports free now on 127.0.0.1, all held at once so none is handed out twice."""
    held = [socket.socket(socket.AF_INET, kind) for _ in range(n)]
    try:
        for sock in held:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in held]
    finally:
        for sock in held:
            sock.close()
