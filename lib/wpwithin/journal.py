"""The producer's flash journal: ledger records appended one per line, replayed at boot.

Each line is "<crc32 hex> <record as JSON>\\n", flushed as it is written,
so after a power cut at most the line being written is lost. load() drops
a torn or corrupt last line (and rewrites the file without it); a bad line
with good lines after it is not a torn write but corruption, and raises
JournalCorrupt so the device stops in safe mode instead of guessing.
Compaction writes the live records to a temporary file and renames it
over the journal. Never stores anything but the ledger's records (no
card data, no client tokens, no keys).
"""
import json
import os
from binascii import crc32

from wpwithin.compat import const

MAX_LINE = const(512)


class JournalCorrupt(Exception):
    pass


def _line(record):
    text = json.dumps(record)
    return "%08x %s\n" % (crc32(text.encode()) & 0xFFFFFFFF, text)


def _parse(line):
    if len(line) < 11 or line[8] != " " or not line.endswith("\n"):
        return None
    text = line[9:-1]
    try:
        if int(line[:8], 16) != crc32(text.encode()) & 0xFFFFFFFF:
            return None
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, list) and record else None


def exists(path):
    """True when path names a file or folder (MicroPython has no os.path)."""
    try:
        os.stat(path)
        return True
    except OSError:
        return False


class FileJournal:
    def __init__(self, path, compact_at=16384):
        self.path = path
        self.compact_at = compact_at
        self.size = 0
        self.dropped = 0  # bytes of torn tail dropped by the last load()
        self._file = None

    def load(self, apply=None):
        """Replay the journal and open it for appending.

        With `apply`, each record is passed to it as it is read and the
        count is returned (memory stays flat however long the journal);
        without, the records are returned as a list.
        """
        tmp = self.path + ".tmp"
        if not exists(self.path) and exists(tmp):
            os.rename(tmp, self.path)  # a compaction was cut between its two steps
        records = []
        count = 0
        bad_at = None
        if exists(self.path):
            with open(self.path) as f:
                number = 0
                while True:
                    line = f.readline(MAX_LINE + 1)
                    if not line:
                        break
                    number += 1
                    record = _parse(line)
                    if record is None:
                        if bad_at is None:
                            bad_at = number
                        continue
                    if bad_at is not None:
                        raise JournalCorrupt("journal %s: line %d is damaged but later lines are not"
                                             % (self.path, bad_at))
                    count += 1
                    if apply is None:
                        records.append(record)
                    else:
                        apply(record)
        if bad_at is not None:
            self._drop_tail(bad_at)
        else:
            self._open()
        return records if apply is None else count

    def _drop_tail(self, line_number):
        # Keep the good lines before the torn one, by copying them to a new file and renaming it over.
        size = os.stat(self.path)[6]
        tmp = self.path + ".tmp"
        with open(self.path) as old, open(tmp, "w") as new:
            for _ in range(line_number - 1):
                new.write(old.readline(MAX_LINE + 1))
        self._replace(tmp)
        self.dropped = size - self.size

    def _open(self):
        self._file = open(self.path, "a")
        self.size = os.stat(self.path)[6]

    def append(self, record):
        line = _line(record)
        if len(line) > MAX_LINE:
            raise ValueError("journal record longer than %d bytes" % MAX_LINE)
        self._file.write(line)
        self._file.flush()
        self.size += len(line)

    def needs_compaction(self):
        return self.size > self.compact_at

    def compact(self, records):
        """Replace the journal by `records` (the ledger's live state) atomically."""
        self.close()
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            for record in records:
                f.write(_line(record))
        self._replace(tmp)

    def _replace(self, tmp):
        try:
            os.rename(tmp, self.path)
        except OSError:  # FAT cannot rename over a file; load() recovers from the gap
            os.remove(self.path)
            os.rename(tmp, self.path)
        self._open()

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None
