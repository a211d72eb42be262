"""Discovery over UDP: the producer's broadcaster and probe responder, and what scanner.py shares.

The reference broadcasts its broadcast message to 255.255.255.255:8980
every 5 s and scans by listening on 0.0.0.0:8980. We do the same, with one
socket for the life of a broadcaster, and add fast discovery: a consumer
sends PROBE to the probe port (8981, never 8980, whose reference scanners
take any JSON datagram for a device) and every producer there answers at
once, unicast, with its broadcast message.

asyncio has no datagram endpoints on MicroPython, so recvfrom() below is
the one adapter: it waits on the asyncio poller (MicroPython) or the loop's
sock_recvfrom (CPython). Never parses a datagram: the consumer's scanner
(scanner.py, left out of producer-only images) does.
"""
import asyncio
import errno
import socket

from wpwithin import wire
from wpwithin.compat import MICROPYTHON, const
from wpwithin.net_errors import Readable

BROADCAST_PORT = const(8980)
PROBE_PORT = const(8981)
INTERVAL_MS = const(5000)
BROADCAST_ADDRESS = "255.255.255.255"
_LOOPBACK_BROADCAST = const("127.255.255.255")
PROBE = b"WPWITHIN-PROBE/1"  # not JSON: a reference scanner that gets it by mistake ignores it
_MAX_DATAGRAM = const(1024)

def address(host, port):
    return socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0][-1]


def udp_socket(bind_port=None, broadcast=False):
    """A non-blocking UDP socket; bound to 0.0.0.0:bind_port with address reuse when given."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if broadcast:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        if bind_port is not None:
            sock.bind(address("0.0.0.0", bind_port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def recvfrom(sock, size=_MAX_DATAGRAM):
    """(datagram, sender address) from a non-blocking UDP socket, without blocking the loop."""
    if not MICROPYTHON:
        return await asyncio.get_running_loop().sock_recvfrom(sock, size)
    while True:
        try:
            return sock.recvfrom(size)
        except OSError as exc:
            if exc.errno != errno.EAGAIN:
                raise
        await Readable(sock)


class Broadcaster:
    """Sends one producer's broadcast message every interval, on one socket."""

    def __init__(self, message, destination=BROADCAST_ADDRESS, port=BROADCAST_PORT,
                 interval_ms=INTERVAL_MS, log=None):
        self.datagram = wire.encode_json(message)
        self.destination = destination
        self.port = port
        self.interval_ms = interval_ms
        self.log = log
        self.sent = 0
        self.failing = False

    async def run(self):
        sock = udp_socket(broadcast=True)
        target = address(self.destination, self.port)
        try:
            while True:
                self.send(sock, target)
                await asyncio.sleep(self.interval_ms / 1000)
        finally:
            sock.close()

    def send(self, sock, target):
        try:
            sock.sendto(self.datagram, target)
        except OSError as exc:
            if not self.failing and self.log:
                # Said once: a host with only loopback has no route to 255.255.255.255.
                self.log("broadcast to %s:%d fails (%s); still serving (loopback-only host? use %s)"
                         % (self.destination, self.port, exc, _LOOPBACK_BROADCAST))
            self.failing = True
            return
        if self.failing and self.log:
            self.log("broadcast to %s:%d works again" % (self.destination, self.port))
        self.failing = False
        self.sent += 1


class ProbeResponder:
    """Answers fast-discovery probes on the probe port with the broadcast message, unicast."""

    def __init__(self, message, port=PROBE_PORT):
        self.datagram = wire.encode_json(message)
        self.port = port
        self.answered = 0
        self.sock = None

    def open(self):
        """Bind the probe port now: a probe sent as soon as the Thing says it is up is then heard."""
        if self.sock is None:
            self.sock = udp_socket(self.port)

    async def run(self):
        self.open()
        sock = self.sock
        try:
            while True:
                data, sender = await recvfrom(sock, 64)
                if data == PROBE:
                    try:
                        sock.sendto(self.datagram, sender)
                        self.answered += 1
                    except OSError:
                        pass  # the prober went away; nothing to answer
        finally:
            sock.close()
            self.sock = None


async def cancel_all(tasks):
    """Cancel tasks and wait until each has ended."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError:
            pass
