"""The CLI's wallet on disk: the lib's wallet (wpwithin.wallet) kept in the lib's journal.

Default location: $WPW_HOME/wallet.journal (~/.wpw by default). A delivery
token is a bearer credential and a pending payment holds a one-use client
token, so the folder is made 0700 and every file in it 0600 (the journal,
its compaction's temporary file, the lock). One wpw at a time holds the
wallet (an exclusive lock, freed by the kernel however the process ends).
It never holds card data.

The wallet of earlier versions, tokens.json (a JSON list of tokens and
their units left), is read once into the journal and renamed
tokens.json.migrated; its tokens keep their units left.
"""
import fcntl
import json
import os

from wpwithin import wallet as wallet_core
from wpwithin import wire
from wpwithin.journal import FileJournal


KEEP_USED = 100000  # used-up tokens kept: on a host the wallet is also the history of purchases


def home():
    return os.environ.get("WPW_HOME") or os.path.join(os.path.expanduser("~"), ".wpw")


class WalletBusy(Exception):
    """Another wpw holds the wallet."""


class WalletFile:
    """The wallet and its journal, locked for this process until close()."""

    def __init__(self, path=None):
        self.path = path or os.path.join(home(), "wallet.journal")
        self.migrated = 0  # tokens read from an old tokens.json
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, mode=0o700, exist_ok=True)
        os.umask(0o077)  # the journal and its compaction's temporary file are the owner's only
        self._lock = open(self.path + ".lock", "a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            raise WalletBusy("another wpw is using the wallet %s; wait for it to finish" % self.path)
        self.journal = FileJournal(self.path)
        self.wallet = wallet_core.load(self.journal, keep_used=KEEP_USED)
        if path is None:
            self._migrate(os.path.join(folder, "tokens.json"))

    def _migrate(self, old):
        if not os.path.exists(old):
            return
        try:
            with open(old) as f:
                entries = json.load(f)
            self._read_in(entries)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError("the old wallet %s cannot be read in (%s: %s); it was left as it is"
                             % (old, type(exc).__name__, exc))
        os.rename(old, old + ".migrated")

    def _read_in(self, entries):
        for e in entries:
            p = e["producer"]
            total = wire.total_response(p["serverID"], e["clientID"], e["priceID"], e["units"], e["totalPaid"],
                                        e["currency"], e["paymentReferenceID"], "")
            if e["paymentReferenceID"] in self.wallet.entries:
                continue
            w = self.wallet
            records = [w.quoted(p["host"], p["port"], p["urlPrefix"], total),
                       w.paying(total, e["serviceID"], "-", 0),  # paid already: its client token is never sent
                       w.paid(e["paymentReferenceID"], e["token"])]
            used = e["units"] - e["remaining"]
            if used:
                records.append(w.begun(e["paymentReferenceID"], used))
                records.append(w.ended(e["paymentReferenceID"], used, e["remaining"]))
            for record in records:
                self.journal.append(record)
            self.migrated += 1

    def close(self):
        self.journal.close()
        self._lock.close()
