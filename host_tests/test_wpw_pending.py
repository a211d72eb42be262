"""wpw when answers are late or cut off: pending payments, resume, Ctrl-C, expiry, the old wallet file.

Subprocesses as a user runs them: the simulated gateway (tools/gateway,
plain HTTP, its ledger in SQLite) with latency injected on its orders
through POST /_sim/faults, a MicroPython producer (tools/thing) whose
gateway timeout is 2 s, and wpw. A small TCP relay in front of the
producer holds back delivery ends, so a Ctrl-C lands while one is in
flight. Afterwards the gateway's ledger is read: every charge has its
token in the wallet and nothing is charged twice.
"""
import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from harness.process import free_port
from harness.things import CARD, CLIENT_KEY, SERVICE_KEY, Things
from relay import Relay

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "dual"))
from scripted_producer import Seller  # noqa: E402  (a Go SDK-like producer, as the dual tests use it)

WPW = os.path.join(os.path.dirname(sys.executable), "wpw")
GATEWAY_TIMEOUT = 2  # the producer's, so a late gateway costs seconds, not tens of them
WAIT = 60  # seconds: a bound on every wait, never a timing assertion


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    work = tmp_path_factory.mktemp("pending-market")
    things = Things(work)
    try:
        gateway = things.gateway(tls=False, db=str(work / "gateway.db"), merchants=["%s:%s" % (CLIENT_KEY, SERVICE_KEY)])
        url = gateway.url
        port = things.producer("pending-charger", "micropython", url, gateway={"timeout": GATEWAY_TIMEOUT},
                               producer={"maxOrders": 256})["port"]
        card = work / "card.json"
        card.write_text(json.dumps(CARD))
        yield {"url": url, "db": str(work / "gateway.db"), "port": port, "address": "127.0.0.1:%d" % port,
               "card": str(card), "work": work}
    finally:
        things.close()


@pytest.fixture
def home(tmp_path):
    return tmp_path / "wpw-home"


def env(market, home):
    return dict(os.environ, WPW_GATEWAY=market["url"], WPW_CARD=market["card"], WPW_HOME=str(home))


def wpw(market, home, *args, check=None):
    proc = subprocess.run([WPW] + list(args), capture_output=True, text=True, timeout=WAIT, env=env(market, home))
    if check is not None:
        assert proc.returncode == check, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def fault(market, spec=None):
    """Set one fault on the gateway ({endpoint, kind, arg, count}), or clear them all."""
    method, body = ("DELETE", None) if spec is None else ("POST", json.dumps(spec).encode())
    request = urllib.request.Request(market["url"].rsplit("/v1", 1)[0] + "/_sim/faults", body, method=method,
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=5).read()


def charges(market, ref):
    """The gateway's charged orders for a paymentReferenceID (its attempts are "<ref>" or "<ref>.<n>")."""
    with sqlite3.connect(market["db"]) as db:
        rows = db.execute("SELECT customer_order_code, status FROM orders").fetchall()
    return [row for row in rows if row[0].split(".")[0] == ref and row[1] in ("SUCCESS", "PARTIALLY_REFUNDED")]


def wait_for_charge(market, ref):
    deadline = time.monotonic() + WAIT
    while not charges(market, ref):
        assert time.monotonic() < deadline, "the gateway never charged %s" % ref
        time.sleep(0.2)


def tokens(market, home):
    return json.loads(wpw(market, home, "tokens", "--json", check=0).stdout)["tokens"]


def pending(market, home):
    return json.loads(wpw(market, home, "pending", "--json", check=0).stdout)["pending"]


def buy_args(market, units=3):
    return ["buy", market["address"], "--service", "1", "--price", "1", "--units", str(units)]


def the_reference(text):
    for word in text.replace(";", " ").replace(":", " ").split():
        if word.count("-") == 4 and len(word) == 36:
            return word
    raise AssertionError("no paymentReferenceID in: %s" % text)


