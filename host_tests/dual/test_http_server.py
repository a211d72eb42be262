"""HTTP server and client over real sockets on 127.0.0.1, in one event loop.

Each test runs its own asyncio.run(). Timeouts are a few tenths of a
second; waits for something that should happen are bounded generously
(a few seconds) so a slow machine fails loudly instead of hanging.
"""
import asyncio
import json

from wpwithin import http1, http_client, wire
from wpwithin.errors import ProtocolError
from wpwithin.http_client import Connection, request
from wpwithin.http_server import Server
from wpwithin.net_errors import BadResponse, ConnectFailed, ConnectionDropped, HttpTimeout, NetError

HOST = "127.0.0.1"
FAST = {"read_timeout": 0.3, "request_timeout": 1.0, "idle_timeout": 0.6}
WAIT = 3  # seconds: an upper bound, never a timing assertion


async def handler(method, path, headers, body):
    if path.startswith("/boom"):
        raise RuntimeError("kaput with T_S_secret-service-key")
    if path == "/refuse":
        raise ProtocolError(404, "no such thing")
    if path == "/bad-return":
        return 200, {"not": "bytes"}
    answer = {"method": method, "path": path, "length": len(body), "body": str(body, "utf-8"),
              "type": headers.get("content-type", "")}
    return 200, wire.encode_json(answer)


def serve(test, **options):
    """Run `await test(server)` against a fresh server on a free port; returns its result."""
    settings = dict(FAST)
    settings.update(options)
    log = []
    settings.setdefault("log", log.append)

    async def main():
        server = Server(handler, HOST, 0, **settings)
        server.logged = log
        await server.start()
        try:
            return await test(server)
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(main())


def split(data):
    """(status, headers, body, keep_alive) for each whole response in data."""
    out = []
    pos = 0
    while pos < len(data):
        parser = http_client.ResponseParser(http1.Limits(body=100000))
        head = parser.parse(data, pos)
        if head is None:
            break
        start = pos + parser.consumed
        if len(data) - start < parser.length:
            break
        out.append((head[0], head[1], data[start:start + parser.length], parser.keep_alive))
        pos = start + parser.length
    return out


async def opened(port):
    return await asyncio.open_connection(HOST, port)


async def shut(writer):
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass  # reset by the server: closed either way


async def read_some(reader):
    """The next bytes, b"" at end of stream or on a reset."""
    try:
        return await asyncio.wait_for(reader.read(4096), WAIT)
    except OSError:
        return b""


async def exchange(port, data, count=1, check_close=True):
    """Send data on a new connection; read `count` responses; returns (responses, closed after).

    Checking that the server closed waits for it to do so (at most WAIT s).
    """
    reader, writer = await opened(port)
    writer.write(data)
    await writer.drain()
    got = b""
    closed = False
    while len(split(got)) < count:
        chunk = await read_some(reader)
        if not chunk:
            closed = True
            break
        got += chunk
    if not closed and check_close:
        closed = not await read_some(reader)
    await shut(writer)
    return split(got), closed


async def failure(coro):
    """The NetError awaiting coro raises; fails if it raises none."""
    try:
        await coro
    except NetError as exc:
        return exc
    raise AssertionError("no NetError")


def error_of(response):
    status, headers, body, _ = response
    message = json.loads(body)
    assert headers["content-type"] == "application/json;charset=UTF-8"
    assert message["HTTPStatusCode"] == status, message
    assert sorted(message) == ["HTTPStatusCode", "errorCode", "message"]
    return message["message"]


async def raw_server(respond):
    """A misbehaving server: `respond(reader, writer)` is all it does. Returns (server, port)."""
    import sys
    if sys.implementation.name == "micropython":  # its sockets have no getsockname()
        from wpwithin.http_server import _free_port
        port = _free_port(HOST)
        return await asyncio.start_server(respond, HOST, port), port
    srv = await asyncio.start_server(respond, HOST, 0)
    return srv, srv.sockets[0].getsockname()[1]


def with_raw_server(respond, test):
    async def main():
        srv, port = await raw_server(respond)
        try:
            return await test(port)
        finally:
            srv.close()
            await srv.wait_closed()
    return asyncio.run(main())


# --- round trips and keep-alive ----------------------------------------------------------------

def test_get_and_post_round_trip():
    async def test(server):
        assert server.port > 0
        status, headers, body = await request("GET", HOST, server.port, "/service/discover?x=1")
        assert status == 200 and headers["content-type"] == "application/json;charset=UTF-8"
        assert json.loads(body) == {"method": "GET", "path": "/service/discover?x=1", "length": 0, "body": "",
                                    "type": ""}
        status, _, body = await request("POST", HOST, server.port, "/payment", b'{"a": 1}')
        assert status == 200
        got = json.loads(body)
        assert (got["length"], got["body"], got["type"]) == (8, '{"a": 1}', "application/json")
    serve(test)


