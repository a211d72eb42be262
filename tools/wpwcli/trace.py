"""Sequence diagrams of a purchase: every HTTP message the CLI sends, drawn as SVG.

Recorder wraps the lib's http_client.Connection.request (every request the
consumer and its gateway client make goes through it) so each exchange
(who, route, status, time) is noted as it happens; render() draws a lane
for the consumer, one per producer and one for the gateway, with one arrow
per request and per answer. The producer's own call to the gateway (inside
POST /payment) is drawn as a note, since the CLI cannot see it. Card numbers, tokens' keys and service keys are never drawn.
"""
import time
from xml.sax.saxutils import escape

from wpwithin import http_client

class Recorder:
    def __init__(self, gateway_host_port=None):
        self.gateway = gateway_host_port
        self.events = []  # (seconds since start, lane from, lane to, label, status or None)
        self.names = {}  # (host, port) -> what to call that producer's lane
        self.start = time.monotonic()
        self._request = None

    def install(self):
        """Start recording every request made through wpwithin.http_client."""
        self._request = original = http_client.Connection.request
        recorder = self

        async def traced(conn, method, path, *args, **kwargs):
            lane = "gateway" if (conn.host, conn.port) == recorder.gateway else (conn.host, conn.port)
            label = "%s %s" % (method, path.split("?")[0])
            recorder.events.append((time.monotonic() - recorder.start, "consumer", lane, label, None))
            try:
                answer = await original(conn, method, path, *args, **kwargs)
            except Exception as exc:
                recorder.events.append((time.monotonic() - recorder.start, lane, "consumer", type(exc).__name__,
                                        "error"))
                raise
            status = answer[0]
            if lane != "gateway" and path.endswith("/payment"):
                recorder.events.append((time.monotonic() - recorder.start, lane, "gateway",
                                        "POST /orders (the producer charges the token)", "note"))
            recorder.events.append((time.monotonic() - recorder.start, lane, "consumer", "%d" % status, status))
            return answer

        http_client.Connection.request = traced

    def uninstall(self):
        if self._request is not None:
            http_client.Connection.request = self._request
            self._request = None

    def lanes(self):
        """Lane keys in order: consumer, producers as first met, gateway."""
        producers = []
        for _, source, target, _, _ in self.events:
            for key in (source, target):
                if isinstance(key, tuple) and key not in producers:
                    producers.append(key)
        return ["consumer"] + producers + ["gateway"]

    def _label(self, key):
        if isinstance(key, tuple):
            return self.names.get(key, "producer %s:%d" % key)
        return key

    def render(self, title="purchase"):
        """The diagram as SVG text."""
        lanes = self.lanes()
        lane_x = dict((lane, 120 + 240 * i) for i, lane in enumerate(lanes))
        row = 34
        height = 90 + row * len(self.events)
        out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
               'font-size="12">' % (240 * len(lanes) + 60, height),
               '<rect width="100%" height="100%" fill="white"/>',
               '<defs><marker id="a" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
               '<path d="M0,0 L8,4 L0,8 z" fill="#333"/></marker></defs>',
               '<text x="10" y="18" font-weight="bold">%s</text>' % escape(title)]
        for lane, x in lane_x.items():
            out.append('<text x="%d" y="44" text-anchor="middle" font-weight="bold">%s</text>'
                       % (x, escape(self._label(lane))))
            out.append('<line x1="%d" y1="52" x2="%d" y2="%d" stroke="#999" stroke-dasharray="4"/>'
                       % (x, x, height - 10))
        for i, (at, source, target, label, status) in enumerate(self.events):
            y = 76 + row * i
            x1, x2 = lane_x[source], lane_x[target]
            colour = "#333"
            if status == "error" or (isinstance(status, int) and status >= 400):
                colour = "#c0392b"
            elif isinstance(status, int):
                colour = "#1e8449"
            dash = ' stroke-dasharray="6,3"' if status == "note" or status is not None else ""
            out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" marker-end="url(#a)"%s/>'
                       % (x1, y, x2, y, colour, dash))
            out.append('<text x="%d" y="%d" text-anchor="middle" fill="%s">%s</text>'
                       % ((x1 + x2) // 2, y - 5, colour, escape(label)))
            out.append('<text x="8" y="%d" fill="#777">%.3fs</text>' % (y + 4, at))
        out.append("</svg>")
        return "\n".join(out) + "\n"
