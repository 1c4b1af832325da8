"""The relay's view of the origin segment: which markets changed since the last look, as updates.

It reads the feeder's segment as any reader does (read-only mapping, seqlock copies through
``ldc.shm.reader.Reader``), so the feeder pays nothing for it. To find what changed without copying
every slot it keeps its own read-only mapping of the same file (a ``_seqlock.Segment``, the C reader
the Reader itself uses), compares each active slot's ``seq`` word (a Python scan for a few markets,
one numpy gather for many) with the ``seq`` of the copy it last sent, and copies the changed slots
with their status message; the notify futex word wakes it after each publish batch.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from ldc.fanout import codec
from ldc.shm import _seqlock
from ldc.errors import SegmentError, SegmentNotFound
from ldc.shm.layout import HEADER, SLOT_HEADER, Geometry, Status, segment_name, segment_path
from ldc.shm.reader import Reader, SnapshotBuffer

log = logging.getLogger(__name__)

WORD: Final = 8  # bytes of a u64 seq word
# consistent copies, in or out of sync, of a live or dead writer (the relay says which separately)
_STATUS_AT: Final = SLOT_HEADER.offset("status")
_STATUS: Final = struct.Struct("<I")
_STALE: Final = int(Status.STALE)  # a plain int: an IntFlag operand costs a flag object per update
# up to this many markets the changed slots are found by a Python scan of their seq words (2 us for
# 10, against 4.8 us for numpy's gather and compare); beyond it numpy's (3.6 us for 200, Python 38 us)
_SCAN_IN_PYTHON: Final = 32
_COPIED: Final = frozenset((_seqlock.READ_OK, _seqlock.READ_OUT_OF_SYNC, _seqlock.READ_WRITER_DEAD))


class Change(NamedTuple):
    """One market's entry for the next batch (a NamedTuple: the relay makes one per update)."""

    symbol: str
    seq: int  # the relay's per-market sequence of this update
    entry: bytes  # codec.encode_entry's bytes


