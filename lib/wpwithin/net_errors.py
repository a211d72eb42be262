"""Typed errors of the network shell: what can go wrong talking to a peer.

Every failure of the HTTP client is one of these, all NetError, so a
caller can retry, report or give up by type. Messages name the host, port
and phase; they never hold headers, bodies, keys or tokens. wait_for is
the clients' deadline (HTTP and MQTT); Readable (MicroPython) waits on the
asyncio poller for a socket asyncio has no stream for (UDP, a listening
socket). Never does I/O.
"""
import asyncio

from wpwithin.compat import MICROPYTHON


class NetError(Exception):
    """A request to a peer failed; `message` says where and why (`answered`: see ConnectionDropped)."""

    def __init__(self, message, answered=True):
        super().__init__(message)
        self.message = message
        self.answered = answered


class HttpTimeout(NetError):
    """Connecting, sending or a read took longer than the timeout."""


class ConnectFailed(NetError):
    """No connection: refused, unreachable or the name did not resolve."""


class ConnectionDropped(NetError):
    """The peer closed or reset the connection before the whole response arrived.

    `answered` is False when not a byte of the response came back (a
    request on a reused keep-alive connection may then be retried, if it
    is safe to repeat).
    """


class TlsFailed(NetError):
    """The TLS handshake failed: certificate refused, wrong host name, or protocol error."""


class BadResponse(NetError):
    """The response broke HTTP/1.1 or one of our limits (too large, malformed)."""


if MICROPYTHON:
    from asyncio import core as _core

    class Readable:
        """Awaitable that resumes when `sock` is readable (MicroPython's poller).

        A MemoryError can leave the socket half queued: in the poller's map, with this task as its
        reader, but not registered with the poll object (whose table it could not grow). Every
        later wait on that socket would then fail, or never wake: a listening socket would accept
        no more, without a word. So the entry is dropped, as a cancel drops it, and the error raised.
        """

        def __init__(self, sock):
            self.sock = sock

        def __iter__(self):
            try:
                queued = _core._io_queue.queue_read(self.sock)
            except Exception:  # noqa: MemoryError, or what a half-queued socket makes the next wait raise
                try:
                    _core._io_queue.remove(_core.cur_task)
                except OSError:  # never registered with the poll object
                    pass
                raise
            yield queued

        __await__ = __iter__

    def wait_for(awaitable, seconds):
        """asyncio.wait_for (no such race here); looked up at the call, so asyncio.funcs (1.1 KB) still
        loads only when the first deadline is set, as before."""
        return asyncio.wait_for(awaitable, seconds)
else:
    Readable = None  # CPython's loop has sock_recvfrom and servers of its own

    async def wait_for(awaitable, seconds):
        """asyncio.wait_for that never loses a cancel: CPython 3.11's returns the result when what it
        awaits finished in the same loop round as the caller was cancelled (python/cpython#86296), so a
        Ctrl-C (asyncio.run cancels the main task) landing just as a send completed was lost and the
        command went on to its end."""
        result = await asyncio.wait_for(awaitable, seconds)
        if asyncio.current_task().cancelling():
            raise asyncio.CancelledError
        return result
