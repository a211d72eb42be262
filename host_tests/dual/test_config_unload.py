"""config.load(..., unload=True): a board keeps the checked settings and frees the checking code.

A module of its own: nothing here holds wpwithin.config, or the heap it frees would stay taken.
"""
import gc
import json
import sys

from wpwithin import catalogue, discovery, gateway_wire, wire  # noqa: F401 (what config uses stays loaded)

CONFIG = {
    "device": {"serverId": "unload-test"}, "gateway": {"url": "http://127.0.0.1:9/v1"},
    "producer": {"enabled": True, "services": [{"id": 1, "name": "Charge", "prices": [
        {"id": 1, "amount": 30, "currency": "GBP", "unitId": 1, "unitDescription": "kWh"}]}]},
}
SECRETS = {"merchantClientKey": "T_C_1", "merchantServiceKey": "T_S_2", "tokenSigningSecret": "ab" * 32}


def heap():
    gc.collect()
    return gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0  # CPython has no such figure


def test_load_can_unload_the_module_and_free_its_heap():
    paths = ["/tmp/wpw-unload-%s-%s.json" % (name, sys.implementation.name) for name in ("config", "secrets")]
    for path, content in zip(paths, (CONFIG, SECRETS)):
        with open(path, "w") as f:
            f.write(json.dumps(content))
    before = heap()
    from wpwithin import config

    loaded = heap()
    cfg, secrets = config.load(paths[0], paths[1], unload=True)
    del config
    after = heap()
    assert "wpwithin.config" not in sys.modules
    assert cfg.catalogue.service(1).name == "Charge" and secrets.client_key == "T_C_1"
    if sys.implementation.name == "micropython":
        # Its code, functions and messages are freed; its names stay interned (MicroPython never
        # frees a qstr), and the settings themselves are kept: about half is given back.
        assert loaded - after > 6144, (before, loaded, after)

    from wpwithin import config  # and it loads again when needed

    assert config.check(CONFIG).catalogue is not None
