"""Configuration and secrets: the example loads, every mistake is named, secrets stay hidden."""
import json

from expect import raises

from wpwithin import config
from wpwithin.config import ConfigError

ROOT = __file__.rsplit("/", 3)[0] if __file__.count("/") >= 3 else "."
EXAMPLE = ROOT + "/firmware/config.example.json"
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
    assert error([]) == "config must be a JSON object"


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

