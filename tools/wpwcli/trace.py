"""Sequence diagrams of a purchase: every message the CLI sends and hears, drawn as SVG.

Recorder wraps the lib's http_client.Connection.request (every request the
consumer and its gateway client make goes through it), the UDP send of a
discovery probe and discovery.recvfrom (every datagram a scan hears), so
each exchange (who, what, status, time) is noted as it happens. render()
draws a lane for the consumer, one for the broadcast address, one per
producer (named by its serverID once heard) and one for the gateway, with
one arrow per message, the phase (Discover, Select, Pay, Release) as a
band behind its rows, and the amounts and units each message carries. The
producer's own call to the gateway (inside POST /payment) and its reply
are drawn from the payment's answer, since the CLI cannot see them. Card
numbers, client and delivery tokens and keys are never drawn: only
counts, price IDs, amounts and server IDs are read from the bodies.
"""
import json
import socket
import time
from xml.sax.saxutils import escape

from wpwithin import discovery, http_client

PHASES = (("Discover", "#eef5fb"), ("Select", "#f4f0fa"), ("Pay", "#fdf3e7"), ("Release", "#edf7ee"))


def phase_of(route):
    """The purchase phase of a request, from its route."""
    for words, phase in ((("/delivery",), "Release"), (("/payment", "/tokens"), "Pay")):
        if any(w in route for w in words):
            return phase
    return "Select"


def _json(data):
    try:
        obj = json.loads(bytes(data or b"{}"))
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


