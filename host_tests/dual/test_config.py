"""Configuration and secrets: the example loads, every mistake is named, secrets stay hidden."""
import json

from expect import raises

from wpwithin import config
from wpwithin.config import ConfigError

ROOT = __file__.rsplit("/", 3)[0] if __file__.count("/") >= 3 else "."
EXAMPLE = ROOT + "/firmware/config.example.json"
SECRETS_EXAMPLE = ROOT + "/firmware/secrets.example.json"
SECRETS = {"merchantClientKey": "T_C_1", "merchantServiceKey": "T_S_very-secret-key",
           "tokenSigningSecret": "00" * 32,
           "card": {"name": "A", "number": "4444333322221111", "expiryMonth": 1, "expiryYear": 2030,
                    "cvc": "123"}}


def example():
    with open(EXAMPLE) as f:
        return json.load(f)


def error(obj):
    return str(raises(ConfigError, config.check, obj))


def test_example_config_loads_with_defaults():
    cfg = config.check(example())
    assert cfg.network["port"] == 64521 and cfg.network["broadcastPort"] == 8980
    assert cfg.catalogue.quote(1, 1, 20)[0].price_id == 2
    assert cfg.consumer["enabled"] is False


def test_mistakes_name_the_field():
    obj = example()
    obj["network"]["port"] = "64521"
    assert error(obj).startswith("config.network.port must be an integer")
    obj = example()
    obj["producer"]["services"][0]["prices"][1]["amount"] = 2.5
    assert error(obj).startswith("config.producer.services[0].prices[1].amount")
    obj = example()
    obj["network"]["prot"] = 1
    assert "config.network.prot is not a known setting" in error(obj)
    obj = example()
    obj["gateway"]["url"] = "ftp://x"
    assert error(obj).startswith("config.gateway.url")
    obj = example()
    obj["producer"]["enabled"] = False
    assert "enable config.producer or config.consumer" in error(obj)
    assert error([]) == "config must be an object"


def test_secrets_are_checked_and_never_shown():
    obj = example()
    obj["consumer"] = {"enabled": True}
    cfg = config.check(obj)
    secrets = config.check_secrets(SECRETS, cfg)
    shown = repr(secrets) + str(secrets) + repr(secrets.card) + str(secrets.card)
    for secret in ("T_S_very-secret-key", "4444333322221111", "123\"", "00000000"):
        assert secret not in shown, shown
    assert "1111" in repr(secrets.card)
    bad = dict(SECRETS)
    bad["tokenSigningSecret"] = "replace-me"
    assert "secrets.tokenSigningSecret" in str(raises(ConfigError, config.check_secrets, bad, cfg))
    bad = dict(SECRETS)
    del bad["card"]
    assert "secrets.card" in str(raises(ConfigError, config.check_secrets, bad, cfg))


def test_unreadable_files_are_named():
    assert "cannot be read" in str(raises(ConfigError, config.load, "/nonexistent.json", "/x"))
    assert "not valid JSON" in str(raises(ConfigError, config.load, ROOT + "/Makefile", "/x"))



def test_the_examples_load_as_shipped_and_point_at_the_local_simulator():
    cfg, secrets = config.load(EXAMPLE, SECRETS_EXAMPLE)
    assert cfg.gateway["url"] == "http://127.0.0.1:8443/v1" and cfg.gateway["ca"] is None
    assert cfg.network["ntpServer"] == "pool.ntp.org" and len(secrets.signing_secret) == 32


def test_an_https_gateway_needs_its_ca():
    obj = example()
    obj["gateway"]["url"] = "https://api.worldpay.com/v1"
    message = error(obj)
    assert message.startswith("config.gateway.ca is missing") and "ca.der" in message, message
    obj["gateway"]["ca"] = "ca.der"
    assert config.check(obj).gateway["ca"] == "ca.der"
    obj["gateway"]["ca"] = 5
    assert error(obj).startswith("config.gateway.ca must be a string")


