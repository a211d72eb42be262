"""The floor: what any producer that takes card payments needs of this interpreter before its own code.

    micropython -X heapsize=H -m mp_floor PORT GATEWAY_HOST GATEWAY_PORT CA_PEM BODY_FILE

A bare asyncio server on 127.0.0.1:PORT that, for every request, makes one
HTTPS round trip to the gateway (TLS, the gateway's certificate checked
against CA_PEM, as our gateway client does) and then answers with the
bytes of BODY_FILE. No parsing beyond reading the head, no validation,
no ledger, no journal, no error messages: a heap this process cannot run
in, no producer can. Prints "heap image=0 imported=N" and "listening on
HOST:PORT" as the other server runners do.
"""
import gc
import sys


def der(pem):
    import binascii

    return binascii.a2b_base64(b"".join(line for line in pem.split(b"\n") if line and line[:5] != b"-----"))


def main(argv):
    import asyncio
    import ssl

    port, gateway_host, gateway_port = int(argv[1]), argv[2], int(argv[3])
    gc.collect()
    print("heap image=0 imported=%d" % gc.mem_alloc())  # the unix port's stdout is unbuffered
    with open(argv[4], "rb") as f:
        ca = der(f.read())
    with open(argv[5], "rb") as f:
        body = f.read()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=ca)
    del ca
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: %d\r\n\r\n" % len(body)
    call = b"GET /v1/floor HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % gateway_host.encode()

    async def answer(reader, writer):
        try:
            while True:
                line = await reader.readline()
                if line == b"":
                    return
                while line not in (b"\r\n", b""):
                    line = await reader.readline()
                g_reader, g_writer = await asyncio.open_connection(gateway_host, gateway_port, ssl=context,
                                                                   server_hostname=gateway_host)
                g_writer.write(call)
                await g_writer.drain()
                status = await g_reader.readline()
                g_writer.close()
                await g_writer.wait_closed()
                if not status.startswith(b"HTTP/1.1 "):
                    return
                writer.write(head)
                writer.write(body)
                await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()

    async def serve():
        await asyncio.start_server(answer, "127.0.0.1", port)
        print("listening on 127.0.0.1:%d" % port)
        while True:
            await asyncio.sleep(3600)

    asyncio.run(serve())


main(sys.argv)
