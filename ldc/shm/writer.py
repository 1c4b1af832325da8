"""The segment writer: create or take over ``/ldc-<group>``, publish books, keep the header alive.

One writer per segment, for the writer's whole life holding ``flock(LOCK_EX)`` on the segment file.
A new writer creates the segment exclusively; when it already exists and no live writer holds the
lock, it takes the segment over in place (same geometry: readers keep their mapping and see only
STALE markets until the feeder republishes) or replaces it (other geometry: the old file is marked
stopped and unlinked, readers notice ``writer_alive() == False``). See docs/LAYOUT.md.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import secrets
import struct
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt
import posix_ipc

from ldc.errors import LayoutError, MarketNotFound, SegmentError
from ldc.shm import _seqlock
from ldc.shm.layout import (
    DEFAULT_CAPACITY,
    DEFAULT_DEPTH,
    DEFAULT_HEARTBEAT_INTERVAL_MS,
    DIR_ENTRY,
    ENDIAN_MARKER,
    HEADER,
    MAGIC,
    SEGMENT_MODE,
    SYMBOL_SIZE,
    VERSION_MAJOR,
    VERSION_MINOR,
    WAITERS_MODE,
    WAITERS_SIZE,
    Counter,
    Geometry,
    State,
    Status,
    segment_name,
    waiters_name,
)
from ldc.shm.segment import read_geometry, truncate_utf8

log = logging.getLogger(__name__)

# Takeover
TAKEOVER_LOCK_ATTEMPTS: Final = 50  # a reader's liveness probe holds LOCK_SH for ~2 us; retry past it
TAKEOVER_LOCK_RETRY_S: Final = 0.002
RESTART_MESSAGE: Final = "writer restarted; waiting for the feeder to republish"
TORN_MESSAGE: Final = "writer died mid-write; levels discarded"

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


class SegmentWriter:
    """The single writer of one group's segment.

    ``publish`` is the C method itself (one call, no Python frame):
    ``publish(slot, *, update_id, event_time_ms, recv_time_ns, status, bids, asks, n_bids, n_asks,
    copy_levels=True)`` with bids/asks (>= n, 2) float64 C-contiguous arrays, best first. With
    ``copy_levels=False`` only ids, times and status advance and bids/asks/n_* may be omitted.
    Every publish bumps the slot's ``updates`` counter and stamps ``publish_time_ns``. Call
    ``notify()`` (the C method too) after a batch of publishes to wake readers blocked in
    ``wait_for_update`` (a futex wake only when one is registered).

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
    ) -> None:
        if sys.byteorder != "little":  # C stores are native, the contract is little-endian (LAYOUT.md)
            raise SegmentError(f"ldc segments are little-endian; this host is {sys.byteorder}-endian")
        self.group = group
        self.name = segment_name(group)
        self.geometry = Geometry.for_size(depth=depth, capacity=capacity)
        self._exchange = exchange
        self._heartbeat_interval_ms = heartbeat_interval_ms
        self._slots: dict[str, tuple[int, int]] = {}  # symbol -> (slot, gen)
        self._next_gen = 1
        self.took_over = False
        self._shm = self._open_locked()
        try:
            self._mm = mmap.mmap(self._shm.fd, self.geometry.segment_size)
            self._waiters_shm, self._waiters_mm = self._open_waiters()
            self._seg = _seqlock.Segment(
                self._mm, self.geometry.c_layout(), writable=True, waiters=self._waiters_mm
            )
            if self.took_over:
                self._take_over()
            else:
                self._initialise()
        except BaseException:
            self._release()
            raise
        self.publish = self._seg.publish  # type: ignore[assignment]
        self.notify = self._seg.notify

    @property
    def segment(self) -> object:
        """The C ``Segment`` itself, for publishers written in C (``ldc._fastbook.HotPath``)."""
        return self._seg

    # ------------------------------------------------------------------ lifecycle

    def _open_locked(self) -> posix_ipc.SharedMemory:
        """Create exclusively, or open an existing segment whose writer is dead; hold LOCK_EX."""
        try:
            shm = posix_ipc.SharedMemory(self.name, posix_ipc.O_CREX, mode=SEGMENT_MODE, size=self.geometry.segment_size)
        except posix_ipc.ExistentialError:
            return self._open_existing()
        os.fchmod(shm.fd, SEGMENT_MODE)  # the umask masked the mode given to shm_open
        if not _try_lock(shm.fd, attempts=1):
            shm.close_fd()
            raise SegmentError(f"segment {self.name} was opened by another writer while being created")
        return shm

    def _open_existing(self) -> posix_ipc.SharedMemory:
        try:
            shm = posix_ipc.SharedMemory(self.name)
        except posix_ipc.ExistentialError:  # unlinked between our create attempt and this open
            return self._open_locked()
        except posix_ipc.PermissionsError:
            raise SegmentError(f"segment {self.name} exists and is not writable by this user") from None
        if not _try_lock(shm.fd, attempts=TAKEOVER_LOCK_ATTEMPTS):
            pid = _peek_pid(shm.fd)
            shm.close_fd()
            raise SegmentError(f"segment {self.name} has a live writer (pid {pid}); one writer per group")
        if self._compatible(shm.fd):
            self.took_over = True
            return shm
        # other geometry or garbage: retire the old file (readers see it stopped) and start afresh
        log.warning("segment %s has another layout or is damaged; replacing it", self.name)
        _mark_stopped(shm.fd)
        posix_ipc.unlink_shared_memory(self.name)
        shm.close_fd()  # drops our lock on the retired file
        return self._open_locked()

    def _compatible(self, fd: int) -> bool:
        try:
            found = read_geometry(fd, self.name)
        except LayoutError as exc:
            log.warning("cannot take over %s: %s", self.name, exc)
            return False
        return found == self.geometry

    def _open_waiters(self) -> tuple[posix_ipc.SharedMemory, mmap.mmap]:
        shm = posix_ipc.SharedMemory(waiters_name(self.group), posix_ipc.O_CREAT, mode=WAITERS_MODE, size=0)
        if os.fstat(shm.fd).st_size < WAITERS_SIZE:
            os.ftruncate(shm.fd, WAITERS_SIZE)
        os.fchmod(shm.fd, WAITERS_MODE)
        return shm, mmap.mmap(shm.fd, WAITERS_SIZE)

    def _initialise(self) -> None:
        """Fill a fresh (all-zero) segment; magic and version go last so readers never see half of it."""
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
        self._put_text("exchange", self._exchange)
        self._put_text("group", self.group)
        self._claim(State.INITIALISING)
        for slot in range(g.capacity):
            self._seg.reset_slot(slot, 0, 0, b"", False)
        put("version_major", VERSION_MAJOR)
        put("version_minor", VERSION_MINOR)
        self._seg.store_u32(HEADER.offset("state"), State.RUNNING)
        self._seg.store_u64(HEADER.offset("magic"), MAGIC)  # release: everything above is visible first
        log.info("created segment %s (depth %d, capacity %d)", self.name, g.depth, g.capacity)

    def _take_over(self) -> None:
        """Adopt a dead writer's segment in place: repair odd slots, keep markets, mark them STALE."""
        self._claim(State.INITIALISING)
        self._seg.store_u32(HEADER.offset("takeovers"), self._seg.load_u32(HEADER.offset("takeovers")) + 1)
        self._seg.repair_dir_seq()
        directory = {slot: (symbol, gen) for slot, symbol, gen in self._directory()}
        cleared = [slot for slot in range(self.geometry.capacity) if not self._repair_slot(slot, directory.get(slot))]
        if cleared:  # rewrite one freed entry so market_count is final (it changes under dir_seq only)
            self._write_entry(cleared[-1], b"", 0)
        self._seg.store_u32(HEADER.offset("state"), State.RUNNING)
        self._seg.notify()
        log.info("took over segment %s with %d markets", self.name, len(self._slots))

    def _repair_slot(self, slot: int, entry: tuple[bytes, int] | None) -> bool:
        """Make one slot consistent; True when it keeps a market, False when it is left free."""
        slot_off = self.geometry.slot_offset(slot)
        seq = self._seg.load_u64(slot_off)
        slot_gen = self._seg.load_u64(slot_off + 8)
        symbol = _decode_symbol(entry[0]) if entry else None
        if entry is None or symbol is None or entry[1] != slot_gen:
            if entry is not None:
                self._write_entry(slot, b"", 0)
            if slot_gen or seq & 1:
                self._seg.reset_slot(slot, 0, 0, b"", False)
            return False
        torn = bool(seq & 1)
        message = (TORN_MESSAGE if torn else RESTART_MESSAGE).encode()
        self._seg.reset_slot(slot, slot_gen, Status.STALE, message, not torn)
        self._slots[symbol] = (slot, slot_gen)
        self._next_gen = max(self._next_gen, slot_gen + 1)
        return True

    def _claim(self, state: State) -> None:
        self._seg.store_u32(HEADER.offset("state"), state)
        # readers load these while a takeover rewrites them: single atomic stores, never byte copies
        self._seg.store_u32(HEADER.offset("writer_pid"), os.getpid())
        self._seg.store_u64(HEADER.offset("start_time_ns"), time.time_ns())
        self._seg.store_u64(HEADER.offset("instance_id"), secrets.randbits(64) | 1)
        self._seg.heartbeat()

    def close(self) -> None:
        """Mark the segment stopped (readers see the last books with WriterDead) and release it.
        The segment file stays so readers learn why; the next writer for the group takes it over."""
        if getattr(self, "_seg", None) is None:
            return
        try:
            self._seg.store_u32(HEADER.offset("state"), State.STOPPED)
            self._seg.heartbeat()
            self._seg.notify()  # wake sleepers so they see the stop
        finally:
            self._release()
        log.info("closed segment %s", self.name)

    def _release(self) -> None:
        seg = getattr(self, "_seg", None)
        if seg is not None:
            seg.close()
            self._seg = None  # type: ignore[assignment]
        for attr in ("_mm", "_waiters_mm"):
            mm = getattr(self, attr, None)
            if mm is not None:
                mm.close()
                setattr(self, attr, None)
        for attr in ("_shm", "_waiters_shm"):
            shm = getattr(self, attr, None)
            if shm is not None:
                shm.close_fd()  # closing the fd drops the flock
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

    def _directory(self) -> list[tuple[int, bytes, int]]:
        entries = self._seg.read_directory()
        if entries is None:  # we hold the lock and repaired dir_seq: nobody else writes
            raise SegmentError(f"directory of {self.name} is busy after repair")
        return list(entries)

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


def _try_lock(fd: int, *, attempts: int) -> bool:
    for attempt in range(attempts):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt + 1 < attempts:
                time.sleep(TAKEOVER_LOCK_RETRY_S)
    return False


def _peek_pid(fd: int) -> int:
    try:
        raw = os.pread(fd, 4, HEADER.offset("writer_pid"))
    except OSError:
        return 0
    return int.from_bytes(raw, "little") if len(raw) == 4 else 0


def _mark_stopped(fd: int) -> None:
    size = os.fstat(fd).st_size
    if size >= HEADER.size:
        os.pwrite(fd, int(State.STOPPED).to_bytes(4, "little"), HEADER.offset("state"))


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