def test_keep_alive_reuses_one_connection():
    async def test(server):
        conn = Connection(HOST, server.port)
        try:
            for i in range(5):
                status, _, body = await conn.request("POST" if i % 2 else "GET", "/n/%d" % i, b"x" * i if i % 2 else None)
                assert status == 200 and json.loads(body)["path"] == "/n/%d" % i
                assert server.connections == 1
            assert conn.connects == 1
        finally:
            await conn.close()
    serve(test)


def test_connection_close_and_http10_close_after_the_answer():
    async def test(server):
        responses, closed = await exchange(server.port, b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        assert [r[0] for r in responses] == [200] and not responses[0][3] and closed
        responses, closed = await exchange(server.port, b"GET /b HTTP/1.0\r\n\r\n")
        assert [r[0] for r in responses] == [200] and not responses[0][3] and closed
        responses, closed = await exchange(server.port, b"GET /c HTTP/1.1\r\nHost: h\r\n\r\n", check_close=False)
        assert [r[0] for r in responses] == [200] and responses[0][3] and not closed
    serve(test)


def test_pipelined_requests_are_answered_in_order():
    async def test(server):
        data = (b"POST /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
                b"GET /2 HTTP/1.1\r\nHost: h\r\n\r\n"
                b"POST /3 HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nConnection: close\r\n\r\nz")
        responses, closed = await exchange(server.port, data, count=3)
        assert [json.loads(r[2])["path"] for r in responses] == ["/1", "/2", "/3"]
        assert json.loads(responses[0][2])["body"] == "abc" and json.loads(responses[2][2])["body"] == "z"
        assert closed
    serve(test)


def test_head_gets_the_head_only():
    async def test(server):
        conn = Connection(HOST, server.port)
        try:
            status, _, body = await conn.request("HEAD", "/h")
            assert status == 200 and body == b""
            status, _, body = await conn.request("GET", "/g")
            assert json.loads(body)["path"] == "/g" and conn.connects == 1
        finally:
            await conn.close()
    serve(test)


def test_head_is_answered_as_get_without_the_body():
    # RFC 9110 9.3.2: the status and Content-Length a GET would get, and no body; the handler
    # sees GET, so a producer's GET routes answer HEAD with 200 and its POST routes with 405.
    async def test(server):
        status, _, body = await request("GET", HOST, server.port, "/h")
        assert status == 200 and json.loads(body)["method"] == "GET"
        reader, writer = await opened(server.port)
        writer.write(b"HEAD /h HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        await writer.drain()
        got = b""
        while True:
            chunk = await read_some(reader)
            if not chunk:
                break
            got += chunk
        await shut(writer)
        assert got == http1.response_head(200, len(body), True), got
    serve(test)


def test_expect_100_continue_gets_continue_then_the_answer():
    async def test(server):
        reader, writer = await opened(server.port)
        writer.write(b"POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        await writer.drain()
        got = b""
        while not got.endswith(b"\r\n\r\n"):
            got += await read_some(reader)
        assert got == http1.CONTINUE
        writer.write(b"data")
        await writer.drain()
        got = b""
        while not split(got):
            got += await read_some(reader)
        assert json.loads(split(got)[0][2])["body"] == "data"
        await shut(writer)
    serve(test)


# --- refusals -------------------------------------------------------------------------------------

def test_oversized_body_is_413_and_closed():
    async def test(server):
        status, _, body = await request("POST", HOST, server.port, "/big", b"x" * 3000)
        assert status == 413 and str(http1.MAX_BODY) in json.loads(body)["message"]
        # a client still sending a large body must see the answer, not a reset
        responses, closed = await exchange(server.port, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 20000\r\n\r\n"
                                           + b"y" * 20000)
        assert [r[0] for r in responses] == [413] and closed
        error_of(responses[0])
    serve(test)


def test_missing_content_length_is_411():
    async def test(server):
        responses, closed = await exchange(server.port, b"POST /payment HTTP/1.1\r\nHost: h\r\n\r\n{}")
        assert [r[0] for r in responses] == [411] and closed and not responses[0][3]
        assert "Content-Length" in error_of(responses[0])
    serve(test)


def test_chunked_request_is_refused():
    async def test(server):
        responses, closed = await exchange(
            server.port, b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
        assert [r[0] for r in responses] == [411] and closed
        assert "Content-Length" in error_of(responses[0])
    serve(test)


def test_malformed_requests_get_their_status_as_json():
    cases = [
        (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
        (b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X-Pad: " + b"p" * 2100 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X: 1\r\n" * 30 + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: 1\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\nHost: h\n\n", 400),
        (b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab", 400),
    ]

    async def test(server):
        for data, status in cases:
            responses, closed = await exchange(server.port, data)
            assert [r[0] for r in responses] == [status] and closed, (data[:40], responses)
            error_of(responses[0])
    serve(test)


def test_handler_refusal_keeps_the_connection():
    async def test(server):
        conn = Connection(HOST, server.port)
        try:
            status, _, body = await conn.request("GET", "/refuse")
            assert status == 404 and json.loads(body) == wire.error(404, "no such thing")
            status, _, _ = await conn.request("GET", "/after")
            assert status == 200 and conn.connects == 1
        finally:
            await conn.close()
    serve(test)


def test_handler_exception_is_500_logged_without_secrets_and_serving_goes_on():
    async def test(server):
        conn = Connection(HOST, server.port)
        try:
            status, _, body = await conn.request("GET", "/boom?key=T_S_query-secret")
            assert status == 500 and json.loads(body)["HTTPStatusCode"] == 500
            status, _, _ = await conn.request("GET", "/bad-return")
            assert status == 500
            status, _, body = await conn.request("GET", "/next")
            assert status == 200 and json.loads(body)["path"] == "/next" and conn.connects == 1
        finally:
            await conn.close()
        assert len(server.logged) == 2, server.logged
        assert "RuntimeError" in server.logged[0] and "/boom" in server.logged[0]
        for line in server.logged:
            assert "secret" not in line and "kaput" not in line, line
    serve(test)


# --- slow clients and connection limits ----------------------------------------------------------

def test_silent_client_is_dropped_while_another_is_served():
    async def test(server):
        reader, writer = await opened(server.port)  # connects, sends nothing
        status, _, _ = await request("GET", HOST, server.port, "/meanwhile")
        assert status == 200
        assert await read_some(reader) == b""  # dropped after read_timeout, with no answer
        await shut(writer)
        assert server.connections == 0
    serve(test)


def test_trickling_client_is_dropped_at_the_request_deadline():
    async def test(server):
        reader, writer = await opened(server.port)
        data = b"GET /trickle HTTP/1.1\r\nHost: h\r\nX-Long: " + b"z" * 200
        got = b""
        for i in range(len(data)):  # one byte per 0.1 s: each read is in time, the request is not
            try:
                writer.write(data[i:i + 1])
                await writer.drain()
            except OSError:
                break
            await asyncio.sleep(0.1)
            status, _, _ = await request("GET", HOST, server.port, "/others-are-served")
            assert status == 200
            if i > 40:
                raise AssertionError("trickling client was never dropped")
            if i > 8:
                try:
                    got = await asyncio.wait_for(reader.read(4096), 0.01)
                except asyncio.TimeoutError:
                    continue
                except OSError:
                    break
                if got:
                    break
        while got and not split(got):
            more = await read_some(reader)
            if not more:
                break
            got += more
        responses = split(got)
        assert [r[0] for r in responses] == [408], got
        error_of(responses[0])
        await shut(writer)
    serve(test)


def test_excess_connections_get_a_quick_503_and_holders_keep_their_slots():
    async def test(server):
        holders = []
        for _ in range(2):
            reader, writer = await opened(server.port)
            writer.write(b"GET /held HTTP/1.1\r\n")  # a request begun, so not idle
            await writer.drain()
            holders.append((reader, writer))
        await asyncio.sleep(0.05)
        assert server.connections == 2
        status, _, body = await request("GET", HOST, server.port, "/third")
        assert status == 503 and "too many connections" in json.loads(body)["message"]
        holders[0][1].write(b"Host: h\r\n\r\n")
        await holders[0][1].drain()
        got = b""
        while not split(got):
            got += await read_some(holders[0][0])
        assert split(got)[0][0] == 200
        for _, writer in holders:
            await shut(writer)
        await asyncio.sleep(0.05)
        status, _, _ = await request("GET", HOST, server.port, "/later")
        assert status == 200
    serve(test, max_connections=2, read_timeout=2.0, request_timeout=3.0)


def test_an_idle_kept_alive_connection_gives_its_slot_to_a_new_one():
    async def test(server):
        first = Connection(HOST, server.port)
        try:
            assert (await first.request("GET", "/one"))[0] == 200
            await asyncio.sleep(0.05)
            assert (await request("GET", HOST, server.port, "/two"))[0] == 200
            # the first connection was closed for it; a GET is sent again on a new one
            assert (await first.request("GET", "/three"))[0] == 200
            assert first.connects == 2
        finally:
            await first.close()
    serve(test, max_connections=1, idle_timeout=5.0)


def test_a_post_on_a_connection_the_server_closed_is_not_sent_again():
    async def test(server):
        conn = Connection(HOST, server.port)
        try:
            assert (await conn.request("POST", "/pay", b"{}"))[0] == 200
            await asyncio.sleep(0.8)  # past idle_timeout: the server has closed it
            exc = await failure(conn.request("POST", "/pay", b"{}"))
            assert isinstance(exc, ConnectionDropped) and not exc.answered, exc
            assert conn.connects == 1
            assert (await conn.request("POST", "/pay", b"{}"))[0] == 200  # the caller may decide to retry
            assert conn.connects == 2
        finally:
            await conn.close()
    serve(test, idle_timeout=0.3)


def test_idle_keep_alive_connection_times_out():
    async def test(server):
        reader, writer = await opened(server.port)
        writer.write(b"GET /once HTTP/1.1\r\nHost: h\r\n\r\n")
        await writer.drain()
        got = b""
        while not split(got):
            got += await read_some(reader)
        assert await read_some(reader) == b""  # closed after idle_timeout
        await shut(writer)
    serve(test)


def test_server_close_drops_open_connections():
    async def main():
        server = Server(handler, HOST, 0, **FAST)
        await server.start()
        reader, writer = await opened(server.port)
        await asyncio.sleep(0.05)
        assert server.connections == 1
        server.close()
        await server.wait_closed()
        assert server.connections == 0
        assert await read_some(reader) == b""
        await shut(writer)
        exc = await failure(request("GET", HOST, server.port, "/", timeout=1))
        assert isinstance(exc, ConnectFailed), "closed server still accepts: %r" % exc
    asyncio.run(main())


# --- the client's failures --------------------------------------------------------------------------

def test_client_times_out_when_the_server_never_answers():
    async def silent(reader, writer):
        await reader.read(1000)
        await asyncio.sleep(5)

    async def test(port):
        exc = await failure(request("GET", HOST, port, "/", timeout=0.3))
        assert isinstance(exc, HttpTimeout), exc
        assert "timed out" in exc.message and str(port) in exc.message
    with_raw_server(silent, test)


def test_refused_connection_is_connect_failed():
    async def test(server):
        return server.port
    port = serve(test)  # a port nobody listens on any more

    async def main():
        exc = await failure(request("GET", HOST, port, "/", timeout=1))
        assert isinstance(exc, ConnectFailed) and str(port) in exc.message, exc
    asyncio.run(main())


def test_peer_closing_mid_response_is_connection_dropped():
    async def half(reader, writer):
        await reader.read(1000)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        await shut(writer)

    async def test(port):
        exc = await failure(request("GET", HOST, port, "/"))
        assert isinstance(exc, ConnectionDropped) and exc.answered, exc
    with_raw_server(half, test)


def test_peer_closing_before_answering_is_connection_dropped():
    async def hang_up(reader, writer):
        await reader.read(1000)
        await shut(writer)

    async def test(port):
        exc = await failure(request("POST", HOST, port, "/", b"{}"))
        assert isinstance(exc, ConnectionDropped) and not exc.answered, exc
    with_raw_server(hang_up, test)


def test_bad_and_oversized_responses_are_bad_response():
    answers = [b"HELLO\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n01234567890",
               b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n01234567\r\n8\r\n01234567\r\n0\r\n\r\n",
               b"HTTP/1.1 200 OK\r\n\r\n" + b"u" * 11, b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"]

    async def answer(reader, writer):
        await reader.read(1000)
        writer.write(answers.pop(0))
        await writer.drain()
        await shut(writer)

    async def test(port):
        for _ in range(len(answers)):
            exc = await failure(request("GET", HOST, port, "/", max_body=10))
            assert isinstance(exc, BadResponse), exc
    with_raw_server(answer, test)


def test_client_reads_chunked_and_until_close_bodies():
    answers = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;x=y\r\n \r\n5\r\nworld\r\n0\r\n\r\n",
               b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 201 Created\r\n\r\nuntil close"]

    async def answer(reader, writer):
        await reader.read(1000)
        writer.write(answers.pop(0))
        await writer.drain()
        await shut(writer)

    async def test(port):
        assert await request("GET", HOST, port, "/") == (200, {}, b"hello world")
        assert await request("GET", HOST, port, "/") == (201, {}, b"until close")
    with_raw_server(answer, test)


def test_client_refuses_to_send_injected_headers():
    async def main():
        conn = Connection(HOST, 9)
        for args in (("GET", "/a b"), ("GET", "/a\r\nX: y"), ("G T", "/"), ("GET", "no-slash")):
            try:
                await conn.request(*args)
            except ValueError:
                continue
            raise AssertionError("sent %r" % (args,))
        for headers in ({"X": "a\r\nEvil: 1"}, {"Bad Name": "v"}, {"Content-Length": "5"}):
            try:
                await conn.request("GET", "/", headers=headers)
            except ValueError:
                continue
            raise AssertionError("sent %r" % (headers,))
        assert conn.connects == 0
    asyncio.run(main())
