"""A Thing's configuration (config.json) and secrets (secrets.json): checked, with defaults.

config.json says what the Thing is: device, network, gateway, producer
(services and prices), consumer. secrets.json holds what must never be
shown: merchant keys, the token-signing secret, the consumer's card and
WiFi credentials. Every problem raises ConfigError naming the field, e.g.
"config.producer.services[0].prices[1].amount must be ...". Secrets are
kept in a Secrets object whose repr() is the default one: no value shows.
checked_form() is what host tools put on a board beside config.json, so
a deployed board starts without this module (see checked_config).
Config and Secrets have no methods, so once a board has loaded its
configuration, load(..., unload=True) drops this module (its checks and
messages, ~10 KB of heap from .mpy) and nothing holds it. Never prints,
never logs, never writes.
"""
from binascii import unhexlify

from wpwithin import catalogue, discovery, wire
from wpwithin.checked_config import Config, ConfigError, Secrets, digest
from wpwithin.compat import forget
from wpwithin.errors import ProtocolError


DEFAULTS = {
    "device": {"description": "", "serverId": None},
    "network": {"host": "0.0.0.0", "hostname": None, "port": 64521, "urlPrefix": "",
                "broadcastAddress": discovery.BROADCAST_ADDRESS, "broadcastPort": discovery.BROADCAST_PORT,
                "broadcastIntervalMs": discovery.INTERVAL_MS, "probePort": discovery.PROBE_PORT,
                "maxConnections": 4, "readTimeout": 5, "debugHeap": 0, "ntpServer": "pool.ntp.org"},
    "gateway": {"url": "https://api.worldpay.com/v1", "ca": None, "timeout": 10},
    "producer": {"enabled": False, "tokenLifetime": 7 * 86400, "refundOnExpiry": False,
                 "journal": "ledger.journal", "maxOrders": 32, "deliveryTimeout": 600, "services": []},
    "consumer": {"enabled": False, "clientId": None, "wallet": "wallet.journal"},
}


# Only with network.broker (the producer's link to an MQTT broker, fleet_link.py) or consumer.broker
# (adverts heard there, scanner.py) set: a Thing without one keeps the settings it had, and never
# loads the MQTT modules.
_BROKER = {"brokerCa": None, "brokerStatusInterval": 30}
_CONSUMER_BROKER = {"brokerCa": None}
_PRICE_KEYS = ("id", "amount", "currency", "unitId", "unitDescription", "description", "minUnits", "maxUnits")
_SERVICE_KEYS = ("id", "name", "description", "capacity", "prices")
_SECRET_KEYS = ("wifiSsid", "wifiPassword", "merchantClientKey", "merchantServiceKey", "tokenSigningSecret", "card",
                "brokerUsername", "brokerPassword")
_CARD_KEYS = ("name", "number", "expiryMonth", "expiryYear", "cvc")


def _known(obj, known, where, what="setting"):
    """obj if it is an object holding only keys of `known`; else ConfigError naming the key and the known ones."""
    if not isinstance(obj, dict):
        raise ConfigError("%s must be an object" % where)
    for key in obj:
        if key not in known:
            raise ConfigError("%s.%s is not a known %s (known: %s)" % (where, key, what, ", ".join(sorted(known))))
    return obj


def _merge(section, given, where, more=None):
    """The section's defaults updated with what is given; `more` holds settings also known, not defaulted."""
    merged = dict(DEFAULTS[section])
    merged.update(_known({} if given is None else given, tuple(merged) + tuple(more or ()), where))
    return merged