def test_unknown_keys_are_refused_at_every_level():
    obj = example()
    obj["producer"]["services"][0]["capcity"] = 5
    assert error(obj) == ("config.producer.services[0].capcity is not a known setting "
                          "(known: capacity, description, id, name, prices)")
    obj = example()
    obj["producer"]["services"][0]["prices"][1]["maxUnit"] = 5
    message = error(obj)
    assert message.startswith("config.producer.services[0].prices[1].maxUnit is not a known setting (known: ")
    assert "maxUnits" in message and "minUnits" in message
    obj = example()
    obj["typo"] = {}
    assert error(obj).startswith("config.typo is not a known section (known: consumer, device, gateway")
    obj = example()
    obj["network"]["ntpServer"] = ""
    assert error(obj).startswith("config.network.ntpServer must be a string")
    obj = example()
    del obj["producer"]["services"][0]["prices"][0]["id"]
    assert error(obj) == "config.producer.services[0].prices[0].id is missing"


def with_broker(**network):
    obj = example()
    obj["network"].update(network)
    return obj


def test_without_a_broker_the_network_settings_are_as_before():
    net = config.check(example()).network
    assert "broker" not in net and "brokerCa" not in net and "brokerStatusInterval" not in net
    assert error(with_broker(brokerStatusInterval=10)) == (
        "config.network.brokerStatusInterval is set but config.network.broker is not")


def test_broker_settings_are_checked_with_their_defaults():
    net = config.check(with_broker(broker="mqtt://10.0.0.2")).network
    assert (net["broker"], net["brokerCa"], net["brokerStatusInterval"]) == ("mqtt://10.0.0.2", None, 30)
    net = config.check(with_broker(broker="mqtts://b.example:8884", brokerCa="ca.der",
                                   brokerStatusInterval=300)).network
    assert (net["brokerCa"], net["brokerStatusInterval"]) == ("ca.der", 300)
    assert error(with_broker(broker="http://b.example")) == (
        "config.network.broker must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    assert error(with_broker(broker="mqtts://b.example")).startswith(
        "config.network.brokerCa is missing: an mqtts broker is verified against its CA certificate")
    assert error(with_broker(broker="mqtt://b", brokerStatusInterval=1)).startswith(
        "config.network.brokerStatusInterval must be an integer between 5 and 86400")
    assert error(with_broker(broker="mqtt://b", brokerInterval=60)).startswith(
        "config.network.brokerInterval is not a known setting (known: ")
    obj = with_broker(broker="mqtt://b")
    obj["producer"]["enabled"] = False
    obj["consumer"] = {"enabled": True}
    assert error(obj).startswith("config.network.broker: the broker carries a producer's advert")


def test_broker_secrets():
    cfg = config.check(with_broker(broker="mqtt://b"))
    secrets = config.check_secrets(dict(SECRETS, brokerPassword="pw-123"), cfg)
    assert (secrets.broker_username, secrets.broker_password) == (None, "pw-123")
    assert "pw-123" not in repr(secrets)
    secrets = config.check_secrets(dict(SECRETS, brokerUsername="charger-1"), cfg)
    assert (secrets.broker_username, secrets.broker_password) == ("charger-1", None)
    assert str(raises(ConfigError, config.check_secrets, dict(SECRETS, brokerPassword=""), cfg)).startswith(
        "secrets.brokerPassword must be a string")
    plain = config.check_secrets(SECRETS, config.check(example()))
    assert not hasattr(plain, "broker_password")  # a Thing without a broker: no attributes for it


def with_consumer_broker(**consumer):
    obj = example()
    obj["producer"]["enabled"] = False
    obj["consumer"] = dict({"enabled": True}, **consumer)
    return obj


