"""The app started on a damaged journal, under both runtimes: a torn last record is dropped and the
producer sells; any other damage stops it in safe mode, file untouched, with the reason in one line
that repl.status() shows, this boot and the next."""
import os

import pytest
from test_firmware import RUNTIMES, run_stand_in

from wpwithin.journal import FileJournal
from wpwithin.ledger import Ledger

NOW = 1795737600

START = """
async def scenario():
    run = asyncio.create_task(app.run(Board(), wifi_check_s=0.01))
    for _ in range(1000):  # until it is up or in safe mode (at most 10 s)
        if app.state["mode"] in ("running", "safe"):
            break
        await asyncio.sleep(0.01)
    seen = {"mode": app.state["mode"], "listening": listening(%(port)d)}
    if app.state["thing"].producer is not None:
        seen["orders"] = sorted(app.state["thing"].producer.core.ledger.orders)
    await stop(run)
    return seen

report = asyncio.run(scenario())
from wpwithin import repl
report["snapshot"] = repl.snapshot()
repl.status()
report["nextBoot"] = app.should_start(Board())
"""


def journal_of_a_paid_order(folder):
    """ledger.journal in folder holding a paid order with units left: its bytes."""
    path = os.path.join(str(folder), "ledger.journal")
    journal = FileJournal(path)
    journal.load()
    ledger = Ledger()
    for record in ledger.quote("r1", "adv-caf\u00e9-\u20ac", 1, 1, 5, 150, "GBP", NOW):
        journal.append(record)
    journal.append(ledger.start_payment("r1", NOW, "TEST_SU_token"))
    journal.append(ledger.charged("r1", "o1", "k1", NOW, NOW + 86400, False))
    journal.close()
    with open(path, "rb") as f:
        return path, f.read()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_torn_last_record_is_dropped_and_the_producer_sells(runtime, tmp_path):
    path, good = journal_of_a_paid_order(tmp_path)
    with open(path, "ab") as f:
        f.write(b'1a2b3c4d ["q", "r2", "adv-caf\xc3')  # power cut inside a two-byte character
    report, _ = run_stand_in(runtime, tmp_path, START)
    assert report["mode"] == "running" and report["listening"] and report["orders"] == ["r1"]
    assert "journal: dropped a torn last record (30 bytes)" in report["snapshot"]["messages"]
    with open(path, "rb") as f:
        assert f.read() == good


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("damage", ["crlf", "impossible"])
def test_other_damage_stops_sales_in_safe_mode_and_says_why_in_one_line(runtime, damage, tmp_path):
    path, good = journal_of_a_paid_order(tmp_path)
    if damage == "crlf":
        damaged, where = good.replace(b"\n", b"\r\n"), "line 1 is damaged"
    else:  # a good checksum over a delivery for a token the journal never paid for
        journal = FileJournal(path + ".x")
        journal.load()
        journal.append(["e", "k9", 1])
        journal.close()
        with open(path + ".x", "rb") as f:
            damaged, where = good + f.read(), "line 4 has a good checksum but a record that cannot be applied"
        os.remove(path + ".x")
    with open(path, "wb") as f:
        f.write(damaged)
    report, output = run_stand_in(runtime, tmp_path, START)
    assert report["mode"] == "safe" and not report["listening"]
    with open(path, "rb") as f:
        assert f.read() == damaged  # untouched: restoring or moving it aside is the owner's call
    reason = report["snapshot"]["safeModeReason"]
    assert reason.startswith("journal damaged: journal ledger.journal %s" % where), reason
    assert "move it aside to start empty (paid tokens in it will no longer redeem)" in reason
    said = [m for m in report["snapshot"]["messages"] if m.startswith("safe mode: journal damaged")]
    assert len(said) == 1 and "\n" not in said[0] and said[0].endswith("repl.leave_safe_mode() and reset")
    assert "because: " + reason in output  # repl.status()
    assert "Traceback" not in output
    assert report["nextBoot"] == [False, "the SAFE_MODE file is present (it says: %s)" % reason]
