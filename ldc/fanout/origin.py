"""The relay's view of the origin segment: which markets changed since the last look, as updates.

It reads the feeder's segment as any reader does (a read-only mapping, seqlock copies), so the
feeder pays nothing for it. The per-update work is C (``ldc.fanout._relay.Collector`` over our own
read-only mapping of the file): it compares each market's slot ``seq`` word with the one of the copy
it last sent, copies the changed slots with their status message under the seqlock (the status the
writer stored: never the reader's own STALE judgement, which the relay says in its heartbeat
instead), and encodes the entries and batches exactly as ``codec.encode_entry`` / ``encode_batch`` /
``split_batches`` would; ``pump`` also sends them as NATS frames (``Relay._pump``). The notify futex
word wakes it after each publish batch; in the window after a send, the ``notify_paced`` word (layout
2.2), which the writer moves at most once per its ``notify_paced_us``. Python keeps the directory
(markets added, removed, moved).
"""

from __future__ import annotations

import logging
import mmap
import os
from typing import Final, NamedTuple

from ldc.fanout import _relay, codec
from ldc.shm import _seqlock
from ldc.errors import SegmentError, SegmentNotFound
from ldc.shm.layout import HEADER, Geometry, segment_name, segment_path
from ldc.shm.reader import Reader

log = logging.getLogger(__name__)

# pump() results (ldc/fanout/_relay.c)
PUMP_SLICE: Final = _relay.PUMP_SLICE  # the slice is over
PUMP_DIRECTORY: Final = _relay.PUMP_DIRECTORY  # the directory changed (call refresh)
PUMP_SHORT: Final = _relay.PUMP_SHORT  # a send was short: the rest is for the transport
PUMP_ERROR: Final = _relay.PUMP_ERROR  # a send failed
PUMP_READABLE: Final = _relay.PUMP_READABLE  # the socket has bytes for nats-py


class Change(NamedTuple):
    """One market's entry for the next batch."""

    symbol: str
    seq: int  # the relay's per-market sequence of this update
    entry: bytes  # codec.encode_entry's bytes


class Origin:
    """One attachment to the origin segment. Not thread-safe: one thread calls everything."""

    def __init__(self, group: str, epoch: int, seqs: dict[str, int] | None = None, batch_seq: int = 0) -> None:
        """``seqs``: the relay's sequences from a previous attachment (the epoch's sequences go on
        across a replaced origin file: a mirror takes a sequence that starts again for an old one);
        ``batch_seq`` likewise the epoch's last batch sequence."""
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
            layout = self.geometry.c_layout()
            self._seg = _seqlock.Segment(self._mm, layout, writable=False, lock_fd=fd)
            self._c = _relay.Collector(self._mm, layout, group.encode(), codec.data_subject(group).encode(), epoch)
        except BaseException:
            os.close(fd)
            self.reader.close()
            raise
        self._c.batch_seq = batch_seq
        self._fd = fd
        self._notify_off = HEADER.offset("notify")
        # the header's notify_paced_us (LAYOUT.md section 11, 2.2; at most 100 ms), 0 from a writer that does not pace
        self.paced_us: int = self._c.paced_us
        self._dir_seq_off = HEADER.offset("dir_seq")
        self._symbols: list[str] = []
        self._loaded = False
        self._carried: dict[str, int] = dict(seqs or {})  # until the directory is read

    @property
    def io_uring(self) -> bool:
        """True while the paced sends and the sleeps after them go through io_uring, one syscall each
        (``ldc/fanout/ldc_uring.h``; opened by the first paced ``pump`` where the kernel allows it)."""
        return bool(self._c.ring)

    @io_uring.setter
    def io_uring(self, on: bool) -> None:
        self._c.ring = on  # False: send() and futex() from the next pump on

    @property
    def io_uring_refused(self) -> str:
        """Why the kernel refused the ring ("" when it did not, or it was not tried yet)."""
        errno_ = self._c.ring_errno
        return os.strerror(errno_) if errno_ else ""

    def close(self) -> None:
        self._c.release()
        self._seg.close()
        self._mm.close()
        os.close(self._fd)
        self.reader.close()

    # ------------------------------------------------------------------ the relay's state

    @property
    def seqs(self) -> dict[str, int]:
        """symbol -> last sequence published (a new dict)."""
        if not self._loaded:
            return dict(self._carried)
        return {s.decode(): seq for s, _sent, seq, _last in self._c.markets() if seq}

    @property
    def last(self) -> dict[str, bytes]:
        """symbol -> last entry published (a new dict; ``last_entry`` for one market)."""
        return {s.decode(): last for s, _sent, _seq, last in self._c.markets() if last is not None}

    def last_entry(self, symbol: str) -> bytes | None:
        """The market's last entry as published (served to newcomers), or None."""
        return self._c.last(symbol.encode())

    @property
    def batch_seq(self) -> int:
        return self._c.batch_seq

    @property
    def published(self) -> int:
        """Entries put into batches through this attachment."""
        return self._c.published

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

    def refresh(self) -> bool:
        """Read the directory again when it changed (or a slot's generation did); False while it
        cannot be read (being changed: try again shortly)."""
        return not self._c.need_directory or self._load_directory()

    def changes(self) -> list[Change]:
        """Updates for every market whose slot changed since its last update (and new markets)."""
        self.refresh()
        symbols = self._symbols
        return [Change(symbols[i], seq, entry) for i, seq, entry in self._c.entries()]

    def collect(self, limit: int) -> list[bytes]:
        """The changed markets as batch payloads (split at ``limit`` bytes of entries), ready to publish."""
        self.refresh()
        return self._c.collect(limit)

    def pump(self, fd: int, limit: int, slice_s: float, window_s: float, wait_s: float) -> tuple[int, bytes | None, int, int, int, int]:
        """Up to ``slice_s`` of sleeping and sending on socket ``fd`` in C, the GIL released
        (``_relay.Collector.pump``): (code, unsent frames, messages, payload bytes, errno, entries of
        the frames not wholly sent)."""
        return self._c.pump(fd, limit, slice_s, window_s, wait_s)

    def _load_directory(self) -> bool:
        before = self._seg.load_u64(self._dir_seq_off)
        entries = self._seg.read_directory()
        if entries is None or before & 1:  # changing (or its writer died mid-change): next round
            return False
        known = {s: (sent, seq, last) for s, sent, seq, last in self._c.markets()}
        carried = self._carried
        symbols: list[str] = []
        markets: list[tuple[bytes, int, int, int, int, bytes | None]] = []
        for slot, raw, gen in sorted(entries):
            symbol = raw.decode(errors="replace")
            if not codec.symbol_is_token(symbol):
                log.error("market %r of group %s cannot be a NATS subject token: not relayed", symbol, self.group)
                continue
            symbol_b = symbol.encode()
            sent, seq, last = known.get(symbol_b) or (0, carried.get(symbol, 0), None)
            symbols.append(symbol)
            markets.append((symbol_b, slot, gen, sent, seq, last))
        self._c.set_markets(before, markets)
        self._symbols = symbols
        self._carried = {}
        self._loaded = True
        log.info("origin %s: %d markets", self.group, len(symbols))
        return True


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
