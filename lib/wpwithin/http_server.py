"""HTTP/1.1 server for a Thing's REST API, on asyncio, with hard limits.

Moves bytes between sockets and http1 (which parses and refuses) and an
async handler `handler(method, path, headers, body) -> (status, body_bytes)`
(which decides). Keeps connections alive (HTTP/1.1 default; "Connection:
close" and HTTP/1.0 close), answers every refusal with the reference's JSON
error body and closes, answers a failing handler with 500 and keeps
serving. A HEAD request is handed to the handler as GET and answered
without the body. Never parses HTTP itself, never routes, never logs a
header, body or query string (they may hold keys and tokens).

Theory of operation:

    A connection is served in a slot: a buffer of max(head limit, body
    limit) bytes and a reusable parser, so a request allocates only what it
    hands the handler (path, a few header values, body bytes). start() makes
    one slot. An accepted connection takes a free slot; when none is free
    and fewer than max_connections exist, a new one is made and kept for
    the next connection (a producer that serves one connection at a time
    holds one slot, not max_connections); failing that (or when the heap has
    no room for another) it takes the slot of a kept-alive connection that
    is idle between requests; failing that it gets an immediate 503 and is
    closed unread.
    A connection reads into its slot with reader.read()/readinto() (never
    readline(), which has no cap on MicroPython), lets the parser look at
    what it has, and reads again, never past the buffer's end.
    Timeouts cost no allocation per read: before each read a connection
    sets its slot's deadline (now + read_timeout, but no later than
    request_timeout after the request's first byte; idle_timeout between
    kept-alive requests), and one watchdog task cancels connections whose
    deadline has passed. So a client that sends nothing, or trickles, is
    dropped on time and never stalls another: every connection is its own
    task. Deadlines are checked every quarter of the shortest timeout.

Measured (MicroPython 1.29 unix port, 64-bit, where objects are up to
twice an ESP32's size): a Go client's GET allocates about 0.97 KB of heap
per request, its 61-byte POST about 1.2 KB (path, header values, body,
and asyncio's own per-await objects); 200 keep-alive requests keep 64
bytes. Fixed cost: 2 KB per slot (a buffer of max(head, body) limits,
1.3 KB by default, its parser and state): one made at start(), others
when that many connections are open at once, kept, at most max_connections.
host_tests/test_http_tls.py::test_heap_per_request_of_the_server_under_micropython
re-measures this.
"""
import asyncio
import sys

from wpwithin import http1, wire
from wpwithin.compat import MICROPYTHON, const
from wpwithin.errors import ProtocolError
from wpwithin.net_errors import Readable

try:
    from time import ticks_add, ticks_diff, ticks_ms
except ImportError:  # CPython: no wrap-around; int's own methods cost no function here on a board
    from time import monotonic

    def ticks_ms():
        return int(monotonic() * 1000)

    ticks_add = int.__add__
    ticks_diff = int.__sub__

_REQUEST_TIMEOUT = const(408)

# Defaults for a Thing on WiFi, as folded constants (no global, no float object each). The
# reference's Go client keeps idle connections for 90 s; 30 s keeps most of that reuse, and an
# idle connection gives its slot up to a new one anyway.
_READ_TIMEOUT = const(5)  # seconds one read may wait
_REQUEST_DEADLINE = const(10)  # seconds from a request's first byte to its last
_IDLE_TIMEOUT = const(30)  # seconds a kept-alive connection may wait for its next request
_MAX_CONNECTIONS = const(4)  # lwIP on an ESP32 has 10 sockets for everything
_LINGER_MS = const(1000)  # spent discarding input after an error, so the answer is not lost to a reset
_BUSY_DRAIN = const(1024)  # bytes of a refused connection's request read before closing it
_BUSY_LINGER = const(0.1)  # seconds that read may wait
_LISTEN_RETRY_MS = const(20)  # the accept loop's pause after a failed accept
_STALL = const(1)  # seconds after which a connection still sending its request may lose its slot to a new one


def _ms(seconds, name):
    if not isinstance(seconds, (int, float)) or seconds <= 0:
        raise ValueError("%s must be a positive number of seconds" % name)
    return max(1, int(seconds * 1000))