def test_a_payment_answered_late_is_pending_then_resumed_to_its_token(market, home):
    fault(market, {"endpoint": "orders", "kind": "latency", "arg": 4, "count": 1})
    try:
        proc = wpw(market, home, *buy_args(market), "--payment-timeout", "1", check=6)
    finally:
        fault(market)
    assert "pending" in proc.stderr and "wpw resume" in proc.stderr and "never charged twice" in proc.stderr
    ref = the_reference(proc.stderr)  # the reference is printed, so it can be followed up
    listed = pending(market, home)
    assert [(p["paymentReferenceID"], p["state"]) for p in listed] == [(ref, "pending")]
    assert "clientToken" not in json.dumps(listed) and CARD["number"] not in json.dumps(listed)
    wait_for_charge(market, ref)  # the gateway charged: the wallet must get the token
    proc = wpw(market, home, "resume", check=0)
    assert "settled: paid" in proc.stdout
    held = [t for t in tokens(market, home) if t["paymentReferenceID"] == ref]
    assert len(held) == 1 and held[0]["remaining"] == 3
    assert pending(market, home) == []
    assert len(charges(market, ref)) == 1
    proc = wpw(market, home, "redeem", held[0]["token"][:10], "--units", "3", "--parts", "3", "--json", check=0)
    assert json.loads(proc.stdout)["remaining"] == 0


def test_the_next_buy_settles_a_pending_payment_first(market, home):
    fault(market, {"endpoint": "orders", "kind": "latency", "arg": 4, "count": 1})
    try:
        ref = the_reference(wpw(market, home, *buy_args(market, 2), "--payment-timeout", "1", check=6).stderr)
    finally:
        fault(market)
    wait_for_charge(market, ref)
    proc = wpw(market, home, *buy_args(market, 1), "--json", check=0)
    assert "payment %s settled: paid" % ref in proc.stderr
    assert sorted(t["units"] for t in tokens(market, home)) == [1, 2]
    assert len(charges(market, ref)) == 1


def test_the_default_payment_wait_outlasts_a_slow_gateway(market, home):
    """3 x the producer's gateway timeout + 5 s: its answer comes before wpw gives up."""
    fault(market, {"endpoint": "orders", "kind": "latency", "arg": GATEWAY_TIMEOUT + 1, "count": 1})
    try:
        proc = wpw(market, home, *buy_args(market), "--json", "--payment-timeout", str(3 * GATEWAY_TIMEOUT + 5))
    finally:
        fault(market)
    assert proc.returncode in (0, 6), proc.stderr  # paid, or "504: outcome unknown" from the producer
    assert "timed out" not in proc.stderr
    if proc.returncode == 6:
        wpw(market, home, "resume", check=0)
    (held,) = tokens(market, home)
    assert len(charges(market, held["paymentReferenceID"])) == 1


def test_ctrl_c_during_the_payment_exits_130_and_leaves_it_pending(market, home):
    fault(market, {"endpoint": "orders", "kind": "latency", "arg": 3, "count": 1})
    try:
        proc = subprocess.Popen([WPW] + buy_args(market), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env(market, home))
        lines = []
        while True:
            line = proc.stderr.readline()
            assert line, "wpw ended before paying: %s" % "".join(lines)
            lines.append(line)
            if line.startswith("... paying"):
                break
        time.sleep(1.0)  # the producer is at the gateway with our token
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=WAIT)
    finally:
        fault(market)
    assert proc.returncode == 130, "".join(lines) + rest
    assert "interrupted; payment" in rest and "pending" in rest and "Traceback" not in rest
    ref = the_reference(rest)
    wait_for_charge(market, ref)
    wpw(market, home, "resume", check=0)
    assert [t["paymentReferenceID"] for t in tokens(market, home)] == [ref]
    assert len(charges(market, ref)) == 1


