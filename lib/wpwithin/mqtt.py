"""A small MQTT 3.1.1 client on asyncio streams, for both runtimes; its packets are mqtt_wire's.

Connecting, every send and every read has a deadline (TIMEOUT_MS by
default, the HTTP server's per-read deadline), so a dead or slow broker
costs the task that waits on it at most that, and never holds up the
loop. One task at a time uses a Client. Over mqtts the broker's
certificate and host name are checked against the CAs of the ssl context
(tls.tls_context()). Every failure is an MQTTError; its message names the
broker and the step, never a password or a payload.

Why not stock firmware's umqtt.simple/umqtt.robust: they use a blocking
socket (connect, send and a read of the whole packet each block the
caller), so any wait on the broker (a slow link, a broker that stopped
answering, a reconnect loop with time.sleep in robust) would stop the
asyncio loop and with it the HTTP server and sales; a socket timeout only
bounds how long each stall lasts. They also check packets with assert and
allocate a topic and payload of whatever size the broker announces.

Limits: on MicroPython, open_connection resolves a host name with a
blocking getaddrinfo (give the broker as an IP address where DNS is slow),
and a TLS handshake's key exchange is computed in one step.
"""
import asyncio

from wpwithin import mqtt_wire as wire
from wpwithin.compat import MICROPYTHON, const
from wpwithin.errors import nth
from wpwithin.net_errors import wait_for
from wpwithin.mqtt_wire import MQTTError  # noqa: F401  (mqtt.MQTTError is the public name)

if MICROPYTHON:
    from time import ticks_add, ticks_diff, ticks_ms
else:
    import time

    def ticks_ms():
        return int(time.monotonic() * 1000)

    ticks_add = int.__add__
    ticks_diff = int.__sub__

TIMEOUT_MS = const(5000)  # connecting, each send, and waiting for an answer (http_server's read deadline)
MAX_PACKET = const(2048)  # remaining length of a packet the client accepts
MAX_QUEUED = const(8)  # messages kept while waiting for an acknowledgement
_READ = const(256)
_WHY = const("%s %s timed out after %d ms|%s %s failed: %s|%s closed the connection|no %s from %s within %d ms|"
             "%s sent CONNACK twice|not connected to %s|more than %d messages from %s while waiting for %s|"
             "TLS with %s failed: %s")
_DOING = const("connecting to|sending to|reading from")


