"""HTTP/1.1 framing for the Things' server, sans-IO; the head scan the client's parser inherits.

Parses request heads out of caller-owned buffers and writes response heads
into them. Every limit is checked before anything grows past it; a request
the server must refuse raises ProtocolError carrying the status to answer
with. http_client's ResponseParser is a RequestParser with its own start
line and framing checks (one class less here), and it and the chunked-body
decoder live there, so a server loads no response parsing until it makes a
request itself.
Never imports socket or asyncio, never reads a clock, never logs.

Theory of operation (RequestParser here, http_client.ResponseParser):

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

Heap: parse() is one function with the header handling inlined (each
function costs ~100 B of heap from .mpy), and error messages are short
fixed phrases naming the problem.
"""
from wpwithin.compat import const
from wpwithin.errors import ProtocolError, nth

# Defaults sized for an ESP32 without PSRAM: a server buffer holds
# max(request line + header block, body) = 1.3 KB per connection.
_MAX_REQUEST_LINE = const(256)  # request line (or status line), CRLF excluded
MAX_HEADER_BLOCK = const(1024)  # header lines plus the blank line ending them (a Go client sends ~150 bytes)
MAX_RESPONSE_HEADER_BLOCK = const(2048)  # response headers a client accepts (a gateway sends more than a Thing)
_MAX_HEADERS = const(24)  # header fields in one head
MAX_BODY = const(1024)  # request body the server accepts (the largest request, a delivery, is ~400 bytes)
HEAD_ROOM = const(160)  # bytes write_response_head() may need

_SP = const(32)
_HT = const(9)
_CR = const(13)

# The header fields we act on, each ended by a space (one bytes object costs less heap than a
# tuple of them); the first four shape the framing and are kept as parser attributes, the others
# go into `headers`. Names are compared in place: no lower-cased copy of a header name is made.
_FIELDS = const(b"content-length transfer-encoding connection expect host content-type authorization ")
_NAMES = const(("content-length", "_coding", "_connection", "_expect", "host", "content-type", "authorization"))

# Interned methods: the common ones cost no allocation per request.
_METHOD_WORDS = const(b"GET POST HEAD ")
_METHODS = const(("GET", "POST", "HEAD"))
_TCHAR_EXTRA = const(b"!#$%&'*+-.^_`|~")

# Reason phrases as Go's net/http writes them, for the statuses a Thing sends, one line each
# (as one bytes object: 1.2 KB less heap than a dict); any other status gets an empty reason
# phrase, which HTTP/1.1 allows.
_REASONS = const(b"200OK\n400Bad Request\n402Payment Required\n404Not Found\n405Method Not Allowed\n"
                 b"408Request Timeout\n409Conflict\n410Gone\n411Length Required\n413Request Entity Too Large\n"
                 b"414Request URI Too Long\n417Expectation Failed\n422Unprocessable Entity\n"
                 b"431Request Header Fields Too Large\n500Internal Server Error\n501Not Implemented\n"
                 b"502Bad Gateway\n503Service Unavailable\n504Gateway Timeout\n505HTTP Version Not Supported\n")
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# Refusals' phrases in one string, by number: _fail(status, n, arg) says the n-th, its %d or %s
# filled with arg (a string object each cost 1.3 KB more heap, .mpy, 64-bit).
_WHY = const("header block over %d bytes|status line over %d bytes|request line over %d bytes|"
             "bare LF: lines must end in CRLF|stray CR in a line|empty start line|over %d header fields|"
             "folded header line (obs-fold)|header without a name and colon|"
             "whitespace in a header name or before the colon|Content-Length is not a decimal number|"
             "conflicting Content-Length values|control or non-ASCII byte in a header|Expect header twice|"
             "header %s twice|request line is not: method SP target SP version|malformed HTTP version|"
             "only HTTP/1.x is supported|method is not a token|request target must start with /|"
             "control, space or non-ASCII byte in the target|both Transfer-Encoding and Content-Length|"
             "chunked body: send Content-Length|Transfer-Encoding not supported: send Content-Length|"
             "Content-Length required|body over %d bytes|HTTP/1.1 request without Host|"
             "only Expect: 100-continue is supported")


class Limits:
    """Hard limits of one server or client; any may be overridden per instance.

    `head` is the most bytes a complete head may take; `buffer` holds a
    whole head, and later a whole body.
    """

    def __init__(self, request_line=_MAX_REQUEST_LINE, header_block=MAX_HEADER_BLOCK,
                 headers=_MAX_HEADERS, body=MAX_BODY):
        for value in (request_line, header_block, headers, body):
            if type(value) is not int or value < 1:
                raise ValueError("limits must be positive integers")
        if request_line < 16 or header_block < 2:
            raise ValueError("limits request_line >= 16, header_block >= 2")
        self.request_line = request_line
        self.header_block = header_block
        self.headers = headers
        self.body = body
        self.head = request_line + 2 + header_block
        self.buffer = max(self.head, body)


DEFAULT_LIMITS = Limits()


