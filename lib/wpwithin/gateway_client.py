"""Client of the payment gateway (Worldpay Online Payments JSON API or our simulator).

Consumer side: token() turns a card into a one-use token for a merchant's
client key. Producer side: place_order(), order(), find_orders() and
refund() with the service key. Talks HTTPS with certificate verification
(or plain HTTP to a local simulator when the URL says http://). Errors:
GatewayError when the gateway answers with an error body; the http
client's NetError subclasses (timeout, refused, dropped, TLS) when it does
not answer, which callers must treat as "outcome unknown". Never logs and
never puts into an exception the card number, the CVC or the service key.
The verifying ssl context is made at construction (wpwithin.tls, loaded
for that and dropped after); the HTTP client is imported by the first
call, so a producer carries none of it until a payment comes (only the
buffer reserve() makes at its start).
"""
from wpwithin import gateway_wire, http1, wire
from wpwithin.compat import const, forget
from wpwithin.errors import PeerError, ProtocolError


def parse_url(url):
    """(tls, host, port, base path) of an http:// or https:// URL."""
    if url.startswith("https://"):
        tls, rest, port = True, url[8:], 443
    elif url.startswith("http://"):
        tls, rest, port = False, url[7:], 80
    else:
        raise ValueError("gateway URL must start with http:// or https://")
    slash = rest.find("/")
    hostport, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    colon = hostport.rfind(":")
    host = hostport
    if colon > 0 and hostport[colon + 1:].isdigit():
        host, port = hostport[:colon], int(hostport[colon + 1:])
    if not host:
        raise ValueError("gateway URL has no host")
    return tls, host, port, path.rstrip("/")


_UNRESERVED = const(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def quote(text):
    """`text` percent-encoded for a path segment or a query value (RFC 3986: all but unreserved).

    Without it a customerOrderCode holding '+', '&' or '%' would search for
    another code, and an order code holding '/' or '?' would reach another path.
    """
    out = []
    for byte in str(text).encode():
        out.append(chr(byte) if byte in _UNRESERVED else "%%%02X" % byte)
    return "".join(out)


def _decoded(data):
    """(the answer's JSON or None, what is wrong with it or None), read while it is in the buffer."""
    try:
        return (wire.decode_json(data, "gateway answer", None) if data else None), None
    except ProtocolError as exc:
        return None, exc.message


class GatewayClient:
    def __init__(self, url, service_key=None, ca=None, timeout=10):
        """`ca`: the CA certificate (PEM or DER bytes) an https:// gateway is verified against."""
        self.url = url
        tls, self.host, self.port, self.base = parse_url(url)
        self._service_key = service_key
        self.timeout = timeout
        self.tls = None
        if tls:  # a bad CA fails here, at start
            from wpwithin import tls as tls_module

            try:
                self.tls = tls_module.tls_context(cadata=ca)
            finally:  # used once: its ~1 KB of heap is freed (a client made later loads it again)
                forget("wpwithin.tls")
        self._conns = None
        self._buf = None  # reserve()'s, until the first call

    def __repr__(self):
        return "<GatewayClient %s>" % self.url

    def reserve(self):
        """Make the connection's response buffer now (a producer, at start): made at the first
        payment, among the leftovers of other requests, its 2.3 KB block was sometimes not there."""
        if self._conns is None and self._buf is None:
            self._buf = bytearray(http1.Limits(header_block=http1.MAX_RESPONSE_HEADER_BLOCK).head)  # as http_client

    async def call(self, method, path, body=None, auth=False):
        headers = {}
        if auth:
            if not self._service_key:
                raise ValueError("this gateway client has no service key")
            headers["Authorization"] = self._service_key
        payload = None if body is None else wire.encode_json(body)
        if payload is not None:
            headers["Content-Type"] = "application/json"
        if self._conns is None:
            # The HTTP client (~10 KB of heap on the 64-bit port, with its response parser) is loaded
            # by the first call, not at start, and kept: loading it again for each payment would
            # fragment the heap. One connection object (its buffer and parser), made then and reused
            # by every call, its socket closed after each. Answers are parsed where they arrived, in
            # its buffer (view_body): an order's 700 bytes, copied, were what a fragmented heap
            # could not find.
            from wpwithin import http_client

            self._conns = http_client.Reuse(self.timeout, self.tls, view_body=True, buf=self._buf)
            self._buf = None
        status, (obj, bad) = await self._conns.request(self.host, self.port, method, self.base + path, payload,
                                                       headers, _decoded)
        if status == 200:
            if bad:
                raise PeerError(bad)
            return obj
        raise gateway_wire.parse_error(status, obj)

    async def token(self, client_key, card):
        """A one-use token (TEST_SU_...) for `card`, usable by the merchant with client_key.

        Consumers only: card.py, imported here, is not in producer-only images.
        """
        from wpwithin import card as cards

        return await cards.token(self, client_key, card)

    async def place_order(self, order_request):
        """Charge a token; returns the parsed order (paymentStatus SUCCESS or FAILED)."""
        answer = await self.call("POST", "/orders", order_request, auth=True)
        return gateway_wire.parse_order_response(answer)

    async def order(self, order_code):
        return gateway_wire.parse_order_response(
            await self.call("GET", "/orders/" + quote(order_code), auth=True))

    async def find_orders(self, customer_order_code):
        """Orders placed with this customerOrderCode (simulator extension, for resolving timeouts)."""
        answer = await self.call("GET", "/orders?customerOrderCode=" + quote(customer_order_code), auth=True)
        if isinstance(answer, dict):
            answer = answer.get("orders", [])
        if not isinstance(answer, list):
            raise PeerError("gateway order search: expected a list of orders")
        return [gateway_wire.parse_order_response(o) for o in answer]

    async def refund(self, order_code, amount=None):
        """Refund in full (amount None) or in part; success is an empty 200."""
        await self.call("POST", "/orders/%s/refund" % quote(order_code), gateway_wire.refund_request(amount),
                         auth=True)
