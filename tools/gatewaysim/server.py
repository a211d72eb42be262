"""HTTP/1.1 (and HTTPS) server of the simulated gateway: moves bytes between sockets and api.Gateway.

One thread per connection (ThreadingHTTPServer), keep-alive, Content-Length
on every response, hard limits on connections, body size and idle time,
and the TLS handshake done in the connection's thread so a slow client
cannot stall the others. It carries out the FaultPlan the gateway decides
(sleep, drop, trickle) and logs one line per request. It must never log
headers or bodies (service keys and card data live there), and it makes
no payment decisions of its own.
"""
import email.utils
import http
import http.server
import socket
import ssl
import sys
import threading
import time

from gatewaysim import cards, faults
from gatewaysim.api import MAX_BODY, json_reply
from gatewaysim.errors import GatewayError, error_body

MAX_CONNECTIONS = 256  # open connections; more are closed at once
IDLE_TIMEOUT = 30.0  # seconds a connection may sit idle or stall mid-request
HANDSHAKE_TIMEOUT = 10.0  # seconds for a TLS handshake


def stderr_log(line):
    """Default request log: one line to stderr."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class GatewayRequestHandler(http.server.BaseHTTPRequestHandler):
    """One connection: parse requests, let the gateway answer, apply faults, write replies."""

    protocol_version = "HTTP/1.1"
    server_version = "gatewaysim/1"
    sys_version = ""
    timeout = IDLE_TIMEOUT

    def _dispatch(self):
        started = time.monotonic()
        gateway = self.server.gateway
        target = self.path
        framing_error = self._framing_error()
        if framing_error is not None:
            self.close_connection = True
            self._write(json_reply(framing_error.status, error_body(framing_error)))
            self._log(framing_error.status, started)
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if len(body) < length:  # the client went away mid-body
            self.close_connection = True
            self._log("-", started, ["short body"])
            return
        plan = gateway.fault_plan(self.command, target)
        if plan.delay:
            time.sleep(plan.delay)
        if plan.drop == "before":
            self._drop()
            self._log("-", started, plan.labels)
            return
        if plan.status is not None:
            reply = gateway.fault_reply(plan.status)
        else:
            reply = gateway.handle(self.command, target, self.headers, body)
        if plan.drop == "after":
            self._drop()
            self._log("-", started, plan.labels)
            return
        self._write(reply, plan.trickle)
        self._log(reply.status, started, plan.labels)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_OPTIONS = _dispatch

    def _framing_error(self):
        """A GatewayError if the body cannot be framed or is too big (the body is then not read)."""
        if self.headers.get("Transfer-Encoding") is not None:
            return GatewayError("LENGTH_REQUIRED", "Transfer-Encoding is not supported; send Content-Length")
        values = self.headers.get_all("Content-Length") or []
        if len(values) > 1:
            return GatewayError("BAD_REQUEST", "Content-Length header sent more than once")
        if values:
            text = values[0].strip()
            if not (text.isascii() and text.isdigit()) or len(text) > 12:
                return GatewayError("BAD_REQUEST", "Content-Length is not a number")
            if int(text) > MAX_BODY:
                return GatewayError("REQUEST_TOO_LARGE", "Request body exceeds %d bytes" % MAX_BODY)
        return None

    def _write(self, reply, trickle=None):
        head = ["HTTP/1.1 %d %s" % (reply.status, _reason(reply.status)),
                "Server: %s" % self.server_version,
                "Date: %s" % email.utils.formatdate(usegmt=True)]
        head += ["%s: %s" % pair for pair in reply.headers]
        head.append("Content-Length: %d" % len(reply.body))
        if self.close_connection:
            head.append("Connection: close")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body
        if trickle is None:
            self.wfile.write(data)
            return
        for start in range(0, len(data), faults.TRICKLE_CHUNK):
            if start:
                time.sleep(trickle)
            self.wfile.write(data[start:start + faults.TRICKLE_CHUNK])
            self.wfile.flush()

    def _drop(self):
        """Close without a reply (FIN, after the whole request was read)."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _log(self, status, started, labels=()):
        elapsed = (time.monotonic() - started) * 1000
        target = cards.scrub_card_numbers(self.path)
        line = "%s %s %s %s %.1fms" % (self.client_address[0], self.command, target, status, elapsed)
        if labels:
            line += " fault=" + ",".join(labels)
        self.server.log(line)

    def log_message(self, format, *args):  # noqa: A002 (http.server's signature)
        """http.server's own messages (malformed requests): scrubbed, never with headers."""
        self.server.log("%s %s" % (self.client_address[0], cards.scrub_card_numbers(format % args)))

    def log_request(self, code="-", size="-"):
        """Replaced by _log (http.server calls this only for its own error replies)."""
        self.server.log("%s %s %s" % (self.client_address[0],
                                      cards.scrub_card_numbers(getattr(self, "requestline", "")), code))


def _reason(status):
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class GatewayServer(http.server.ThreadingHTTPServer):
    """Threaded HTTP(S) server for one Gateway; start() serves in a background thread."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, gateway, host="127.0.0.1", port=0, ssl_context=None, log=stderr_log):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.gateway = gateway
        self.ssl_context = ssl_context
        self.log = log
        self._connections = set()
        self._connections_lock = threading.Lock()
        self._thread = None
        super().__init__((host, port), GatewayRequestHandler)

    @property
    def url(self):
        """Base URL of the API, e.g. http://127.0.0.1:8443/v1."""
        host, port = self.server_address[:2]
        if ":" in host:
            host = "[%s]" % host
        scheme = "https" if self.ssl_context is not None else "http"
        return "%s://%s:%d/v1" % (scheme, host, port)

    def start(self):
        """Serve in a daemon thread; returns self."""
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="gatewaysim", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop accepting, close every open connection, release the port."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        with self._connections_lock:
            open_now = list(self._connections)
        for connection in open_now:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server_close()

    def _track(self, old, new):
        with self._connections_lock:
            self._connections.discard(old)
            if new is not None:
                self._connections.add(new)

    def verify_request(self, request, client_address):
        with self._connections_lock:
            if len(self._connections) >= MAX_CONNECTIONS:
                self.log("%s refused: %d connections open" % (client_address[0], MAX_CONNECTIONS))
                return False
            self._connections.add(request)
        return True

    def finish_request(self, request, client_address):
        """Runs in the connection's thread: TLS handshake (if any), then the HTTP conversation."""
        connection = request
        try:
            if self.ssl_context is not None:
                request.settimeout(HANDSHAKE_TIMEOUT)
                try:
                    connection = self.ssl_context.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError) as exc:
                    self.log("%s TLS handshake failed: %s" % (client_address[0], exc.__class__.__name__))
                    return
                self._track(request, connection)
            self.RequestHandlerClass(connection, client_address, self)
        finally:
            self._track(connection, None)
            self._track(request, None)
            if connection is not request:
                try:
                    connection.close()
                except OSError:
                    pass

    def handle_error(self, request, client_address):
        """A connection thread failed: one line, no traceback with request data."""
        exc = sys.exc_info()[1]
        self.log("%s connection error: %s" % (client_address[0], exc.__class__.__name__))

