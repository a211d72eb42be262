"""MQTT 3.1.1 packets: the bytes we send, and what we accept or refuse from a broker.

Each broker packet is framed three ways: whole, one byte at a time, and
followed by the next packet; each refusal names the problem.
"""
from expect import raises

from wpwithin import mqtt_wire as wire
from wpwithin.mqtt_wire import MQTTError

NEXT = b"\xd0\x00"  # a PINGRESP after the packet under test


def three_ways(data, limit=2048):
    """frame() + decode() of data whole, byte by byte, and with the next packet behind it; all agree."""
    first = wire.frame(data, limit)
    assert first is not None and first[2] == len(data), (first, len(data))
    whole = wire.decode(data[0], data[first[1]:first[2]])
    for end in range(len(data)):
        assert wire.frame(data[:end], limit) is None, end
    framed = wire.frame(data + NEXT, limit)
    assert framed == first, (framed, first)
    assert wire.decode(data[0], (data + NEXT)[framed[1]:framed[2]]) == whole
    assert wire.frame((data + NEXT)[framed[2]:], limit) == (0xD0, 2, 2)
    return whole


def refused(data, limit=2048):
    """The MQTTError message for data, which frame() or decode() must refuse."""
    def parse():
        framed = wire.frame(data, limit)
        assert framed is not None, "incomplete, not refused"
        wire.decode(data[0], data[framed[1]:framed[2]])
    return raises(MQTTError, parse).message


# --- what we send ------------------------------------------------------------------------

def test_connect_minimal():
    assert wire.connect("a") == b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01a"


def test_connect_with_will_user_and_password():
    packet = wire.connect("thing-1", 30, "u", "pw", ("wpw/v1/things/x/advert", b"", True), clean=True)
    # flags: user 0x80, password 0x40, will retain 0x20, will QoS 0, will 0x04, clean 0x02
    body = (b"\x00\x04MQTT\x04\xe6\x00\x1e\x00\x07thing-1" + b"\x00\x16wpw/v1/things/x/advert\x00\x00"
            + b"\x00\x01u\x00\x02pw")
    assert packet == b"\x10" + bytes((len(body),)) + body


def test_connect_will_without_retain_and_no_clean_session():
    packet = wire.connect("c", 0, will=("t", b"gone", False), clean=False)
    assert packet[9] == 0x04 and packet[10:12] == b"\x00\x00"
    assert packet.endswith(b"\x00\x01t\x00\x04gone")


def test_connect_refuses_bad_arguments():
    assert "client_id" in raises(MQTTError, wire.connect, "").message
    assert "keepalive" in raises(MQTTError, wire.connect, "a", 65536).message
    assert "topic" in raises(MQTTError, wire.connect, "a", will=("t/#", b"", True)).message
    assert "password" in raises(MQTTError, wire.connect, "a", password=b"x" * 65536).message


def test_publish_qos0_and_qos1_retained():
    assert wire.publish("a/b", b"hi") == b"\x30\x07\x00\x03a/bhi"
    assert wire.publish("a/b", "hi", retain=True, qos=1, pid=258) == b"\x33\x09\x00\x03a/b\x01\x02hi"


def test_publish_long_payload_uses_a_multi_byte_remaining_length():
    packet = wire.publish("t", b"x" * 200)
    assert packet[:3] == b"\x30\xcb\x01"  # 203 = 0x4b + 1 * 128
    assert len(packet) == 3 + 203
    assert wire.frame(packet, 2048) == (0x30, 3, 206)


def test_publish_refuses_wildcards_empty_topic_and_qos2():
    for topic in ("", "a/+", "a/#", "a\x00b"):
        assert "topic" in raises(MQTTError, wire.publish, topic, b"").message, topic
    assert "qos" in raises(MQTTError, wire.publish, "t", b"", qos=2).message


def test_subscribe_puback_pingreq_disconnect():
    assert wire.subscribe(1, "wpw/v1/things/+/advert", 1) == (
        b"\x82\x1b\x00\x01\x00\x16wpw/v1/things/+/advert\x01")
    assert wire.subscribe(7, "#") == b"\x82\x06\x00\x07\x00\x01#\x00"
    assert wire.puback(0x1234) == b"\x40\x02\x12\x34"
    assert wire.PINGREQ == b"\xc0\x00" and wire.DISCONNECT == b"\xe0\x00"


def test_subscribe_refuses_bad_filters():
    for topic_filter in ("", "a/#/b", "a+/b", "a/b#", "##"):
        assert "filter" in raises(MQTTError, wire.subscribe, 1, topic_filter).message, topic_filter


# --- what a broker sends: accepted -------------------------------------------------------

def test_connack_accepted_and_refused():
    assert three_ways(b"\x20\x02\x00\x00") == (wire.CONNACK, 0, False)
    assert three_ways(b"\x20\x02\x01\x00") == (wire.CONNACK, 0, True)
    assert three_ways(b"\x20\x02\x00\x05") == (wire.CONNACK, 5, False)