def test_ctrl_c_during_a_delivery_leaves_it_to_resume_and_the_token_still_redeems(market, home):
    relay = Relay(market["port"], hold=lambda: 3)
    try:
        address = "127.0.0.1:%d" % relay.port
        receipt = json.loads(wpw(market, home, "buy", address, "--service", "1", "--price", "1", "--units", "6",
                                 "--json", check=0).stdout)
        proc = subprocess.Popen([WPW, "redeem", receipt["token"][:10], "--units", "2"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env(market, home))
        assert relay.held.wait(WAIT), "the delivery end never came"
        proc.send_signal(signal.SIGINT)  # the end is on its way to the producer
        _, err = proc.communicate(timeout=WAIT)
        assert proc.returncode == 130, err
        assert "wpw resume" in err and "Traceback" not in err
        assert [p["state"] for p in pending(market, home)] == ["paid"]  # a delivery not known to be ended
        assert relay.forwarded.wait(WAIT)  # the held end reaches the producer after wpw is gone
        proc = wpw(market, home, "resume", check=0)
        assert "delivery on token" in proc.stdout
        (held,) = tokens(market, home)
        assert held["remaining"] in (4, 6)  # the end reached the producer, or it did not: both agree on it
        proc = wpw(market, home, "redeem", receipt["token"][:10], "--units", str(held["remaining"]), "--json",
                   check=0)  # what the wallet counts is what the producer still supplies
        assert json.loads(proc.stdout)["remaining"] == 0
        wpw(market, home, "redeem", receipt["token"][:10], "--units", "1", check=1)
    finally:
        relay.close()


def test_an_old_wallet_file_is_read_in_and_expired_tokens_are_shown_and_refused(market, home):
    home.mkdir()
    dead = free_port()
    old = [{"key": "e" * 32, "token": {"key": "e" * 32, "issued": "2020-01-01T00:00:00Z",
                                       "expiry": "2020-01-08T00:00:00Z", "refundOnExpiry": True, "signature": None},
            "producer": {"host": "127.0.0.1", "port": dead, "urlPrefix": "", "serverID": "old-charger"},
            "clientID": "wpw-old", "serviceID": 1, "priceID": 1, "units": 5, "remaining": 2, "totalPaid": 150,
            "currency": "GBP", "paymentReferenceID": "old-ref-1"}]
    (home / "tokens.json").write_text(json.dumps(old))
    proc = wpw(market, home, "tokens", check=0)
    assert "read 1 tokens from the old tokens.json" in proc.stderr
    assert "expired with 2/5 units left (refund on expiry)" in proc.stdout
    assert not (home / "tokens.json").exists() and (home / "tokens.json.migrated").exists()
    (held,) = tokens(market, home)
    assert (held["expired"], held["remaining"], held["refundOnExpiry"]) == (True, 2, True)
    proc = wpw(market, home, "redeem", "eeeeeeee", "--units", "1", check=1)  # 1, not 3: no one was asked
    assert "expired at 2020-01-08T00:00:00Z" in proc.stderr and "refunds the 2 units left" in proc.stderr


def test_a_second_wpw_on_the_same_wallet_is_told_to_wait(market, home):
    home.mkdir()
    import fcntl

    with open(home / "wallet.journal.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = wpw(market, home, "tokens", check=2)
    assert "another wpw is using the wallet" in proc.stderr
    wpw(market, home, "tokens", check=0)


def test_redeeming_in_three_parts_from_a_go_sdk_producer_completes_with_one_warning(tmp_path):
    """Its unitsRemaining is "bought minus this session": the wallet keeps its own count and says so once."""
    seller = Seller(go_sdk=True)
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def serve():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(seller.server.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        assert started.wait(WAIT)
        market = {"url": "http://127.0.0.1:%d/v1" % seller.server.port, "card": str(tmp_path / "card.json")}
        (tmp_path / "card.json").write_text(json.dumps(CARD))
        home = tmp_path / "home"
        receipt = json.loads(wpw(market, home, "buy", "127.0.0.1:%d" % seller.server.port, "--service", "1",
                                 "--price", "1", "--units", "3", "--json", check=0).stdout)
        proc = wpw(market, home, "redeem", receipt["token"][:8], "--units", "3", "--parts", "3", "--json", check=0)
        assert json.loads(proc.stdout)["sessions"] == [{"supplied": 1, "remaining": 2}, {"supplied": 1, "remaining": 1},
                                                       {"supplied": 1, "remaining": 0}]
        assert proc.stderr.count("reports 2 units left") == 1 and "keeping 1" in proc.stderr
        (held,) = tokens(market, home)
        assert held["remaining"] == 0 and seller.delivered[receipt["paymentReferenceID"]] == 3
        proc = wpw(market, home, "redeem", receipt["token"][:8], "--units", "1", check=1)
        assert "0 units left" in proc.stderr
    finally:
        async def close():
            seller.server.close()
            await seller.server.wait_closed()
        asyncio.run_coroutine_threadsafe(close(), loop).result(WAIT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def test_an_old_wallet_file_that_cannot_be_read_is_named_and_left_alone(market, home):
    home.mkdir()
    (home / "tokens.json").write_text("[{\"key\": ")
    proc = wpw(market, home, "tokens", check=2)
    assert "tokens.json cannot be read in" in proc.stderr and "left as it is" in proc.stderr
    assert (home / "tokens.json").read_text() == "[{\"key\": "
