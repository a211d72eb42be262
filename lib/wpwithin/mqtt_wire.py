"""MQTT 3.1.1 packets, sans-IO: what a client sends, and what it accepts from a broker.

The encoders build CONNECT (with will, user name, password, keepalive,
clean session), PUBLISH (QoS 0/1, retain), PUBACK, SUBSCRIBE, PINGREQ and
DISCONNECT. frame() finds one whole packet in received bytes and refuses a
remaining length over the caller's limit as soon as its header is in, so a
hostile broker can never make the client buffer more than that; decode()
turns a packet into a tuple and refuses anything malformed or not meant for
a client, with an MQTTError naming the problem. Never does I/O; never puts
a password or a payload into an error message.
"""
from wpwithin.compat import const
from wpwithin.errors import nth

CONNACK = const(2)
PUBLISH = const(3)
PUBACK = const(4)
SUBACK = const(9)
PINGRESP = const(13)
MAX_TOPIC = const(256)  # bytes of a topic the client accepts
PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"
_MAX_LENGTH = const(268435455)  # the largest remaining length 4 bytes can say
# Refusals and CONNACK codes by number (errors.nth): one string costs less heap than one each.
_WHY = const("remaining length is longer than 4 bytes|packet of %d bytes is over the %d-byte limit|"
             "packet type %d is not one a broker sends a client|bad flags 0x%02x for packet type %d|"
             "%s has a bad length|topic is not UTF-8 or holds a NUL|topic is empty or over %d bytes|"
             "topic holds a wildcard|PUBLISH at QoS %d, never asked for|QoS 1 packet without a packet id|"
             "SUBACK code 0x%02x|CONNACK flags 0x%02x|%s must be at most 65535 bytes|qos must be 0 or 1|"
             "keepalive must be 0-65535 s|client_id must not be empty|topic filter is not valid|"
             "CONNACK code %d|connection accepted|unacceptable protocol version|identifier rejected|"
             "server unavailable|bad user name or password|not authorised")
NAMES = "||CONNACK||PUBACK|||||SUBACK||||PINGRESP"  # by packet type
_CONNACK_CODE = const(17)


class MQTTError(Exception):
    """An MQTT exchange failed; `message` says why, `code` is the CONNACK code when the broker refused."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.message = message
        self.code = code


def refusal(code):
    """The MQTTError of a CONNACK code: "CONNACK code 4: bad user name or password"."""
    text = nth(_WHY, _CONNACK_CODE) % code
    if 0 < code < 6:
        text += ": " + nth(_WHY, _CONNACK_CODE + 1 + code)
    return MQTTError(text, code)


def _fail(n, *args):
    raise MQTTError(nth(_WHY, n) % args if args else nth(_WHY, n))


def _field(data, name):
    """data (str or bytes) with its 2-byte length in front."""
    if isinstance(data, str):
        data = data.encode()
    n = len(data)
    if n > 65535:
        _fail(12, name)
    return bytes((n >> 8, n & 255)) + data


def _packet(first, body):
    """The fixed header (type and flags, remaining length) in front of body."""
    n = len(body)
    if n > _MAX_LENGTH:
        _fail(1, n, _MAX_LENGTH)
    head = bytearray((first,))
    while True:
        byte = n & 127
        n >>= 7
        head.append(byte | 128 if n else byte)
        if not n:
            return bytes(head) + body


def _topic_ok(topic, wildcards):
    """A topic (or, with `wildcards`, a topic filter) as MQTT allows: levels, + and # in their places."""
    if not topic or "\x00" in topic:
        return False
    if not wildcards:
        return "+" not in topic and "#" not in topic
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if ("+" in level or "#" in level) and (len(level) != 1 or (level == "#" and i != len(levels) - 1)):
            return False
    return True


def connect(client_id, keepalive=60, username=None, password=None, will=None, clean=True):
    """CONNECT; will is (topic, payload, retain), sent at QoS 0 by the broker when we drop off."""
    if not client_id:
        _fail(15)
    if not 0 <= keepalive <= 65535:
        _fail(14)
    flags = 2 if clean else 0
    tail = _field(client_id, "client_id")
    if will is not None:
        topic, payload, retain = will
        if not _topic_ok(topic, False):
            _fail(7)
        flags |= 4 | (32 if retain else 0)
        tail += _field(topic, "will topic") + _field(payload, "will payload")
    if username is not None:
        flags |= 128
        tail += _field(username, "username")
    if password is not None:
        flags |= 64
        tail += _field(password, "password")
    return _packet(0x10, b"\x00\x04MQTT\x04" + bytes((flags, keepalive >> 8, keepalive & 255)) + tail)