def test_a_consumer_broker_is_checked_as_the_producers_and_brings_the_broker_secrets():
    cons = config.check(with_consumer_broker(broker="mqtts://10.0.0.2", brokerCa="fleet.pem")).consumer
    assert (cons["broker"], cons["brokerCa"]) == ("mqtts://10.0.0.2", "fleet.pem")
    assert "broker" not in config.check(with_consumer_broker()).consumer
    assert error(with_consumer_broker(brokerCa="fleet.pem")) == (
        "config.consumer.brokerCa is set but config.consumer.broker is not")
    assert error(with_consumer_broker(broker="mqtts://b")).startswith(
        "config.consumer.brokerCa is missing: an mqtts broker is verified against its CA certificate")
    assert error(with_consumer_broker(broker="mqtt:/b")) == (
        "config.consumer.broker must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    assert error(with_consumer_broker(broker="mqtt://b", brokerStatusInterval=5)).startswith(
        "config.consumer.brokerStatusInterval is not a known setting")  # a consumer sends no status
    cfg = config.check(with_consumer_broker(broker="mqtt://b"))
    secrets = config.check_secrets(dict(SECRETS, brokerUsername="car-7", brokerPassword="pw-9"), cfg)
    assert (secrets.broker_username, secrets.broker_password) == ("car-7", "pw-9")


def secrets_error(obj, consumer=False):
    cfg_obj = example()
    if consumer:
        cfg_obj["consumer"] = {"enabled": True}
    return str(raises(ConfigError, config.check_secrets, obj, config.check(cfg_obj)))


def test_secrets_mistakes_name_the_key():
    bad = dict(SECRETS)
    bad["merchantServiceKy"] = bad.pop("merchantServiceKey")
    message = secrets_error(bad)
    assert message.startswith("secrets.merchantServiceKy is not a known secret (known: brokerPassword, "
                              "brokerUsername, card, merchantClientKey, merchantServiceKey, tokenSigningSecret, "
                              "wifiPassword, wifiSsid)"), message
    del bad["merchantServiceKy"]
    assert secrets_error(bad) == "secrets.merchantServiceKey is missing"
    for short in ("00" * 16, "00" * 31, "zz" * 32):  # the README's 64 hex digits, and only that
        bad = dict(SECRETS, tokenSigningSecret=short)
        assert secrets_error(bad).startswith("secrets.tokenSigningSecret must be 64 hex digits")
    bad = dict(SECRETS, card=dict(SECRETS["card"], numbr="4444333322221111"))
    message = secrets_error(bad, consumer=True)
    assert message.startswith("secrets.card.numbr is not a known field") and "4444" not in message


def test_a_merchant_key_of_the_other_kind_is_refused_at_start():
    bad = dict(SECRETS, merchantClientKey="T_S_abc-secret")
    message = secrets_error(bad)
    assert message.startswith("secrets.merchantClientKey holds a service key (T_S_...)"), message
    assert "abc-secret" not in message and "client key (T_C_...)" in message
    bad = dict(SECRETS, merchantServiceKey="L_C_abc")
    assert secrets_error(bad).startswith("secrets.merchantServiceKey holds a client key (L_C_...)")


def write(name, text):
    import sys

    path = "/tmp/wpw-config-%s-%s.json" % (name, sys.implementation.name)
    with open(path, "w") as f:
        f.write(text)
    return path


def test_json_the_board_would_take_is_refused_with_its_line_and_column():
    # MicroPython's json takes these; a board must refuse what the host tools refuse.
    with open(EXAMPLE) as f:
        text = f.read()
    trailing = text.replace('"Car charger, bay 3"', '"Car charger, bay 3",')
    message = str(raises(ConfigError, config.read, write("trailing", trailing)))
    assert message.endswith("is not valid JSON: unexpected } at line 4 column 3"), message
    missing = '{"device": {"description": "x"}\n "producer": {}}'
    message = str(raises(ConfigError, config.read, write("missing", missing)))
    assert message.endswith("is not valid JSON: expected ',' or '}' at line 2 column 2"), message
    secrets = write("secrets", '{"merchantClientKey": "T_C_1",}')
    message = str(raises(ConfigError, config.load, EXAMPLE, secrets))
    assert message.startswith("secrets file ") and message.endswith("at line 1 column 31"), message
