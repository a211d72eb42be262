"""What the virtual board's serial bridge does to the bytes, as pure functions over chunks.

NewlineCooker: a board's UART console writes "\\r\\n" for every "\\n" the
program prints; the unix port leaves that to the terminal, whose output
processing would also turn the REPL's own "\\r\\n" into "\\r\\r\\n" (and
mpremote waits for exact byte strings). So the bridge cooks: a "\\n" not
preceded by "\\r" becomes "\\r\\n", across chunk boundaries too.

ReplMode: which REPL the board last announced (raw or friendly), read
from the banners it prints, so a soft reset can bring the board back in
the same one, as the firmware does. No I/O here, nothing is kept but a
few bytes of the last chunk.
"""
import re

RAW_BANNER = b"raw REPL; CTRL-B to exit"
FRIENDLY_BANNER = b'Type "help()" for more information.'
_LONE_NEWLINE = re.compile(rb"(?<!\r)\n")


class NewlineCooker:
    def __init__(self):
        self._last = b""

    def cook(self, data):
        if not data:
            return data
        out = _LONE_NEWLINE.sub(b"\r\n", data)
        if data[:1] == b"\n" and self._last == b"\r":
            out = out[1:]  # this "\r\n" was split between two reads
        self._last = data[-1:]
        return out


class ReplMode:
    def __init__(self):
        self.raw = False
        self._tail = b""

    def feed(self, data):
        """Read a chunk of console output; returns self.raw (True after the raw REPL banner)."""
        seen = self._tail + data
        raw_at, friendly_at = seen.rfind(RAW_BANNER), seen.rfind(FRIENDLY_BANNER)
        if raw_at >= 0 or friendly_at >= 0:
            self.raw = raw_at > friendly_at
        self._tail = seen[-(max(len(RAW_BANNER), len(FRIENDLY_BANNER)) - 1):]
        return self.raw

    def reset(self):
        self.raw = False
        self._tail = b""
