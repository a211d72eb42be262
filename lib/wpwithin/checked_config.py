"""The configuration a board starts from: the form the host checked, beside config.json.

tools/deploy and tools/build --config check config.json and secrets.json
with the full checker (wpwithin.config, under CPython) and put beside
them config.checked: the settings with their defaults filled in, the
services as plain lists, and the SHA-256 of both files as checked.
load() builds the Config and Secrets from it without checking a field,
but only while both files are byte for byte the ones checked: a file
edited on the board, or a board without config.checked (a hand copy),
goes to the full checker, which refuses what the host refuses. So a
deployed board never loads the checker (11.8 KiB of heap and 73 names
MicroPython never frees, .mpy, 64-bit). Config and Secrets are defined
here for both paths, and ConfigError. Never prints, logs or writes; never shows a secret.
"""
import json
from binascii import hexlify, unhexlify
from hashlib import sha256

from wpwithin.compat import forget


class ConfigError(ValueError):
    pass


class Config:
    """A checked config.json: device, network, gateway, producer, consumer (dicts, defaults filled in);
    catalogue when the producer is enabled (producer then holds no "services")."""

    catalogue = None


class Secrets:
    """Checked secrets: wifi_ssid, wifi_password, client_key, service_key, signing_secret, card;
    repr() is the default one."""


def digest(config_bytes, secrets_bytes):
    """What config.checked records of the two files it was made from."""
    return hexlify(sha256(config_bytes).digest() + sha256(secrets_bytes).digest()).decode()


def load(config_path, secrets_path):
    """(Config, Secrets): from config.checked while it matches both files, else from the full
    checker (loaded for this and dropped after); ConfigError names the file and field."""
    try:
        loaded = _from_checked(config_path, secrets_path)
        if loaded is None:
            from wpwithin import config

            loaded = config.load(config_path, secrets_path, unload=True)
        return loaded
    finally:
        forget(__name__)  # its code is freed once the caller drops the module (1.8 KiB)


def _from_checked(config_path, secrets_path):
    try:
        with open(config_path.rsplit(".", 1)[0] + ".checked") as f:
            form = json.load(f)
        with open(config_path, "rb") as f:
            config_bytes = f.read()
        with open(secrets_path, "rb") as f:
            secrets_bytes = f.read()
    except (OSError, ValueError):  # none there, or unreadable: the full checker says what is wrong
        return None
    if form.get("sha256") != digest(config_bytes, secrets_bytes):
        return None
    del config_bytes
    given = json.loads(secrets_bytes)
    cfg = Config()
    cfg.device, cfg.network, cfg.gateway, cfg.producer, cfg.consumer = form["settings"]
    if form["services"] is not None:
        from wpwithin.catalogue import Catalogue, Price, Service

        cfg.catalogue = Catalogue([Service(s[0], s[1], s[2], [Price(*p) for p in s[4]], s[3])
                                   for s in form["services"]])
    out = Secrets()
    out.wifi_ssid = given.get("wifiSsid")
    out.wifi_password = given.get("wifiPassword")
    out.client_key = out.service_key = out.signing_secret = out.card = None
    if cfg.producer["enabled"]:
        out.client_key = given["merchantClientKey"]
        out.service_key = given["merchantServiceKey"]
        out.signing_secret = unhexlify(given["tokenSigningSecret"])
    if cfg.consumer["enabled"]:
        from wpwithin.card import from_secrets  # consumer-only: not in producer-only images

        out.card = from_secrets(given["card"])
    if "broker" in cfg.network or "broker" in cfg.consumer:  # as config.load: the attributes only with a broker
        out.broker_username = given.get("brokerUsername")
        out.broker_password = given.get("brokerPassword")
    return cfg, out