def publish(topic, payload, retain=False, qos=0, pid=0):
    """PUBLISH of payload (bytes or str) on topic; QoS 1 needs a packet id 1-65535."""
    if qos != 0 and qos != 1:
        _fail(13)
    if not _topic_ok(topic, False):
        _fail(7)
    if isinstance(payload, str):
        payload = payload.encode()
    body = _field(topic, "topic")
    if qos:
        body += bytes((pid >> 8, pid & 255))
    return _packet(0x30 | (qos << 1) | (1 if retain else 0), body + payload)


def puback(pid):
    """PUBACK of an incoming QoS 1 PUBLISH."""
    return bytes((0x40, 2, pid >> 8, pid & 255))


def subscribe(pid, topic_filter, qos=0):
    """SUBSCRIBE to one topic filter at QoS 0 or 1."""
    if qos != 0 and qos != 1:
        _fail(13)
    if not _topic_ok(topic_filter, True):
        _fail(16)
    return _packet(0x82, bytes((pid >> 8, pid & 255)) + _field(topic_filter, "topic filter") + bytes((qos,)))


def frame(buf, limit):
    """(first byte, body start, body end) of the packet buf begins with; None until it is all there.

    A remaining length over `limit` is refused as soon as its bytes are in,
    before the body is waited for.
    """
    n = 0
    shift = 0
    i = 1
    end = len(buf)
    while True:
        if i >= end:
            return None
        byte = buf[i]
        n |= (byte & 127) << shift
        i += 1
        if not byte & 128:
            break
        shift += 7
        if i == 5:
            _fail(0)
    if n > limit:
        _fail(1, n, limit)
    if i + n > end:
        return None
    return buf[0], i, i + n


def decode(first, body):
    """One packet from a broker as a tuple, its type first:

    (CONNACK, code, session_present), (PUBLISH, topic, payload bytes, retain,
    qos, packet id), (PUBACK, packet id), (SUBACK, packet id, granted QoS or
    0x80), (PINGRESP,). Anything else, or a malformed packet, is an MQTTError.
    """
    kind = first >> 4
    flags = first & 15
    n = len(body)
    if kind == PUBLISH:
        qos = (flags >> 1) & 3
        if qos > 1:
            _fail(8, qos)
        if n < 2:
            _fail(4, "PUBLISH")
        size = (body[0] << 8) | body[1]
        start = 2 + size + (2 if qos else 0)
        if start > n:
            _fail(4, "PUBLISH")
        if not 0 < size <= MAX_TOPIC:
            _fail(6, MAX_TOPIC)
        try:
            topic = str(body[2:2 + size], "utf-8")
        except UnicodeError:
            _fail(5)
        if "\x00" in topic:
            _fail(5)
        if "+" in topic or "#" in topic:
            _fail(7)
        pid = 0
        if qos:
            pid = (body[start - 2] << 8) | body[start - 1]
            if not pid:
                _fail(9)
        return PUBLISH, topic, bytes(body[start:]), bool(flags & 1), qos, pid
    if kind not in (CONNACK, PUBACK, SUBACK, PINGRESP):
        _fail(2, kind)
    if flags:
        _fail(3, first, kind)
    if n != (0 if kind == PINGRESP else 3 if kind == SUBACK else 2):
        _fail(4, nth(NAMES, kind))
    if kind == CONNACK:
        if body[0] & 254:
            _fail(11, body[0])
        return CONNACK, body[1], bool(body[0])
    if kind == PINGRESP:
        return (PINGRESP,)
    pid = (body[0] << 8) | body[1]
    if kind == PUBACK:
        return PUBACK, pid
    code = body[2]
    if code > 1 and code != 0x80:  # 2 (QoS 2) is never granted: we never ask for it
        _fail(10, code)
    return SUBACK, pid, code
