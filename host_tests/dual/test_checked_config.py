"""config.checked: a deployed board starts from the host-checked form, never from a file it was not checked as.

A module of its own: nothing here may hold wpwithin.config, or the test that a deployed board
never loads it could not fail.
"""
import json
import sys

from expect import raises

CONFIG = {
    "device": {"serverId": "checked-test"}, "gateway": {"url": "http://127.0.0.1:9/v1"},
    "network": {"port": 8123},
    "producer": {"enabled": True, "services": [{"id": 7, "name": "Charge", "capacity": 40, "prices": [
        {"id": 1, "amount": 30, "currency": "GBP", "unitId": 1, "unitDescription": "kWh", "maxUnits": 10},
        {"id": 2, "amount": 25, "currency": "GBP", "unitId": 1, "unitDescription": "kWh", "minUnits": 11}]}]},
}
SECRETS = {"merchantClientKey": "T_C_1", "merchantServiceKey": "T_S_2", "tokenSigningSecret": "ab" * 32}


def files(name, config=CONFIG, secrets=SECRETS):
    """config.json and secrets.json written, config.checked made as tools/deploy makes it; their paths."""
    base = "/tmp/wpw-checked-%s-%s" % (name, sys.implementation.name)
    paths = (base + "-config.json", base + "-secrets.json")
    for path, content in zip(paths, (config, secrets)):
        with open(path, "w") as f:
            f.write(json.dumps(content))
    from wpwithin import config as checker

    with open(base + "-config.checked", "w") as f:
        f.write(checker.checked_form(paths[0], paths[1]))
    checker.forget("wpwithin.config")
    return paths


def test_a_deployed_board_gets_the_checked_settings_without_loading_the_checker():
    paths = files("same")
    from wpwithin import checked_config

    cfg, secrets = checked_config.load(paths[0], paths[1])
    assert "wpwithin.config" not in sys.modules and "wpwithin.checked_config" not in sys.modules
    assert cfg.network["port"] == 8123 and cfg.network["broadcastPort"] == 8980  # a default filled in
    assert cfg.device["serverId"] == "checked-test" and cfg.consumer["enabled"] is False
    assert "services" not in cfg.producer and cfg.producer["maxOrders"] == 32
    service = cfg.catalogue.service(7)
    assert service.capacity == 40 and sorted(service.prices) == [1, 2]
    assert cfg.catalogue.quote(7, 1, 20)[0].price_id == 2  # the tiers as the checker built them
    assert service.price(2).max_units == 1000000000 and service.price(1).unit_description == "kWh"
    assert secrets.client_key == "T_C_1" and secrets.service_key == "T_S_2"
    assert secrets.signing_secret == b"\xab" * 32 and secrets.card is None


def test_a_file_edited_on_the_board_goes_to_the_full_checker_which_refuses_what_the_host_refuses():
    paths = files("edited")
    with open(paths[0], "w") as f:  # MicroPython's json would take the trailing comma
        f.write(json.dumps(CONFIG)[:-1] + ",}")
    from wpwithin import checked_config

    message = str(raises(checked_config.ConfigError, checked_config.load, paths[0], paths[1]))
    assert "line 1" in message and "wpwithin.config" not in sys.modules  # the checker is dropped after


def test_an_edit_the_checker_accepts_takes_effect():
    paths = files("valid-edit")
    changed = json.loads(json.dumps(CONFIG))
    changed["network"]["port"] = 8124
    with open(paths[0], "w") as f:
        f.write(json.dumps(changed))
    from wpwithin import checked_config

    assert checked_config.load(paths[0], paths[1])[0].network["port"] == 8124


def test_edited_secrets_are_checked_again():
    paths = files("secrets")
    with open(paths[1], "w") as f:
        f.write(json.dumps(dict(SECRETS, merchantClientKey="T_S_9")))
    from wpwithin import checked_config

    message = str(raises(checked_config.ConfigError, checked_config.load, paths[0], paths[1]))
    assert "secrets.merchantClientKey" in message


def test_a_board_without_config_checked_is_checked_as_before():
    paths = files("none")
    import os

    os.remove(paths[0][:-len("-config.json")] + "-config.checked")
    from wpwithin import checked_config

    assert checked_config.load(paths[0], paths[1])[0].catalogue.service(7).name == "Charge"
