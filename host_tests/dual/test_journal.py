"""The flash journal: append, replay, torn tails, corruption, compaction."""
import os
import sys

from expect import raises

from wpwithin.journal import FileJournal, JournalCorrupt
from wpwithin.ledger import Ledger

DIR = "/tmp/wpw-journal-test-%s" % sys.implementation.name
NOW = 1795737600


def fresh(name):
    try:
        os.mkdir(DIR)
    except OSError:
        pass
    path = DIR + "/" + name
    for p in (path, path + ".tmp"):
        try:
            os.remove(p)
        except OSError:
            pass
    return path


def sample_ledger(journal):
    ledger = Ledger()
    for record in ledger.quote("r1", "c1", 1, 1, 5, 150, "GBP", NOW):
        journal.append(record)
    journal.append(ledger.start_payment("r1", NOW))
    journal.append(ledger.charged("r1", "o1", "k1", NOW, NOW + 99, False))
    order = ledger.paid_order("k1", "c1", 1)
    journal.append(ledger.begin_delivery(order, 2, NOW))
    journal.append(ledger.end_delivery(order, 2)[0])
    return ledger


def test_records_survive_a_reopen_and_replay_to_the_same_ledger():
    path = fresh("a")
    journal = FileJournal(path)
    assert journal.load() == []
    ledger = sample_ledger(journal)
    journal.close()
    records = FileJournal(path).load()
    assert len(records) == 5
    assert Ledger.replay(records).snapshot() == ledger.snapshot()


def test_torn_last_line_is_dropped_and_earlier_records_kept():
    path = fresh("b")
    journal = FileJournal(path)
    journal.load()
    sample_ledger(journal)
    journal.close()
    size = os.stat(path)[6]
    with open(path, "r+") as f:  # power cut in the middle of the last write
        data = f.read()
    with open(path, "w") as f:
        f.write(data[:size - 7])
    journal = FileJournal(path)
    records = journal.load()
    assert len(records) == 4 and records[-1][0] == "b"
    assert journal.dropped > 0
    journal.append(["e", "k1", 2])
    journal.close()
    assert len(FileJournal(path).load()) == 5


def test_a_flipped_byte_in_the_middle_is_corruption_not_a_torn_tail():
    path = fresh("c")
    journal = FileJournal(path)
    journal.load()
    sample_ledger(journal)
    journal.close()
    with open(path) as f:
        lines = f.read().split("\n")
    lines[1] = lines[1].replace("r1", "r2")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    assert "line 2" in str(raises(JournalCorrupt, FileJournal(path).load))


def test_compaction_keeps_the_state_in_fewer_bytes():
    path = fresh("d")
    journal = FileJournal(path, compact_at=400)
    journal.load()
    ledger = sample_ledger(journal)
    for i in range(5):
        for record in ledger.quote("q%d" % i, "c1", 1, 1, 1, 30, "GBP", NOW):
            journal.append(record)
        journal.append(ledger.drop("q%d" % i))
    assert journal.needs_compaction()
    before = journal.size
    journal.compact(ledger.records())
    assert journal.size < before and not journal.needs_compaction()
    journal.close()
    assert Ledger.replay(FileJournal(path).load()).snapshot() == ledger.snapshot()


def test_compaction_cut_between_remove_and_rename_is_recovered():
    path = fresh("e")
    journal = FileJournal(path)
    journal.load()
    ledger = sample_ledger(journal)
    journal.close()
    os.rename(path, path + ".tmp")  # as if the old file was removed and the rename never ran
    assert Ledger.replay(FileJournal(path).load()).snapshot() == ledger.snapshot()


def test_load_can_stream_records_into_the_ledger():
    path = fresh("f")
    journal = FileJournal(path)
    journal.load()
    ledger = sample_ledger(journal)
    journal.close()
    replayed = Ledger()
    assert FileJournal(path).load(replayed.apply) == 5
    assert replayed.snapshot() == ledger.snapshot()
