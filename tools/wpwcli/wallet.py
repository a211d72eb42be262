"""The CLI's wallet: delivery tokens bought and the units left on each, kept in a JSON file.

A delivery token is a bearer credential for paid units, so the file is
created readable by its owner only (0600) and written atomically. It never
holds card data. Default location: $WPW_HOME/tokens.json (~/.wpw by default).
"""
import json
import os
import tempfile


def home():
    return os.environ.get("WPW_HOME") or os.path.join(os.path.expanduser("~"), ".wpw")


class Wallet:
    def __init__(self, path=None):
        self.path = path or os.path.join(home(), "tokens.json")
        self.entries = []
        if os.path.exists(self.path):
            with open(self.path) as f:
                self.entries = json.load(f)

    def add(self, producer, purchase, receipt):
        """Record a paid purchase; returns the entry."""
        entry = {
            "key": purchase.token["key"],
            "token": purchase.token,
            "producer": {"host": producer.host, "port": producer.port, "urlPrefix": producer.url_prefix,
                         "serverID": purchase.server_id},
            "clientID": purchase.client_id,
            "serviceID": purchase.service_id,
            "priceID": purchase.total["priceID"],
            "units": purchase.total["unitsToSupply"],
            "remaining": purchase.remaining,
            "totalPaid": receipt["totalPaid"],
            "currency": purchase.total["currencyCode"],
            "paymentReferenceID": purchase.total["paymentReferenceID"],
        }
        self.entries = [e for e in self.entries if e["key"] != entry["key"]] + [entry]
        self.save()
        return entry

    def find(self, prefix):
        """The entry whose key starts with `prefix` (at least 6 characters); LookupError if none or several."""
        if len(prefix) < 6:
            raise LookupError("give at least 6 characters of the token key")
        found = [e for e in self.entries if e["key"].startswith(prefix)]
        if len(found) != 1:
            raise LookupError("%s token in the wallet starts with %s" % ("no" if not found else "more than one", prefix))
        return found[0]

    def save(self):
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tokens-")
        with os.fdopen(fd, "w") as f:
            json.dump(self.entries, f, indent=2)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)
