"""The virtual board's pseudo-terminals: the serial port users open, and the board's console.

SerialPort is the pty whose slave path tools/vboard prints (/dev/pts/N):
mpremote, screen or pyserial open it as they open /dev/ttyUSB0. We keep
only its master; while no one has the slave open, the master polls as
hung up and output is dropped, as a UART's is with nothing on the line.
Console is a fresh pty per board process (its stdin, stdout, stderr and
controlling terminal), in raw mode: the unix port switches it between raw
and its "original" mode itself, and Ctrl-C is handled by the supervisor,
not the terminal (ISIG off).

Never opens anything but /dev/ptmx and its own slaves; never blocks.
"""
import errno
import os
import select
import termios
import tty

PENDING_LIMIT = 64 * 1024  # bytes held for a slow reader before the oldest are dropped


def _raw(fd):
    tty.setraw(fd)
    attrs = termios.tcgetattr(fd)
    attrs[6][termios.VMIN] = 1
    attrs[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


class _Master:
    """A pty master with a non-blocking, bounded output queue."""

    def __init__(self):
        self.fd, slave = os.openpty()
        self.path = os.ttyname(slave)
        _raw(slave)
        os.set_blocking(self.fd, False)
        self.pending = bytearray()
        self._slave = slave

    def queue(self, data):
        self.pending += data
        excess = len(self.pending) - PENDING_LIMIT
        if excess > 0:
            del self.pending[:excess]

    def flush(self):
        """Write what the other side will take now."""
        while self.pending:
            try:
                n = os.write(self.fd, self.pending)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EIO:
                    return
                raise
            del self.pending[:n]

    def read(self):
        """Bytes available now (b"" when none, or when the other side has gone)."""
        try:
            return os.read(self.fd, 4096)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:
                return b""
            raise

    def close(self):
        for fd in (self.fd, self._slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.fd = self._slave = None


class SerialPort(_Master):
    def __init__(self):
        super().__init__()
        os.close(self._slave)  # users open it by path; we only keep the master
        self._slave = None

    def connected(self):
        """True while someone has the port open."""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        for _, events in poller.poll(0):
            if events & select.POLLHUP:
                return False
        return True


class Console(_Master):
    """The board process's terminal; slave_fd() goes to the child, then close_slave()."""

    def slave_fd(self):
        return self._slave

    def close_slave(self):
        os.close(self._slave)
        self._slave = None
