"""Wire messages: exact keys out, any-case keys in, every bad value named."""
import json

from expect import refused

from wpwithin import config, consumer, wire
from wpwithin.errors import ProtocolError

TOKEN = wire.delivery_token("00112233445566778899aabbccddeeff", "2026-11-27T00:00:00Z",
                            "2026-12-04T00:00:00Z", False, "c2lnbmF0dXJl")


def trip(message):
    return wire.decode_json(wire.encode_json(message))


def upper_keys(obj):
    """The same message with every key upper-cased, as a lenient peer might send it."""
    if isinstance(obj, dict):
        return dict((k.upper(), upper_keys(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return [upper_keys(v) for v in obj]
    return obj


MESSAGES = [
    (consumer.parse_broadcast, wire.broadcast("srv", "A charger", "192.168.1.5", 64521, "", "http://"),
     ["deviceDescription", "hostname", "portNumber", "serverID", "urlPrefix", "scheme"]),
    (consumer.parse_service_list, wire.service_list("srv", [wire.service_entry(1, "Charge", "kWh")]),
     ["serverID", "services"]),
    (consumer.parse_price_list, wire.price_list("srv", [wire.price_entry(1, "Per kWh", 30, "GBP", 1, "kWh")]),
     ["serverID", "prices"]),
    (wire.parse_total_request, consumer.total_request("c1", 5, 1),
     ["clientID", "selectedNumberOfUnits", "selectedPriceID"]),
    (consumer.parse_total_response, wire.total_response("srv", "c1", 1, 5, 150, "GBP", "ref-1", "T_C_x"),
     ["serverID", "clientID", "priceID", "unitsToSupply", "totalPrice", "currencyCode",
      "paymentReferenceID", "merchantClientKey"]),
    (wire.parse_payment_request, consumer.payment_request("c1", "TEST_SU_1", "ref-1"),
     ["clientID", "clientToken", "paymentReferenceID"]),
    (consumer.parse_payment_response, wire.payment_response("srv", "c1", 150, TOKEN),
     ["serverID", "clientID", "totalPaid", "serviceDeliveryToken"]),
    (wire.parse_delivery_token, TOKEN, ["key", "issued", "expiry", "refundOnExpiry", "signature"]),
    (wire.parse_begin_request, consumer.begin_request("c1", TOKEN, 2),
     ["clientID", "serviceDeliveryToken", "unitsToSupply"]),
    (consumer.parse_begin_response, wire.begin_response("srv", "c1", TOKEN, 2),
     ["serverID", "clientID", "serviceDeliveryToken", "unitsToSupply"]),
    (wire.parse_end_request, consumer.end_request("c1", TOKEN, 2),
     ["clientID", "serviceDeliveryToken", "unitsReceived"]),
    (consumer.parse_end_response, wire.end_response("srv", "c1", TOKEN, 2, 3),
     ["serverID", "clientID", "serviceDeliveryToken", "unitsJustSupplied", "unitsRemaining"]),
    (consumer.parse_error, wire.error(404, "Service not found for id 9"), ["HTTPStatusCode", "message", "errorCode"]),
]


def test_builders_emit_exactly_the_reference_keys():
    for _, message, keys in MESSAGES:
        assert sorted(message.keys()) == sorted(keys), (sorted(message.keys()), keys)


def test_nested_keys_are_the_references():
    services = wire.service_list("s", [wire.service_entry(1, "n", "d")])["services"][0]
    assert sorted(services) == ["ServiceDescription", "ServiceID", "ServiceName"]
    price = wire.price_entry(1, "d", 30, "GBP", 1, "kWh")
    assert sorted(price) == ["priceDescription", "priceID", "pricePerUnit", "unitDescription", "unitID"]
    assert sorted(price["pricePerUnit"]) == ["amount", "currencyCode"]


def test_every_message_round_trips():
    for parse, message, _ in MESSAGES:
        assert parse(trip(message)) == message, message


def test_keys_are_parsed_in_any_case():
    for parse, message, _ in MESSAGES:
        assert parse(upper_keys(trip(message))) == message, message


def test_reference_error_with_zero_status_is_read():
    body = b'{"HTTPStatusCode":0,"message":"Service not found for id 9","errorCode":0}\n'
    assert consumer.parse_error(wire.decode_json(body))["message"] == "Service not found for id 9"


def test_go_null_service_list_is_empty():
    assert consumer.parse_service_list({"serverID": "s", "services": None})["services"] == []


def test_units_must_be_positive_integers():
    for bad in (0, -1, 1.5, "5", True, None, 10 ** 12, [5]):
        msg = refused(422, wire.parse_total_request,
                      {"clientID": "c", "selectedNumberOfUnits": bad, "selectedPriceID": 1})
        assert "selectedNumberOfUnits" in msg, msg


def test_missing_field_is_named():
    msg = refused(422, wire.parse_payment_request, {"clientID": "c", "paymentReferenceID": "r"})
    assert msg == "missing field clientToken"


def test_duplicate_keys_differing_only_in_case_are_refused():
    body = b'{"clientID": "a", "CLIENTID": "b", "selectedNumberOfUnits": 1, "selectedPriceID": 1}'
    assert "twice" in refused(422, wire.parse_total_request, wire.decode_json(body))


def test_strings_are_bounded():
    msg = refused(422, wire.parse_payment_request,
                  {"clientID": "c" * 65, "clientToken": "t", "paymentReferenceID": "r"})
    assert "clientID" in msg and "64" in msg


def test_body_must_be_an_object():
    for body in (b"[]", b"5", b'"x"', b"null"):
        assert "JSON object" in refused(422, wire.parse_total_request, wire.decode_json(body))


def test_bad_json_and_bad_utf8_are_422():
    assert "JSON" in refused(422, wire.decode_json, b'{"clientID": ')
    assert "UTF-8" in refused(422, wire.decode_json, b'{"clientID": "\xff\xfe"}')


def test_bodies_with_many_objects_or_arrays_are_refused_before_parsing():
    # A 2 KB body of empty objects would take ~30 KB of heap once parsed; deep nesting is bounded too.
    for body in (b"[" + b"{}," * 600 + b"{}]", b"[" * 5000 + b"]" * 5000, b'{"a": {"b": {"c": {"d": [[[[[1]]]]]}}}}'):
        assert "objects and arrays" in refused(422, wire.decode_json, body)
    begin = wire.encode_json(consumer.begin_request("c1", TOKEN, 3))  # the most a request needs: 2
    assert wire.parse_begin_request(wire.decode_json(begin))["unitsToSupply"] == 3
    prices = wire.price_list("srv", [wire.price_entry(i, "p", 30, "GBP", 1, "kWh") for i in range(consumer.MAX_ITEMS)])
    answer = wire.decode_json(wire.encode_json(prices), "answer", consumer.MAX_ANSWER_CONTAINERS)
    assert len(consumer.parse_price_list(answer)["prices"]) == consumer.MAX_ITEMS


def test_too_many_fields_are_refused():
    obj = dict(("f%d" % i, i) for i in range(32 + 1))
    assert "too many" in refused(422, wire.parse_total_request, obj)


def test_currency_must_be_iso_4217():
    for bad in ("gbp", "GB", "G1P", "EURO", 826):
        entry = wire.price_entry(1, "d", 30, bad, 1, "u")
        refused(422, consumer.parse_price_list, {"serverID": "s", "prices": [entry]})


def test_path_ids_are_strict_digits():
    assert wire.parse_path_id("12", "service") == 12
    for bad in ("", "-1", "1.0", "0x1", " 1", "12345678901", "1e3", "٣"):
        assert refused(400, wire.parse_path_id, bad, "service") == "Unable to parse input service id"


def test_broadcast_checks_port_scheme_and_prefix():
    good = wire.broadcast("s", "d", "10.0.0.2", 64521)
    for key, bad in (("portNumber", 0), ("portNumber", 65536), ("scheme", "ftp://"),
                     ("urlPrefix", "api"), ("urlPrefix", "/a/../b"), ("hostname", "")):
        msg = dict(good)
        msg[key] = bad
        assert key in refused(422, consumer.parse_broadcast, msg)


def test_a_producer_cannot_be_configured_with_a_prefix_its_consumers_refuse():
    with open(__file__.rsplit("/", 3)[0] + "/firmware/config.example.json") as f:
        example = json.loads(f.read())
    for prefix in ("", "/api", "/api/v1", "/a-b_c.d", "/api/", "/", "api", "/a/../b", "//a", "/a//b", "/a b",
                   "/a?b", "/a#b", "/a%20b"):
        example["network"]["urlPrefix"] = prefix
        try:
            config.check(example)
            configured = True
        except config.ConfigError as exc:
            assert str(exc).startswith("config.network.urlPrefix must be empty or a path like /api"), exc
            configured = False
        try:
            heard = consumer.parse_broadcast(wire.broadcast("s", "d", "10.0.0.2", 64521, prefix))["urlPrefix"]
        except ProtocolError:
            heard = None
        assert configured == (heard == prefix), (prefix, configured, heard)
        assert configured == (prefix in ("", "/api", "/api/v1", "/a-b_c.d")), prefix


def test_signature_may_be_null_as_the_reference_sends_it():
    token = dict(TOKEN)
    token["signature"] = None
    assert wire.parse_delivery_token(token)["signature"] is None


def test_ascii_text_keeps_printable_ascii_and_marks_each_other_character_once():
    assert wire.ascii_text("card declined: 05", 100) == "card declined: 05"
    assert wire.ascii_text('say "no" \\ \t\x7f', 100) == "say ?no? ? ??"
    assert wire.ascii_text("caf\u00e9 \u20ac\U0001F600!", 100) == "caf? ??!"  # 2, 3 and 4 UTF-8 bytes: one ? each
    assert wire.ascii_text("\u00e9" * 150, 100) == "?" * 100
    assert wire.ascii_text("", 100) == ""


def test_scrub_hides_card_numbers_and_gateway_tokens_and_keys():
    cases = [
        ("TKN_EXPIRED Token TEST_SU_8b1f-42aa has already been used", "TKN_EXPIRED Token [hidden] has already been used"),
        ("card 4444333322221111 declined", "card [hidden] declined"),
        ("card 4444 3333 2222 1111.", "card [hidden]."),
        ("4444-3333-2222-1111", "[hidden]"),
        ("123456789012", "[hidden]"),  # 12 digits: hidden
        ("T_S_22222222-2222-4222-8222-222222222222 is not authorised", "[hidden] is not authorised"),
        ('{"clientKey":"T_C_11111111-1111"}', '{"clientKey":"[hidden]"}'),
        ("xTEST_SU_abc!", "x[hidden]!"),
        ("caf\u00e9 \u20ac 99990000111122 \u20ac", "caf\u00e9 \u20ac [hidden] \u20ac"),
    ]
    for text, scrubbed in cases:
        assert wire.scrub(text) == scrubbed, (text, wire.scrub(text))


def test_scrub_keeps_what_is_no_secret():
    for text in ("", "Refused by the card issuer", "order 12345678901 (11 digits)", "2026-12-04T10:00:00Z",
                 "amount 300 GBP", "TEST T_ T_X_ TEST_S", "12 34 56", "caf\u00e9 \u20ac"):
        assert wire.scrub(text) == text, text
