"""The board layer on a host (unix port or CPython): clock, randomness, identity, pins in memory.

Same interface as the ESP32 board (board_esp32.py): the layers above never
know which one they run on. The unique id is made once and kept in a file
so a Thing keeps its serverID across restarts, as a chip's id does.
"""
import os
import time
from binascii import hexlify


class Pin:
    """An output pin that remembers its level and how often it was switched on."""

    def __init__(self, name):
        self.name = name
        self.level = 0
        self.switched_on = 0

    def on(self):
        if not self.level:
            self.switched_on += 1
        self.level = 1

    def off(self):
        self.level = 0

    def value(self):
        return self.level


class HostBoard:
    def __init__(self, ip="127.0.0.1", id_file="board-id"):
        self.ip = ip
        self.id_file = id_file
        self.led = Pin("led")
        self.relay = Pin("relay")
        self._id = None

    def unique_id(self):
        """12 hex digits, made once and kept in id_file."""
        if self._id is None:
            try:
                with open(self.id_file) as f:
                    self._id = f.read().strip()
            except OSError:
                self._id = hexlify(os.urandom(6)).decode()
                with open(self.id_file, "w") as f:
                    f.write(self._id)
        return self._id

    def time(self):
        """Unix seconds."""
        return int(time.time())

    def time_known(self):
        return True

    def clock_problem(self):
        return None

    def random(self, size):
        return os.urandom(size)

    def ip_address(self):
        return self.ip

    # A host has no radio, button or watchdog: these keep the interface whole.

    def button_held(self):
        return False

    def wifi_up(self, ssid, password, attempts=5):
        return True

    def wifi_connected(self):
        return True

    def sync_time(self, server=None, attempts=3):
        return True

    def watchdog(self, timeout_ms=30000):
        pass

    def feed(self):
        pass