def _index(table, buf, pos, n, fold):
    """Index of buf[pos:pos+n] among `table`'s space-ended words (ASCII case folded when `fold`), else -1."""
    k = i = 0
    while i < len(table):
        j = table.find(b" ", i)
        if j - i == n:
            x = 0
            while x < n:
                c = buf[pos + x]
                if fold and 65 <= c <= 90:
                    c += 32
                if c != table[i + x]:
                    break
                x += 1
            else:
                return k
        i = j + 1
        k += 1
    return -1


def is_token(data, start, end):
    """data[start:end] is an HTTP token: one or more tchar (RFC 9110), as a method or header name is."""
    for i in range(start, end):
        c = data[i]
        if not (97 <= c <= 122 or 65 <= c <= 90 or 48 <= c <= 57 or (c > _SP and c in _TCHAR_EXTRA)):
            return False
    return end > start


def has_token(value, token):
    """A comma-separated header value holds `token` (case-insensitive)."""
    for part in value.split(","):
        if part.strip().lower() == token:
            return True
    return False


def _put_int(buf, pos, value):
    """Decimal digits of a non-negative int into buf at pos, without making a string."""
    end = pos + 1
    scale = 10
    while value >= scale:
        end += 1
        scale *= 10
    i = end
    while i > pos:
        i -= 1
        buf[i] = 48 + value % 10
        value //= 10
    return end


def write_response_head(buf, status, content_length, close=False):
    """Write a response head into buf (a bytearray of at least HEAD_ROOM bytes); return its length.

    Allocates nothing, so a server answers without growing the heap.
    """
    if status < 100 or status > 999 or content_length < 0:
        raise ValueError("bad status or content length")
    buf[0:9] = b"HTTP/1.1 "
    pos = _put_int(buf, 9, status)
    buf[pos] = _SP
    pos += 1
    r = _REASONS
    i = 0
    while i < len(r):
        j = r.find(b"\n", i)
        if (r[i] - 48) * 100 + (r[i + 1] - 48) * 10 + r[i + 2] - 48 == status:
            i += 3
            while i < j:  # byte by byte: a slice of the table would allocate
                buf[pos] = r[i]
                pos += 1
                i += 1
        i = j + 1
    buf[pos:pos + 64] = b"\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: "
    pos = _put_int(buf, pos + 64, content_length)
    if close:
        buf[pos:pos + 19] = b"\r\nConnection: close"
        pos += 19
    buf[pos:pos + 4] = b"\r\n\r\n"
    return pos + 4


def response_head(status, content_length, close=False):
    """The response head as bytes (allocates; servers use write_response_head)."""
    buf = bytearray(HEAD_ROOM)
    return bytes(buf[:write_response_head(buf, status, content_length, close)])


def http_version(buf, pos, end):
    """Minor version of an HTTP/1.x token in buf[pos:end]; -1 for another major, -2 if malformed."""
    if end - pos != 8 or buf.find(b"HTTP/", pos, pos + 5) != pos or buf[pos + 6] != 46:
        return -2  # the name is case-sensitive: HTTP
    major = buf[pos + 5] - 48
    minor = buf[pos + 7] - 48
    if not (0 <= major <= 9 and 0 <= minor <= 9):
        return -2
    return minor if major == 1 else -1