def _error_body(status, message):
    return wire.encode_json(wire.error(status, message))


class _Slot:
    """One connection's buffer, parser and deadline; made for the first connection that needs it, then reused."""

    def __init__(self, limits):
        self.buf = bytearray(limits.buffer)
        self.mv = memoryview(self.buf)
        self.parser = http1.RequestParser(limits)
        self.task = None
        self.readinto = None
        self.start = 0  # unprocessed input is buf[start:end]
        self.end = 0
        self.deadline = 0
        self.armed = False
        self.expired = False  # set by the watchdog before it cancels the task
        self.idle = False  # kept alive, waiting for the next request
        self.busy = False  # a whole request is in: being handled or answered
        self.waiting_since = 0  # ticks when it began waiting for the request it is reading


class Server:
    """Serves `handler` on host:port; `port` is the bound port after start()."""

    def __init__(self, handler, host="0.0.0.0", port=64521, limits=None,
                 max_connections=_MAX_CONNECTIONS, read_timeout=_READ_TIMEOUT,
                 request_timeout=_REQUEST_DEADLINE, idle_timeout=_IDLE_TIMEOUT, log=None, backlog=5,
                 stall_timeout=_STALL):
        if type(max_connections) is not int or max_connections < 1:
            raise ValueError("max_connections must be a positive integer")
        self.handler = handler
        self.host = host
        self.port = port
        self.limits = limits or http1.DEFAULT_LIMITS
        if self.limits.buffer < http1.HEAD_ROOM:
            raise ValueError("limits below HEAD_ROOM")
        self.max_connections = max_connections
        self.read_ms = _ms(read_timeout, "read_timeout")
        self.request_ms = _ms(request_timeout, "request_timeout")
        self.idle_ms = _ms(idle_timeout, "idle_timeout")
        self.linger_ms = min(self.read_ms, _LINGER_MS)
        self.stall_ms = _ms(stall_timeout, "stall_timeout")
        self._tick_ms = max(5, min(self.read_ms, self.request_ms, self.idle_ms) // 4)
        self.log = log or (lambda message: sys.stderr.write("http_server: %s\n" % message))
        self.backlog = backlog
        self.slots = []  # _Slot objects, made as needed up to max_connections and kept (heap_report counts them)
        self._server = None
        self._watchdog = None
        # Answers made once, so refusing costs nothing at the worst moment.
        self._busy = self._answer(503, "too many connections; try again shortly")
        # What refused connections' requests are read into and dropped: shared, made at the first
        # refusal and kept. A buffer per refusal (Stream.read) is what runs a busy producer's small
        # heap out.
        self._drain = None
        self._timed_out = self._answer(_REQUEST_TIMEOUT, "request not received in time")

    @staticmethod
    def _answer(status, message):
        body = _error_body(status, message)
        return http1.response_head(status, len(body), True) + body

    @property
    def connections(self):
        """Connections being served now."""
        n = 0
        for slot in self.slots:
            if slot.task is not None:
                n += 1
        return n

    async def start(self):
        """Bind and listen; on return `port` is the bound port."""
        if self._server is not None:
            raise RuntimeError("server already started")
        if not self.slots:  # one slot at start: a heap too small to serve one connection fails here, not later
            self.slots.append(_Slot(self.limits))
        port = self.port
        tries = 8 if port == 0 and MICROPYTHON else 1
        while True:
            if port == 0 and MICROPYTHON:
                port = _free_port(self.host)
            try:
                # Both set SO_REUSEADDR (CPython: reuse_address defaults to True on POSIX), so a
                # soft reset can rebind.
                if MICROPYTHON:
                    self._server = asyncio.create_task(self._listen(_listening(self.host, port, self.backlog)))
                    await asyncio.sleep(0)  # inside its try: a cancel now closes the socket
                else:
                    self._server = await asyncio.start_server(self._accept, self.host, port, backlog=self.backlog)
                break
            except OSError:
                tries -= 1
                if not tries:
                    raise
                port = 0  # lost a race for a probed port: probe again
        sockets = getattr(self._server, "sockets", None)
        self.port = sockets[0].getsockname()[1] if sockets else port
        self._watchdog = asyncio.create_task(self._watch())

    def close(self):
        """Stop accepting and drop every connection (a request being handled is abandoned)."""
        if self._server is not None:
            (self._server.cancel if MICROPYTHON else self._server.close)()
        if self._watchdog is not None:
            self._watchdog.cancel()
        for slot in self.slots:
            if slot.task is not None:
                slot.task.cancel()

    async def wait_closed(self):
        """Wait until close() has finished."""
        server = self._server
        if server is not None and not MICROPYTHON:
            await server.wait_closed()
            server = None
        for task in (server, self._watchdog) + tuple(slot.task for slot in self.slots):
            if task is not None:
                try:
                    await task
                except asyncio.CancelledError:
                    pass  # the cancellation close() asked for
        self._watchdog = None
        self._server = None

    # --- timeouts ---------------------------------------------------------------------

    async def _watch(self):
        sleep_ms = getattr(asyncio, "sleep_ms", None)  # no float per wake-up on MicroPython
        while True:
            if sleep_ms is not None:
                await sleep_ms(self._tick_ms)
            else:
                await asyncio.sleep(self._tick_ms / 1000)
            now = ticks_ms()
            for slot in self.slots:
                if slot.armed and slot.task is not None and ticks_diff(now, slot.deadline) >= 0:
                    slot.armed = False
                    slot.expired = True
                    slot.task.cancel()

    @staticmethod
    def _arm(slot, ms, until=None):
        deadline = ticks_add(ticks_ms(), ms)
        if until is not None and ticks_diff(until, deadline) < 0:
            deadline = until
        slot.deadline = deadline
        slot.armed = True

    # --- connections -----------------------------------------------------------------

    async def _listen(self, sock):
        """MicroPython's accept loop, in place of asyncio.start_server's: that one ends for good when
        the heap has no room for a poller entry or a task, and the Thing would serve no more. Here the
        connection waits in the backlog (or is closed, if it was accepted) and the loop goes on."""
        try:
            while True:
                try:
                    await Readable(sock)
                    conn, _ = sock.accept()
                except Exception:  # noqa: gone before it was accepted, no socket or no heap left:
                    await asyncio.sleep_ms(_LISTEN_RETRY_MS)  # (no allocation) let the others finish first
                    continue
                try:
                    conn.setblocking(False)
                    stream = asyncio.StreamReader(conn)
                    asyncio.create_task(self._accept(stream, stream))
                except Exception:  # noqa: no heap for its task: closed, as if refused, and tried again
                    conn.close()
        finally:
            sock.close()

    def _take_slot(self):
        for slot in self.slots:
            if slot.task is None:
                return slot
        if len(self.slots) < self.max_connections:
            try:  # 2 KB, kept: made again per connection, it would fragment the heap
                slot = _Slot(self.limits)
            except MemoryError:
                return None  # answered 503 like a full house: the client retries
            self.slots.append(slot)
            return slot
        return None

    async def _evict(self):
        """Close the connection a new one may take the slot of, when all are in use; True if one was.

        First one kept alive between requests; else the one that has been
        sending its request longest, if that is over stall_timeout: a
        client that trickles or sends nothing cannot starve honest ones,
        which send a request in one go.
        """
        now = ticks_ms()
        victim = None
        for slot in self.slots:
            if slot.task is None or slot.busy:
                continue
            if slot.idle:
                victim = slot
                break
            waited = ticks_diff(now, slot.waiting_since)
            if waited >= self.stall_ms and (victim is None or waited > ticks_diff(now, victim.waiting_since)):
                victim = slot
        if victim is None:
            return False
        task = victim.task
        victim.armed = False
        victim.expired = True
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass  # it was cancelled before it could run its handler
        return True

    async def _accept(self, reader, writer):
        slot = self._take_slot()
        if slot is None:
            try:
                if await self._evict():
                    slot = self._take_slot()
            except asyncio.CancelledError:
                pass  # close() was called meanwhile: refuse, as when busy
        if slot is None:
            # Refused without a slot: a small answer to a fresh socket fits its
            # send buffer. Then one short read of the request, because closing
            # with unread input makes the kernel reset the connection, and a
            # reset can destroy the answer before the client has read it.
            _say(writer, self._busy)
            readinto = getattr(reader, "readinto", None)  # MicroPython: into the one drain buffer
            try:
                if readinto is not None and self._drain is None:
                    self._drain = bytearray(_BUSY_DRAIN)
                await asyncio.wait_for(readinto(self._drain) if readinto else reader.read(_BUSY_DRAIN), _BUSY_LINGER)
            except Exception:  # noqa: nothing came, the peer left, or no heap to spare: close either way
                pass
            await _close(writer)
            return
        slot.task = asyncio.current_task()
        slot.readinto = getattr(reader, "readinto", None)  # MicroPython: reads with no copy
        slot.expired = False
        slot.idle = False
        slot.busy = False
        slot.waiting_since = ticks_ms()
        slot.start = slot.end = 0
        try:
            await self._converse(slot, reader, writer)
        except asyncio.CancelledError:
            # The watchdog (slot.expired) or close(): either way this
            # connection ends here. Not re-raised: a connection task that
            # ends cancelled makes CPython's stream protocol report an error.
            if slot.expired and slot.end > slot.start and not slot.idle:
                _say(writer, self._timed_out)  # a partial request: say why it is dropped
        except OSError:
            pass  # the peer reset or went away: nothing left to answer
        except Exception as exc:  # our own bug must not take the server down
            self.log("connection failed: %s %s" % (type(exc).__name__, exc))
        finally:
            slot.armed = False
            slot.idle = False
            slot.busy = False
            slot.task = None
            slot.readinto = None
            await _close(writer)

    async def _converse(self, slot, reader, writer):
        """Serve requests on one connection until it closes.

        One coroutine for the whole request cycle, helpers synchronous:
        on MicroPython every coroutine call allocates its frame, so
        splitting this up would cost heap on every request.
        """
        parser = slot.parser
        buf = slot.buf
        first = True
        while True:
            parser.reset()
            began = None
            slot.idle = not first and slot.start == slot.end
            try:
                while True:  # the head
                    if slot.end > slot.start:
                        if began is None:
                            began = ticks_add(ticks_ms(), self.request_ms)
                            slot.idle = False
                        head = parser.parse(buf, slot.start, slot.end)
                        if head is not None:
                            break
                    if slot.end == len(buf):
                        _compact(slot)  # the parser keeps offsets from start: unaffected
                    if began is None:
                        self._arm(slot, self.read_ms if first else self.idle_ms)
                    else:
                        self._arm(slot, self.read_ms, began)
                    if not _got(slot, await _reading(slot, reader, len(buf))):
                        return  # closed: between requests, or mid-head (nothing to answer)
                slot.start += parser.consumed
                need = parser.content_length
                if need:  # the body
                    if parser.expect_continue and slot.end - slot.start < need:
                        writer.write(http1.CONTINUE)
                        self._arm(slot, self.read_ms)
                        await writer.drain()
                    if slot.start + need > len(buf):
                        _compact(slot)
                    while slot.end - slot.start < need:
                        self._arm(slot, self.read_ms, began)
                        if not _got(slot, await _reading(slot, reader, slot.start + need)):
                            return  # the peer closed mid-body
                    body = bytes(slot.mv[slot.start:slot.start + need])  # one copy: a slice of buf would be two
                    slot.start += need
                else:
                    body = b""
                slot.armed = False
                slot.busy = True
                if slot.start == slot.end:
                    slot.start = slot.end = 0
            except ProtocolError as exc:
                # Answer with the JSON error, then close after a short linger: read and drop
                # what the client is still sending (at most two buffers' worth, for at most
                # linger_ms), as closing with unread input makes the kernel send a reset, which
                # can destroy our answer.
                slot.start = slot.end = 0  # what was read is of no more use
                writer.write(_response(slot, exc.status, _error_body(exc.status, exc.message), True, False))
                self._arm(slot, self.read_ms)
                await writer.drain()
                budget = 2 * len(buf)
                self._arm(slot, self.linger_ms)
                while budget > 0:
                    slot.start = slot.end = 0
                    n = _got(slot, await _reading(slot, reader, len(buf)))
                    if not n:
                        break
                    if n > 0:
                        budget -= n
                slot.armed = False
                slot.start = slot.end = 0
                return
            method, path, headers = head
            try:
                # HEAD is GET without the body (RFC 9110 9.3.2): same status, same Content-Length.
                status, out = await self.handler("GET" if method == "HEAD" else method, path, headers, body)
                if type(status) is not int or not 200 <= status <= 599 or not isinstance(out, (bytes, bytearray)):
                    raise TypeError("handler result not (200-599, bytes)")
            except ProtocolError as exc:
                status, out = exc.status, _error_body(exc.status, exc.message)
            except Exception as exc:  # a failing handler must not take the server down
                q = path.find("?")
                self.log("handler failed on %s %s: %s" % (method, path if q < 0 else path[:q], type(exc).__name__))
                status, out = 500, _error_body(500, "internal error")
            close = not parser.keep_alive
            writer.write(_response(slot, status, out, close, method == "HEAD"))
            self._arm(slot, self.read_ms)  # a peer that never reads cannot hold the slot
            await writer.drain()
            slot.armed = False
            slot.busy = False
            slot.waiting_since = ticks_ms()
            if close:
                return
            first = False


def _reading(slot, reader, stop):
    """The awaitable that reads into buf[end:stop] (readinto on MicroPython: no copy)."""
    if slot.readinto is not None:
        return slot.readinto(slot.mv[slot.end:stop])
    return reader.read(stop - slot.end)


def _got(slot, got):
    """Account for what _reading() gave: the byte count, 0 at end of stream."""
    if got is None:
        return -1  # MicroPython: woken without data (EAGAIN); read again
    if isinstance(got, int):
        n = got
    else:
        n = len(got)
        slot.buf[slot.end:slot.end + n] = got
    slot.end += n
    return n


def _response(slot, status, body, close, head_only):
    """Bytes of the whole response, built in the slot's buffer when they fit."""
    size = 0 if head_only else len(body)
    buf = slot.buf
    if slot.start == slot.end and http1.HEAD_ROOM + size <= len(buf):
        # Head and body in one write from the slot's buffer: one segment,
        # no Nagle stall, no allocation.
        n = http1.write_response_head(buf, status, len(body), close)
        if size:
            buf[n:n + size] = body
        if MICROPYTHON:
            return slot.mv[:n + size]  # Stream.write copies whatever it cannot send at once
        # CPython's transport may keep a view of what it could not send
        # yet; the slot's buffer is reused, so hand it a copy.
        return bytes(buf[:n + size])
    head = http1.response_head(status, len(body), close)  # pipelined input waits in buf, or a large body
    return head + body if size else head


def _compact(slot):
    """Move unprocessed input to the front of the buffer (only with pipelined or split input)."""
    n = slot.end - slot.start
    if slot.start:
        slot.buf[0:n] = slot.buf[slot.start:slot.end]
        slot.start = 0
        slot.end = n


def _say(writer, data):
    """Write a last answer without waiting; a peer already gone is no error."""
    try:
        writer.write(data)
    except OSError:
        pass  # reset by the peer: there is no one left to tell


async def _close(writer):
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass  # already reset by the peer: closed either way


def _listening(host, port, backlog):
    """A non-blocking socket listening on host:port (MicroPython)."""
    import socket

    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(socket.getaddrinfo(host, port)[0][-1])
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _free_port(host):
    """A port nobody listens on, for port 0 on MicroPython (its sockets have no getsockname).

    Probes random ports from the dynamic range; a tiny race remains until
    start_server binds it, which start() covers by probing again.
    """
    import errno
    import os
    import socket

    for _ in range(32):
        r = os.urandom(2)
        port = 49152 + ((r[0] << 8) | r[1]) % 16384
        s = socket.socket()
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(socket.getaddrinfo(host, port)[0][-1])
            return port
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
        finally:
            s.close()
    raise OSError(errno.EADDRINUSE, "no free port found")