def test_connack_codes_are_named():
    assert wire.refusal(4).message == "CONNACK code 4: bad user name or password"
    assert wire.refusal(5).message == "CONNACK code 5: not authorised"
    assert wire.refusal(5).code == 5
    assert wire.refusal(1).message == "CONNACK code 1: unacceptable protocol version"
    assert wire.refusal(9).message == "CONNACK code 9"


def test_publish_from_the_broker():
    assert three_ways(b"\x31\x07\x00\x03a/bhi") == (wire.PUBLISH, "a/b", b"hi", True, 0, 0)
    assert three_ways(b"\x32\x09\x00\x03a/b\x00\x09hi") == (wire.PUBLISH, "a/b", b"hi", False, 1, 9)
    assert three_ways(b"\x31\x05\x00\x03a/b") == (wire.PUBLISH, "a/b", b"", True, 0, 0)  # retained cleared
    assert three_ways(b"\x30\x06\x00\x04\xc3\xa9/x") == (wire.PUBLISH, "\xe9/x", b"", False, 0, 0)


def test_publish_payload_at_the_limit():
    packet = wire.publish("t", b"p" * 97)
    assert three_ways(packet, limit=100)[2] == b"p" * 97


def test_puback_suback_pingresp():
    assert three_ways(b"\x40\x02\x01\x02") == (wire.PUBACK, 258)
    assert three_ways(b"\x90\x03\x00\x01\x01") == (wire.SUBACK, 1, 1)
    assert three_ways(b"\x90\x03\x00\x01\x80") == (wire.SUBACK, 1, 0x80)
    assert three_ways(b"\xd0\x00") == (wire.PINGRESP,)


# --- what a broker sends: refused --------------------------------------------------------

def test_oversize_is_refused_from_the_header_alone():
    # a 268 MB packet is refused as soon as its 4 length bytes are in, before any body
    assert refused(b"\x30\xff\xff\xff\x7f") == "packet of 268435455 bytes is over the 2048-byte limit"
    assert "over the 100-byte limit" in refused(wire.publish("t", b"p" * 98), limit=100)


def test_remaining_length_over_4_bytes_is_refused():
    assert refused(b"\x30\xff\xff\xff\xff\x01") == "remaining length is longer than 4 bytes"


def test_packet_types_a_broker_never_sends_a_client():
    for first in (0x00, 0x10, 0x50, 0x60, 0x70, 0x82, 0xA2, 0xB0, 0xC0, 0xE0, 0xF0):
        message = refused(bytes((first, 2, 0, 1)))
        assert message == "packet type %d is not one a broker sends a client" % (first >> 4), message


def test_bad_flags_and_lengths():
    assert refused(b"\x21\x02\x00\x00") == "bad flags 0x21 for packet type 2"
    assert refused(b"\xd1\x00") == "bad flags 0xd1 for packet type 13"
    assert refused(b"\x20\x03\x00\x00\x00") == "CONNACK has a bad length"
    assert refused(b"\x40\x01\x00") == "PUBACK has a bad length"
    assert refused(b"\x90\x04\x00\x01\x00\x00") == "SUBACK has a bad length"
    assert refused(b"\xd0\x01\x00") == "PINGRESP has a bad length"
    assert refused(b"\x20\x02\x02\x00") == "CONNACK flags 0x02"
    assert refused(b"\x90\x03\x00\x01\x02") == "SUBACK code 0x02"


def test_bad_publish_from_the_broker():
    assert refused(b"\x30\x01\x00") == "PUBLISH has a bad length"
    assert refused(b"\x30\x04\x00\x05ab") == "PUBLISH has a bad length"  # topic runs past the end
    assert refused(b"\x32\x05\x00\x03a/b") == "PUBLISH has a bad length"  # QoS 1 without room for the id
    assert refused(b"\x32\x07\x00\x03a/b\x00\x00") == "QoS 1 packet without a packet id"
    assert refused(b"\x34\x07\x00\x03a/b\x00\x01") == "PUBLISH at QoS 2, never asked for"
    assert refused(b"\x36\x07\x00\x03a/b\x00\x01") == "PUBLISH at QoS 3, never asked for"
    assert refused(b"\x30\x02\x00\x00") == "topic is empty or over 256 bytes"
    assert refused(wire._packet(0x30, b"\x01\x01" + b"t" * 257)) == "topic is empty or over 256 bytes"
    assert refused(b"\x30\x04\x00\x02\xff\xfe") == "topic is not UTF-8 or holds a NUL"
    assert refused(b"\x30\x05\x00\x03a\x00b") == "topic is not UTF-8 or holds a NUL"
    assert refused(b"\x30\x05\x00\x03a/#") == "topic holds a wildcard"