class RequestParser:
    """Incremental, strict request-head parser; one per connection, reset() per request.

    parse() returns (method, target, headers) once the head is complete:
    method and target are str; headers maps "host", "content-type" and
    "authorization", when sent, to their values. The framing fields
    (Content-Length, Transfer-Encoding, Connection, Expect) are checked
    here and not passed on: `content_length` (0 when absent),
    `keep_alive`, `http10` and `expect_continue` say what they meant, and
    `consumed` how many bytes from `start` the head took.
    The header-block scan in parse() is what http_client.ResponseParser
    inherits: it brings its own _start_line() and _finish().
    """

    _response = False  # ResponseParser: every refusal is 502

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
        self.http10 = False
        self._connection = None  # framing fields live here, not in `headers`
        self._coding = None
        self._expect = None
        self.method = None
        self.target = None
        self.expect_continue = False

    def _fail(self, status, why, arg=None):
        """Refuse with `status` (502 for a response): `why` is a phrase of _WHY by number, or the phrase."""
        if type(why) is int:
            why = nth(_WHY, why)
            if arg is not None:
                why %= arg
        raise ProtocolError(502 if self._response else status, why)

    def parse(self, buf, start=0, end=None):
        """Parse buf[start:end]; None while the head is incomplete, else what the head says."""
        if end is None:
            end = len(buf)
        limits = self.limits
        while True:
            first = self._block < 0
            pos = start if first else start + self._scan  # where the line starts
            stop = start + (limits.request_line + 2 if first else self._block + limits.header_block)
            nl = buf.find(b"\n", start + self._scan, min(end, stop))
            if nl < 0:
                if end >= stop:
                    if not first:
                        self._fail(431, 0, limits.header_block)  # header block over N bytes
                    if self._response:
                        self._fail(502, 1, limits.request_line)  # status line over N bytes
                    self._fail(414, 2, limits.request_line)  # request line over N bytes
                if first:
                    self._scan = end - start
                return None
            le = nl - 1
            if nl == pos or buf[le] != _CR:
                self._fail(400, 3)  # bare LF: lines must end in CRLF
            if buf.find(b"\r", pos, le) >= 0:
                self._fail(400, 4)  # stray CR in a line
            self._scan = nl + 1 - start
            if first:
                if le == start:
                    self._fail(400, 5)  # empty start line
                self.headers = {}
                self._start_line(buf, start, le)
                self._block = self._scan
                continue
            if le == pos:
                self.consumed = self._scan
                return self._finish()
            # a header line
            self._fields += 1
            if self._fields > limits.headers:
                self._fail(431, 6, limits.headers)  # over N header fields
            c = buf[pos]
            if c == _SP or c == _HT:
                self._fail(400, 7)  # folded header line (obs-fold)
            colon = buf.find(b":", pos, le)
            if colon <= pos:
                self._fail(400, 8)  # header without a name and colon
            if buf.find(b" ", pos, colon) >= 0 or buf.find(b"\t", pos, colon) >= 0:
                self._fail(400, 9)  # whitespace in a header name or before the colon
            k = _index(_FIELDS, buf, pos, colon - pos, True)
            if k < 0:
                continue  # a field we do not act on: skipped without a copy
            vs = colon + 1
            while vs < le and (buf[vs] == _SP or buf[vs] == _HT):
                vs += 1
            while le > vs and (buf[le - 1] == _SP or buf[le - 1] == _HT):
                le -= 1
            if k == 0:  # Content-Length, straight from the buffer; equal repeats are allowed
                value = 0
                i = vs
                while i < le:
                    d = buf[i] - 48
                    if d < 0 or d > 9:
                        break
                    value = value * 10 + d
                    i += 1
                if vs == le or i < le or le - vs > 10:
                    self._fail(400, 10)  # Content-Length is not a decimal number
                if self.content_length is not None and self.content_length != value:
                    self._fail(400, 11)  # conflicting Content-Length values
                self.content_length = value
                continue
            for i in range(vs, le):
                c = buf[i]
                if (c < _SP and c != _HT) or c >= 127:
                    self._fail(400, 12)  # control or non-ASCII byte in a header
            value = str(buf[vs:le], "ascii")
            name = _NAMES[k]
            if k < 4:
                old = getattr(self, name)
                if old is not None:
                    if k == 3:
                        self._fail(400, 13)  # Expect header twice
                    value = old + ", " + value  # a list may be split over several lines
                setattr(self, name, value)
            elif name in self.headers:
                self._fail(400, 14, name)  # header NAME twice
            else:
                self.headers[name] = value


    def _start_line(self, buf, start, le):
        sp1 = buf.find(b" ", start, le)
        sp2 = buf.find(b" ", sp1 + 1, le) if sp1 > start else -1
        if sp2 < 0 or buf.find(b" ", sp2 + 1, le) >= 0:
            self._fail(400, 15)  # request line is not: method SP target SP version
        minor = http_version(buf, sp2 + 1, le)
        if minor == -2:
            self._fail(400, 16)  # malformed HTTP version
        if minor == -1:
            self._fail(505, 17)  # only HTTP/1.x is supported
        self.http10 = minor == 0
        k = _index(_METHOD_WORDS, buf, start, sp1 - start, False)
        if k >= 0:
            method = _METHODS[k]  # interned: no allocation for these
        else:
            if not is_token(buf, start, sp1):
                self._fail(400, 18)  # method is not a token
            method = str(buf[start:sp1], "ascii")
        self.method = method
        if buf[sp1 + 1] != 47:  # "/"
            self._fail(400, 19)  # request target must start with /
        for i in range(sp1 + 1, sp2):
            c = buf[i]
            if c <= _SP or c >= 127:
                self._fail(400, 20)  # control, space or non-ASCII byte in the target
        self.target = str(buf[sp1 + 1:sp2], "ascii")

    def _finish(self):
        headers = self.headers
        method = self.method
        if self._coding is not None:
            if self.content_length is not None:
                self._fail(400, 21)  # both Transfer-Encoding and Content-Length
            if has_token(self._coding, "chunked"):
                self._fail(411, 22)  # chunked body: send Content-Length
            self._fail(501, 23)  # Transfer-Encoding not supported: send Content-Length
        if self.content_length is None:
            if method == "POST" or method == "PUT" or method == "PATCH":
                self._fail(411, 24)  # Content-Length required
            self.content_length = 0
        if self.content_length > self.limits.body:
            self._fail(413, 25, self.limits.body)  # body over N bytes
        if "host" not in headers and not self.http10:
            self._fail(400, 26)  # HTTP/1.1 request without Host
        if self._expect is not None:
            if self._expect.lower() != "100-continue":
                self._fail(417, 27)  # only Expect: 100-continue is supported
            self.expect_continue = not self.http10 and self.content_length > 0
        self.keep_alive = not self.http10 and not (self._connection is not None
                                                   and has_token(self._connection, "close"))
        return method, self.target, headers
