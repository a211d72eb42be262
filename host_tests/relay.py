"""A TCP relay in front of a server that holds bytes back: a producer's delivery ends, so an interrupt lands while
one is on its way, or everything a slow server (an MQTT broker) answers."""
import socket
import threading
import time


class Relay:
    """A TCP relay to a server on 127.0.0.1 that holds each delivery end back for hold() seconds (hold given),
    and each chunk the server sends back for `delay` seconds (0: none; `delayed` counts them)."""

    def __init__(self, port, hold=None, delay=0.0):
        self.port_to = port
        self.hold = hold
        self.delay = delay
        self.delayed = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held = threading.Event()  # an end is being held now
        self.forwarded = threading.Event()  # and has gone on to the producer
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.port_to))
            except OSError:
                return
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source, sink, to_producer):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if not to_producer and self.delay:
                    self.delayed += 1
                    time.sleep(self.delay)
                if to_producer and self.hold and b"/delivery/end" in data:
                    self.held.set()
                    time.sleep(self.hold())
                    sink.sendall(data)
                    self.forwarded.set()
                    continue
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.listener.close()