class Origin:
    """One attachment to the origin segment. Not thread-safe: one thread calls everything."""

    def __init__(self, group: str, epoch: int, seqs: dict[str, int] | None = None) -> None:
        """``seqs``: the relay's sequences from a previous attachment (the epoch's sequences go on
        across a replaced origin file: a mirror takes a sequence that starts again for an old one)."""
        self.group = group
        self.epoch = epoch
        # our own descriptor first, then the Reader, then the name again: the name leads to no older
        # file once replaced, so if it still leads to ours the Reader mapped ours too (same geometry)
        fd = _open(group)
        try:
            self.identity = _fd_identity(fd)
            self.reader = Reader(group)
        except BaseException:
            os.close(fd)
            raise
        try:
            self.exchange = self.reader.info().exchange
            self.geometry: Geometry = self.reader.geometry
            if self.replaced():
                raise SegmentError(f"segment {self.reader.name} was replaced while attaching")
            self._mm = mmap.mmap(fd, self.geometry.segment_size, access=mmap.ACCESS_READ)
            self._seg = _seqlock.Segment(self._mm, self.geometry.c_layout(), writable=False, lock_fd=fd)
        except BaseException:
            os.close(fd)
            self.reader.close()
            raise
        self._fd = fd
        self._words = np.frombuffer(self._mm, np.uint64)
        self._buf = SnapshotBuffer(self._seg, self.geometry)
        self._view = memoryview(self._buf)  # the buffer's bytes, for every copy (it never moves)
        self._notify_off = HEADER.offset("notify")
        self._dir_seq_off = HEADER.offset("dir_seq")
        self._dir_seq = -1
        self._symbols: list[str] = []
        self._slots: list[int] = []
        self._gens: list[int] = []
        self._symbol_b: list[bytes] = []
        self._index: list[int] = []  # each market's seq word (u64 index into the segment)
        self._seq_index: npt.NDArray[np.intp] = np.zeros(0, np.intp)  # the same, for numpy's gather
        self._sent_list: list[int] = []  # seq of the copy last sent, per market (the scan's)
        self._sent: npt.NDArray[np.uint64] = np.zeros(0, np.uint64)  # the same, for numpy's compare
        self._u64 = memoryview(self._mm).cast("Q")  # the segment as u64 words, for the scan in Python
        self.seqs: dict[str, int] = dict(seqs or {})  # symbol -> last sequence published
        self.last: dict[str, bytes] = {}  # symbol -> last entry published (served to newcomers)

    def close(self) -> None:
        self._view.release()
        self._u64.release()
        self._seg.close()
        del self._words
        self._mm.close()
        os.close(self._fd)
        self.reader.close()

    # ------------------------------------------------------------------ waiting and liveness

    def notify_word(self) -> int:
        return self._seg.load_u32(self._notify_off)

    def wait(self, word: int, timeout_s: float) -> None:
        """Sleep until the writer's next publish batch or ``timeout_s`` (at once if ``word`` is already
        old). The writer wakes every sleeper after each batch (LAYOUT.md section 11): this costs it nothing."""
        self._seg.wait(word, timeout_s)

    def alive(self) -> bool:
        """The writer of *our* file runs and heartbeats. (``Reader.writer_alive`` would follow a
        replaced file and speak of the new writer while we still read the old file.) A writer whose
        heartbeat is older than its ``stale_after_ms`` (stopped, hung) counts as not running: its
        readers see every market STALE, so the mirrors must too, and only the heartbeat can say so."""
        return bool(self._seg.probe()) and not self._seg.stale()

    def replaced(self) -> bool:
        """True when the name leads to another file than ours: every feeder start builds a new file
        and retires the old one (LAYOUT.md section 12), so the relay re-attaches."""
        try:
            return _identity(self.group) != self.identity
        except FileNotFoundError:
            return False

    # ------------------------------------------------------------------ changes

    def changes(self) -> list[Change]:
        """Updates for every market whose slot changed since its last update (and new markets)."""
        if self._seg.load_u64(self._dir_seq_off) != self._dir_seq:
            self._load_directory()
        if len(self._index) <= _SCAN_IN_PYTHON:  # a few markets: numpy's per-call overhead is most of it
            word, sent = self._u64.__getitem__, self._sent_list
            changed = [i for i, at in enumerate(self._index) if word(at) != sent[i]]
        else:
            changed = np.flatnonzero(self._words[self._seq_index] != self._sent).tolist()
        return [c for i in changed if (c := self._change(i)) is not None]

    def _change(self, i: int) -> Change | None:
        # the status message is copied too (Reader.read_into leaves it out): it travels with the data
        rc = self._seg.read(self._slots[i], self._gens[i], self._buf, True)
        if rc not in _COPIED:  # removed or reused under us, or no consistent copy: next round
            self._dir_seq = -1
            return None
        buf = self._buf
        copied = buf.seq
        if copied == self._sent_list[i]:
            return None
        slot = self._view if not buf.status & _STALE else self._stored_status(i, self._view, copied)
        if slot is None:  # republished since the copy: next round
            return None
        self._sent[i] = copied
        self._sent_list[i] = copied
        symbol = self._symbols[i]
        seq = self.seqs.get(symbol, 0) + 1
        g = self.geometry
        entry = codec.encode_entry(seq, self._symbol_b[i], slot, buf.n_bids, buf.n_asks, g.bids_offset, g.asks_offset,
                                   buf.message)
        self.seqs[symbol] = seq
        self.last[symbol] = entry
        return Change(symbol, seq, entry)

    def _stored_status(self, i: int, slot: memoryview, seq: int) -> memoryview | None:
        """The copy with the status its writer stored. The reader adds STALE to a copy when the
        origin's heartbeat is old (its own judgement, LAYOUT.md section 10); relayed, that flag would
        stay on the mirror's slot after the origin's heartbeat resumed, until the market changed.
        The relay says it in its heartbeat instead (``alive``). None: the slot changed since."""
        at = int(self._seq_index[i]) * WORD
        stored = self._seg.load_u32(at + _STATUS_AT)
        if self._seg.load_u64(at) != seq:  # after the status load: that status is the copy's
            return None
        if stored & _STALE:
            return slot
        patched = bytearray(slot)
        _STATUS.pack_into(patched, _STATUS_AT, stored)
        return memoryview(patched)

    def _load_directory(self) -> None:
        before = self._seg.load_u64(self._dir_seq_off)
        entries = self._seg.read_directory()
        if entries is None or before & 1:  # changing (or its writer died mid-change): next round
            self._dir_seq = -1
            return
        self._dir_seq = before
        sent = dict(zip(self._symbols, self._sent.tolist()))
        symbols, slots, gens = [], [], []
        for slot, raw, gen in sorted(entries):
            symbol = raw.decode(errors="replace")
            if not codec.symbol_is_token(symbol):
                log.error("market %r of group %s cannot be a NATS subject token: not relayed", symbol, self.group)
                continue
            symbols.append(symbol)
            slots.append(slot)
            gens.append(gen)
        for gone in set(self.seqs) - set(symbols):
            self.seqs.pop(gone, None)
            self.last.pop(gone, None)
        self._symbols, self._slots, self._gens = symbols, slots, gens
        self._symbol_b = [s.encode() for s in symbols]
        self._index = [self.geometry.slot_offset(s) // WORD for s in slots]
        self._seq_index = np.array(self._index, np.intp)
        self._sent_list = [sent.get(s, 0) for s in symbols]
        self._sent = np.array(self._sent_list, np.uint64)
        log.info("origin %s: %d markets", self.group, len(symbols))


def _open(group: str) -> int:
    try:
        return os.open(segment_path(group), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SegmentNotFound(f"no segment {segment_name(group)}: is the feeder for group {group!r} running?") from None
    except OSError as exc:  # no permission, a symbolic link: the Reader names the cause
        raise SegmentError(f"cannot open {segment_path(group)}: {exc.strerror}") from None


def _identity(group: str) -> tuple[int, int]:
    st = os.stat(segment_path(group))
    return st.st_dev, st.st_ino


def _fd_identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino
