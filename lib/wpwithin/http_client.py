"""HTTP/1.1 client for talking to producers and to the payment gateway, on asyncio.

request() makes one request on a fresh connection; Connection keeps one
alive for several. Connecting, sending and every read have a timeout;
HTTPS verifies the server's certificate and host name against the CA
certificates of the ssl context given (gateway_client.tls_context()).
Every failure is a NetError subtype (net_errors). Never disables
certificate checks, never logs, and never puts headers or bodies (they
carry keys and tokens) into an error message. The response parsing lives
here, not in http1, so a producer loads it only with its gateway client,
when the first payment comes.
"""
import asyncio
import errno

from wpwithin import http1
from wpwithin.compat import const
from wpwithin.errors import ProtocolError, nth
from wpwithin.net_errors import (BadResponse, ConnectFailed, ConnectionDropped, HttpTimeout, NetError, TlsFailed,
                                 wait_for)

_TIMEOUT = const(5)  # seconds for connecting, for sending and for each read
_MAX_RESPONSE_BODY = const(4096)  # response body the client accepts
_MAX_CHUNK_LINE = const(128)  # chunk-size line with extensions, CRLF excluded
# Response framing (ResponseParser.length when it is not a byte count).
_CHUNKED = const(-1)
_UNTIL_CLOSE = const(-2)
_SP = const(32)
_HT = const(9)
_CR = const(13)
_READ_SIZE = const(512)
# errno values meaning "no connection" (MicroPython's errno has no ENETUNREACH).
_REFUSED = (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ETIMEDOUT, getattr(errno, "ENETUNREACH", 0))
# The failures' phrases in one string, by number (a string object each cost 0.9 KB more heap),
# and what the client was doing (_failure's `doing`: _CONNECTING, _SENDING, _READING).
_WHY = const("response is not HTTP/1.x|malformed status line|response Transfer-Encoding not supported|"
             "response body over %d bytes|chunk framing line too long|chunk framing line ends in a bare LF|"
             "bad chunk size|chunk data longer than its size|%s closed the connection before answering|"
             "%s closed the connection mid-body|%s %s timed out after %s s|TLS with %s failed: %s|"
             "cannot connect to %s: %s|%s %s failed: %s|%s closed the connection|method must be an HTTP token|"
             "path must start with / and hold printable ASCII only|body must be bytes|"
             "header %s is set by the client|header %s has a bad name or value")
_DOING = const("connecting to|sending to|reading from")
_CONNECTING = const(0)
_SENDING = const(1)
_READING = const(2)


def _ok(text, token):
    """`text` is an HTTP token (`token`), or printable ASCII and tabs (not `token`).

    Reads bytes: iterating a str makes each character it holds a name MicroPython never frees."""
    data = text.encode()
    if token:
        return http1.is_token(data, 0, len(data))
    for o in data:
        if o > 126 or (o < 32 and o != 9):
            return False
    return True


class ResponseParser(http1.RequestParser):
    """Incremental response-head parser for the client; every failure is ProtocolError(502).

    parse() returns (status, headers) once the head is complete (headers
    holds "content-type" and the other non-framing fields we know); then
    `length` says how the body is framed: a byte count, _CHUNKED (-1) or
    _UNTIL_CLOSE (-2: no length given: the body ends when the server closes).
    Set `head_request` after reset() when the request was HEAD: no body follows.
    """

    _response = True

    def reset(self):
        http1.RequestParser.reset(self)
        self.status = 0
        self.length = 0
        self.head_request = False

    def _start_line(self, buf, start, le):
        sp = buf.find(b" ", start, le)
        if sp < 0:
            sp = le
        if http1.http_version(buf, start, sp) < 0:
            self._fail(502, nth(_WHY, 0))
        self.http10 = buf[sp - 1] == 48
        status = 0
        if le - sp >= 4 and (le - sp == 4 or buf[sp + 4] == _SP):
            for i in range(sp + 1, sp + 4):
                d = buf[i] - 48
                if d < 0 or d > 9:
                    status = 0
                    break
                status = status * 10 + d
        if status < 100:
            self._fail(502, nth(_WHY, 1))
        self.status = status

    def _finish(self):
        status = self.status
        coding = self._coding
        self.keep_alive = not self.http10 and not (self._connection is not None
                                                   and http1.has_token(self._connection, "close"))
        if self.head_request or status < 200 or status == 204 or status == 304:
            self.length = 0
        elif coding is not None:
            if self.content_length is not None or coding.strip().lower() != "chunked":
                self._fail(502, nth(_WHY, 2))
            self.length = _CHUNKED
        elif self.content_length is not None:
            if self.content_length > self.limits.body:
                self._fail(502, nth(_WHY, 3) % self.limits.body)
            self.length = self.content_length
        else:
            self.length = _UNTIL_CLOSE
            self.keep_alive = False
        return status, self.headers