def _check(value, kind, where, low=None, high=None):
    """`value` if it is of `kind` (int: within low..high; str: low..high characters), else ConfigError."""
    if value is None:
        raise ConfigError("%s is missing" % where)
    if kind is int:
        if type(value) is not int or (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError("%s must be an integer between %s and %s" % (where, low, high))
    elif kind is bool:
        if value is not True and value is not False:
            raise ConfigError("%s must be true or false" % where)
    elif kind is str:
        low = 1 if low is None else low
        if not isinstance(value, str) or len(value) < low or (high is not None and len(value) > high):
            raise ConfigError("%s must be a string of %s to %s characters" % (where, low, high or "any number of"))
    return value


def _currency(value, where):
    if not isinstance(value, str) or len(value) != 3 or not value.isalpha() or not value.isupper():
        raise ConfigError("%s must be a 3-letter ISO 4217 code" % where)
    return value


def _price(p, where):
    _known(p, _PRICE_KEYS, where)
    min_units = _check(p.get("minUnits", 1), int, where + ".minUnits", 1, wire.MAX_UNITS)
    return catalogue.Price(
        _check(p.get("id"), int, where + ".id", 0, wire.MAX_NUMBER_ID),
        _check(p.get("amount"), int, where + ".amount", 0, wire.MAX_AMOUNT),
        _currency(p.get("currency", "GBP"), where + ".currency"),
        _check(p.get("unitId", 1), int, where + ".unitId", 0, wire.MAX_NUMBER_ID),
        _check(p.get("unitDescription", "unit"), str, where + ".unitDescription", 0, wire.MAX_TEXT_LEN),
        _check(p.get("description", ""), str, where + ".description", 0, wire.MAX_TEXT_LEN),
        min_units,
        _check(p.get("maxUnits", wire.MAX_UNITS), int, where + ".maxUnits", min_units, wire.MAX_UNITS),
    )


def _service(item, where):
    _known(item, _SERVICE_KEYS, where)
    raw_prices = item.get("prices")
    if not isinstance(raw_prices, list) or not raw_prices:
        raise ConfigError("%s.prices must be a non-empty list" % where)
    prices = [_price(p, "%s.prices[%d]" % (where, j)) for j, p in enumerate(raw_prices)]
    _unique([p.price_id for p in prices], "%s.prices has two prices with the same id" % where)
    capacity = item.get("capacity")
    if capacity is not None:
        _check(capacity, int, where + ".capacity", 0, wire.MAX_UNITS)
    return catalogue.Service(
        _check(item.get("id"), int, where + ".id", 0, wire.MAX_NUMBER_ID),
        _check(item.get("name"), str, where + ".name", 0, wire.MAX_TEXT_LEN),
        _check(item.get("description", ""), str, where + ".description", 0, wire.MAX_TEXT_LEN),
        prices, capacity,
    )


def _unique(ids, message):
    if len(set(ids)) != len(ids):
        raise ConfigError(message)


def catalogue_from(services, where="services"):
    """A Catalogue from the "services" list of a configuration; ConfigError names the bad entry."""
    if not isinstance(services, list) or not services:
        raise ConfigError("%s must be a non-empty list" % where)
    built = [_service(item, "%s[%d]" % (where, i)) for i, item in enumerate(services)]
    _unique([s.service_id for s in built], "%s has two services with the same id" % where)
    return catalogue.Catalogue(built)


def check(obj):
    """A Config from a decoded config.json; ConfigError names the field at fault."""
    cfg = Config()
    _known(obj, DEFAULTS, "config", "section")
    cfg.device = _merge("device", obj.get("device"), "config.device")
    cfg.network = _merge("network", obj.get("network"), "config.network", ("broker",) + tuple(_BROKER))
    cfg.gateway = _merge("gateway", obj.get("gateway"), "config.gateway")
    cfg.producer = _merge("producer", obj.get("producer"), "config.producer")
    cfg.consumer = _merge("consumer", obj.get("consumer"), "config.consumer", ("broker",) + tuple(_CONSUMER_BROKER))
    net = cfg.network
    _check(net["port"], int, "config.network.port", 0, 65535)
    _check(net["broadcastPort"], int, "config.network.broadcastPort", 1, 65535)
    _check(net["probePort"], int, "config.network.probePort", 0, 65535)
    _check(net["broadcastIntervalMs"], int, "config.network.broadcastIntervalMs", 100, 3600000)
    _check(net["maxConnections"], int, "config.network.maxConnections", 1, 64)
    _check(net["readTimeout"], int, "config.network.readTimeout", 1, 300)
    _check(net["debugHeap"], int, "config.network.debugHeap", 0, 65535)
    _check(net["broadcastAddress"], str, "config.network.broadcastAddress")
    _check(net["ntpServer"], str, "config.network.ntpServer", 1, wire.MAX_HOST_LEN)
    if not wire.is_url_prefix(net["urlPrefix"]):  # the rule our consumers apply to the broadcast
        raise ConfigError("config.network.urlPrefix must be empty or a path like /api (no trailing /, .., //, "
                          "spaces, ?, # or %)")
    if _broker(net, "config.network", _BROKER):
        if not cfg.producer["enabled"]:
            raise ConfigError("config.network.broker: the broker carries a producer's advert; enable "
                              "config.producer (a consumer hears adverts with config.consumer.broker)")
        _check(net["brokerStatusInterval"], int, "config.network.brokerStatusInterval", 5, 86400)
    _broker(cfg.consumer, "config.consumer", _CONSUMER_BROKER)
    gateway = cfg.gateway
    url = _check(gateway["url"], str, "config.gateway.url")
    if not (url.startswith("https://") or url.startswith("http://")):
        raise ConfigError("config.gateway.url must start with https:// (or http:// for a local simulator)")
    if gateway["ca"] is not None:
        _check(gateway["ca"], str, "config.gateway.ca", 1, 128)
    elif url.startswith("https://"):
        raise ConfigError("config.gateway.ca is missing: an https gateway is verified against its CA certificate; "
                          "put that file (PEM or DER, e.g. ca.der) beside config.json and set config.gateway.ca "
                          "to its name (or use an http:// url for a local simulator)")
    _check(gateway["timeout"], int, "config.gateway.timeout", 1, 120)
    producer = cfg.producer
    _check(producer["enabled"], bool, "config.producer.enabled")
    _check(cfg.consumer["enabled"], bool, "config.consumer.enabled")
    if cfg.consumer["enabled"]:
        _check(cfg.consumer["wallet"], str, "config.consumer.wallet", 1, 128)
    if producer["enabled"]:
        _check(producer["tokenLifetime"], int, "config.producer.tokenLifetime", 60, 366 * 86400)
        _check(producer["refundOnExpiry"], bool, "config.producer.refundOnExpiry")
        _check(producer["maxOrders"], int, "config.producer.maxOrders", 1, 4096)
        _check(producer["deliveryTimeout"], int, "config.producer.deliveryTimeout", 10, 7 * 86400)
        _check(producer["journal"], str, "config.producer.journal")
        # The catalogue is what the Thing keeps; the JSON it is built from is let go.
        cfg.catalogue = catalogue_from(producer.pop("services"), "config.producer.services")
    if not producer["enabled"] and not cfg.consumer["enabled"]:
        raise ConfigError("config: enable config.producer or config.consumer (or both)")
    return cfg


def _broker(section, where, defaults):
    """True if the section sets a broker: its URL and CA checked, the defaults filled in. Without
    one its key is dropped (thing.py starts what needs a broker when the key is there)."""
    if section.get("broker") is None:
        section.pop("broker", None)
        for key in defaults:
            if key in section:
                raise ConfigError("%s.%s is set but %s.broker is not" % (where, key, where))
        return False
    from wpwithin.mqtt import parse_url  # only when a broker is configured

    for key in defaults:
        section.setdefault(key, defaults[key])
    url = _check(section["broker"], str, where + ".broker", 1, wire.MAX_HOST_LEN + 14)
    try:
        tls = parse_url(url)[0]
    except ValueError as exc:
        raise ConfigError("%s.broker %s" % (where, exc))
    if section["brokerCa"] is not None:
        _check(section["brokerCa"], str, where + ".brokerCa", 1, 128)
    elif tls:
        raise ConfigError("%s.brokerCa is missing: an mqtts broker is verified against its CA certificate; put "
                          "that file (PEM or DER) beside config.json and set %s.brokerCa to its name (or use an "
                          "mqtt:// url)" % (where, where))
    return True


def _hex_secret(value, where):
    try:
        if isinstance(value, str) and len(value) == 64:
            return unhexlify(value)
    except ValueError:
        pass
    raise ConfigError("%s must be 64 hex digits (32 random bytes); make one with: "
                      "python3 -c 'import os; print(os.urandom(32).hex())'" % where)


def _key(value, where, kind, other):
    """A merchant key: a string, not the other kind of key (T_S_/L_S_ service, T_C_/L_C_ client)."""
    _check(value, str, where)
    if value[1:4] == "_%s_" % other and value[0] in "TL":
        raise ConfigError("%s holds a %s key (%s...): give the merchant %s key (%s_%s_...) here"
                          % (where, "service" if other == "S" else "client", value[:4],
                             kind, value[0], kind[0].upper()))
    return value


def check_secrets(obj, config):
    """Secrets from a decoded secrets.json, checked against what `config` enables."""
    out = Secrets()
    _known(obj, _SECRET_KEYS, "secrets", "secret")
    out.wifi_ssid = obj.get("wifiSsid")
    out.wifi_password = obj.get("wifiPassword")
    out.client_key = out.service_key = out.signing_secret = out.card = None
    if config.producer["enabled"]:
        out.client_key = _key(obj.get("merchantClientKey"), "secrets.merchantClientKey", "client", "S")
        out.service_key = _key(obj.get("merchantServiceKey"), "secrets.merchantServiceKey", "service", "C")
        out.signing_secret = _hex_secret(obj.get("tokenSigningSecret"), "secrets.tokenSigningSecret")
    # The broker's user and password: attributes only with a broker, so a Thing without one keeps its heap.
    if "broker" in config.network or "broker" in config.consumer:
        user = obj.get("brokerUsername")
        out.broker_username = None if user is None else _check(user, str, "secrets.brokerUsername", 1, 256)
        password = obj.get("brokerPassword")
        out.broker_password = None if password is None else _check(password, str, "secrets.brokerPassword", 1, 256)
    if config.consumer["enabled"]:
        out.card = check_card(obj.get("card"))
    return out


def check_card(card, where="secrets.card", now=None):
    """A Card from a decoded card object (secrets.card, the wpw card file), every field checked: the
    number's digits (spaces or dashes between them are dropped) pass the Luhn check, and with `now`,
    (year, month), the card has not expired."""
    from wpwithin.card import Card  # consumer-only: not in producer-only images

    if not isinstance(card, dict):
        raise ConfigError("%s must be an object with name, number, expiryMonth, expiryYear, cvc" % where)
    _known(card, _CARD_KEYS, where, "field")
    number = _check(card.get("number"), str, where + ".number").replace(" ", "").replace("-", "")
    if not number.isdigit() or not 12 <= len(number) <= 19:
        raise ConfigError("%s.number must be 12 to 19 digits (spaces or dashes between them are fine)" % where)
    total = 0
    for i in range(len(number)):
        d = ord(number[-1 - i]) - 48
        total += d if i % 2 == 0 else (2 * d if d < 5 else 2 * d - 9)
    if total % 10:
        raise ConfigError("%s.number is not a card number (its check digit is wrong): look for a typo" % where)
    month = _check(card.get("expiryMonth"), int, where + ".expiryMonth", 1, 12)
    year = _check(card.get("expiryYear"), int, where + ".expiryYear", 2000, 2100)
    if now is not None and (year, month) < now:
        raise ConfigError("%s.expiryMonth/expiryYear: the card expired at the end of %02d/%d" % (where, month, year))
    cvc = _check(card.get("cvc"), str, where + ".cvc", 3, 4)
    if not cvc.isdigit():
        raise ConfigError("%s.cvc must be 3 or 4 digits" % where)
    return Card(_check(card.get("name"), str, where + ".name"), number, month, year, cvc)


def load(config_path, secrets_path, unload=False):
    """(Config, Secrets) from two JSON files; ConfigError names the file and field.

    unload: then forget this module (sys.modules and the package's attribute), so the
    heap it takes is freed once the caller drops its own reference to it.
    """
    try:
        config = check(read(config_path, "config"))
        return config, check_secrets(read(secrets_path, "secrets"), config)
    finally:
        if unload:
            forget(__name__)


def checked_form(config_path, secrets_path):
    """The text of config.checked for these two files (checked_config says what a board does with it);
    ConfigError as load(). Host tools write it beside config.json."""
    import json

    cfg = load(config_path, secrets_path)[0]
    files = []
    for path in (config_path, secrets_path):
        with open(path, "rb") as f:
            files.append(f.read())
    services = None
    if cfg.catalogue is not None:
        services = [[s.service_id, s.name, s.description, s.capacity,
                     [[p.price_id, p.amount, p.currency, p.unit_id, p.unit_description, p.description,
                       p.min_units, p.max_units] for p in s.prices.values()]]
                    for s in cfg.catalogue.services.values()]
    return json.dumps({"sha256": digest(files[0], files[1]), "services": services,
                       "settings": [cfg.device, cfg.network, cfg.gateway, cfg.producer, cfg.consumer]})


def read(path, what="config"):
    """The JSON value in a file, checked as strictly as the wire's (the same on both runtimes);
    ConfigError names the file, and the line and column of a mistake."""
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError:
        raise ConfigError("%s file %s cannot be read" % (what, path))
    try:
        return wire.decode_json(text, "%s file %s" % (what, path), None)
    except ProtocolError as exc:
        message = exc.message
        at = message.rfind(" at byte ")
        if at > 0:  # a person edits this file: line and column, not a byte offset
            n = int(message[at + 9:])
            start = text.rfind(b"\n", 0, n) + 1
            message = "%s at line %d column %d" % (message[:at], text.count(b"\n", 0, n) + 1, n - start + 1)
        raise ConfigError(message)
