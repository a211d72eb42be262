"""The one child-process type of the tests, the bench and the demo: always stopped, every wait bounded.

A Process runs in a session of its own (so stop() reaches everything it
started), with stdout and stderr read line by line by a thread: all of it
kept (keep=None, what a test shows when it fails) or the last `keep`
lines (a long bench run), and copied to `log` when given. `prefix` goes
before the command, e.g. ["ip", "netns", "exec", NAME]. Every Process is
in RUNNING until stopped; stop_all() (the bench and the demo call it on
exit, also on Ctrl-C or SIGTERM) stops what is left. stop() sends SIGTERM,
then SIGKILL after a grace period; it never raises. ENV is added to every
child's environment (the bench marks its children so a test can find any
left behind). Also hands out free loopback ports.
"""
import os
import queue
import signal
import socket
import subprocess
import threading
import time

RUNNING = []
ENV = {}


class Failed(RuntimeError):
    """A child exited or did not say what was expected in time; the message has its output."""

    def __init__(self, message, process=None):
        super().__init__(message)
        self.process = process


class Process:
    def __init__(self, name, argv, env=None, cwd=None, prefix=(), keep=None, log=None):
        self.name = name
        self.keep = keep
        self.lines = queue.Queue()
        self.output = []  # lines as read, each with its "\n"
        self.log = log
        environ = dict(os.environ, **ENV)
        environ.update(env or {})
        environ.pop("PYTHONUNBUFFERED", None)  # as on a machine without it: output must be flushed anyway
        self.proc = subprocess.Popen(list(prefix) + [str(a) for a in argv], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                     errors="replace", cwd=cwd, env=environ, start_new_session=True)
        RUNNING.append(self)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.output.append(line)
            if self.keep:
                del self.output[:-self.keep]
            if self.log is not None:
                self.log.write("%s: %s" % (self.name, line))
                self.log.flush()
            self.lines.put(line)
        self.lines.put(None)

    def alive(self):
        return self.proc.poll() is None

    def text(self):
        """Everything kept of its output, one string."""
        return "".join(self.output)

    def tail(self, n=6):
        """Its last n output lines, one string (for a failure reason)."""
        return " | ".join(line.rstrip("\n") for line in self.output[-n:]) or "(no output)"

    def memory_error(self):
        """The last output line that tells of a MemoryError, stripped; None if there is none."""
        for line in reversed(self.output):
            if "MemoryError" in line:
                return line.strip()
        return None

    def _shown(self):
        return ("output:\n" + self.text()) if self.keep is None else "output: " + self.tail()

    def expect(self, prefix, timeout=20):
        """The first output line starting with `prefix`, stripped; Failed if it exits or the time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failed("%s: no line starting %r within %s s (exit %s); %s"
                             % (self.name, prefix, timeout, self.proc.poll(), self._shown()), self)
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line is None:
                self.reader.join(5)
                raise Failed("%s exited (status %s) before a line starting %r; %s"
                             % (self.name, self.proc.wait(5), prefix, self._shown()), self)
            if line.startswith(prefix):
                return line.strip()

    def wait(self, timeout):
        """Its exit status once it ends and all its output is read; Failed (after stopping it) if it lingers."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop(signal.SIGKILL)
            raise Failed("%s did not finish within %s s; %s" % (self.name, timeout, self._shown()), self)
        self.reader.join(5)
        return self.proc.returncode

    def stop(self, sig=signal.SIGTERM, grace=5.0, group=True):
        """Send `sig` (to its process group, or with group=False to it alone), SIGKILL the group if it
        lingers past `grace` s; returns the exit status."""
        if self.proc.poll() is None:
            try:
                if group:
                    os.killpg(self.proc.pid, sig)
                else:
                    self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                _kill_group(self.proc.pid)
                self.proc.wait(5)
        if group:
            _kill_group(self.proc.pid)  # anything of its group left behind
        self.reader.join(1.0)
        if self in RUNNING:
            RUNNING.remove(self)
        return self.proc.returncode


def _kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def stop_all(grace=1.0):
    for process in list(reversed(RUNNING)):
        process.stop(grace=grace)


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


def free_port(kind=socket.SOCK_STREAM):
    """A port no one uses now on 127.0.0.1 (TCP by default, or UDP)."""
    return free_ports(1, kind)[0]
