"""Runs one virtual board: the board process, the bridge to its serial port, its resets.

Theory of operation. The port a user opens (ports.SerialPort) and the
board process's console (ports.Console, a pty of its own) are joined by a
byte pump in one poll loop:
- console -> port: newlines cooked as a board's UART writes them
  (console.NewlineCooker), also appended to the log file; dropped while
  no one has the port open.
- port -> console: as is, except Ctrl-C. On a board the UART interrupt
  turns Ctrl-C into KeyboardInterrupt while code runs, and the REPL reads
  it as a key otherwise. The unix port installs its SIGINT handler exactly
  while it runs code, so we send SIGINT when /proc/PID/status says that
  handler is installed and pass the byte on when it is not (where SIGINT
  would kill the process). A second SIGINT before the first is handled
  makes the unix port exit, so they are at least SIGINT_GAP_S apart: a
  Ctrl-C that comes sooner waits, and so does everything typed after it.
- the app's own lines ([wpw], [boot], [vboard]: boot errors, safe mode,
  sales) are also written to tools/vboard's stdout, so they show without
  a port open or a --log; a line that would block a full pipe is dropped.
- resets: the unix port exits where a board resets. Exit status
  boardshell.HARD_RESET is machine.reset(): we start the board again and
  main.py runs. Any other exit (Ctrl-D at the REPL, machine.soft_reset(),
  a crash) is a soft reset: we print "MPY: soft reboot" as the firmware
  does, and if the board was in the raw REPL it comes back in it without
  running main.py (boardshell --raw, and we type the Ctrl-A): mpremote
  waits for exactly that after its own soft reset. Crashes in quick
  succession are restarted with backoff.
stop() (tools/vboard's SIGTERM) kills the board process, like pulling the
power, and closes both ptys. Never leaves a process behind: the board
process's controlling terminal is its console, whose master dies with us,
so it gets SIGHUP even if we are killed outright.
"""
import collections
import fcntl
import os
import select
import signal
import subprocess
import termios
import time

from vboardlib.console import NewlineCooker, ReplMode
from vboardlib.ports import Console, SerialPort

HARD_RESET = 100  # = boardshell.HARD_RESET (that module runs under MicroPython and is not imported here)
SIGINT_GAP_S = 0.2
QUICK_EXIT_S = 2  # a board process that crashes sooner than this is restarted with backoff
TICK_S = 0.05


def _child_setup():
    """In the board process before exec: own session, console as controlling terminal, SIGINT default."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def sigint_handled(pid):
    """True when process pid catches SIGINT (the unix port is running code)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    except OSError:
        pass  # gone
    return False


