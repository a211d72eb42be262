"""HTTP/1.1 client for talking to producers and to the payment gateway, on asyncio.

request() makes one request on a fresh connection; Connection keeps one
alive for several. Connecting, sending and every read have a timeout;
HTTPS verifies the server's certificate and host name against the CA
certificates given to tls_context(). Every failure is a NetError subtype
(net_errors). Never disables certificate checks, never logs, and never puts
headers or bodies (they carry keys and tokens) into an error message.
"""
import asyncio
import errno

from wpwithin import http1
from wpwithin.errors import ProtocolError
from wpwithin.net_errors import BadResponse, ConnectFailed, ConnectionDropped, HttpTimeout, NetError, TlsFailed

TIMEOUT = 5  # seconds for connecting, for sending and for each read
_READ_SIZE = 512
# errno values meaning "no connection" (MicroPython's errno lacks some names).
_REFUSED = tuple(getattr(errno, name) for name in ("ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "ETIMEDOUT")
                 if hasattr(errno, name))
_SAFE_TO_REPEAT = ("GET", "HEAD")
_BEGIN = "-----BEGIN CERTIFICATE-----"
_END = "-----END CERTIFICATE-----"


def tls_context(cadata=None, cafile=None):
    """An ssl.SSLContext that requires a certificate signed by the given CA(s), PEM or DER.

    Host names are checked against server_hostname (the host by default)
    on both runtimes. MicroPython's unix port cannot parse PEM, so PEM is
    turned into DER here, one certificate at a time.
    """
    import ssl

    if cafile is not None:
        with open(cafile, "rb") as f:
            cadata = f.read()
    if not cadata:
        raise ValueError("a CA certificate is required (cadata or cafile)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED  # MicroPython's default is CERT_NONE
    if hasattr(ctx, "check_hostname"):
        ctx.check_hostname = True  # CPython; mbedTLS checks server_hostname itself
    for der in _der_certificates(cadata):
        try:
            ctx.load_verify_locations(cadata=der)
        except (ValueError, OSError):
            raise ValueError("CA certificate is not a valid X.509 certificate")
    return ctx


def _der_certificates(data):
    """DER certificates from PEM text (one or more) or from one DER certificate."""
    import binascii

    if isinstance(data, str):
        data = data.encode()
    text = str(data, "ascii") if _BEGIN.encode() in data else None
    if text is None:
        return [bytes(data)]
    out = []
    pos = text.find(_BEGIN)
    while pos >= 0:
        end = text.find(_END, pos)
        if end < 0:
            raise ValueError("PEM certificate without an END line")
        b64 = "".join(text[pos + len(_BEGIN):end].split())
        try:
            out.append(binascii.a2b_base64(b64))
        except ValueError:
            raise ValueError("PEM certificate is not valid base64")
        pos = text.find(_BEGIN, end)
    return out


def _is_token(text):
    if not text:
        return False
    for c in text:
        if not (c.isalpha() or c.isdigit() or c in "!#$%&'*+-.^_`|~") or ord(c) > 126:
            return False
    return True


def _is_text(text):
    for c in text:
        o = ord(c)
        if (o < 32 and o != 9) or o > 126:
            return False
    return True


class Connection:
    """A keep-alive connection to one server, opened on first use and reopened when closed.

    request() returns (status, headers, body): headers maps lower-case
    names to values for the non-framing fields http1 keeps (content-type);
    body is bytes of at most max_body. A GET or HEAD whose reused connection
    turns out to be closed by the server is sent once more on a new one;
    other methods raise ConnectionDropped (answered=False): only the caller
    knows whether repeating them is safe.
    """

    def __init__(self, host, port, timeout=TIMEOUT, tls=None, server_hostname=None,
                 max_body=http1.MAX_RESPONSE_BODY, limits=None, view_body=False):
        """view_body: a body that arrives within the buffer is returned as a memoryview of it, valid
        until the next request on this object: no copy, no allocation the size of the body."""
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
        self._buf = bytearray(self.limits.head)  # kept for the life of the object, across connections
        self._parser = http1.ResponseParser(self.limits)
        self.connects = 0  # connections opened so far (keep-alive reuse shows here)
        self.view_body = view_body

    def __repr__(self):
        return "<Connection %s:%s>" % (self.host, self.port)

    def _where(self):
        return "%s:%s" % (self.host, self.port)

    async def request(self, method, path, body=None, headers=None, close=False):
        """Send one request and read its response: (status, headers, body bytes)."""
        data = self._encode(method, path, body, headers, close)
        while True:
            reused = self._writer is not None
            try:
                if not reused:
                    await self._open()
                return await self._exchange(data, method, close)
            except ConnectionDropped as exc:
                await self.close(abort=True)
                if reused and not exc.answered and method in _SAFE_TO_REPEAT:
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
            await asyncio.wait_for(writer.wait_closed(), self.timeout)
        except (OSError, ValueError, asyncio.TimeoutError):
            if transport is not None:
                transport.abort()  # already broken, or the peer never said goodbye: closed either way

    # --- steps ----------------------------------------------------------------------

    def _encode(self, method, path, body, headers, close):
        if not _is_token(method):
            raise ValueError("method must be an HTTP token")
        if not path.startswith("/") or " " in path or not _is_text(path) or "\t" in path:
            raise ValueError("path must start with / and hold printable ASCII only")
        if body is not None and not isinstance(body, (bytes, bytearray)):
            raise TypeError("body must be bytes")
        lines = ["%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, path, self._host_header)]
        typed = False
        for name in headers or ():
            value = headers[name]
            lower = name.lower()
            if lower in ("host", "content-length", "transfer-encoding", "connection"):
                raise ValueError("header %s is set by the client" % name)
            if not _is_token(name) or not isinstance(value, str) or not _is_text(value):
                raise ValueError("header %s has a bad name or value" % name)
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

    async def _open(self):
        self.connects += 1
        try:
            if self.tls is not None:
                opening = asyncio.open_connection(self.host, self.port, ssl=self.tls,
                                                  server_hostname=self.server_hostname or self.host)
            else:
                opening = asyncio.open_connection(self.host, self.port)
            self._reader, self._writer = await asyncio.wait_for(opening, self.timeout)
        except BaseException as exc:
            raise self._failure(exc, "connecting to", False)

    async def _exchange(self, data, method, close):
        writer = self._writer
        parser = self._parser
        sent = None
        try:
            writer.write(data)
            await asyncio.wait_for(writer.drain(), self.timeout)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            # The server may have answered and closed before reading all we
            # sent (503 when busy, 413 for a large body): read its answer first.
            sent = self._failure(exc, "sending to", False)
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
                raise BadResponse("%s: %s" % (self._where(), exc.message))
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
                raise sent or ConnectionDropped("%s closed the connection before answering" % self._where(),
                                                answered=end > 0)
            end += n
        status, headers = head
        body, start, end = await self._body(start, end)
        if close or not parser.keep_alive or end > start:
            await self.close()  # the server said so, or sent more than it framed: never reuse
        return status, headers, body

    async def _body(self, start, end):
        parser = self._parser
        buf = self._buf
        length = parser.length
        if length >= 0:
            if end - start >= length:
                body = memoryview(buf)[start:start + length]
                return body if self.view_body else bytes(body), start + length, end
            body = bytearray(length)
            have = end - start
            body[0:have] = buf[start:end]
            while have < length:
                n = await self._read_into(0, min(len(buf), length - have), True)
                if not n:
                    raise ConnectionDropped("%s closed the connection mid-body" % self._where())
                body[have:have + n] = buf[0:n]
                have += n
            return bytes(body), 0, 0
        if length == http1.UNTIL_CLOSE:
            body = bytearray(buf[start:end])
            while True:
                if len(body) > self.limits.body:
                    raise BadResponse("%s: response body larger than %d bytes" % (self._where(), self.limits.body))
                n = await self._read_into(0, len(buf), True)
                if not n:
                    return bytes(body), 0, 0
                body.extend(buf[0:n])
        decoder = http1.ChunkedBody(self.limits.body, self.limits.header_block)
        while True:
            try:
                start += decoder.feed(buf, start, end)
            except ProtocolError as exc:
                raise BadResponse("%s: %s" % (self._where(), exc.message))
            if decoder.done:
                return bytes(decoder.body), start, end
            if start == end:
                start = end = 0
            elif end == len(buf):
                end -= start
                buf[0:end] = buf[start:start + end]
                start = 0
            n = await self._read_into(end, len(buf), True)
            if not n:
                raise ConnectionDropped("%s closed the connection mid-body" % self._where())
            end += n

    async def _read_into(self, pos, stop, answered, sent=None):
        """Read at most stop - pos bytes into the buffer at pos; 0 at end of stream."""
        readinto = getattr(self._reader, "readinto", None)  # MicroPython: no bytes object per read
        try:
            if readinto is not None:
                return await asyncio.wait_for(readinto(memoryview(self._buf)[pos:stop]), self.timeout) or 0
            data = await asyncio.wait_for(self._reader.read(stop - pos), self.timeout)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if sent is not None and isinstance(exc, OSError):
                raise sent  # the send already failed: that is the story
            raise self._failure(exc, "reading from", answered)
        n = len(data)
        self._buf[pos:pos + n] = data
        return n

    def _failure(self, exc, doing, answered):
        """The NetError that says what `exc` meant while `doing` (a phrase) with this server."""
        where = self._where()
        if isinstance(exc, NetError):
            return exc
        if isinstance(exc, asyncio.TimeoutError):  # before OSError: CPython's is one
            return HttpTimeout("%s %s timed out after %s s" % (doing, where, self.timeout))
        if self.tls is not None and _tls_error(exc):
            return TlsFailed("TLS with %s failed: %s" % (where, _reason(exc)))
        if isinstance(exc, OSError):
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else getattr(exc, "errno", None)
            if code in _REFUSED and not answered:
                return ConnectFailed("cannot connect to %s: %s" % (where, _reason(exc)))
            if doing == "connecting to":
                return ConnectFailed("cannot connect to %s: %s" % (where, _reason(exc)))
            return ConnectionDropped("%s %s failed: %s" % (doing, where, _reason(exc)), answered)
        if isinstance(exc, EOFError):
            return ConnectionDropped("%s closed the connection" % where, answered)
        return exc  # not a network failure (a bug, KeyboardInterrupt): let it through as it is


def _tls_error(exc):
    """A failure of the TLS layer: CPython's ssl.SSLError; MicroPython's mbedTLS errors
    (ValueError for certificate checks, OSError with a negative mbedTLS code)."""
    if isinstance(exc, ValueError):
        return True
    if isinstance(exc, OSError):
        if type(exc).__name__.startswith("SSL") or type(exc).__name__.startswith("CertificateError"):
            return True
        # mbedTLS codes are below -0x1000; resolver errors are small negatives
        return bool(exc.args) and isinstance(exc.args[0], int) and exc.args[0] < -0x100
    return False


def _reason(exc):
    """A short, secret-free reason: the error's name and its text or number."""
    text = " ".join(str(a).strip() for a in exc.args if isinstance(a, (str, int))) if exc.args else ""
    return "%s %s" % (type(exc).__name__, text[:120])


class Reuse:
    """Keeps one Connection object (its buffer and parser) for the next request to the same place.

    take() hands it out, or a new one when it is already out or was made for
    another host; give() keeps the one handed back. Requests that overlap get
    objects of their own. A new buffer per request is what fragments a small
    heap until a block that size cannot be found.
    """

    def __init__(self, timeout=TIMEOUT, tls=None, view_body=False):
        self.timeout = timeout
        self.tls = tls
        self.view_body = view_body
        self.idle = None

    def take(self, host, port):
        conn, self.idle = self.idle, None
        if conn is None or conn.host != host or conn.port != port:
            conn = Connection(host, port, self.timeout, self.tls, host if self.tls else None,
                              view_body=self.view_body)
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


async def request(method, host, port, path, body=None, headers=None, timeout=TIMEOUT, tls=None,
                  server_hostname=None, max_body=http1.MAX_RESPONSE_BODY):
    """One request on a fresh connection, closed afterwards: (status, headers, body bytes)."""
    conn = Connection(host, port, timeout, tls, server_hostname, max_body)
    try:
        return await conn.request(method, path, body, headers, close=True)
    finally:
        await conn.close()
