"""The flash journal: append, replay, torn tails, corruption, compaction."""
import json
import os
import sys
from binascii import crc32

from expect import raises

from fixtures import replay, snapshot

from wpwithin.journal import FileJournal, JournalCorrupt, exists
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
    assert snapshot(replay(records)) == snapshot(ledger)


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
    assert snapshot(replay(FileJournal(path).load())) == snapshot(ledger)


def test_compaction_cut_between_remove_and_rename_is_recovered():
    path = fresh("e")
    journal = FileJournal(path)
    journal.load()
    ledger = sample_ledger(journal)
    journal.close()
    os.rename(path, path + ".tmp")  # as if the old file was removed and the rename never ran
    assert snapshot(replay(FileJournal(path).load())) == snapshot(ledger)


def test_load_can_stream_records_into_the_ledger():
    path = fresh("f")
    journal = FileJournal(path)
    journal.load()
    ledger = sample_ledger(journal)
    journal.close()
    replayed = Ledger()
    assert FileJournal(path).load(replayed.apply) == 5
    assert snapshot(replayed) == snapshot(ledger)


# --- damage: only a torn last record is dropped; anything else stops the producer, file untouched ----

def written(name, extra=b""):
    """A journal of the sample ledger's 5 records, then `extra` bytes; (path, bytes of the 5 lines)."""
    path = fresh(name)
    journal = FileJournal(path)
    journal.load()
    sample_ledger(journal)
    journal.close()
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "ab") as f:
        f.write(extra)
    return path, data


def contents(path):
    with open(path, "rb") as f:
        return f.read()


def corrupt(path):
    """The JournalCorrupt message of loading path, after checking the file was left as it was."""
    before = contents(path)
    message = str(raises(JournalCorrupt, FileJournal(path).load, Ledger().apply))
    assert contents(path) == before
    assert "\n" not in message and "move it aside to start empty" in message, message
    return message


def test_a_torn_write_inside_a_multibyte_character_is_dropped():
    # MicroPython writes non-ASCII raw as UTF-8: a power cut can cut a character in two.
    torn = b'1a2b3c4d ["q", "r2", "adv-caf\xc3'
    path, good = written("torn-utf8", torn)
    journal = FileJournal(path)
    assert len(journal.load()) == 5 and journal.dropped == len(torn)
    assert contents(path) == good
    journal.close()


def test_bytes_that_are_not_utf8_at_the_end_are_dropped_as_a_torn_record():
    path, good = written("torn-bytes", b"\xff\xfe\x00\x80\n")
    journal = FileJournal(path)
    assert len(journal.load()) == 5 and journal.dropped == 5
    assert contents(path) == good
    journal.close()


def test_a_complete_last_line_failing_its_crc_is_dropped_as_torn():
    path, good = written("torn-crc", b'00000000 ["x", "r1"]\n')
    journal = FileJournal(path)
    assert len(journal.load()) == 5 and journal.dropped == 21
    journal.close()


def test_a_crlf_conversion_is_corruption_of_line_1_not_a_torn_tail():
    path, good = written("crlf")
    with open(path, "wb") as f:
        f.write(good.replace(b"\n", b"\r\n"))
    message = corrupt(path)
    assert message.startswith("journal %s line 1 is damaged" % path) and "and line 2 follows it" in message, message


def test_a_good_checksum_over_bytes_that_are_not_utf8_is_corruption():
    text = b'["x", "caf\xc3"]'
    path, _ = written("bad-utf8", b"%08x %s\n" % (crc32(text) & 0xFFFFFFFF, text))
    assert "line 6 has a good checksum but is not a record" in corrupt(path)


def test_a_line_longer_than_the_limit_is_corruption():
    path, _ = written("long", b"0" * 600 + b"\n")
    assert "line 6 is longer than 512 bytes" in corrupt(path)


def test_records_with_a_good_checksum_that_the_ledger_cannot_take_are_corruption_naming_the_line():
    for record, error in ((["e", "no-such-token", 1], "ValueError"),  # a delivery for an unknown token
                          (["z", "r1"], "ValueError"),  # an unknown kind
                          (["q", "r9"], "ValueError"),  # a short record
                          (["e", "k1", "2"], "TypeError"),  # a count that is not a number
                          (["f"], "IndexError")):
        text = json.dumps(record).encode()
        path, _ = written("impossible", b"%08x %s\n" % (crc32(text) & 0xFFFFFFFF, text))
        message = corrupt(path)
        assert ("line 6 has a good checksum but a record that cannot be applied (%s: " % error) in message, message


# --- compaction that cannot write its temporary file -------------------------------------------

def test_a_compaction_blocked_by_a_folder_leaves_the_journal_open_and_is_retried():
    path = fresh("blocked")
    journal = FileJournal(path, compact_at=100)
    journal.load()
    ledger = sample_ledger(journal)
    os.mkdir(path + ".tmp")
    try:
        raises(OSError, journal.compact, ledger.records())
        for record in ledger.quote("r2", "c2", 1, 1, 1, 30, "GBP", NOW):
            journal.append(record)  # still open and appending
    finally:
        os.rmdir(path + ".tmp")
    journal.compact(ledger.records())  # the next sweep's retry
    journal.close()
    assert snapshot(replay(FileJournal(path).load())) == snapshot(ledger)


class RamDisk:
    """A block device in RAM for a small littlefs: flash that fills up."""

    def __init__(self, blocks):
        self.data = bytearray(blocks * 512)

    def readblocks(self, block, buf, offset=0):
        at = block * 512 + offset
        buf[:] = self.data[at:at + len(buf)]

    def writeblocks(self, block, buf, offset=None):
        at = block * 512 + (offset or 0)
        self.data[at:at + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return len(self.data) // 512
        if op == 5:  # block size
            return 512
        if op == 6:  # erase
            return 0
        return None


def fill(folder):
    """Make writing in folder fail with ENOSPC until free_space() is called: littlefs filled up on
    MicroPython, a symlink to /dev/full at the journal's temporary file on CPython."""
    if sys.implementation.name == "cpython":
        os.symlink("/dev/full", folder + "/ledger.journal.tmp")
        return lambda: None  # compact() removed the symlink with what it had written
    try:
        with open(folder + "/filler", "wb") as f:
            while True:
                f.write(b"\0" * 256)
                f.flush()
    except OSError:
        pass
    return lambda: os.remove(folder + "/filler")


def test_a_compaction_on_full_flash_leaves_the_journal_open_and_appending():
    if sys.implementation.name == "micropython":
        import vfs

        disk = RamDisk(24)
        vfs.VfsLfs2.mkfs(disk)
        folder = "/flash-full-test"
        vfs.mount(vfs.VfsLfs2(disk), folder)
    else:
        folder = fresh("full")
        os.mkdir(folder)
    try:
        path = folder + "/ledger.journal"
        journal = FileJournal(path, compact_at=100)
        journal.load()
        ledger = sample_ledger(journal)
        free_space = fill(folder)
        exc = raises(OSError, journal.compact, list(ledger.records()) * 20)  # more than littlefs inlines
        assert not exists(path + ".tmp")
        assert exc.args[0] == 28, exc.args  # ENOSPC
        free_space()
        journal.append(["x", "r9"])  # still open and appending
        journal.close()
        assert len(FileJournal(path).load()) == 6
    finally:
        if sys.implementation.name == "micropython":
            vfs.umount(folder)
        else:
            for name in os.listdir(folder):
                os.remove(folder + "/" + name)
            os.rmdir(folder)
