"""HTTP/1.1 framing for the Things' server and client, sans-IO.

Parses request heads (server side) and response heads and chunked bodies
(client side) out of caller-owned buffers, and writes response heads into
them. Every limit is checked before anything grows past it; a request the
server must refuse raises ProtocolError carrying the status to answer with,
a response the client cannot trust raises ProtocolError(502).
Never imports socket or asyncio, never reads a clock, never logs.

Theory of operation (RequestParser, ResponseParser):

    the caller holds bytes in buf[start:end] and calls parse() after each read;
    parse() resumes where it stopped: first it looks for the end of the start
    line (within the start-line limit), then for the end of each header line
    (within the header-block limit), handling each complete line once;
    an empty line ends the head: parse() checks the framing headers together
    and returns; `consumed` says how many bytes from `start` the head used,
    so a body or a pipelined request after it stays in the buffer.

Decisions (strict, because two parsers that disagree are how requests get
smuggled): every line must end in CRLF, a bare LF or a stray CR is refused
(400); a header line starting with whitespace (obs-fold) is refused; so is
whitespace before a colon or inside a name. Only origin-form targets ("/...",
printable ASCII) are served. HTTP/1.0 is answered and then closed; other
HTTP/1.x minors are treated as 1.1; any other version gets 505. Requests
must carry Content-Length when they have a body: Transfer-Encoding chunked
gets 411, any other transfer coding 501, both headers together 400.
"""
from wpwithin.compat import const
from wpwithin.errors import (
    BAD_GATEWAY, BAD_REQUEST, HEADERS_TOO_LARGE, LENGTH_REQUIRED, PAYLOAD_TOO_LARGE, ProtocolError)

URI_TOO_LONG = const(414)
EXPECTATION_FAILED = const(417)
NOT_IMPLEMENTED = const(501)
VERSION_NOT_SUPPORTED = const(505)

# Defaults sized for an ESP32 without PSRAM: a server buffer holds
# max(request line + header block, body) = 1.3 KB per connection.
MAX_REQUEST_LINE = const(256)  # request line (or status line), CRLF excluded
MAX_HEADER_BLOCK = const(1024)  # header lines plus the blank line ending them (a Go client sends ~150 bytes)
MAX_HEADERS = const(24)  # header fields in one head
MAX_BODY = const(1024)  # request body the server accepts (the largest request, a delivery, is ~400 bytes)
MAX_RESPONSE_BODY = const(4096)  # response body the client accepts
MAX_RESPONSE_HEADER_BLOCK = const(2048)  # response headers the client accepts (a gateway sends more than a Thing)
MAX_CHUNK_LINE = const(128)  # chunk-size line with extensions, CRLF excluded
MAX_LENGTH_DIGITS = const(10)
HEAD_ROOM = const(160)  # bytes write_response_head() may need

# Response framing (ResponseParser.length when it is not a byte count).
CHUNKED = const(-1)
UNTIL_CLOSE = const(-2)

_SP = const(32)
_HT = const(9)
_CR = const(13)
_LF = const(10)

# The header fields we act on, by name length (all lengths differ, so one
# lookup finds the only candidate and only that name is compared: no
# lower-cased copy of every header name is made).
_FIELDS = {
    14: (b"content-length", "content-length"),
    17: (b"transfer-encoding", "transfer-encoding"),
    10: (b"connection", "connection"),
    12: (b"content-type", "content-type"),
    4: (b"host", "host"),
    13: (b"authorization", "authorization"),
    6: (b"expect", "expect"),
}

# Fields that shape the framing: kept as parser attributes, not passed on.
_FRAMING = {"connection": "_connection", "transfer-encoding": "_coding", "expect": "_expect"}

