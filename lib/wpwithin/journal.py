"""A flash journal: records appended one per line, replayed at boot (the producer's ledger, a wallet).

Each line is b"<crc32 hex> <record as JSON>\\n", UTF-8, flushed as it is
written, so after a power cut at most the line being written is lost.
Every line is at most MAX_LINE bytes: append() and compact() refuse a
longer record (ValueError) before writing anything, so the loader can
always read what was written. load() reads bytes, checks each line's CRC
over its bytes and only then decodes and parses it.

Damage. Only a torn last record is dropped (and the file rewritten
without it): the final line of the file, when it has no newline or fails
its CRC. Anything else raises JournalCorrupt with a one-line reason (which
line, what is wrong, what to do) and leaves the file untouched: a bad line
with lines after it (a flipped byte, a CRLF conversion: every line fails),
a line longer than MAX_LINE, a good CRC over bytes that are not a JSON
list, and a record that apply() cannot take (it raises ValueError,
TypeError, KeyError or IndexError: a delivery for an unknown token, an
unknown kind, a short record). The producer then stops selling (safe mode)
instead of guessing.

Compaction writes the live records to a temporary file and renames it
over the journal. If the temporary file cannot be written (flash full, a
folder in its place) compact() raises OSError and the journal stays open
and appending as before; the caller retries later.

The producer's journal holds its ledger's records: orders, their payment
attempts with each attempt's one-use client token ("p" records; the
gateway charges a token at most once), delivery tokens' keys and counts.
Never card data or keys.
"""
import json
import os
from binascii import crc32

from wpwithin.compat import const

MAX_LINE = const(512)  # bytes, newline included
_WHAT_TO_DO = const("restore the journal from a backup, or move it aside to start empty "
                    "(paid tokens in it will no longer redeem)")


class JournalCorrupt(Exception):
    pass


def _line(record):
    """The line of a record, as bytes; ValueError if it is longer than MAX_LINE."""
    text = json.dumps(record).encode()
    line = b"%08x %s\n" % (crc32(text) & 0xFFFFFFFF, text)
    if len(line) > MAX_LINE:
        raise ValueError("journal record of %d bytes, over the %d a line may hold" % (len(line), MAX_LINE))
    return line


def exists(path):
    """True when path names a file or folder (MicroPython has no os.path)."""
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass  # not there, or a folder: nothing of ours to remove


class FileJournal:
    def __init__(self, path, compact_at=16384):
        self.path = path
        self.compact_at = compact_at
        self.size = 0
        self.dropped = 0  # bytes of torn tail dropped by the last load()
        self._file = None

    def _corrupt(self, number, what):
        return JournalCorrupt("journal %s line %d %s; %s" % (self.path, number, what, _WHAT_TO_DO))

    def load(self, apply=None):
        """Replay the journal and open it for appending.

        With `apply`, each record is passed to it as it is read and the
        count is returned (memory stays flat however long the journal);
        without, the records are returned as a list. JournalCorrupt for
        damage other than a torn last record (the file is left as it is).
        """
        tmp = self.path + ".tmp"
        if not exists(self.path) and exists(tmp):
            os.rename(tmp, self.path)  # a compaction was cut between its two steps
        records = []
        count = 0
        torn = 0  # the number of a bad line: torn if nothing follows it
        if exists(self.path):
            with open(self.path, "rb") as f:
                number = 0
                while True:
                    line = f.readline(MAX_LINE + 1)
                    if not line:
                        break
                    number += 1
                    if torn:
                        raise self._corrupt(torn, "is damaged (bad checksum or cut short) and line %d "
                                            "follows it: not a torn last write (a CRLF conversion "
                                            "damages every line)" % number)
                    if len(line) > MAX_LINE:
                        raise self._corrupt(number, "is longer than %d bytes" % MAX_LINE)
                    text = line[9:-1]  # the JSON bytes, if the line's CRC is good
                    try:
                        good = (len(line) >= 11 and line[8:9] == b" " and line[-1:] == b"\n"
                                and int(line[:8], 16) == crc32(text) & 0xFFFFFFFF)
                    except ValueError:
                        good = False
                    if not good:
                        torn = number
                        continue
                    try:
                        record = json.loads(text.decode())
                    except (UnicodeError, ValueError):
                        record = None
                    if not isinstance(record, list) or not record:
                        raise self._corrupt(number, "has a good checksum but is not a record (not a JSON list "
                                            "in UTF-8)")
                    count += 1
                    if apply is None:
                        records.append(record)
                        continue
                    try:
                        apply(record)
                    except (ValueError, TypeError, KeyError, IndexError) as exc:
                        raise self._corrupt(number, "has a good checksum but a record that cannot be "
                                            "applied (%s: %s)" % (type(exc).__name__, exc))
        if torn:
            # Keep the good lines before the torn one, by copying them to a new file and renaming it over.
            size = os.stat(self.path)[6]
            with open(self.path, "rb") as old, open(tmp, "wb") as new:
                for _ in range(torn - 1):
                    new.write(old.readline(MAX_LINE + 1))
            self._replace(tmp)
            self.dropped = size - self.size
        else:
            self._open()
        return records if apply is None else count

    def _open(self):
        self._file = open(self.path, "ab")
        self.size = os.stat(self.path)[6]

    def append(self, record):
        line = _line(record)
        self._file.write(line)
        self._file.flush()
        self.size += len(line)

    def needs_compaction(self):
        return self.size > self.compact_at

    def compact(self, records):
        """Replace the journal by `records` (the live state) atomically.

        ValueError (a record too long) or OSError (the temporary file
        cannot be written: flash full, a folder in its place) leave the
        journal as it was, open and appending.
        """
        tmp = self.path + ".tmp"
        try:
            with open(tmp, "wb") as f:
                for record in records:
                    f.write(_line(record))
        except (OSError, ValueError):
            _remove(tmp)
            raise
        self.close()
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