class Supervisor:
    def __init__(self, command, fs_args, first_args=(), env=None, cwd=None, log_path=None):
        """command: the unix port with its options, up to and including boardshell.py."""
        self.command = list(command)
        self.fs_args = list(fs_args)
        self.first_args = list(first_args)  # --put files: first power-on only
        self.env = env
        self.cwd = cwd
        self.port = SerialPort()
        self.log = open(log_path, "ab", buffering=0) if log_path else None
        self.console = None
        self.child = None
        self.started = 0.0
        self.boots = 0
        self.quick_crashes = 0
        self.restart_at = None
        self.stopping = False
        self.cooker = NewlineCooker()
        self.mode = ReplMode()
        self.last_sigint = 0.0
        self.line = b""  # the board's output since its last newline, for echo()
        self.typed = collections.deque()  # from the port, not yet handed to the board: bytes, None for Ctrl-C

    @property
    def path(self):
        return self.port.path

    def stop(self, *_):
        """Power off at the next tick (safe to call from a signal handler)."""
        self.stopping = True

    def run(self):
        """Power on and serve until stop(); then power off."""
        try:
            self._start(raw=False)
            while not self.stopping:
                self._tick()
        finally:
            self._power_off()

    # --- the board process ------------------------------------------------------------------

    def _start(self, raw):
        self.restart_at = None
        self.console = Console()
        args = self.fs_args + (["--raw"] if raw else []) + (self.first_args if not self.boots else [])
        slave = self.console.slave_fd()
        self.child = subprocess.Popen(self.command + args, stdin=slave, stdout=slave, stderr=slave,
                                      env=self.env, cwd=self.cwd, close_fds=True, preexec_fn=_child_setup)
        self.console.close_slave()
        self.boots += 1
        self.started = time.monotonic()
        self.cooker = NewlineCooker()
        self.mode.reset()
        if raw:
            self.console.queue(b"\x01")  # back to the raw REPL, as a board that was in it

    def _exited(self, code):
        while True:  # what it printed last
            data = self.console.read()
            if not data:
                break
            self._from_board(data)
        self.console.close()
        self.console = None
        self.child = None
        if self.stopping:
            return
        if code == HARD_RESET:
            self._emit(b"\r\n[vboard] hard reset\r\n")
            raw = False
        else:
            if code < 0:
                self._emit(b"\r\n[vboard] the board process was killed by signal %d\r\n" % -code)
            self._emit(b"MPY: soft reboot\r\n")
            raw = self.mode.raw
        delay = 0
        if code not in (0, HARD_RESET) and time.monotonic() - self.started < QUICK_EXIT_S:
            self.quick_crashes += 1
            delay = min(0.25 * 2 ** (self.quick_crashes - 1), 5) if self.quick_crashes > 1 else 0
        else:
            self.quick_crashes = 0
        self.restart_at = (time.monotonic() + delay, raw)

    def _power_off(self):
        if self.child is not None and self.child.poll() is None:
            self.child.kill()
            try:
                self.child.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.child = None
        for closable in (self.console, self.port, self.log):
            if closable is not None:
                closable.close()
        self.console = None

    # --- the byte pump ----------------------------------------------------------------------

    def _tick(self):
        connected = self.port.connected()
        if not connected:
            self.port.pending.clear()  # nothing on the line: output is lost, as on a UART
        poller = select.poll()
        if self.console is not None:
            poller.register(self.console.fd, select.POLLIN | (select.POLLOUT if self.console.pending else 0))
        if connected:
            poller.register(self.port.fd, select.POLLIN | (select.POLLOUT if self.port.pending else 0))
        try:
            poller.poll(TICK_S * 1000)
        except InterruptedError:
            pass
        if self.console is not None:
            data = self.console.read()
            if data:
                self._from_board(data)
            self.console.flush()
        if connected:
            data = self.port.read()
            if data:
                self._from_port(data)
            self.port.flush()
        self._pump_typed()
        if self.child is not None:
            code = self.child.poll()
            if code is not None:
                self._exited(code)
        elif self.restart_at is not None and time.monotonic() >= self.restart_at[0]:
            self._start(raw=self.restart_at[1])

    def _from_board(self, data):
        self.mode.feed(data)
        self._emit(self.cooker.cook(data))
        self._echo(data)

    def _echo(self, data):
        lines = (self.line + data).split(b"\n")
        self.line = lines.pop()[-512:]
        for line in lines:
            line = line.rstrip(b"\r")
            if line.startswith((b"[wpw] ", b"[boot] ", b"[vboard] ")) and select.select([], [1], [], 0)[1]:
                try:
                    os.write(1, line[:1024] + b"\n")
                except OSError:
                    pass  # stdout gone: the console and the log still have it

    def _emit(self, data):
        if self.log is not None:
            self.log.write(data)
        if self.port.connected():
            self.port.queue(data)

    def _from_port(self, data):
        parts = data.split(b"\x03")
        for i, part in enumerate(parts):
            if i:
                self.typed.append(None)  # Ctrl-C, decided when its turn comes
            if part:
                self.typed.append(part)
        self._pump_typed()

    def _pump_typed(self):
        """Hand what was typed to the board in order; a Ctrl-C becomes SIGINT while code runs."""
        while self.typed:
            item = self.typed[0]
            if self.child is None or self.console is None:
                self.typed.clear()  # rebooting: keys pressed now are lost
                return
            if item is not None:
                self.console.queue(item)
            elif sigint_handled(self.child.pid):
                now = time.monotonic()
                if now - self.last_sigint < SIGINT_GAP_S:
                    return  # too soon after the last one: it waits, and what follows it waits too
                self.last_sigint = now
                os.kill(self.child.pid, signal.SIGINT)
            else:
                self.console.queue(b"\x03")  # at the REPL: a key
            self.typed.popleft()