def parse_url(url):
    """(tls, host, port) of mqtt://HOST[:PORT] (1883) or mqtts://HOST[:PORT] (8883); ValueError if it is neither."""
    scheme, sep, rest = url.partition("://")
    host, colon, port = rest.rpartition(":")
    if not colon or rest.endswith("]"):
        host, port = rest, "8883" if scheme == "mqtts" else "1883"
    host = host.strip("[]")  # an IPv6 address in brackets
    if (not sep or scheme not in ("mqtt", "mqtts") or not host or not port.isdigit() or not 0 < int(port) < 65536
            or "/" in host or "@" in host or " " in host):
        raise ValueError("must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    return scheme == "mqtts", host, int(port)


def client_for(url, ca_path, client_id, username, password, keepalive=60, will=None, max_packet=MAX_PACKET):
    """A Client for a configured broker url (parse_url's); over mqtts verified against the CA file at ca_path."""
    tls, host, port = parse_url(url)
    ssl = None
    if tls:
        from wpwithin.tls import tls_context

        with open(ca_path, "rb") as f:
            ssl = tls_context(cadata=f.read())
    return Client(host, port, client_id, username, password, keepalive, will, ssl, max_packet=max_packet)


class Client:
    """One MQTT session with one broker: connect(), then publish/subscribe/recv/ping, then disconnect()."""

    def __init__(self, host, port, client_id, username=None, password=None, keepalive=60, will=None,
                 ssl=None, server_hostname=None, max_packet=MAX_PACKET, timeout_ms=TIMEOUT_MS):
        """will is (topic, payload, retain): published by the broker, at QoS 0, if we drop off without
        disconnect(). ssl is an ssl.SSLContext (tls.tls_context()) for mqtts."""
        self.host = host
        self.port = port
        self.client_id = client_id
        self.username = username
        self._password = password  # never logged, never in an error
        self.keepalive = keepalive
        self.will = will
        self.ssl = ssl
        self.server_hostname = server_hostname
        self.max_packet = max_packet
        self.timeout_ms = timeout_ms
        self._where = "broker %s:%s" % (host, port)
        self._reader = self._writer = None
        self._pending = b""
        self._queue = []
        self._pid = 0
        self._sent_at = 0
        self._ping_sent = None  # ticks of a PINGREQ not yet answered
        self.session_present = False

    @property
    def connected(self):
        return self._writer is not None

    async def connect(self, timeout_ms=TIMEOUT_MS):
        """Open the connection and the session; MQTTError if that fails or the broker refuses (`code`)."""
        self.close()
        deadline = ticks_add(ticks_ms(), timeout_ms)
        if self.ssl is not None:
            opening = asyncio.open_connection(self.host, self.port, ssl=self.ssl,
                                              server_hostname=self.server_hostname or self.host)
        else:
            opening = asyncio.open_connection(self.host, self.port)
        self._reader, self._writer = await self._io(opening, timeout_ms, 0)
        try:
            await self._send(wire.connect(self.client_id, self.keepalive, self.username, self._password,
                                          self.will), 0)
            got = await self._next(max(0, ticks_diff(deadline, ticks_ms())), True)
            if got is None or got[0] != wire.CONNACK:
                raise MQTTError(nth(_WHY, 3) % ("CONNACK", self._where, timeout_ms))
            if got[1]:
                raise wire.refusal(got[1])
            self.session_present = got[2]
        except BaseException:
            self.close()
            raise

    async def publish(self, topic, payload, retain=False, qos=0):
        """Send one message; at QoS 1 return once the broker's PUBACK is in."""
        pid = 0
        if qos:
            pid = self._pid = self._pid % 65535 + 1
        await self._send(wire.publish(topic, payload, retain, qos, pid))
        if qos:
            await self._wait(wire.PUBACK, pid)

    async def subscribe(self, topic_filter, qos=0):
        """Subscribe to one topic filter; return the QoS granted (MQTTError if the broker refuses)."""
        pid = self._pid = self._pid % 65535 + 1
        await self._send(wire.subscribe(pid, topic_filter, qos))
        code = (await self._wait(wire.SUBACK, pid))[2]
        if code == 0x80:
            raise MQTTError("%s refused the subscription to %s" % (self._where, topic_filter))
        return code

    async def recv(self, timeout_ms):
        """(topic, payload bytes, retain) of the next message, or None if none comes within timeout_ms.

        Sends a PINGREQ when nothing was sent for half the keepalive, and
        raises MQTTError if its PINGRESP does not come within the same time.
        """
        deadline = ticks_add(ticks_ms(), timeout_ms)
        while not self._queue:
            left = ticks_diff(deadline, ticks_ms())
            if left <= 0:
                return None
            half = self.keepalive * 500
            if half:
                now = ticks_ms()
                if self._ping_sent is not None:
                    if ticks_diff(now, self._ping_sent) >= half:
                        self.close()
                        raise MQTTError(nth(_WHY, 3) % ("PINGRESP", self._where, half))
                    left = min(left, half - ticks_diff(now, self._ping_sent))
                elif ticks_diff(now, self._sent_at) >= half:
                    await self._send(wire.PINGREQ)
                    self._ping_sent = ticks_ms()
                    continue
                else:
                    left = min(left, half - ticks_diff(now, self._sent_at))
            got = await self._next(max(1, left))
            if got is not None and got[0] == wire.PUBLISH:
                return got[1], got[2], got[3]
        message = self._queue.pop(0)
        return message[1], message[2], message[3]

    async def ping(self):
        """PINGREQ, and wait for the PINGRESP: proves the broker still answers."""
        await self._send(wire.PINGREQ)
        self._ping_sent = ticks_ms()
        await self._wait(wire.PINGRESP, 0)

    async def disconnect(self):
        """Say DISCONNECT (the broker then drops the will) and close."""
        try:
            if self._writer is not None:
                await self._send(wire.DISCONNECT)
        finally:
            self.close()

    def close(self):
        """Close the connection at once, without DISCONNECT: the broker publishes the will."""
        writer = self._writer
        self._reader = self._writer = None
        self._pending = b""
        self._queue = []
        self._ping_sent = None
        if writer is None:
            return
        transport = getattr(writer, "transport", None)  # CPython: abort, never wait for the peer
        if transport is not None:
            transport.abort()
        else:
            writer.s.close()  # MicroPython: Stream.close() does nothing, wait_closed() closes the socket

    # --- steps ----------------------------------------------------------------------

    async def _wait(self, kind, pid):
        """The packet of `kind` (and packet id) that answers ours; messages meanwhile are queued."""
        deadline = ticks_add(ticks_ms(), self.timeout_ms)
        while True:
            got = await self._next(max(0, ticks_diff(deadline, ticks_ms())))
            if got is None:
                self.close()  # the answer may still come: the session is in an unknown state
                raise MQTTError(nth(_WHY, 3) % (nth(wire.NAMES, kind), self._where, self.timeout_ms))
            if got[0] == wire.PUBLISH:
                if len(self._queue) >= MAX_QUEUED:
                    self.close()
                    raise MQTTError(nth(_WHY, 6) % (MAX_QUEUED, self._where, nth(wire.NAMES, kind)))
                self._queue.append(got)
            elif got[0] == kind and (kind == wire.PINGRESP or got[1] == pid):
                return got

    async def _next(self, ms, connecting=False):
        """The next packet from the broker, decoded, or None if none is complete within ms."""
        if self._reader is None:
            raise MQTTError(nth(_WHY, 5) % self._where)
        deadline = ticks_add(ticks_ms(), ms)
        while True:
            pending = self._pending
            try:
                framed = wire.frame(pending, self.max_packet) if pending else None
                if framed is not None:
                    first, start, end = framed
                    self._pending = pending[end:]
                    got = wire.decode(first, pending[start:end])
                    break
            except MQTTError as exc:
                self.close()
                raise MQTTError("%s: %s" % (self._where, exc.message))
            left = ticks_diff(deadline, ticks_ms())
            if left <= 0:
                return None
            try:
                data = await wait_for(self._reader.read(_READ), left / 1000)
            except asyncio.CancelledError:
                raise
            except asyncio.TimeoutError:
                return None  # what arrived of a packet stays in _pending for the next call
            except BaseException as exc:
                self.close()
                raise self._failure(exc, 2)
            if not data:
                self.close()
                raise MQTTError(nth(_WHY, 2) % self._where)
            self._pending = pending + data
        kind = got[0]
        if kind == wire.CONNACK and not connecting:
            self.close()
            raise MQTTError(nth(_WHY, 4) % self._where)
        if kind == wire.PINGRESP:
            self._ping_sent = None
        elif kind == wire.PUBLISH and got[4]:
            await self._send(wire.puback(got[5]))
        return got

    async def _send(self, data, doing=1):
        writer = self._writer
        if writer is None:
            raise MQTTError(nth(_WHY, 5) % self._where)
        try:
            try:
                writer.write(data)  # MicroPython's write sends what it can at once, and may raise
            except (OSError, ValueError) as exc:  # ValueError: MicroPython's TLS refusals
                raise self._failure(exc, doing)
            await self._io(writer.drain(), self.timeout_ms, doing)
        except BaseException:
            self.close()
            raise
        self._sent_at = ticks_ms()

    async def _io(self, awaitable, ms, doing):
        """await awaitable within ms; a failure as the MQTTError saying what we were `doing`."""
        try:
            return await wait_for(awaitable, ms / 1000)
        except asyncio.CancelledError:
            raise
        except asyncio.TimeoutError:  # before OSError: CPython's is one
            raise MQTTError(nth(_WHY, 0) % (nth(_DOING, doing), self._where, ms))
        except BaseException as exc:
            raise self._failure(exc, doing)

    def _failure(self, exc, doing):
        if isinstance(exc, MQTTError):
            return exc
        tls = self.ssl is not None and isinstance(exc, ValueError)
        if not (tls or isinstance(exc, (OSError, EOFError))):
            return exc  # not a network failure (a bug, KeyboardInterrupt): let it through as it is
        name = type(exc).__name__
        text = ""
        for a in exc.args:
            if isinstance(a, (str, int)):
                text += " " + str(a).strip()
        reason = name + text[:120]
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        # mbedTLS errors are OSErrors with codes below -0x100; CPython's are ssl.SSLError and its kin
        if tls or self.ssl is not None and (name.startswith("SSL") or name.startswith("Certificate")
                                            or code < -0x100):
            return MQTTError(nth(_WHY, 7) % (self._where, reason))
        return MQTTError(nth(_WHY, 1) % (nth(_DOING, doing), self._where, reason))
