"""The segment writer: build ``/ldc-<group>``, publish books, keep the header alive.

One writer per group (docs/LAYOUT.md section 12). A writer first takes the group's ownership lock
(an OFD write lock on ``/dev/shm/ldc-<group>.lock``, mode 0600: no reader can open it, so no reader
can stand in its way). It never reuses a file: it builds a new segment under a private name (mode
0600), holding the file's liveness lock (an OFD write lock over the whole file) before anyone else
can open it, and locks the robust futex in its header from a thread of its own (the kernel clears
that word when the process dies, before it drops any file lock), carries the configured markets of its predecessor's file over as STALE, stores
RETIRED into the predecessor's file, and only then renames its own into place. So a file whose
liveness lock is held is always the file of the writer that holds it: a reader that sees the lock
held and ``state`` RUNNING after its copy has read the live writer's data, never a dead one's.

A hot standby (``standby=True`` while another writer holds the group) builds and publishes into its
file the same way, without a name, and ``take_over`` names it once it holds the ownership lock
(``ldc.standby`` waits for it).
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import secrets
import struct
import sys
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from ldc.errors import LayoutError, MarketNotFound, SegmentError
from ldc.shm import _seqlock
from ldc.shm.files import create_exclusive, ofd_holder, ofd_lock, open_owned, same_file, unlink_own, write_locked
from ldc.shm.layout import (
    DEFAULT_CAPACITY,
    DEFAULT_DEPTH,
    DEFAULT_HEARTBEAT_INTERVAL_MS,
    DEFAULT_NOTIFY_PACED_US,
    MAX_NOTIFY_PACED_US,
    DEFAULT_STALE_AFTER_MS,
    DIR_ENTRY,
    ENDIAN_MARKER,
    FEEDER_STATS,
    HEADER,
    LATENCY_BOUNDS_NS,
    STATS_COUNTERS,
    STATS_GAUGES,
    HEADER_SIZE,
    LOCK_MODE,
    MAGIC,
    MIN_STALE_INTERVALS,
    SEGMENT_MODE,
    BUILD_MODE,
    SLOT_HEADER,
    SYMBOL_SIZE,
    VERSION_MAJOR,
    VERSION_MINOR,
    Counter,
    Geometry,
    State,
    Status,
    lock_path,
    segment_name,
    segment_path,
    TEMP_TOKEN_BYTES,
    temp_path,
    temp_paths,
)
from ldc.shm.segment import read_geometry, truncate_utf8

log = logging.getLogger(__name__)

# Ownership
OWNER_LOCK_ATTEMPTS: Final = 50  # a writer that was just killed releases its locks within microseconds
OWNER_LOCK_RETRY_S: Final = 0.002
PREDECESSOR_EXIT_S: Final = 1.0  # a predecessor that lost its ownership lock is exiting: wait this long for its file lock
# its process closes the ownership lock first (a lower fd) and the segment a moment later: poll from 50 us,
# doubling to 1 ms (a hot standby's takeover waits here; a fixed 1 ms poll was most of its median 1.1 ms)
PREDECESSOR_POLL_MIN_S: Final = 0.00005
PREDECESSOR_POLL_S: Final = 0.001
RESTART_MESSAGE: Final = "writer restarted; waiting for the feeder to republish"
TORN_MESSAGE: Final = "writer died mid-write; levels discarded"
U32_MAX: Final = 2**32 - 1
# One latency adds at most this to latency_sum_ns: a receive stamp from another clock (a replayed or
# test stamp, a clock step) must not overflow the u64 sum; such a read lands in the +Inf bucket anyway.
MAX_LATENCY_NS: Final = 60 * 10**9

Levels = npt.NDArray[np.float64]


class PublishFn(Protocol):
    def __call__(
        self,
        slot: int,
        *,
        update_id: int,
        event_time_ms: int,
        recv_time_ns: int,
        status: int,
        bids: Levels | None = None,
        asks: Levels | None = None,
        n_bids: int = 0,
        n_asks: int = 0,
        copy_levels: bool = True,
    ) -> None: ...


@dataclass(frozen=True)
class _Market:
    slot: int
    symbol: str
    torn: bool  # the predecessor died inside a write of this slot


class SegmentWriter:
    """The single writer of one group's segment.

    ``publish`` is the C method itself (one call, no Python frame):
    ``publish(slot, *, update_id, event_time_ms, recv_time_ns, status, bids, asks, n_bids, n_asks,
    copy_levels=True)`` with bids/asks (>= n, 2) float64 C-contiguous arrays, best first. With
    ``copy_levels=False`` only ids, times and status advance and bids/asks/n_* may be omitted.
    Every publish bumps the slot's ``updates`` counter and stamps ``publish_time_ns``. Call
    ``notify()`` (the C method too) after a batch of publishes to wake readers blocked in
    ``wait_for_update``.

    ``markets``: the symbols the feeder is configured for. They are in the segment before readers
    can see it (kept from the predecessor's file as STALE, or new with status 0), and the
    predecessor's other markets are dropped. None keeps every market of the predecessor.

    Threads: every slot write (publish, set_status, bump) is one C call holding the GIL, so they
    may come from different threads; add_market / remove_market / close must come from one.
    The status message persists until the next set_status (``set_status(slot, status)`` clears it).
    """

    publish: PublishFn
    notify: Callable[[], None]

    def __init__(
        self,
        group: str,
        *,
        depth: int = DEFAULT_DEPTH,
        capacity: int = DEFAULT_CAPACITY,
        exchange: str = "",
        heartbeat_interval_ms: int = DEFAULT_HEARTBEAT_INTERVAL_MS,
        stale_after_ms: int = DEFAULT_STALE_AFTER_MS,
        notify_paced_us: int = DEFAULT_NOTIFY_PACED_US,
        markets: Iterable[str] | None = None,
        standby: bool = False,
    ) -> None:
        if sys.byteorder != "little":  # C stores are native, the contract is little-endian (LAYOUT.md)
            raise SegmentError(f"ldc segments are little-endian; this host is {sys.byteorder}-endian")
        if not 1 <= heartbeat_interval_ms <= U32_MAX // MIN_STALE_INTERVALS:
            raise ValueError(f"heartbeat_interval_ms must be 1..{U32_MAX // MIN_STALE_INTERVALS}, got {heartbeat_interval_ms}")
        if not MIN_STALE_INTERVALS * heartbeat_interval_ms <= stale_after_ms <= U32_MAX:
            raise ValueError(
                f"stale_after_ms must be at least {MIN_STALE_INTERVALS} heartbeat intervals "
                f"({MIN_STALE_INTERVALS * heartbeat_interval_ms} ms), got {stale_after_ms}"
            )
        if not 0 <= notify_paced_us <= MAX_NOTIFY_PACED_US:
            raise ValueError(f"notify_paced_us must be 0..{MAX_NOTIFY_PACED_US} (0: not paced), got {notify_paced_us}")
        self.group = group
        self.name = segment_name(group)
        self.geometry = Geometry.for_size(depth=depth, capacity=capacity)
        self._exchange = exchange
        self._heartbeat_interval_ms = heartbeat_interval_ms
        self._stale_after_ms = stale_after_ms
        self._notify_paced_us = notify_paced_us
        self._slots: dict[str, tuple[int, int]] = {}  # symbol -> (slot, gen)
        self._next_gen = 1
        self.took_over = False  # a predecessor's file existed and this writer replaced it
        self._role = threading.Lock()  # a standby's takeover (its own thread) against close()
        self._closing = False
        self._fd: int | None = None
        self._tmp = ""
        # a standby whose group has a live writer builds its file now and names it at the takeover
        self._lock_fd: int | None = _try_own_group(group) if standby else _own_group(group)
        self.active = self._lock_fd is not None
        wanted = None if markets is None else list(markets)
        try:
            if self.active:
                with _Predecessor.open(group) as previous:
                    self._build(previous, wanted)
            else:
                self._build_unnamed(wanted)
        except BaseException:
            self._release()
            raise
        self.publish = self._seg.publish  # type: ignore[assignment]
        self.notify = self._seg.notify
        self.stats = FeederStats(self._seg, self.geometry.stats_offset)

    @property
    def closing(self) -> bool:
        """close() has begun: a standby's takeover is refused from now on."""
        return self._closing

    @property
    def segment(self) -> object:
        """The C ``Segment`` itself, for publishers written in C (``ldc._fastbook.HotPath``)."""
        return self._seg

    # ------------------------------------------------------------------ lifecycle

    def _build(self, previous: _Predecessor | None, markets: list[str] | None) -> None:
        """Make the new file under the private name, locked before anyone can open it, fill it, retire
        the predecessor's file, then rename the new one into place (LAYOUT.md section 12)."""
        _remove_dead_builds(self.group)
        self._make_file()
        try:
            if previous is not None:
                for market in previous.markets(markets):
                    self._carry(previous, market)
            for symbol in markets or ():
                self.add_market(symbol)
            self._name_file(previous)
        except BaseException:
            self._unlink_build()
            raise
        g = self.geometry
        log.info("%s segment %s (depth %d, capacity %d, %d markets)",
                 "replaced" if self.took_over else "created", self.name, g.depth, g.capacity, len(self._slots))  # fmt: skip

    def _build_unnamed(self, markets: list[str] | None) -> None:
        """A hot standby's file (LAYOUT.md section 12, "Hot standby"): built, locked and published into
        exactly as a writer's, under its private name (mode 0600, no reader can open it) and without
        ``magic``, until ``take_over`` names it. Nothing is carried: the standby's own books fill it."""
        self._make_file()
        try:
            for symbol in markets or ():
                self.add_market(symbol)
        except BaseException:
            self._unlink_build()
            raise
        log.info("standby for segment %s: building %s (%d markets) until its writer goes", self.name, self._tmp, len(self._slots))

    def take_over(self, lock_fd: int) -> bool:
        """A standby holding the group's ownership lock ``lock_fd`` (the active writer released it: died or
        stopped) names its file: wait for the old file's lock to go, complete the header (``takeovers``,
        version, ``magic`` last), retire the old file, rename. Its slots are published as they are: no book
        is touched. False (and ``lock_fd`` not kept) when this writer is closing."""
        with self._role:
            if self._closing or self.active:
                return False
            with _Predecessor.open(self.group) as previous:  # refused (another user's file...): close() unlinks ours
                self._name_file(previous)
            self._lock_fd, self.active = lock_fd, True
        log.info("took over segment %s (%d markets)", self.name, len(self._slots))
        return True

    def _make_file(self) -> None:
        """The new file under a random private name, its liveness lock and robust word held, the header
        filled but for takeovers, version and magic (``_name_file``)."""
        self._tmp = temp_path(self.group, secrets.token_hex(TEMP_TOKEN_BYTES))  # a name no other account can squat
        self._fd = create_exclusive(self._tmp, BUILD_MODE)
        try:
            if not ofd_lock(self._fd, write=True):
                raise SegmentError(f"{self._tmp} was locked by another process while being built")
            os.ftruncate(self._fd, self.geometry.segment_size)
            self._mm = mmap.mmap(self._fd, self.geometry.segment_size)
            self._seg = _seqlock.Segment(self._mm, self.geometry.c_layout(), writable=True)
            self._seg.hold_owner_lock()  # the robust word readers load on every read
            self._initialise()
        except BaseException:
            self._unlink_build()
            raise

    def _name_file(self, previous: _Predecessor | None) -> None:
        """The last steps of a start (LAYOUT.md section 12, steps 4-7): takeovers, version, magic, retire
        the predecessor, then the file gets the group's name."""
        self._put("takeovers", previous.takeovers + 1 if previous is not None else 0)
        self._put("version_major", VERSION_MAJOR)
        self._put("version_minor", VERSION_MINOR)
        self._seg.store_u64(HEADER.offset("magic"), MAGIC)  # release: everything above is visible first
        if previous is not None:
            previous.retire()  # before our file can be seen: no reader may take its data as live after this
            self.took_over = True
        assert self._fd is not None
        os.fchmod(self._fd, SEGMENT_MODE)
        os.rename(self._tmp, segment_path(self.group))
        self._tmp = ""

    def _unlink_build(self) -> None:
        if self._tmp:
            try:
                os.unlink(self._tmp)
            except OSError:
                pass
            self._tmp = ""

    def _initialise(self) -> None:
        """Fill the header of the fresh (all-zero) file; takeovers, version and magic go last (_name_file)."""
        g = self.geometry
        put = self._put
        put("header_size", g.header_size)
        put("endian_marker", ENDIAN_MARKER)
        put("segment_size", g.segment_size)
        for name in ("directory_offset", "directory_entry_size", "slots_offset", "slot_size", "capacity", "depth"):
            put(name, getattr(g, name))
        for name in ("bids_offset", "asks_offset", "message_offset", "message_size"):
            put(name, getattr(g, name))
        put("heartbeat_interval_ms", self._heartbeat_interval_ms)
        put("stale_after_ms", self._stale_after_ms)
        put("notify_paced_us", self._notify_paced_us)
        self._put_text("exchange", self._exchange)
        self._put_text("group", self.group)
        put("state", State.RUNNING)
        put("writer_pid", os.getpid())
        put("start_time_ns", time.time_ns())
        put("instance_id", secrets.randbits(64) | 1)
        self._seg.heartbeat()
        _initialise_stats(self._seg, g.stats_offset)
        for slot in range(g.capacity):
            self._seg.reset_slot(slot, 0, 0, b"", False)

    def _carry(self, previous: _Predecessor, market: _Market) -> None:
        """Keep one of the predecessor's markets in the same slot: its last levels, ids and counters
        when the geometry is the same and it was not torn, marked STALE until the feeder republishes."""
        old = previous.mm
        if previous.geometry != self.geometry or old is None:  # other geometry: the symbol is kept, in a slot of the new file, without levels
            slot = self.add_market(market.symbol)
            message = f"{RESTART_MESSAGE} (depth {previous.geometry.depth if previous.geometry else '?'} -> {self.geometry.depth})"
            self.set_status(slot, Status.STALE, message)
            return
        gen = self._next_gen
        self._next_gen += 1
        if not market.torn:
            off, size = self.geometry.slot_offset(market.slot), self.geometry.slot_size
            self._mm[off : off + size] = old[off : off + size]  # nobody can see this file yet
        message = TORN_MESSAGE if market.torn else RESTART_MESSAGE
        self._seg.reset_slot(market.slot, gen, Status.STALE, message.encode(), not market.torn)
        self._slots[market.symbol] = (market.slot, gen)
        self._write_entry(market.slot, _encode_symbol(market.symbol), gen)

    def close(self) -> None:
        """Mark the segment stopped (readers see the last books with WriterDead) and release it.
        The segment file stays so readers learn why; the next writer of the group replaces it, and
        ``ldc clean`` removes it. The ownership lock file goes."""
        with self._role:
            self._closing = True  # a standby's takeover from now on is refused
        if getattr(self, "_seg", None) is None:
            return
        if not self.active:  # a standby's file never had the name: nobody saw it
            self._unlink_build()
            self._release()
            log.info("standby for segment %s closed", self.name)
            return
        try:
            self._seg.store_u32(HEADER.offset("state"), State.STOPPED)
            self._seg.heartbeat()
            self._seg.notify()  # wake sleepers so they see the stop
            self._drop_lock_file()
        finally:
            self._release()
        log.info("closed segment %s", self.name)

    def _drop_lock_file(self) -> None:
        """A clean stop removes the ownership lock file while still holding its lock: a writer that
        opened it meanwhile finds, once it holds the lock, that the name no longer leads to it and
        starts over (_own_group), so nothing is left in /dev/shm but the stopped segment."""
        path = lock_path(self.group)
        if self._lock_fd is not None and same_file(self._lock_fd, path):
            os.unlink(path)

    def _release(self) -> None:
        seg = getattr(self, "_seg", None)
        if seg is not None:
            seg.close()
            self._seg = None  # type: ignore[assignment]
        mm = getattr(self, "_mm", None)
        if mm is not None:
            mm.close()
            self._mm = None  # type: ignore[assignment]
        for attr in ("_fd", "_lock_fd"):  # the file's liveness lock first, the group's ownership last
            fd = getattr(self, attr, None)
            if fd is not None:
                os.close(fd)
                setattr(self, attr, None)

    def __enter__(self) -> SegmentWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ markets

    def add_market(self, symbol: str) -> int:
        """Give ``symbol`` a slot (idempotent; after a takeover its old slot is kept). The slot
        starts with status 0 and update_id -1: readers see it out of sync until the first publish."""
        known = self._slots.get(symbol)
        if known is not None:
            return known[0]
        encoded = _encode_symbol(symbol)
        used = {slot for slot, _ in self._slots.values()}
        free = next((s for s in range(self.geometry.capacity) if s not in used), None)
        if free is None:
            raise SegmentError(f"segment {self.name} is full: capacity {self.geometry.capacity} markets")
        gen = self._next_gen
        self._next_gen += 1
        self._seg.reset_slot(free, gen, 0, b"", False)  # slot first, then the entry that points to it
        self._slots[symbol] = (free, gen)
        self._write_entry(free, encoded, gen)
        return free

    def remove_market(self, symbol: str) -> None:
        """Free the market's slot. Readers holding it get MarketNotFound on their next read."""
        known = self._slots.pop(symbol, None)
        if known is None:
            raise MarketNotFound(f"market {symbol!r} is not in segment {self.name}")
        self._write_entry(known[0], b"", 0)  # entry first, so no reader resolves to a freed slot
        self._seg.reset_slot(known[0], 0, 0, b"", False)

    def markets(self) -> dict[str, int]:
        """symbol -> slot of every market, including those kept from a dead writer."""
        return {symbol: slot for symbol, (slot, _) in self._slots.items()}

    def slot(self, symbol: str) -> int:
        known = self._slots.get(symbol)
        if known is None:
            raise MarketNotFound(f"market {symbol!r} is not in segment {self.name}")
        return known[0]

    def _write_entry(self, slot: int, symbol: bytes, gen: int) -> None:
        count = len(self._slots)
        self._seg.write_dir_entry(slot, symbol, gen, HEADER.offset("market_count"), count)

    # ------------------------------------------------------------------ per-slot state

    def set_status(self, slot: int, status: int, message: str = "") -> None:
        """Set the slot's status flags and its short status text (UTF-8, truncated to fit)."""
        self._seg.write_status(slot, int(status), truncate_utf8(message, self.geometry.message_size - 1))

    def bump(self, slot: int, counter: Counter, n: int = 1) -> None:
        """Add ``n`` to one of the slot's counters (``updates`` is bumped by publish itself)."""
        self._seg.bump(slot, int(counter), n)

    def heartbeat(self) -> None:
        """Refresh heartbeat_ns (one store); call about once per heartbeat interval."""
        self._seg.heartbeat()

    # ------------------------------------------------------------------ header access

    def _put(self, name: str, value: int) -> None:
        field = HEADER[name]
        struct.pack_into("<" + _STRUCT_CODES[field.type], self._mm, field.offset, value)

    def _get(self, name: str) -> int:
        field = HEADER[name]
        value: int = struct.unpack_from("<" + _STRUCT_CODES[field.type], self._mm, field.offset)[0]
        return value

    def _put_text(self, name: str, text: str) -> None:
        field = HEADER[name]
        data = truncate_utf8(text, field.count - 1)
        self._mm[field.offset : field.offset + field.count] = data.ljust(field.count, b"\0")


_STRUCT_CODES: Final = {"u16": "H", "u32": "I", "i32": "i", "u64": "Q", "i64": "q"}


def _initialise_stats(seg: _seqlock.Segment, base: int) -> None:
    """The feeder-stats block's constant fields (the fresh file's counters are zero); before magic."""
    seg.store_u32(base + FEEDER_STATS.offset("stats_size"), FEEDER_STATS.size)
    seg.store_u32(base + FEEDER_STATS.offset("latency_buckets"), len(LATENCY_BOUNDS_NS))
    bounds = base + FEEDER_STATS.offset("latency_bounds_ns")
    for i, bound in enumerate(LATENCY_BOUNDS_NS):
        seg.store_u64(bounds + 8 * i, bound)


class FeederStats:
    """The feeder's own figures in the segment's feeder-stats block (LAYOUT.md section 16).

    Each value is kept here and stored whole into its aligned u64 (one store: on x86-64 and arm64 an
    aligned 8-byte store is single-copy atomic, so a reader never sees half of one), except the per-read
    words (``frames``, the latency buckets and sum), which ``read_done`` adds to in place
    (``Segment.add_u64``): never ``add`` / ``set`` those. No seqlock: the
    counters only go up, so a reader's load is a value the counter had, and a scrape that sees one
    field newer than another is off by the events in between, which the next scrape includes. Counts
    restart at 0 in every new file (a new writer): Prometheus takes that as a counter reset.

    Every method may come from any thread: one uncontended lock (tens of ns) per call; ``read_done``, the
    only one per socket read, takes no lock (atomic adds in C).
    """

    def __init__(self, seg: _seqlock.Segment, base: int) -> None:
        self._store = seg.store_u64
        self._add = seg.add_u64
        names = [name for name, _ in (*STATS_COUNTERS, *STATS_GAUGES)]
        self._offsets = {name: base + FEEDER_STATS.offset(name) for name in names}
        self._values = dict.fromkeys(names, 0)
        self._lock = threading.Lock()
        self._frames_off = self._offsets["frames"]
        self._sum_off = base + FEEDER_STATS.offset("latency_sum_ns")
        self._counts_off = base + FEEDER_STATS.offset("latency_counts")

    def add(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the counter (or gauge) ``name`` (a STATS_COUNTERS / STATS_GAUGES name)."""
        with self._lock:
            value = self._values[name] = max(0, self._values[name] + n)  # a gauge never below 0 (u64)
            self._store(self._offsets[name], value)

    def set(self, name: str, value: int) -> None:
        """Store a gauge's value (a STATS_GAUGES name), e.g. the REST weight used."""
        with self._lock:
            self._values[name] = value
            self._store(self._offsets[name], value)

    def rest_answer(self, status: int, used_weight: int | None) -> None:
        """Every REST answer (any thread): the 429 / 418 counters and the exchange's weight count."""
        if status in (429, 418):
            self.add(f"rest_{status}")
        if used_weight is not None:
            self.set("rest_weight_used", used_weight)

    def connection_opened(self) -> None:
        self.add("ws_opened")
        self.add("ws_open")

    def connection_closed(self, *, lost: bool) -> None:
        """A websocket closed; ``lost`` unless the feeder closed it itself (a stop, a rollover): then it reopens."""
        self.add("ws_open", -1)
        if lost:
            self.add("ws_reconnects")

    def read_done(self, frames: int, latency_ns: int) -> None:
        """One socket read: ``frames`` data frames received, the last published ``latency_ns`` after it
        arrived. Once per read on the hot path: three atomic adds in one C call, no lock (the three words
        are only ever added to, so no total is kept here)."""
        self._add(self._frames_off, frames, self._counts_off + 8 * bisect_left(LATENCY_BOUNDS_NS, latency_ns), 1,
                  self._sum_off, min(max(latency_ns, 0), MAX_LATENCY_NS))  # fmt: skip


def _own_group(group: str) -> int:
    """The group's ownership lock: an OFD write lock on ``ldc-<group>.lock`` (0600, this user's).
    Refuses when a live writer holds it, naming its pid."""
    path = lock_path(group)
    for attempt in range(OWNER_LOCK_ATTEMPTS):
        fd = open_owned(path, os.O_RDWR, LOCK_MODE, create=True)
        assert fd is not None  # create=True never answers None
        if ofd_lock(fd, write=True):
            if same_file(fd, path):
                return fd
            # `ldc clean` removed the name between our open and our lock: lock the current file instead
        os.close(fd)
        if attempt + 1 < OWNER_LOCK_ATTEMPTS:
            time.sleep(OWNER_LOCK_RETRY_S)
    raise SegmentError(f"segment {segment_name(group)} has a live writer (pid {_peek_pid(group)}); one writer per group")


def _try_own_group(group: str) -> int | None:
    """The group's ownership lock if nobody holds it (one attempt, no wait), else None: a live writer runs."""
    while True:
        fd = open_owned(lock_path(group), os.O_RDWR, LOCK_MODE, create=True)
        assert fd is not None  # create=True never answers None
        if not ofd_lock(fd, write=True):
            os.close(fd)
            return None
        if same_file(fd, lock_path(group)):
            return fd
        os.close(fd)  # `ldc clean` or a stopping writer removed the name meanwhile: lock the current file


def _peek_pid(group: str) -> int:
    try:
        with open(segment_path(group), "rb") as f:
            return _peek_pid_fd(f.fileno())
    except OSError:
        return 0


def _remove_dead_builds(group: str) -> None:
    """Remove this user's build files of ``group`` that no process holds: we hold the ownership lock, so
    their builders died. A file still locked is a hot standby's, kept. Another account's file at such a
    name is left alone: it cannot be the one we build (random name)."""
    for path in temp_paths(group):
        if write_locked(path):
            continue  # a hot standby's file: its writer lives, it names the file when it takes over
        try:
            if unlink_own(path):
                log.info("removed %s: a writer died while building it", path)
        except SegmentError as exc:
            log.warning("ignoring %s", exc)


class _Predecessor:
    """The file a new writer replaces: its owner and mode checked, its writer certainly gone."""

    def __init__(self, group: str, fd: int) -> None:
        self.group, self.fd = group, fd
        self.name = segment_name(group)
        size = os.fstat(fd).st_size
        self.mm: mmap.mmap | None = mmap.mmap(fd, size) if size >= HEADER_SIZE else None
        self.geometry: Geometry | None = None
        try:
            self.geometry = read_geometry(fd, self.name)
        except LayoutError as exc:
            log.warning("segment %s is replaced without keeping its markets: %s", self.name, exc)
        self.takeovers = _u32(self.mm, HEADER.offset("takeovers")) if self.geometry is not None else 0

    @classmethod
    def open(cls, group: str) -> _Predecessor | _NoPredecessor:
        path = segment_path(group)
        fd = open_owned(path, os.O_RDWR, SEGMENT_MODE)  # another user's file, or a link: refused here
        if fd is None:
            return _NoPredecessor()
        try:
            _wait_gone(fd, path)
            return cls(group, fd)
        except BaseException:
            os.close(fd)
            raise

    def __enter__(self) -> _Predecessor:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.mm is not None:
            self.mm.close()
        os.close(self.fd)

    def markets(self, wanted: list[str] | None) -> list[_Market]:
        """Active, consistent markets of the old directory (its writer is gone: the bytes are still),
        those in ``wanted`` only when given."""
        g, mm = self.geometry, self.mm
        if g is None or mm is None:
            return []
        keep = None if wanted is None else set(wanted)
        found: list[_Market] = []
        seen: set[str] = set()
        for slot in range(g.capacity):
            entry = g.dir_entry_offset(slot)
            gen = _u64(mm, entry + DIR_ENTRY.offset("gen"))
            symbol = _decode_symbol(bytes(mm[entry : entry + SYMBOL_SIZE]).split(b"\0", 1)[0])
            slot_off = g.slot_offset(slot)
            if gen == 0 or symbol is None or symbol in seen or _u64(mm, slot_off + SLOT_HEADER.offset("gen")) != gen:
                continue
            if keep is not None and symbol not in keep:
                log.info("market %s of %s is no longer configured: not kept", symbol, self.name)
                continue
            seen.add(symbol)
            found.append(_Market(slot, symbol, torn=bool(_u64(mm, slot_off) & 1)))
        return found

    def retire(self) -> None:
        if self.mm is not None:
            _seqlock.retire(self.mm, HEADER.offset("state"), State.RETIRED, HEADER.offset("notify"))


class _NoPredecessor:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _wait_gone(fd: int, path: str) -> None:
    """The predecessor released the ownership lock; its file's liveness lock goes a moment later
    (a process's locks are dropped one file at a time as it exits). A layout 1.x writer holds a
    flock instead: refuse to replace it while it lives. Only a file that is not a complete 2.x segment
    can be a 1.x writer's: any reader can take a flock on a file it may read, and must not stop a
    group by flocking a 2.x file its dead writer left."""
    if not _is_layout2(fd):
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            raise SegmentError(f"{path} has a live layout 1.x writer (pid {_peek_pid_fd(fd)}): stop it first") from None
    deadline = time.monotonic() + PREDECESSOR_EXIT_S
    poll_s = PREDECESSOR_POLL_MIN_S
    while ofd_holder(fd):
        if time.monotonic() >= deadline:
            raise SegmentError(f"{path} is still locked by its writer (pid {_peek_pid_fd(fd)}) {PREDECESSOR_EXIT_S:g} s "
                               "after it released the group's ownership lock")  # fmt: skip
        time.sleep(poll_s)
        poll_s = min(poll_s * 2, PREDECESSOR_POLL_S)


def _is_layout2(fd: int) -> bool:
    """The file's header is complete (magic set, written last) and says layout major 2."""
    raw = os.pread(fd, 10, 0)
    return len(raw) == 10 and struct.unpack_from("<QH", raw) == (MAGIC, VERSION_MAJOR)


def _peek_pid_fd(fd: int) -> int:
    raw = os.pread(fd, 4, HEADER.offset("writer_pid"))
    return int.from_bytes(raw, "little") if len(raw) == 4 else 0


def _u64(mm: mmap.mmap | None, off: int) -> int:
    value: int = struct.unpack_from("<Q", mm, off)[0] if mm is not None else 0
    return value


def _u32(mm: mmap.mmap | None, off: int) -> int:
    value: int = struct.unpack_from("<I", mm, off)[0] if mm is not None else 0
    return value


def _encode_symbol(symbol: str) -> bytes:
    encoded = symbol.encode()
    if not symbol or len(encoded) >= SYMBOL_SIZE or b"\0" in encoded:
        raise ValueError(f"symbol must be 1..{SYMBOL_SIZE - 1} UTF-8 bytes without NUL, got {symbol!r}")
    return encoded


def _decode_symbol(raw: bytes) -> str | None:
    try:
        symbol = raw.decode()
    except UnicodeDecodeError:
        return None
    return symbol if symbol and len(raw) < DIR_ENTRY["symbol"].count else None
