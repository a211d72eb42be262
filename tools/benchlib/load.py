"""The one HTTP load generator of the bench: raw sockets, N client threads, keep-alive or not.

The same client for our producer and for microdot. Each thread sends
`GET path` and reads the answer (status line, headers, Content-Length
bytes of body) over and over until the time is up. keep_alive=True sends
HTTP/1.1 requests on one connection for as long as the server keeps it
open (a server that answers HTTP/1.0 without keep-alive, or says
"Connection: close", closes it: the thread then connects again, and that
is counted); keep_alive=False opens a new connection per request and
asks the server to close it. Only 200 answers whose body is as long as
expected count; anything else is an error, counted, never raised. Each
socket operation has a timeout; every loop ends at its deadline.
"""
import socket
import threading
import time

IO_TIMEOUT = 5.0
MAX_HEAD = 8192


class BadAnswer(Exception):
    pass


def _read_answer(sock, pending):
    """(status, keep open, body, bytes read past the answer) from a socket; BadAnswer on EOF or junk."""
    data = pending
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise BadAnswer("connection closed before the answer's head")
        data += chunk
        if len(data) > MAX_HEAD:
            raise BadAnswer("answer head too long")
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise BadAnswer("not an HTTP status line: %r" % lines[0][:40])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip().lower()
    connection = headers.get(b"connection", b"")
    keep = (parts[0] == b"HTTP/1.1" and connection != b"close") or connection == b"keep-alive"
    if b"content-length" in headers:
        length = int(headers[b"content-length"])
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise BadAnswer("connection closed inside the body")
            rest += chunk
        return int(parts[1]), keep, rest[:length], rest[length:]
    while True:  # no length: the body ends with the connection
        chunk = sock.recv(65536)
        if not chunk:
            return int(parts[1]), False, rest, b""
        rest += chunk


def _connect(port, timeout=IO_TIMEOUT):
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def request(port, path, keep_alive=False, timeout=IO_TIMEOUT):
    """One GET on a new connection: (status, body bytes)."""
    sock = _connect(port, timeout)
    try:
        sock.sendall(_request_bytes(path, keep_alive))
        status, _, body, _ = _read_answer(sock, b"")
        return status, body
    finally:
        sock.close()


def _request_bytes(path, keep_alive):
    return ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n"
            % (path, "" if keep_alive else "Connection: close\r\n")).encode()


class _Client(threading.Thread):
    def __init__(self, port, path, keep_alive, expected_length, start, stop):
        super().__init__(daemon=True)
        self.port, self.path, self.keep_alive = port, path, keep_alive
        self.expected_length = expected_length
        self.start_at, self.stop_at = start, stop
        self.ok = self.errors = self.connects = 0
        self.kinds = {}

    def run(self):
        payload = _request_bytes(self.path, self.keep_alive)
        sock, pending = None, b""
        while True:
            now = time.monotonic()
            if now >= self.stop_at:
                break
            try:
                if sock is None:
                    sock, pending = _connect(self.port), b""
                    if now >= self.start_at:
                        self.connects += 1
                sock.sendall(payload)
                status, keep, body, pending = _read_answer(sock, pending)
                if status != 200 or len(body) != self.expected_length:
                    raise BadAnswer("status %d, %d body bytes" % (status, len(body)))
                if time.monotonic() >= self.start_at and time.monotonic() < self.stop_at:
                    self.ok += 1
            except (OSError, BadAnswer, ValueError) as exc:
                keep = False
                if time.monotonic() >= self.start_at:
                    self.errors += 1
                    kind = type(exc).__name__ + (": " + str(exc)[:60] if isinstance(exc, BadAnswer) else "")
                    self.kinds[kind] = self.kinds.get(kind, 0) + 1
                time.sleep(0.01)  # a refused connection must not spin
            if not (self.keep_alive and keep):
                if sock is not None:
                    sock.close()
                sock = None
        if sock is not None:
            sock.close()


def run(port, path, clients, seconds, keep_alive, expected_length, warm_up=0.5):
    """Requests per second over `seconds` after `warm_up`, with `clients` threads.

    Returns {"rps", "ok", "errors", "kinds", "connects", "seconds"}; connects
    counts connections opened in the measured window (1 per client means
    every request reused a kept-alive connection).
    """
    start = time.monotonic() + warm_up
    stop = start + seconds
    threads = [_Client(port, path, keep_alive, expected_length, start, stop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + warm_up + 2 * IO_TIMEOUT + 5)
    ok = sum(t.ok for t in threads)
    kinds = {}
    for thread in threads:
        for kind, count in thread.kinds.items():
            kinds[kind] = kinds.get(kind, 0) + count
    return {"rps": ok / seconds, "ok": ok, "errors": sum(t.errors for t in threads), "kinds": kinds,
            "connects": sum(t.connects for t in threads), "seconds": seconds, "clients": clients,
            "keepAlive": keep_alive}