# Interned methods: the common ones cost no allocation per request.
_METHODS = ("GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH")
_METHOD_BYTES = (b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH")
_BODY_METHODS = ("POST", "PUT", "PATCH")
_TCHAR_EXTRA = b"!#$%&'*+-.^_`|~"

# Reason phrases as Go's net/http writes them, for the statuses a Thing sends (each costs heap
# on a board); any other status gets an empty reason phrase, which HTTP/1.1 allows.
_REASONS = {
    200: b"OK", 400: b"Bad Request", 402: b"Payment Required", 404: b"Not Found", 405: b"Method Not Allowed",
    408: b"Request Timeout", 409: b"Conflict", 410: b"Gone", 411: b"Length Required",
    413: b"Request Entity Too Large", 414: b"Request URI Too Long", 417: b"Expectation Failed",
    422: b"Unprocessable Entity", 431: b"Request Header Fields Too Large", 500: b"Internal Server Error",
    501: b"Not Implemented", 502: b"Bad Gateway", 503: b"Service Unavailable", 504: b"Gateway Timeout",
    505: b"HTTP Version Not Supported",
}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Limits:
    """Hard limits of one server or client; any may be overridden per instance."""

    def __init__(self, request_line=MAX_REQUEST_LINE, header_block=MAX_HEADER_BLOCK,
                 headers=MAX_HEADERS, body=MAX_BODY):
        for name, value in (("request_line", request_line), ("header_block", header_block),
                            ("headers", headers), ("body", body)):
            if type(value) is not int or value < 1:
                raise ValueError("limit %s must be a positive integer" % name)
        if request_line < 16 or header_block < 2:
            raise ValueError("limits request_line >= 16 and header_block >= 2 are needed for any head")
        self.request_line = request_line
        self.header_block = header_block
        self.headers = headers
        self.body = body

    def head_size(self):
        """The most bytes a complete head may take."""
        return self.request_line + 2 + self.header_block

    def buffer_size(self):
        """A buffer that holds a whole head, and later a whole body."""
        return max(self.head_size(), self.body)


DEFAULT_LIMITS = Limits()


def _tchar(c):
    return (97 <= c <= 122 or 65 <= c <= 90 or 48 <= c <= 57) or (c > _SP and c in _TCHAR_EXTRA)


def _same_name(buf, pos, lower):
    """buf[pos:pos+len(lower)] equals `lower` ignoring ASCII case (no copy made)."""
    for i in range(len(lower)):
        c = buf[pos + i]
        if 65 <= c <= 90:
            c += 32
        if c != lower[i]:
            return False
    return True


def _has_token(value, token):
    """A comma-separated header value holds `token` (case-insensitive)."""
    for part in value.split(","):
        if part.strip().lower() == token:
            return True
    return False


def _put(buf, pos, data):
    end = pos + len(data)
    buf[pos:end] = data
    return end


def _put_int(buf, pos, value):
    """Decimal digits of a non-negative int into buf at pos, without making a string."""
    digits = 1
    scale = 10
    while value >= scale:
        digits += 1
        scale *= 10
    end = pos + digits
    i = end
    while True:
        i -= 1
        buf[i] = 48 + value % 10
        value //= 10
        if i == pos:
            return end


def write_response_head(buf, status, content_length, close=False):
    """Write a response head into buf (a bytearray of at least HEAD_ROOM bytes); return its length.

    Allocates nothing, so a server answers without growing the heap.
    """
    if status < 100 or status > 999 or content_length < 0:
        raise ValueError("bad status or content length")
    pos = _put(buf, 0, b"HTTP/1.1 ")
    pos = _put_int(buf, pos, status)
    buf[pos] = _SP
    pos = _put(buf, pos + 1, _REASONS.get(status, b""))
    pos = _put(buf, pos, b"\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: ")
    pos = _put_int(buf, pos, content_length)
    if close:
        pos = _put(buf, pos, b"\r\nConnection: close")
    return _put(buf, pos, b"\r\n\r\n")


def response_head(status, content_length, close=False):
    """The response head as bytes (allocates; servers use write_response_head)."""
    buf = bytearray(HEAD_ROOM)
    return bytes(buf[:write_response_head(buf, status, content_length, close)])


class _HeadParser:
    """What request and response heads share: the header-block scan."""

    _response = False

    def __init__(self, limits=None):
        self.limits = limits or DEFAULT_LIMITS
        self.reset()

    def reset(self):
        """Forget the last head; parse the next one."""
        self._scan = 0  # offset from start where the next search resumes
        self._block = -1  # offset from start of the header block, once the start line is in
        self._fields = 0
        self.headers = None
        self.consumed = 0
        self.content_length = None
        self.keep_alive = True
        self._connection = None  # framing fields live here, not in `headers`
        self._coding = None
        self._expect = None

    def _fail(self, status, message):
        raise ProtocolError(BAD_GATEWAY if self._response else status, message)

    def parse(self, buf, start=0, end=None):
        """Parse buf[start:end]; None while the head is incomplete, else what the head says."""
        if end is None:
            end = len(buf)
        limits = self.limits
        if self._block < 0:
            stop = start + limits.request_line + 2
            nl = buf.find(b"\n", start + self._scan, min(end, stop))
            if nl < 0:
                if end >= stop:
                    if self._response:
                        self._fail(BAD_GATEWAY, "status line longer than %d bytes" % limits.request_line)
                    self._fail(URI_TOO_LONG, "request line longer than %d bytes" % limits.request_line)
                self._scan = end - start
                return None
            le = self._line_end(buf, start, nl)
            if le == start:
                self._fail(BAD_REQUEST, "empty start line")
            self.headers = {}
            self._start_line(buf, start, le)
            self._block = self._scan = nl + 1 - start
        stop = start + self._block + limits.header_block
        while True:
            pos = start + self._scan
            nl = buf.find(b"\n", pos, min(end, stop))
            if nl < 0:
                if end >= stop:
                    self._fail(HEADERS_TOO_LARGE, "header block larger than %d bytes" % limits.header_block)
                return None
            le = self._line_end(buf, pos, nl)
            self._scan = nl + 1 - start
            if le == pos:
                self.consumed = self._scan
                return self._finish()
            self._field(buf, pos, le)

    def _line_end(self, buf, pos, nl):
        """Where the line ending at LF `nl` ends, CR excluded; refuses bare LF and stray CR."""
        if nl == pos or buf[nl - 1] != _CR:
            self._fail(BAD_REQUEST, "line ends in a bare LF; CRLF is required")
        if buf.find(b"\r", pos, nl - 1) >= 0:
            self._fail(BAD_REQUEST, "stray CR inside a line")
        return nl - 1

    def _field(self, buf, pos, le):
        self._fields += 1
        if self._fields > self.limits.headers:
            self._fail(HEADERS_TOO_LARGE, "more than %d header fields" % self.limits.headers)
        first = buf[pos]
        if first == _SP or first == _HT:
            self._fail(BAD_REQUEST, "folded header line (obs-fold) or whitespace before a header")
        colon = buf.find(b":", pos, le)
        if colon < 0:
            self._fail(BAD_REQUEST, "header line without a colon")
        if colon == pos:
            self._fail(BAD_REQUEST, "empty header name")
        last = buf[colon - 1]
        if last == _SP or last == _HT:
            self._fail(BAD_REQUEST, "whitespace before the colon of a header name")
        if buf.find(b" ", pos, colon) >= 0 or buf.find(b"\t", pos, colon) >= 0:
            self._fail(BAD_REQUEST, "whitespace inside a header name")
        known = _FIELDS.get(colon - pos)
        if known is None or not _same_name(buf, pos, known[0]):
            return  # a field we do not act on: skipped without a copy
        name = known[1]
        vs = colon + 1
        while vs < le and (buf[vs] == _SP or buf[vs] == _HT):
            vs += 1
        while le > vs and (buf[le - 1] == _SP or buf[le - 1] == _HT):
            le -= 1
        if name == "content-length":
            self._length(buf, vs, le)
            return
        for i in range(vs, le):
            c = buf[i]
            if (c < _SP and c != _HT) or c >= 127:
                self._fail(BAD_REQUEST, "header %s has a control or non-ASCII character" % name)
        value = str(buf[vs:le], "ascii")
        if name in _FRAMING:
            old = getattr(self, _FRAMING[name])
            if old is not None:
                if name == "expect":
                    self._fail(BAD_REQUEST, "header expect appears twice")
                value = old + ", " + value  # a list may be split over several lines
            setattr(self, _FRAMING[name], value)
        elif name in self.headers:
            self._fail(BAD_REQUEST, "header %s appears twice" % name)
        else:
            self.headers[name] = value

    def _length(self, buf, vs, le):
        """Content-Length straight from the buffer (no string made); equal repeats are allowed."""
        if vs == le or le - vs > MAX_LENGTH_DIGITS:
            self._fail(BAD_REQUEST, "Content-Length must be a non-negative decimal number")
        value = 0
        for i in range(vs, le):
            d = buf[i] - 48
            if d < 0 or d > 9:
                self._fail(BAD_REQUEST, "Content-Length must be a non-negative decimal number")
            value = value * 10 + d
        if self.content_length is not None and self.content_length != value:
            self._fail(BAD_REQUEST, "conflicting Content-Length values")
        self.content_length = value


def _version(buf, pos, end):
    """Minor version of an HTTP/1.x token in buf[pos:end]; -1 for another major, -2 if malformed."""
    if end - pos != 8 or not _same_name(buf, pos, b"http/") or buf[pos + 6] != 46:
        return -2
    for i in range(pos, pos + 4):  # the name is case-sensitive: HTTP
        if buf[i] > 90:
            return -2
    major = buf[pos + 5] - 48
    minor = buf[pos + 7] - 48
    if not (0 <= major <= 9 and 0 <= minor <= 9):
        return -2
    return minor if major == 1 else -1


class RequestParser(_HeadParser):
    """Incremental, strict request-head parser; one per connection, reset() per request.

    parse() returns (method, target, headers) once the head is complete:
    method and target are str; headers maps "host", "content-type" and
    "authorization", when sent, to their values. The framing fields
    (Content-Length, Transfer-Encoding, Connection, Expect) are checked
    here and not passed on: `content_length` (0 when absent),
    `keep_alive`, `http10` and `expect_continue` say what they meant, and
    `consumed` how many bytes from `start` the head took.
    """

    def reset(self):
        _HeadParser.reset(self)
        self.method = None
        self.target = None
        self.http10 = False
        self.expect_continue = False

    def _start_line(self, buf, start, le):
        sp1 = buf.find(b" ", start, le)
        sp2 = buf.find(b" ", sp1 + 1, le) if sp1 >= 0 else -1
        if sp2 < 0 or buf.find(b" ", sp2 + 1, le) >= 0:
            self._fail(BAD_REQUEST, "request line must be: method SP target SP version")
        if sp1 == start:
            self._fail(BAD_REQUEST, "empty method")
        minor = _version(buf, sp2 + 1, le)
        if minor == -2:
            self._fail(BAD_REQUEST, "malformed HTTP version")
        if minor == -1:
            self._fail(VERSION_NOT_SUPPORTED, "only HTTP/1.x is supported")
        self.http10 = minor == 0
        self.method = _method(buf, start, sp1)
        if self.method is None:
            self._fail(BAD_REQUEST, "method is not a token")
        if buf[sp1 + 1] != 47:  # "/"
            self._fail(BAD_REQUEST, "request target must be a path starting with /")
        for i in range(sp1 + 1, sp2):
            c = buf[i]
            if c <= _SP or c >= 127:
                self._fail(BAD_REQUEST, "request target has a control, space or non-ASCII character")
        self.target = str(buf[sp1 + 1:sp2], "ascii")

    def _finish(self):
        headers = self.headers
        coding = self._coding
        if coding is not None:
            if self.content_length is not None:
                self._fail(BAD_REQUEST, "both Transfer-Encoding and Content-Length")
            if _has_token(coding, "chunked"):
                self._fail(LENGTH_REQUIRED, "chunked bodies are not accepted: send Content-Length")
            self._fail(NOT_IMPLEMENTED, "Transfer-Encoding is not supported: send Content-Length")
        if self.content_length is None:
            if self.method in _BODY_METHODS:
                self._fail(LENGTH_REQUIRED, "Content-Length is required on %s" % self.method)
            self.content_length = 0
        if self.content_length > self.limits.body:
            self._fail(PAYLOAD_TOO_LARGE, "body larger than %d bytes" % self.limits.body)
        if "host" not in headers and not self.http10:
            self._fail(BAD_REQUEST, "HTTP/1.1 request without a Host header")
        expect = self._expect
        if expect is not None:
            if expect.lower() != "100-continue":
                self._fail(EXPECTATION_FAILED, "only Expect: 100-continue is supported")
            self.expect_continue = not self.http10 and self.content_length > 0
        connection = self._connection
        self.keep_alive = not self.http10 and not (connection is not None and _has_token(connection, "close"))
        return self.method, self.target, headers


def _method(buf, start, end):
    n = end - start
    for i in range(len(_METHOD_BYTES)):
        known = _METHOD_BYTES[i]
        if len(known) == n and buf.find(known, start, end) == start:
            return _METHODS[i]
    for i in range(start, end):
        if not _tchar(buf[i]):
            return None
    return str(buf[start:end], "ascii")


class ResponseParser(_HeadParser):
    """Incremental response-head parser for the client; every failure is ProtocolError(502).

    parse() returns (status, headers) once the head is complete (headers
    holds "content-type" and the other non-framing fields we know); then
    `length` says how the body is framed: a byte count, CHUNKED or
    UNTIL_CLOSE (no length given: the body ends when the server closes).
    Set `head_request` after reset() when the request was HEAD: no body follows.
    """

    _response = True

    def reset(self):
        _HeadParser.reset(self)
        self.status = 0
        self.length = 0
        self.http10 = False
        self.head_request = False

    def _start_line(self, buf, start, le):
        sp = buf.find(b" ", start, le)
        if sp < 0:
            sp = le
        minor = _version(buf, start, sp)
        if minor < 0:
            self._fail(BAD_GATEWAY, "response is not HTTP/1.x")
        self.http10 = minor == 0
        if le - sp < 4 or (le - sp > 4 and buf[sp + 4] != _SP):
            self._fail(BAD_GATEWAY, "malformed status line")
        status = 0
        for i in range(sp + 1, sp + 4):
            d = buf[i] - 48
            if d < 0 or d > 9:
                self._fail(BAD_GATEWAY, "status code is not 3 digits")
            status = status * 10 + d
        if status < 100:
            self._fail(BAD_GATEWAY, "status code below 100")
        self.status = status

    def _finish(self):
        headers = self.headers
        status = self.status
        coding = self._coding
        connection = self._connection
        self.keep_alive = not self.http10 and not (connection is not None and _has_token(connection, "close"))
        if self.head_request or status < 200 or status == 204 or status == 304:
            self.length = 0
        elif coding is not None:
            if self.content_length is not None:
                self._fail(BAD_GATEWAY, "response has both Transfer-Encoding and Content-Length")
            if coding.strip().lower() != "chunked":
                self._fail(BAD_GATEWAY, "response transfer coding %s is not supported" % coding)
            self.length = CHUNKED
        elif self.content_length is not None:
            if self.content_length > self.limits.body:
                self._fail(BAD_GATEWAY, "response body larger than %d bytes" % self.limits.body)
            self.length = self.content_length
        else:
            self.length = UNTIL_CLOSE
            self.keep_alive = False
        return status, headers


_SIZE = const(0)
_DATA = const(1)
_DATA_END = const(2)
_TRAILER = const(3)


class ChunkedBody:
    """Decodes a chunked response body into `body` (a bytearray of at most `limit` bytes).

    feed() takes buf[start:end] and returns how many bytes it used; an
    incomplete framing line is left for the next call. `done` is set after
    the last chunk and its trailer lines. Errors are ProtocolError(502).
    """

    def __init__(self, limit=MAX_RESPONSE_BODY, trailer_limit=MAX_HEADER_BLOCK):
        self.body = bytearray()
        self.limit = limit
        self.trailer_limit = trailer_limit
        self.done = False
        self._state = _SIZE
        self._left = 0
        self._trailer = 0

    def feed(self, buf, start, end):
        """Decode what buf[start:end] holds; return the bytes used."""
        pos = start
        while pos < end and not self.done:
            if self._state == _DATA:
                n = min(self._left, end - pos)
                self.body.extend(buf[pos:pos + n])
                pos += n
                self._left -= n
                if not self._left:
                    self._state = _DATA_END
                continue
            limit = MAX_CHUNK_LINE if self._state != _TRAILER else self.trailer_limit - self._trailer
            nl = buf.find(b"\n", pos, end)
            if nl < 0:
                if end - pos > limit + 1:
                    raise ProtocolError(BAD_GATEWAY, "chunk framing line too long")
                break
            if nl - pos > limit + 1:
                raise ProtocolError(BAD_GATEWAY, "chunk framing line too long")
            if nl == pos or buf[nl - 1] != _CR:
                raise ProtocolError(BAD_GATEWAY, "chunk framing line ends in a bare LF")
            le = nl - 1
            if self._state == _SIZE:
                size = _chunk_size(buf, pos, le)
                if len(self.body) + size > self.limit:
                    raise ProtocolError(BAD_GATEWAY, "response body larger than %d bytes" % self.limit)
                self._left = size
                self._state = _DATA if size else _TRAILER
            elif self._state == _DATA_END:
                if le != pos:
                    raise ProtocolError(BAD_GATEWAY, "chunk data longer than its size")
                self._state = _SIZE
            else:
                self._trailer += nl + 1 - pos
                if le == pos:
                    self.done = True
            pos = nl + 1
        return pos - start


def _chunk_size(buf, pos, le):
    size = 0
    digits = 0
    i = pos
    while i < le:
        c = buf[i]
        if c == 59 or c == _SP or c == _HT:  # ";" starts extensions, which we ignore
            break
        if 48 <= c <= 57:
            d = c - 48
        elif 97 <= c <= 102:
            d = c - 87
        elif 65 <= c <= 70:
            d = c - 55
        else:
            raise ProtocolError(BAD_GATEWAY, "chunk size is not hexadecimal")
        digits += 1
        if digits > 8:
            raise ProtocolError(BAD_GATEWAY, "chunk size too large")
        size = size * 16 + d
        i += 1
    if not digits:
        raise ProtocolError(BAD_GATEWAY, "chunk size missing")
    return size
