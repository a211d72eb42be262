"""The board layer on an ESP32: the only module that touches network, machine and ntptime.

WiFi with retries and backoff, clock sync (token expiry needs real time),
unique id, status LED, relay pin, safe-mode button, watchdog. Nothing is
created at import: Esp32Board() builds the hardware objects when called
from boot.py or main.py. Never prints the WiFi password.
"""
import os
import time
from binascii import hexlify

import machine
import network

# MicroPython on ESP32 counts seconds from 2000-01-01; the protocol uses Unix time.
_EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0
_YEAR_2025 = 1735689600


class Esp32Board:
    def __init__(self, relay_pin=2, led_pin=None, button_pin=0):
        self.wlan = network.WLAN(network.STA_IF)
        self.relay = machine.Pin(relay_pin, machine.Pin.OUT, value=0)
        self.led = machine.Pin(led_pin, machine.Pin.OUT, value=0) if led_pin is not None else None
        self._button = machine.Pin(button_pin, machine.Pin.IN, machine.Pin.PULL_UP)
        self._wdt = None
        self._clock_why = "WiFi is not up, so the NTP server cannot be asked"

    def button_held(self):
        """True while the safe-mode button (BOOT on most boards) is pressed."""
        return self._button.value() == 0

    def wifi_begin(self, ssid, password):
        """Start connecting and return at once (boot.py); wifi_up() waits for it."""
        self.wlan.active(True)
        if ssid and not self.wlan.isconnected():
            try:
                self.wlan.connect(ssid, password)
            except OSError:
                pass  # already connecting; wifi_up() retries

    def wifi_up(self, ssid, password, attempts=5):
        """Connect with backoff (1, 2, 4... s); True when connected."""
        self.wlan.active(True)
        if self.wlan.isconnected():
            return True
        if not ssid:
            return False  # secrets.json has no wifiSsid: nothing to join
        delay = 1
        for _ in range(attempts):
            if self.wlan.status() != network.STAT_CONNECTING:  # boot.py may have started it
                try:
                    self.wlan.connect(ssid, password)
                except OSError:
                    pass
            for _ in range(delay * 10):
                if self.wlan.isconnected():
                    return True
                time.sleep_ms(100)
            delay = min(delay * 2, 30)
        return False

    def wifi_connected(self):
        return self.wlan.isconnected()

    def sync_time(self, server="pool.ntp.org", attempts=3):
        """Set the RTC from NTP server `server` (config network.ntpServer); True on success."""
        import ntptime  # frozen in stock firmware; imported only when needed

        ntptime.host = server
        for attempt in range(attempts):
            try:
                ntptime.settime()
                return True
            except OSError:
                if attempt + 1 < attempts:
                    time.sleep(1)
        self._clock_why = "no answer from NTP server %s: set network.ntpServer to one this network reaches" % server
        return False

    def time(self):
        return time.time() + _EPOCH_OFFSET

    def time_known(self):
        return self.time() > _YEAR_2025

    def clock_problem(self):
        """None once the clock is set; else why it is not (the producer's 503 and the log say it)."""
        return None if self.time_known() else self._clock_why

    def unique_id(self):
        return hexlify(machine.unique_id()).decode()

    def random(self, size):
        return os.urandom(size)

    def ip_address(self):
        return self.wlan.ifconfig()[0]

    def watchdog(self, timeout_ms=30000):
        self._wdt = machine.WDT(timeout=timeout_ms)

    def feed(self):
        if self._wdt is not None:
            self._wdt.feed()
