"""Merchant accounts of the simulator: key formats, configuration and lookup.

A merchant is a name with a test client key (T_C_<uuid>) and a test service
key (T_S_<uuid>). Live keys (L_C_/L_S_) are recognised only so requests
mixing them can be refused; they can never be configured. The service key
is a secret on the producer side: it must never appear in a repr, a log
line or the ledger (the ledger records the merchant's name).
"""
import hmac
import json
import re

DEFAULT_NAME = "default"
DEFAULT_CLIENT_KEY = "T_C_11111111-1111-4111-8111-111111111111"
DEFAULT_SERVICE_KEY = "T_S_22222222-2222-4222-8222-222222222222"

_KEY = re.compile(r"([TL])_([CS])_[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}")


class MerchantConfigError(ValueError):
    """A merchant list that cannot be used (message names the entry and the field)."""


def key_kind(key):
    """('T' or 'L', 'C' or 'S') for a well-formed key, else None."""
    if not isinstance(key, str):
        return None
    match = _KEY.fullmatch(key)
    if match is None:
        return None
    return match.group(1), match.group(2)


class Merchant:
    """One merchant account. repr() never shows the service key."""

    __slots__ = ("name", "client_key", "service_key")

    def __init__(self, name, client_key, service_key):
        self.name = name
        self.client_key = client_key
        self.service_key = service_key

    def __repr__(self):
        return "Merchant(%r, client_key=%r, service_key=<hidden>)" % (self.name, self.client_key)


def check_merchant(merchant, where):
    """Raise MerchantConfigError unless `merchant` has a good name and a test key pair."""
    if not isinstance(merchant.name, str) or not _NAME.fullmatch(merchant.name):
        raise MerchantConfigError("%s: name must be 1-64 letters, digits, spaces, '.', '_' or '-'" % where)
    if key_kind(merchant.client_key) != ("T", "C"):
        raise MerchantConfigError("%s: clientKey must be a test client key T_C_<uuid>" % where)
    if key_kind(merchant.service_key) != ("T", "S"):
        raise MerchantConfigError("%s: serviceKey must be a test service key T_S_<uuid>" % where)


def parse_merchant_spec(spec, index):
    """Parse --merchant CLIENT_KEY:SERVICE_KEY[:NAME]; unnamed merchants are merchant1, merchant2, ..."""
    parts = spec.split(":", 2)
    if len(parts) < 2:
        raise MerchantConfigError("--merchant %d: expected CLIENT_KEY:SERVICE_KEY[:NAME]" % index)
    name = parts[2] if len(parts) == 3 else "merchant%d" % index
    merchant = Merchant(name, parts[0], parts[1])
    check_merchant(merchant, "--merchant %d" % index)
    return merchant


def load_merchants_file(path):
    """Read a JSON list of {clientKey, serviceKey, name} objects."""
    try:
        with open(path, "rb") as handle:
            entries = json.loads(handle.read().decode("utf-8"))
    except OSError as exc:
        raise MerchantConfigError("%s: cannot read (%s)" % (path, exc.strerror))
    except ValueError as exc:
        raise MerchantConfigError("%s: not valid JSON (%s)" % (path, exc))
    if not isinstance(entries, list) or not entries:
        raise MerchantConfigError("%s: expected a non-empty JSON list of merchants" % path)
    merchants = []
    for number, entry in enumerate(entries, 1):
        where = "%s entry %d" % (path, number)
        if not isinstance(entry, dict):
            raise MerchantConfigError("%s: must be an object" % where)
        merchant = Merchant(entry.get("name"), entry.get("clientKey"), entry.get("serviceKey"))
        check_merchant(merchant, where)
        merchants.append(merchant)
    return merchants


def default_merchant():
    """The documented default test merchant, used when none is configured."""
    return Merchant(DEFAULT_NAME, DEFAULT_CLIENT_KEY, DEFAULT_SERVICE_KEY)


class MerchantBook:
    """The configured merchants, looked up by client key or service key."""

    def __init__(self, merchants):
        merchants = list(merchants)
        if not merchants:
            raise MerchantConfigError("at least one merchant is needed")
        seen = set()
        for merchant in merchants:
            check_merchant(merchant, "merchant %r" % merchant.name)
            for value in (merchant.name, merchant.client_key, merchant.service_key):
                if value in seen:
                    raise MerchantConfigError("merchant %r: name or key used twice" % merchant.name)
                seen.add(value)
        self._merchants = merchants
        self._by_client_key = {m.client_key: m for m in merchants}

    def __iter__(self):
        return iter(self._merchants)

    def __len__(self):
        return len(self._merchants)

    def by_client_key(self, key):
        """The merchant owning client key `key`, or None."""
        return self._by_client_key.get(key)

    def by_service_key(self, key):
        """The merchant owning service key `key`, or None (compared in constant time)."""
        found = None
        encoded = key.encode("utf-8", "replace")
        for merchant in self._merchants:
            if hmac.compare_digest(encoded, merchant.service_key.encode("ascii")):
                found = merchant
        return found