def _money(minor, currency):
    return "%s %d.%02d" % (currency, minor // 100, minor % 100)


class Recorder:
    def __init__(self, gateway_host_port=None):
        self.gateway = gateway_host_port
        self.events = []  # (seconds since start, lane from, lane to, label, status, kind, phase); kind: "note",
        # "error" or None
        self.names = {}  # (host, port) -> what to call that producer's lane
        self.units = {}  # (lane, priceID) -> unitDescription, from the price lists heard
        self.quote = {}  # the last total price answer (its amount goes on the producer's gateway call)
        self.priced = {}  # lane -> the priceID of its last quote (its unit names a delivery's units)
        self.start = time.monotonic()
        self._saved = None
        self._probe_ports = set()  # local ports of the sockets that sent a probe: their datagrams are answers

    def note(self, source, target, label, status=None, kind=None, phase="Discover"):
        self.events.append((time.monotonic() - self.start, source, target, label, status, kind, phase))

    def install(self):
        """Start recording every request made through wpwithin.http_client and every discovery datagram."""
        self._saved = (http_client.Connection.request, socket.socket.sendto, discovery.recvfrom)
        request, sendto, recvfrom = self._saved
        recorder = self

        async def traced(conn, method, path, body=None, *args, **kwargs):
            lane = "gateway" if (conn.host, conn.port) == recorder.gateway else (conn.host, conn.port)
            route = path.split("?")[0]
            phase = phase_of(route)
            recorder.note("consumer", lane, recorder._asked(lane, method, route, _json(body)), None, None, phase)
            try:
                answer = await request(conn, method, path, body, *args, **kwargs)
            except Exception as exc:
                recorder.note(lane, "consumer", type(exc).__name__, None, "error", phase)
                raise
            status, reply = answer[0], _json(answer[2])
            if lane != "gateway" and route.endswith("/payment"):
                recorder._producer_charges(lane, status)
            recorder.note(lane, "consumer", recorder._answered(lane, route, status, reply), status, None, phase)
            return answer

        def traced_sendto(sock, data, *args):
            sent = sendto(sock, data, *args)
            if data == discovery.PROBE:
                where = args[-1]
                recorder._probe_ports.add(sock.getsockname()[1])  # bound by the send
                recorder.note("consumer", "broadcast", "probe to %s:%d" % (where[0], where[1]))
            return sent

        async def traced_recvfrom(sock, *args):
            data, sender = await recvfrom(sock, *args)
            message = _json(data)
            if "serverID" in message and "hostname" in message and "portNumber" in message:
                lane = (str(message["hostname"]), message["portNumber"])
                recorder.names.setdefault(lane, str(message["serverID"]))
                way = "probe answer" if sock.getsockname()[1] in recorder._probe_ports else "broadcast"
                recorder.note(lane, "consumer", "%s: %s" % (way, message["serverID"]), None, "note")
            return data, sender

        http_client.Connection.request = traced
        socket.socket.sendto = traced_sendto
        discovery.recvfrom = traced_recvfrom

    def uninstall(self):
        if self._saved is not None:
            http_client.Connection.request, socket.socket.sendto, discovery.recvfrom = self._saved
            self._saved = None

    def _unit(self, lane, price_id, n):
        what = self.units.get((lane, price_id)) or "unit"
        plural = n != 1 and what.isalpha() and what.islower() and not what.endswith("s")  # minutes, not kWhs
        return "%d %s%s" % (n, what, "s" if plural else "")

    def _asked(self, lane, method, route, body):
        label = "%s %s" % (method, route)
        if route.endswith("/requestTotal") and "selectedNumberOfUnits" in body:
            label += ": %s at price %s" % (self._unit(lane, body.get("selectedPriceID"), body["selectedNumberOfUnits"]),
                                           body.get("selectedPriceID"))
        elif route.endswith("/delivery/begin") and "unitsToSupply" in body:
            label += ": %s" % self._unit(lane, self.priced.get(lane), body["unitsToSupply"])
        elif route.endswith("/delivery/end") and "unitsReceived" in body:
            label += ": %s received" % self._unit(lane, self.priced.get(lane), body["unitsReceived"])
        elif route.endswith("/payment") and "totalPrice" in self.quote:
            label += ": pay %s" % _money(self.quote["totalPrice"], self.quote.get("currencyCode", ""))
        elif route.endswith("/tokens"):
            label += ": card -> one-use token"
        return label

    def _answered(self, lane, route, status, reply):
        if status != 200:
            message = reply.get("message")
            return "%d %s" % (status, message[:60]) if isinstance(message, str) else "%d" % status
        if route.endswith("/prices") and isinstance(reply.get("prices"), list):
            for price in reply["prices"]:
                if isinstance(price, dict) and isinstance(price.get("unitDescription"), str):
                    self.units[(lane, price.get("priceID"))] = price["unitDescription"]
            return "200: %d price%s" % (len(reply["prices"]), "" if len(reply["prices"]) == 1 else "s")
        if isinstance(reply.get("services"), list):
            return "200: %d service%s" % (len(reply["services"]), "" if len(reply["services"]) == 1 else "s")
        if "totalPrice" in reply:
            self.quote = reply
            self.priced[lane] = reply.get("priceID")
            self.names.setdefault(lane, str(reply.get("serverID")))
            return "200: %s at price %s = %s" % (self._unit(lane, reply.get("priceID"), reply.get("unitsToSupply", 0)),
                                                 reply.get("priceID"), _money(reply["totalPrice"],
                                                                              reply.get("currencyCode", "")))
        if "totalPaid" in reply:
            return "200: paid %s, delivery token" % _money(reply["totalPaid"], self.quote.get("currencyCode", ""))
        if "unitsJustSupplied" in reply:
            return "200: %s supplied, %d left" % (self._unit(lane, self.priced.get(lane), reply["unitsJustSupplied"]),
                                                 reply.get("unitsRemaining", 0))
        return "200"

    def _producer_charges(self, lane, status):
        """The producer's gateway call inside POST /payment, and its reply, as the payment's answer tells them."""
        quote = self.quote
        amount = _money(quote["totalPrice"], quote.get("currencyCode", "")) if "totalPrice" in quote else "the total"
        self.note(lane, "gateway", "POST /orders: charge %s to the token" % amount, None, "note", "Pay")
        reply = "charged %s" % amount if status == 200 else "refused: nothing charged" if status == 402 else \
            "outcome not known to the consumer"
        self.note("gateway", lane, reply, status, "note", "Pay")

    def lanes(self):
        """Lane keys in order: consumer, the broadcast address (when a probe went out), producers, gateway."""
        producers = []
        for event in self.events:
            for key in event[1:3]:
                if isinstance(key, tuple) and key not in producers:
                    producers.append(key)
        broadcast = ["broadcast"] if any("broadcast" in e[1:3] for e in self.events) else []
        return ["consumer"] + broadcast + producers + (["gateway"] if any("gateway" in e[1:3] for e in self.events)
                                                       else [])

    def _label(self, key):
        if isinstance(key, tuple):
            return self.names.get(key, "producer %s:%d" % key)
        return "UDP broadcast" if key == "broadcast" else key

    def render(self, title="purchase"):
        """The diagram as SVG text."""
        lanes = self.lanes()
        lane_x = dict((lane, 200 + 250 * i) for i, lane in enumerate(lanes))
        row, top = 30, 76
        height = top + 20 + row * len(self.events)
        out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
               'font-size="12">' % (250 * len(lanes) + 100, height),
               '<rect width="100%" height="100%" fill="white"/>',
               '<defs><marker id="a" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
               '<path d="M0,0 L8,4 L0,8 z" fill="#333"/></marker></defs>',
               '<text x="10" y="18" font-weight="bold">%s</text>' % escape(title)]
        colours = dict(PHASES)
        first = 0
        for i in range(1, len(self.events) + 1):  # a band per run of rows in one phase
            if i == len(self.events) or self.events[i][6] != self.events[first][6]:
                phase = self.events[first][6]
                y = top - row // 2 - 4 + row * first
                out.append('<rect x="0" y="%d" width="100%%" height="%d" fill="%s"/>'
                           % (y, row * (i - first), colours[phase]))
                out.append('<text x="8" y="%d" font-weight="bold" fill="#555">%s</text>' % (y + 14, phase))
                first = i
        for lane, x in lane_x.items():
            out.append('<text x="%d" y="44" text-anchor="middle" font-weight="bold">%s</text>'
                       % (x, escape(self._label(lane))))
            out.append('<line x1="%d" y1="52" x2="%d" y2="%d" stroke="#999" stroke-dasharray="4"/>'
                       % (x, x, height - 10))
        for i, (at, source, target, label, status, kind, _) in enumerate(self.events):
            y = top + row * i
            x1, x2 = lane_x[source], lane_x[target]
            colour = "#333"
            if kind == "error" or (isinstance(status, int) and status >= 400):
                colour = "#c0392b"
            elif isinstance(status, int):
                colour = "#1e8449"
            dash = ' stroke-dasharray="6,3"' if kind or status is not None else ""
            out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" marker-end="url(#a)"%s/>'
                       % (x1, y, x2, y, colour, dash))
            out.append('<text x="%d" y="%d" text-anchor="middle" fill="%s">%s</text>'
                       % ((x1 + x2) // 2, y - 5, colour, escape(label)))
            out.append('<text x="80" y="%d" fill="#777">%.3fs</text>' % (y + 4, at))
        out.append("</svg>")
        return "\n".join(out) + "\n"
