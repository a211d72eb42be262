"""The simulator's ledger: tokens, orders, refunds and an event per state change, in SQLite.

Every state change is one transaction that also appends its event, so the
events always account for the state. Reads and writes share one
connection behind a lock (connection threads call in concurrently). It
stores masked card numbers only (444433******1111), never a full card
number, a CVC or a service key; merchants appear by name. It decides
nothing: the request handlers choose the new state, the ledger records it.

Python API for tests (all return plain dicts with snake_case keys):
    Ledger(path=":memory:", create=True, clock=time.time)
    .reconcile() -> {"merchants": {name: {...}}, "totals": {...},
                     "problems": [...], "consistent": bool}
    .orders_by_customer_order_code(code, merchant=None) -> [order, ...]
    .order(order_code) -> order or None;  .orders(merchant=None)
    .token(token) -> token or None;       .tokens(merchant=None)
    .refunds(order_code=None);            .events(order_code=None, kind=None)
    .dump() -> {"tokens": [...], "orders": [...], "refunds": [...], "events": [...]}
    .close()
An order dict has: order_code, merchant, token, amount, currency,
description, customer_order_code, authorize_only, status, reason,
authorized, charged, refunded, created, updated.
"""
import contextlib
import datetime
import os
import sqlite3
import threading
import time

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    token TEXT PRIMARY KEY,
    merchant TEXT NOT NULL,
    reusable INTEGER NOT NULL,
    name TEXT NOT NULL,
    expiry_month INTEGER NOT NULL,
    expiry_year INTEGER NOT NULL,
    masked_pan TEXT NOT NULL,
    card_profile TEXT NOT NULL,
    outcome TEXT NOT NULL,
    created TEXT NOT NULL,
    used_by TEXT
);
CREATE TABLE IF NOT EXISTS orders (
    order_code TEXT PRIMARY KEY,
    merchant TEXT NOT NULL,
    token TEXT NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    description TEXT NOT NULL,
    customer_order_code TEXT,
    authorize_only INTEGER NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    authorized INTEGER NOT NULL,
    charged INTEGER NOT NULL,
    refunded INTEGER NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_by_customer_code ON orders (customer_order_code);
CREATE TABLE IF NOT EXISTS refunds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_code TEXT NOT NULL,
    merchant TEXT NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,
    kind TEXT NOT NULL,
    merchant TEXT,
    token TEXT,
    order_code TEXT,
    amount INTEGER,
    currency TEXT,
    status TEXT,
    detail TEXT
);
"""

# Event kinds, one per state change (plus gateway_error, which changes nothing).
TOKEN_CREATED = "token_created"
TOKEN_USED = "token_used"
ORDER_CREATED = "order_created"
ORDER_CAPTURED = "order_captured"
ORDER_REFUNDED = "order_refunded"
ORDER_CANCELLED = "order_cancelled"
GATEWAY_ERROR = "gateway_error"

CHARGED_STATUSES = ("SUCCESS", "PARTIALLY_REFUNDED", "REFUNDED")


class LedgerError(Exception):
    """The ledger file cannot be opened or is not a simulator ledger."""


def iso_time(seconds):
    """UTC RFC 3339 text with microseconds, e.g. 2025-01-02T03:04:05.000006Z."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _row_dict(row):
    result = dict(row)
    for key in ("reusable", "authorize_only"):
        if key in result:
            result[key] = bool(result[key])
    return result