class ChunkedBody:
    """Decodes a chunked response body into `body` (a bytearray of at most `limit` bytes).

    feed() takes buf[start:end] and returns how many bytes it used; an
    incomplete framing line is left for the next call. `done` is set after
    the last chunk and its trailer lines. Errors are ProtocolError(502).
    State: _left > 0 data bytes to copy; 0 a size line next; -1 the CRLF
    after a chunk's data; -2 trailer lines (until the empty one).
    """

    def __init__(self, limit=_MAX_RESPONSE_BODY, trailer_limit=http1.MAX_HEADER_BLOCK):
        self.body = bytearray()
        self.limit = limit
        self.trailer_limit = trailer_limit
        self.done = False
        self._left = 0
        self._trailer = 0

    def feed(self, buf, start, end):
        """Decode what buf[start:end] holds; return the bytes used."""
        pos = start
        while pos < end and not self.done:
            left = self._left
            if left > 0:
                n = min(left, end - pos)
                self.body.extend(buf[pos:pos + n])
                pos += n
                self._left = -1 if n == left else left - n
                continue
            limit = _MAX_CHUNK_LINE if left > -2 else self.trailer_limit - self._trailer
            nl = buf.find(b"\n", pos, end)
            if (nl if nl >= 0 else end) - pos > limit + 1:
                raise ProtocolError(502, nth(_WHY, 4))
            if nl < 0:
                break
            le = nl - 1
            if nl == pos or buf[le] != _CR:
                raise ProtocolError(502, nth(_WHY, 5))
            if left == 0:  # the size line: hex digits, then maybe ";" extensions, which we ignore
                size = 0
                i = pos
                while i < le:
                    c = buf[i]
                    if c == 59 or c == _SP or c == _HT:
                        break
                    d = c - 48 if 48 <= c <= 57 else (c | 32) - 87  # 0-9, then a-f or A-F
                    if not 0 <= d <= 15 or (d < 10 and c > 57) or i - pos > 7:
                        raise ProtocolError(502, nth(_WHY, 6))
                    size = size * 16 + d
                    i += 1
                if i == pos:
                    raise ProtocolError(502, nth(_WHY, 6))
                if len(self.body) + size > self.limit:
                    raise ProtocolError(502, nth(_WHY, 3) % self.limit)
                self._left = size if size else -2
            elif left == -1:
                if le != pos:
                    raise ProtocolError(502, nth(_WHY, 7))
                self._left = 0
            else:
                self._trailer += nl + 1 - pos
                if le == pos:
                    self.done = True
            pos = nl + 1
        return pos - start


class Connection:
    """A keep-alive connection to one server, opened on first use and reopened when closed.

    request() returns (status, headers, body): headers maps lower-case
    names to values for the non-framing fields http1 keeps (content-type);
    body is bytes of at most max_body. A GET or HEAD whose reused connection
    turns out to be closed by the server is sent once more on a new one;
    other methods raise ConnectionDropped (answered=False): only the caller
    knows whether repeating them is safe.
    """

    def __init__(self, host, port, timeout=_TIMEOUT, tls=None, server_hostname=None,
                 max_body=_MAX_RESPONSE_BODY, limits=None, view_body=False, buf=None):
        """view_body: a body that arrives within the buffer is returned as a memoryview of it, valid
        until the next request on this object: no copy, no allocation the size of the body. buf: the
        buffer to use, made earlier (used when it is limits.head bytes long, else one is made)."""
        head = limits or http1.DEFAULT_LIMITS
        self.limits = http1.Limits(head.request_line, head.header_block if limits else http1.MAX_RESPONSE_HEADER_BLOCK,
                                   head.headers, max_body)
        self.host = host
        self.port = port
        self.timeout = timeout
        self.tls = tls
        self.server_hostname = server_hostname
        default_port = 443 if tls is not None else 80
        self._host_header = host if port == default_port else "%s:%d" % (host, port)
        self._reader = None
        self._writer = None
        if buf is None or len(buf) != self.limits.head:
            buf = bytearray(self.limits.head)
        self._buf = buf  # kept for the life of the object, across connections
        self._parser = ResponseParser(self.limits)
        self.connects = 0  # connections opened so far (keep-alive reuse shows here)
        self.view_body = view_body
        self._where = "%s:%s" % (host, port)  # for error messages

    async def request(self, method, path, body=None, headers=None, close=False):
        """Send one request and read its response: (status, headers, body bytes)."""
        data = self._encode(method, path, body, headers, close)
        while True:
            reused = self._writer is not None
            try:
                if not reused:
                    self.connects += 1
                    try:
                        if self.tls is not None:
                            opening = asyncio.open_connection(self.host, self.port, ssl=self.tls,
                                                              server_hostname=self.server_hostname or self.host)
                        else:
                            opening = asyncio.open_connection(self.host, self.port)
                        self._reader, self._writer = await wait_for(opening, self.timeout)
                    except BaseException as exc:
                        raise self._failure(exc, _CONNECTING, False)
                return await self._exchange(data, method, close)
            except ConnectionDropped as exc:
                await self.close(abort=True)
                if reused and not exc.answered and (method == "GET" or method == "HEAD"):
                    continue  # the server had closed the idle connection: once more, on a new one
                raise
            except BaseException:
                await self.close(abort=True)  # a connection in an unknown state is never reused
                raise

    async def close(self, abort=False):
        """Close the connection (the next request opens a new one); `abort`: without a goodbye.

        Closing never takes longer than the timeout. CPython's TLS close
        waits for the peer's close_notify, so a server that stopped
        answering (the very reason we give up on it) would hold a timed-out
        request for as long as it sleeps, up to asyncio's 30 s SSL shutdown
        timeout; a failed connection is therefore aborted, and a polite
        close that takes too long is too. MicroPython closes the socket at
        once, and its writer has no transport to abort.
        """
        writer = self._writer
        self._reader = self._writer = None
        if writer is None:
            return
        transport = getattr(writer, "transport", None)  # CPython only
        if abort and transport is not None:
            transport.abort()
            return
        writer.close()
        try:
            await wait_for(writer.wait_closed(), self.timeout)
        except (OSError, ValueError, asyncio.TimeoutError):
            if transport is not None:
                transport.abort()  # already broken, or the peer never said goodbye: closed either way

    # --- steps ----------------------------------------------------------------------

    def _encode(self, method, path, body, headers, close):
        if not _ok(method, True):
            raise ValueError(nth(_WHY, 15))
        if not path.startswith("/") or " " in path or not _ok(path, False) or "\t" in path:
            raise ValueError(nth(_WHY, 16))
        if body is not None and not isinstance(body, (bytes, bytearray)):
            raise TypeError(nth(_WHY, 17))
        lines = ["%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, path, self._host_header)]
        typed = False
        for name in headers or ():
            value = headers[name]
            lower = name.lower()
            if lower in ("host", "content-length", "transfer-encoding", "connection"):
                raise ValueError(nth(_WHY, 18) % name)
            if not _ok(name, True) or not isinstance(value, str) or not _ok(value, False):
                raise ValueError(nth(_WHY, 19) % name)
            typed = typed or lower == "content-type"
            lines.append("%s: %s\r\n" % (name, value))
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append("Content-Length: %d\r\n" % (len(body) if body else 0))
            if body and not typed:
                lines.append("Content-Type: application/json\r\n")
        if close:
            lines.append("Connection: close\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode()
        return head + body if body else head

    async def _exchange(self, data, method, close):
        writer = self._writer
        parser = self._parser
        sent = None
        try:
            writer.write(data)
            await wait_for(writer.drain(), self.timeout)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            # The server may have answered and closed before reading all we
            # sent (503 when busy, 413 for a large body): read its answer first.
            sent = self._failure(exc, _SENDING, False)
            if not isinstance(sent, ConnectionDropped):
                raise sent
        start = end = 0
        parser.reset()
        parser.head_request = method == "HEAD"
        while True:
            head = None
            try:
                if end > start:
                    head = parser.parse(self._buf, start, end)
            except ProtocolError as exc:
                raise BadResponse("%s: %s" % (self._where, exc.message))
            if head is not None:
                start += parser.consumed
                if 100 <= head[0] < 200:  # interim (100 Continue): the real answer follows
                    parser.reset()
                    parser.head_request = method == "HEAD"
                    continue
                break
            if end == len(self._buf):
                end -= start
                self._buf[0:end] = self._buf[start:start + end]
                start = 0
            n = await self._read_into(end, len(self._buf), end > 0, sent)
            if not n:
                raise sent or ConnectionDropped(nth(_WHY, 8) % self._where, answered=end > 0)
            end += n
        status, headers = head
        # the body (in this coroutine: on MicroPython each coroutine call allocates its frame)
        buf = self._buf
        length = parser.length
        if length >= 0 and end - start >= length:
            body = memoryview(buf)[start:start + length]
            if not self.view_body:
                body = bytes(body)
            start += length
        elif length >= 0:
            body = bytearray(length)
            have = end - start
            body[0:have] = buf[start:end]
            while have < length:
                n = await self._read_into(0, min(len(buf), length - have), True)
                if not n:
                    raise ConnectionDropped(nth(_WHY, 9) % self._where)
                body[have:have + n] = buf[0:n]
                have += n
            body = bytes(body)
            start = end = 0
        elif length == _UNTIL_CLOSE:
            body = bytearray(buf[start:end])
            while True:
                if len(body) > self.limits.body:
                    raise BadResponse("%s: %s" % (self._where, nth(_WHY, 3) % self.limits.body))
                n = await self._read_into(0, len(buf), True)
                if not n:
                    break
                body.extend(buf[0:n])
            body = bytes(body)
            start = end = 0
        else:
            decoder = ChunkedBody(self.limits.body, self.limits.header_block)
            while True:
                try:
                    start += decoder.feed(buf, start, end)
                except ProtocolError as exc:
                    raise BadResponse("%s: %s" % (self._where, exc.message))
                if decoder.done:
                    break
                if start == end:
                    start = end = 0
                elif end == len(buf):
                    end -= start
                    buf[0:end] = buf[start:start + end]
                    start = 0
                n = await self._read_into(end, len(buf), True)
                if not n:
                    raise ConnectionDropped(nth(_WHY, 9) % self._where)
                end += n
            body = bytes(decoder.body)
        if close or not parser.keep_alive or end > start:
            await self.close()  # the server said so, or sent more than it framed: never reuse
        return status, headers, body


    async def _read_into(self, pos, stop, answered, sent=None):
        """Read at most stop - pos bytes into the buffer at pos; 0 at end of stream."""
        readinto = getattr(self._reader, "readinto", None)  # MicroPython: no bytes object per read
        try:
            if readinto is not None:
                return await wait_for(readinto(memoryview(self._buf)[pos:stop]), self.timeout) or 0
            data = await wait_for(self._reader.read(stop - pos), self.timeout)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if sent is not None and isinstance(exc, OSError):
                raise sent  # the send already failed: that is the story
            raise self._failure(exc, _READING, answered)
        n = len(data)
        self._buf[pos:pos + n] = data
        return n

    def _failure(self, exc, doing, answered):
        """The NetError that says what `exc` meant while `doing` (_CONNECTING...) with this server."""
        where = self._where
        if isinstance(exc, NetError):
            return exc
        if isinstance(exc, asyncio.TimeoutError):  # before OSError: CPython's is one
            return HttpTimeout(nth(_WHY, 10) % (nth(_DOING, doing), where, self.timeout))
        if isinstance(exc, EOFError):
            return ConnectionDropped(nth(_WHY, 14) % where, answered)
        tls = self.tls is not None and isinstance(exc, ValueError)
        if not (tls or isinstance(exc, OSError)):
            return exc  # not a network failure (a bug, KeyboardInterrupt): let it through as it is
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else getattr(exc, "errno", None)
        name = type(exc).__name__
        # A short, secret-free reason: the error's name and its text or number.
        text = ""
        for a in exc.args:
            if isinstance(a, (str, int)):
                text += (" " if text else "") + str(a).strip()
        reason = "%s %s" % (name, text[:120])
        # A failure of the TLS layer: CPython's ssl.SSLError; MicroPython's mbedTLS errors
        # (ValueError for certificate checks, OSError with an mbedTLS code: those are below
        # -0x1000, resolver errors are small negatives).
        if tls or self.tls is not None and (name.startswith("SSL") or name.startswith("CertificateError")
                                            or (code is not None and code < -0x100)):
            return TlsFailed(nth(_WHY, 11) % (where, reason))
        if doing == _CONNECTING or (code in _REFUSED and not answered):
            return ConnectFailed(nth(_WHY, 12) % (where, reason))
        return ConnectionDropped(nth(_WHY, 13) % (nth(_DOING, doing), where, reason), answered)


class Reuse:
    """Keeps one Connection object (its buffer and parser) for the next request to the same place.

    take() hands it out, or a new one when it is already out or was made for
    another host; give() keeps the one handed back. Requests that overlap get
    objects of their own. A new buffer per request is what fragments a small
    heap until a block that size cannot be found.
    """

    def __init__(self, timeout=_TIMEOUT, tls=None, view_body=False, buf=None):
        """buf: the first connection object's buffer, made earlier (see Connection)."""
        self.timeout = timeout
        self.tls = tls
        self.view_body = view_body
        self.idle = None
        self.buf = buf

    def take(self, host, port):
        conn, self.idle = self.idle, None
        if conn is None or conn.host != host or conn.port != port:
            conn = Connection(host, port, self.timeout, self.tls, host if self.tls else None,
                              view_body=self.view_body, buf=self.buf)
            self.buf = None  # one object's: another made while it is out needs its own
        return conn

    def give(self, conn):
        self.idle = conn

    async def request(self, host, port, method, path, body=None, headers=None, read=None):
        """(status, body) of one request on a connection closed after it; the object is kept for the next.

        read(body), when given, takes the body while it is still valid (with view_body it is a view
        of the buffer the next request reuses), and what it returns stands in for the body.
        """
        conn = self.take(host, port)
        try:
            status, _, data = await conn.request(method, path, body, headers, close=True)
            return status, (read(data) if read else data)
        finally:
            await conn.close()
            self.give(conn)


async def request(method, host, port, path, body=None, headers=None, timeout=_TIMEOUT, tls=None,
                  server_hostname=None, max_body=_MAX_RESPONSE_BODY):
    """One request on a fresh connection, closed afterwards: (status, headers, body bytes)."""
    conn = Connection(host, port, timeout, tls, server_hostname, max_body)
    try:
        return await conn.request(method, path, body, headers, close=True)
    finally:
        await conn.close()