class Ledger:
    """SQLite ledger; path ':memory:' (default) keeps it in this process only."""

    def __init__(self, path=":memory:", create=True, clock=time.time):
        self.path = path
        self._clock = clock
        self._lock = threading.RLock()
        self._depth = 0
        if path != ":memory:" and not create and not os.path.exists(path):
            raise LedgerError("%s: no such ledger file" % path)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
            self._db.row_factory = sqlite3.Row
            if path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise LedgerError("%s: ledger schema %d, expected %d" % (path, version, SCHEMA_VERSION))
            if version == 0:
                if not create and self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                    raise LedgerError("%s: not a gateway simulator ledger" % path)
                self._db.executescript(_SCHEMA + "PRAGMA user_version=%d;" % SCHEMA_VERSION)
        except sqlite3.DatabaseError as exc:
            raise LedgerError("%s: %s" % (path, exc))

    def close(self):
        """Close the database (waits for a transaction in progress)."""
        with self._lock:
            self._db.close()

    # --- transactions --------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self):
        """Hold the ledger for a read-decide-write sequence; commit on success, roll back on error."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")
            finally:
                self._depth = 0

    def _now(self):
        return iso_time(self._clock())

    def _all(self, sql, args=()):
        with self._lock:
            return [_row_dict(row) for row in self._db.execute(sql, args).fetchall()]

    def _one(self, sql, args=()):
        rows = self._all(sql, args)
        return rows[0] if rows else None

    # --- writes (call inside transaction()) ----------------------------------

    def add_event(self, kind, merchant=None, token=None, order_code=None, amount=None,
                  currency=None, status=None, detail=None):
        """Append one event (state-changing writes below do this themselves)."""
        with self.transaction():
            self._db.execute(
                "INSERT INTO events (ts, kind, merchant, token, order_code, amount, currency, status, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self._now(), kind, merchant, token, order_code, amount, currency, status, detail))

    def add_token(self, token, merchant, reusable, name, expiry_month, expiry_year,
                  masked_pan, card_profile, outcome):
        """Record a new token; `masked_pan` must already be masked."""
        if "*" not in masked_pan:
            raise ValueError("add_token needs a masked card number")
        with self.transaction():
            self._db.execute(
                "INSERT INTO tokens (token, merchant, reusable, name, expiry_month, expiry_year,"
                " masked_pan, card_profile, outcome, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (token, merchant, int(reusable), name, expiry_month, expiry_year,
                 masked_pan, card_profile, outcome, self._now()))
            self.add_event(TOKEN_CREATED, merchant, token=token, detail=masked_pan)

    def use_token(self, token, order_code, merchant):
        """Mark a one-use token as spent by `order_code`."""
        with self.transaction():
            self._db.execute("UPDATE tokens SET used_by = ? WHERE token = ?", (order_code, token))
            self.add_event(TOKEN_USED, merchant, token=token, order_code=order_code)

    def add_order(self, order_code, merchant, token, amount, currency, description,
                  customer_order_code, authorize_only, status, reason, authorized, charged):
        """Record a new order in its first status."""
        now = self._now()
        with self.transaction():
            self._db.execute(
                "INSERT INTO orders (order_code, merchant, token, amount, currency, description,"
                " customer_order_code, authorize_only, status, reason, authorized, charged, refunded,"
                " created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                (order_code, merchant, token, amount, currency, description, customer_order_code,
                 int(authorize_only), status, reason, authorized, charged, now, now))
            self.add_event(ORDER_CREATED, merchant, token=token, order_code=order_code,
                           amount=amount, currency=currency, status=status, detail=reason)

    def capture_order(self, order_code, amount):
        """An AUTHORIZED order becomes SUCCESS, charged `amount`."""
        with self.transaction():
            order = self.order(order_code)
            self._db.execute(
                "UPDATE orders SET status = 'SUCCESS', charged = ?, updated = ? WHERE order_code = ?",
                (amount, self._now(), order_code))
            self.add_event(ORDER_CAPTURED, order["merchant"], order_code=order_code, amount=amount,
                           currency=order["currency"], status="SUCCESS")

    def cancel_order(self, order_code):
        """An AUTHORIZED order becomes CANCELLED."""
        with self.transaction():
            order = self.order(order_code)
            self._db.execute(
                "UPDATE orders SET status = 'CANCELLED', updated = ? WHERE order_code = ?",
                (self._now(), order_code))
            self.add_event(ORDER_CANCELLED, order["merchant"], order_code=order_code,
                           amount=order["authorized"], currency=order["currency"], status="CANCELLED")

    def refund_order(self, order_code, amount, new_status):
        """Record a refund of `amount` and move the order to `new_status`."""
        with self.transaction():
            order = self.order(order_code)
            now = self._now()
            self._db.execute(
                "INSERT INTO refunds (order_code, merchant, amount, currency, created) VALUES (?, ?, ?, ?, ?)",
                (order_code, order["merchant"], amount, order["currency"], now))
            self._db.execute(
                "UPDATE orders SET status = ?, refunded = refunded + ?, updated = ? WHERE order_code = ?",
                (new_status, amount, now, order_code))
            self.add_event(ORDER_REFUNDED, order["merchant"], order_code=order_code, amount=amount,
                           currency=order["currency"], status=new_status)

    # --- reads -----------------------------------------------------------------

    def token(self, token):
        """The token row, or None."""
        return self._one("SELECT * FROM tokens WHERE token = ?", (token,))

    def tokens(self, merchant=None):
        """All tokens (of one merchant), oldest first."""
        if merchant is None:
            return self._all("SELECT * FROM tokens ORDER BY created, rowid")
        return self._all("SELECT * FROM tokens WHERE merchant = ? ORDER BY created, rowid", (merchant,))

    def order(self, order_code):
        """The order row, or None."""
        return self._one("SELECT * FROM orders WHERE order_code = ?", (order_code,))

    def orders(self, merchant=None):
        """All orders (of one merchant), oldest first."""
        if merchant is None:
            return self._all("SELECT * FROM orders ORDER BY created, rowid")
        return self._all("SELECT * FROM orders WHERE merchant = ? ORDER BY created, rowid", (merchant,))

    def orders_by_customer_order_code(self, code, merchant=None):
        """Orders with this customerOrderCode (of one merchant), oldest first, failed ones included."""
        if merchant is None:
            return self._all("SELECT * FROM orders WHERE customer_order_code = ? ORDER BY created, rowid",
                             (code,))
        return self._all("SELECT * FROM orders WHERE customer_order_code = ? AND merchant = ?"
                         " ORDER BY created, rowid", (code, merchant))

    def refunds(self, order_code=None):
        """Refunds (of one order), oldest first."""
        if order_code is None:
            return self._all("SELECT * FROM refunds ORDER BY id")
        return self._all("SELECT * FROM refunds WHERE order_code = ? ORDER BY id", (order_code,))

    def events(self, order_code=None, kind=None):
        """Events in the order they happened, optionally of one order and/or kind."""
        sql, args = "SELECT * FROM events WHERE 1", []
        if order_code is not None:
            sql += " AND order_code = ?"
            args.append(order_code)
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        return self._all(sql + " ORDER BY id", args)

    def dump(self):
        """Everything, for printing."""
        with self._lock:
            return {"tokens": self.tokens(), "orders": self.orders(),
                    "refunds": self.refunds(), "events": self.events()}

    # --- reconciliation ----------------------------------------------------------

    def reconcile(self):
        """Totals per merchant and currency, plus every inconsistency found between tables.

        Returns {"merchants": {name: {"tokens", "orders", "paid", "failed",
        "authorized", "cancelled", "refunds", "amounts": {currency:
        {"charged", "refunded", "net"}}}}, "totals": {currency: {...}},
        "problems": [text, ...], "consistent": bool}. "charged" counts
        what was taken (direct sales and captures), "refunded" what was
        given back, "net" the difference.
        """
        with self._lock:
            merchants = {}

            def entry(name):
                return merchants.setdefault(name, {
                    "tokens": 0, "orders": 0, "paid": 0, "failed": 0, "authorized": 0,
                    "cancelled": 0, "refunds": 0, "amounts": {}})

            for row in self._all("SELECT merchant, count(*) AS n FROM tokens GROUP BY merchant"):
                entry(row["merchant"])["tokens"] = row["n"]
            totals = {}
            for order in self.orders():
                summary = entry(order["merchant"])
                summary["orders"] += 1
                status = order["status"]
                if order["charged"] > 0:
                    summary["paid"] += 1
                elif status == "FAILED":
                    summary["failed"] += 1
                elif status == "AUTHORIZED":
                    summary["authorized"] += 1
                elif status == "CANCELLED":
                    summary["cancelled"] += 1
                for bucket in (summary["amounts"], totals):
                    money = bucket.setdefault(order["currency"], {"charged": 0, "refunded": 0, "net": 0})
                    money["charged"] += order["charged"]
                    money["refunded"] += order["refunded"]
                    money["net"] = money["charged"] - money["refunded"]
            for row in self._all("SELECT merchant, count(*) AS n FROM refunds GROUP BY merchant"):
                entry(row["merchant"])["refunds"] = row["n"]
            problems = self._problems()
        return {"merchants": merchants, "totals": totals, "problems": problems,
                "consistent": not problems}

    def _problems(self):
        problems = []
        refund_sums = {r["order_code"]: r["total"] for r in self._all(
            "SELECT order_code, sum(amount) AS total FROM refunds GROUP BY order_code")}
        charge_events = {r["order_code"]: r["total"] for r in self._all(
            "SELECT order_code, sum(amount) AS total FROM events WHERE (kind = ? AND status = 'SUCCESS')"
            " OR kind = ? GROUP BY order_code", (ORDER_CREATED, ORDER_CAPTURED))}
        refund_events = {r["order_code"]: r["total"] for r in self._all(
            "SELECT order_code, sum(amount) AS total FROM events WHERE kind = ? GROUP BY order_code",
            (ORDER_REFUNDED,))}
        for order in self.orders():
            code, status = order["order_code"], order["status"]
            charged, refunded = order["charged"], order["refunded"]
            if refund_sums.get(code, 0) != refunded:
                problems.append("order %s: refunded %d but its refunds sum to %d"
                                % (code, refunded, refund_sums.get(code, 0)))
            if charge_events.get(code, 0) != charged:
                problems.append("order %s: charged %d but its events charge %d"
                                % (code, charged, charge_events.get(code, 0)))
            if refund_events.get(code, 0) != refunded:
                problems.append("order %s: refunded %d but its events refund %d"
                                % (code, refunded, refund_events.get(code, 0)))
            if refunded > charged:
                problems.append("order %s: refunded %d exceeds charged %d" % (code, refunded, charged))
            if charged > order["amount"]:
                problems.append("order %s: charged %d exceeds amount %d" % (code, charged, order["amount"]))
            expected = {
                "SUCCESS": charged > 0 and refunded == 0,
                "PARTIALLY_REFUNDED": 0 < refunded < charged,
                "REFUNDED": charged > 0 and refunded == charged,
                "FAILED": charged == 0 and refunded == 0,
                "AUTHORIZED": charged == 0 and refunded == 0 and order["authorized"] > 0,
                "CANCELLED": charged == 0 and refunded == 0,
            }.get(status)
            if not expected:
                problems.append("order %s: status %s does not match charged %d, refunded %d"
                                % (code, status, charged, refunded))
        for row in self._all(
                "SELECT t.token AS token, count(o.order_code) AS n FROM tokens t JOIN orders o"
                " ON o.token = t.token WHERE t.reusable = 0 GROUP BY t.token HAVING n > 1"):
            problems.append("one-use token %s paid for %d orders" % (row["token"], row["n"]))
        for row in self._all(
                "SELECT t.token AS token, t.used_by AS used_by FROM tokens t WHERE t.used_by IS NOT NULL"
                " AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.order_code = t.used_by AND o.token = t.token)"):
            problems.append("token %s marked used by unknown order %s" % (row["token"], row["used_by"]))
        for row in self._all(
                "SELECT o.order_code AS code FROM orders o LEFT JOIN tokens t ON t.token = o.token"
                " WHERE t.token IS NULL OR t.merchant != o.merchant"):
            problems.append("order %s: token missing or of another merchant" % row["code"])
        return problems
