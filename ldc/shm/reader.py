"""The consumer side: attach read-only to ``/ldc-<group>`` and take validated copies of books.

``Reader`` maps the segment read-only, so nothing it does can disturb the writer or other readers.
One Reader per thread (its scratch buffer and directory cache are not shared). The hot loop is
``read_into(symbol, buf)`` with ``buf = reader.new_buffer()``: one C call, no allocation.
"""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from ldc.depth import Level
from ldc.errors import (
    LayoutError,
    MarketNotFound,
    OutOfSync,
    ReadContention,
    SegmentError,
    SegmentNotFound,
    WriterDead,
)
from ldc.shm import _seqlock
from ldc.shm.layout import (
    COUNTER_FIELDS,
    FEEDER_STATS,
    HEADER,
    STATS_COUNTERS,
    STATS_GAUGES,
    HEADER_SIZE,
    Geometry,
    State,
    Status,
    is_in_sync,
    segment_name,
    segment_path,
)
from ldc.shm.segment import check_mode, check_owner, header_text, header_value, parse_header, trusted_owners

# Limits
MAX_RESOLVE_ATTEMPTS: Final = 3  # directory re-reads after a slot changed generation under us
ATTACH_RETRY_S: Final = 0.01

READ_OK: Final = _seqlock.READ_OK
READ_OUT_OF_SYNC: Final = _seqlock.READ_OUT_OF_SYNC
READ_GONE: Final = _seqlock.READ_GONE
READ_CONTENDED: Final = _seqlock.READ_CONTENDED
READ_WRITER_DEAD: Final = _seqlock.READ_WRITER_DEAD
READ_WRITER_DEAD_NO_COPY: Final = _seqlock.READ_WRITER_DEAD_NO_COPY

Levels = npt.NDArray[np.float64]


class SnapshotBuffer(_seqlock.SlotBuffer):
    """A reader-owned copy of one slot, refilled in place by ``Reader.read_into``.

    ``bids`` and ``asks`` are read-only (depth, 2) float64 views, best first; rows from ``n_bids`` /
    ``n_asks`` on are zero. Scalars: ``update_id``, ``event_time_ms``, ``recv_time_ns``,
    ``publish_time_ns``, ``status``, ``n_bids``, ``n_asks``, ``counters``, ``best``.
    """

    bids: Levels
    asks: Levels

    def __init__(self, segment: _seqlock.Segment, geometry: Geometry) -> None:
        depth = geometry.depth
        raw = memoryview(self)  # the C type exports the buffer protocol
        self.bids = np.frombuffer(raw, np.float64, depth * 2, geometry.bids_offset).reshape(depth, 2)
        self.asks = np.frombuffer(raw, np.float64, depth * 2, geometry.asks_offset).reshape(depth, 2)


class Snapshot(NamedTuple):
    """The reader's own copy of one market's top of book. Times: ``event_time_ms`` is the
    exchange's event time (ms since the Unix epoch), ``recv_time_ns`` / ``publish_time_ns`` are the
    feeder's CLOCK_REALTIME ns when it received the update and when it published it."""

    symbol: str
    bids: Levels  # (n, 2) float64 [price, quantity], best (highest) first
    asks: Levels  # (n, 2) float64 [price, quantity], best (lowest) first
    update_id: int
    event_time_ms: int
    recv_time_ns: int
    publish_time_ns: int
    status: Status

    @property
    def in_sync(self) -> bool:
        return is_in_sync(self.status)


@dataclass(frozen=True)
class MarketStatus:
    symbol: str
    slot: int
    status: Status
    message: str
    in_sync: bool
    update_id: int
    event_time_ms: int
    recv_time_ns: int
    publish_time_ns: int
    status_time_ns: int
    n_bids: int
    n_asks: int
    counters: dict[str, int]


@dataclass(frozen=True)
class SegmentInfo:
    name: str
    group: str
    exchange: str
    version: tuple[int, int]
    state: int  # State value (0 only if the segment is corrupt)
    alive: bool
    writer_pid: int
    start_time_ns: int
    instance_id: int
    heartbeat_ns: int
    heartbeat_interval_ms: int
    stale_after_ms: int  # the writer's limit: readers flag its markets STALE past it
    stale: bool  # heartbeat_ns older than stale_after_ms: the writer holds its lock but is stuck
    notify_paced_us: int  # the pace of the notify_paced word (LAYOUT.md section 11, 2.2); 0: not paced
    takeovers: int
    market_count: int
    depth: int
    capacity: int


@dataclass(frozen=True)
class FeederStatsView:
    """One read of a segment's feeder-stats block (layout 2.1, LAYOUT.md section 16). Each value is one
    atomic load; the block has no seqlock (its counters only go up), so fields may be a few events apart."""

    counters: dict[str, int]  # STATS_COUNTERS names -> value
    gauges: dict[str, int]  # STATS_GAUGES names -> value
    latency_bounds_ns: tuple[int, ...]  # bucket upper bounds, inclusive; the last is 2**64 - 1 (+Inf)
    latency_counts: tuple[int, ...]  # observations per bucket (not cumulative)
    latency_sum_ns: int


class Reader:
    """Read-only access to one group's segment. Use as a context manager or call ``close()``.

    Errors: SegmentNotFound (no segment), LayoutError (wrong magic / major version / truncated),
    MarketNotFound, OutOfSync (unless ``allow_out_of_sync=True``), WriterDead (writer gone or
    stopped, unless ``allow_out_of_sync=True``), ReadContention (no consistent copy within 10 ms).
    """

    def __init__(self, group: str, *, attach_timeout_s: float = 0.0, owner: str | int | None = None) -> None:
        self.group = group
        self._trusted = trusted_owners(owner)  # the accounts whose segments it accepts (section 7 step 2)
        try:
            self.name = segment_name(group)
        except ValueError as exc:  # a group name that could leave /dev/shm: refused before any open
            raise SegmentError(str(exc)) from None
        self._slots: dict[str, tuple[int, int]] = {}
        self._attach_with_retry(attach_timeout_s)

    # ------------------------------------------------------------------ attach

    def _attach_with_retry(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._attach()
                return
            except (SegmentNotFound, LayoutError):
                if time.monotonic() >= deadline:
                    raise
                time.sleep(ATTACH_RETRY_S)

    def _attach(self) -> None:
        path = segment_path(self.group)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SegmentNotFound(f"no segment {self.name}: is the feeder for group {self.group!r} running?") from None
        except PermissionError:
            raise SegmentError(f"no permission to read {self.name}: join the segment's group (mode 0640)") from None
        except OSError as exc:  # ELOOP: a symbolic link where the segment should be
            raise SegmentError(f"cannot open {path}: {exc.strerror}") from None
        try:
            self._map(fd)
        except BaseException:
            os.close(fd)
            raise

    def _map(self, fd: int) -> None:
        st = os.fstat(fd)
        check_mode(st, self.name)
        check_owner(st, self.name, self._trusted)
        if st.st_size < HEADER_SIZE:
            raise LayoutError(f"segment {self.name} is {st.st_size} bytes, expected at least a {HEADER_SIZE}-byte header")
        mm = mmap.mmap(fd, st.st_size, access=mmap.ACCESS_READ)
        try:
            _seqlock_magic_fence(mm)
            self.geometry = parse_header(mm[:HEADER_SIZE], self.name, st.st_size)
            named = header_text(mm[:HEADER_SIZE], "group")
            if named != self.group:  # step 8: a hard link can put one group's file at another's name
                raise LayoutError(f"segment {self.name} holds group {named!r}: a segment of another group at this name")
            self._seg = _seqlock.Segment(mm, self.geometry.c_layout(), writable=False, lock_fd=fd)
        except BaseException:
            mm.close()
            raise
        self._fd, self._mm, self._identity = fd, mm, (st.st_dev, st.st_ino)
        self._slots.clear()
        self._scratch = self.new_buffer()
        self._notify_off = HEADER.offset("notify")
        self._read = self._seg.read
        self._read_symbol = self._seg.read_symbol
        self._seg.set_slots(self._slots)

    def close(self) -> None:
        seg = getattr(self, "_seg", None)
        if seg is None:
            return
        seg.close()
        self._seg = None  # type: ignore[assignment]
        self._mm.close()
        os.close(self._fd)

    def __del__(self) -> None:
        # a raw fd is never closed on its own; an abandoned Reader must not leak it
        try:
            self.close()
        except Exception:  # noqa: BLE001  (interpreter shutdown may have torn modules down)
            pass

    def __enter__(self) -> Reader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def depth(self) -> int:
        return self.geometry.depth

    # ------------------------------------------------------------------ segment and markets

    def writer_alive(self) -> bool:
        """True when the group's writer holds its file's lock and runs (one fcntl). A stopped or
        dead file that a newer one replaced is followed first, as a read would."""
        if self._seg.probe():
            return True
        return self._reattach_if_replaced() and bool(self._seg.probe())

    def writer_stale(self) -> bool:
        """True when the heartbeat is older than the writer's published stale_after_ms: its process
        holds the lock but has stopped (SIGSTOP, a hung host); its markets read as STALE."""
        return bool(self._seg.stale())

    def info(self) -> SegmentInfo:
        """The header of the group's current file (a replaced one is followed first)."""
        alive = self.writer_alive()  # follows a replaced file: every load below is from the same one
        raw = self._mm[:HEADER_SIZE]
        load32, load64 = self._seg.load_u32, self._seg.load_u64
        return SegmentInfo(
            name=self.name,
            group=header_text(raw, "group"),
            exchange=header_text(raw, "exchange"),
            version=(header_value(raw, "version_major"), header_value(raw, "version_minor")),
            state=load32(HEADER.offset("state")),
            alive=alive,
            writer_pid=load32(HEADER.offset("writer_pid")),
            start_time_ns=load64(HEADER.offset("start_time_ns")),
            instance_id=load64(HEADER.offset("instance_id")),
            heartbeat_ns=load64(HEADER.offset("heartbeat_ns")),
            heartbeat_interval_ms=header_value(raw, "heartbeat_interval_ms"),
            stale_after_ms=header_value(raw, "stale_after_ms"),
            stale=self.writer_stale(),
            notify_paced_us=header_value(raw, "notify_paced_us"),
            takeovers=load32(HEADER.offset("takeovers")),
            market_count=load32(HEADER.offset("market_count")),
            depth=self.geometry.depth,
            capacity=self.geometry.capacity,
        )

    def feeder_stats(self) -> FeederStatsView | None:
        """The feeder's own figures, or None for a segment without the block (a 2.0 writer's)."""
        self.writer_alive()  # follows a replaced file, as info() does
        base = self.geometry.stats_offset
        if not base:
            return None
        load32, load64 = self._seg.load_u32, self._seg.load_u64
        size = load32(base + FEEDER_STATS.offset("stats_size"))
        buckets = load32(base + FEEDER_STATS.offset("latency_buckets"))
        expected = FEEDER_STATS["latency_counts"].count
        if not FEEDER_STATS.size <= size <= self.geometry.segment_size - base or buckets != expected:
            raise LayoutError(f"segment {self.name} has a feeder-stats block of {size} bytes with {buckets} latency buckets, "
                              f"expected >= {FEEDER_STATS.size} bytes inside the segment and {expected} buckets")  # fmt: skip

        def field(name: str, i: int = 0) -> int:
            return int(load64(base + FEEDER_STATS.offset(name) + 8 * i))

        return FeederStatsView(
            counters={name: field(name) for name, _ in STATS_COUNTERS},
            gauges={name: field(name) for name, _ in STATS_GAUGES},
            latency_bounds_ns=tuple(field("latency_bounds_ns", i) for i in range(buckets)),
            latency_counts=tuple(field("latency_counts", i) for i in range(buckets)),
            latency_sum_ns=field("latency_sum_ns"),
        )

    def markets(self) -> list[str]:
        """Symbols currently in the segment's directory, in slot order."""
        return [symbol for symbol, _ in sorted(self._refresh_directory().items(), key=lambda kv: kv[1][0])]

    def _refresh_directory(self) -> dict[str, tuple[int, int]]:
        if self._seg.load_u32(HEADER.offset("state")) != State.RUNNING:
            self._reattach_if_replaced()  # a stopped or retired file: a newer one may be at the name
        entries = self._seg.read_directory()
        if entries is None:
            if not self._seg.probe():
                raise WriterDead(self._dead_message() + "; the directory was left mid-change")
            raise ReadContention(f"directory of {self.name} kept changing for 10 ms")
        self._slots = {raw.decode(errors="replace"): (slot, gen) for slot, raw, gen in entries}
        self._seg.set_slots(self._slots)
        return self._slots

    def _resolve(self, symbol: str) -> tuple[int, int]:
        entry = self._refresh_directory().get(symbol)
        if entry is None and not self._seg.probe() and self._reattach_if_replaced():
            entry = self._refresh_directory().get(symbol)  # the newer file has every configured market
        if entry is None:
            raise MarketNotFound(f"market {symbol!r} is not in segment {self.name} ({len(self._slots)} markets)")
        return entry

    # ------------------------------------------------------------------ reads

    def new_buffer(self) -> SnapshotBuffer:
        """A buffer for ``read_into``; make one per hot loop and reuse it."""
        return SnapshotBuffer(self._seg, self.geometry)

    def read_into(self, symbol: str, out: SnapshotBuffer, *, allow_out_of_sync: bool = False) -> SnapshotBuffer:
        """Refill ``out`` with a validated copy of ``symbol``'s slot and return it. Allocation-free
        on the fast path; raises like ``snapshot``."""
        try:
            if self._read_symbol(symbol, out) == 0:  # READ_OK, as a literal: this is the hot path
                return out
        except ValueError:  # a buffer of another geometry (the segment was replaced at another depth)
            self._adopt_buffer(out, None)
            raise
        return self._read_slow(symbol, out, allow_out_of_sync)[0]

    def _read_slow(self, symbol: str, out: SnapshotBuffer, allow_out_of_sync: bool) -> tuple[SnapshotBuffer, bool]:
        """Resolve, read, follow replaced segments, raise what must be raised. Returns the filled
        buffer and whether it is a dead writer's last copy (only with allow_out_of_sync)."""
        for _ in range(MAX_RESOLVE_ATTEMPTS):
            scratch = self._scratch
            slot, gen = self._resolve(symbol)  # may itself follow a replaced segment
            if self._scratch is not scratch:
                out = self._adopt_buffer(out, scratch)
            rc = self._read(slot, gen, out)
            if rc == READ_OK:
                return out, False
            if rc == READ_GONE:
                continue
            if rc in (READ_CONTENDED, READ_WRITER_DEAD, READ_WRITER_DEAD_NO_COPY):
                followed = self._follow_replaced(out)  # the give-up path checks it too (LAYOUT.md 10)
                if followed is not None:
                    out = followed
                    continue
                if rc == READ_CONTENDED:
                    raise ReadContention(f"market {symbol!r} in {self.name}: no consistent copy within 10 ms")
                if allow_out_of_sync and rc == READ_WRITER_DEAD:
                    return out, True
                raise WriterDead(self._dead_message())
            if allow_out_of_sync:
                return out, False
            raise OutOfSync(self._out_of_sync_message(symbol, slot, gen))
        raise MarketNotFound(f"market {symbol!r} in {self.name} kept being replaced during the read")

    def _follow_replaced(self, out: SnapshotBuffer) -> SnapshotBuffer | None:
        """The buffer to read into after attaching to a newer file at the name, or None."""
        scratch = self._scratch
        return self._adopt_buffer(out, scratch) if self._reattach_if_replaced() else None

    def _adopt_buffer(self, out: SnapshotBuffer, old_scratch: SnapshotBuffer | None) -> SnapshotBuffer:
        """After following a replaced segment: our own scratch buffer is swapped for the new one; a
        caller's buffer of the old geometry cannot be refilled."""
        if out is old_scratch:
            return self._scratch
        if len(memoryview(out)) != self.geometry.slot_size or out.bids.shape[0] != self.geometry.depth:
            raise LayoutError(
                f"segment {self.name} was recreated with depth {self.geometry.depth}: "
                "take a new buffer from new_buffer()"
            )
        return out

    def _dead_message(self) -> str:
        state = self._seg.load_u32(HEADER.offset("state"))
        pid = self._seg.load_u32(HEADER.offset("writer_pid"))
        if state == State.STOPPED:
            return f"writer of {self.name} (pid {pid}) stopped"
        if state == State.RETIRED:
            return f"writer of {self.name} (pid {pid}) was replaced by a newer writer whose segment is not readable yet"
        return f"writer of {self.name} (pid {pid}) is dead: no process holds the segment lock"

    def _out_of_sync_message(self, symbol: str, slot: int, gen: int) -> str:
        buf = self.new_buffer()
        self._seg.read(slot, gen, buf, True)
        text = buf.message.decode(errors="replace")
        flags = _flag_names(buf.status)
        if self._seg.stale():
            info = self.info()
            age_s = (time.time_ns() - info.heartbeat_ns) / 1e9
            text = f"writer pid {info.writer_pid} is stuck: heartbeat {age_s:.1f} s old, limit {info.stale_after_ms / 1000:g} s" + (
                f"; {text}" if text else ""
            )
        return f"market {symbol!r} is out of sync: status {flags}" + (f" ({text})" if text else "")

    def _reattach_if_replaced(self) -> bool:
        """A writer with another geometry replaces the file: follow it when the new one is live."""
        try:
            st = os.stat(segment_path(self.group))
        except FileNotFoundError:
            return False
        if (st.st_dev, st.st_ino) == self._identity:
            return False
        old = (self._seg, self._mm, self._fd)
        try:
            self._attach()
        except SegmentError:
            return False
        seg, mm, fd = old
        seg.close()
        mm.close()
        os.close(fd)
        return True

    def snapshot(self, symbol: str, depth: int | None = None, *, allow_out_of_sync: bool = False) -> Snapshot:
        """A validated copy of ``symbol``'s top ``depth`` levels (default: all published).

        Raises MarketNotFound, OutOfSync / WriterDead (unless ``allow_out_of_sync``; a dead
        writer's last book then carries STALE), ReadContention."""
        # read_into's fast path inlined: snapshot() sits in hot loops too
        buf, dead = self._scratch, False
        if self._read_symbol(symbol, buf) != 0:
            buf, dead = self._read_slow(symbol, buf, allow_out_of_sync)
        update_id, event_ms, recv_ns, publish_ns, status, nb, na = buf.fields
        if depth is not None:
            nb, na = min(nb, depth), min(na, depth)
        if dead:
            status |= Status.STALE
        bids, asks = buf.bids, buf.asks
        # copying a whole array skips building a slice view first (the common, full-depth case)
        bids = bids.copy() if nb == len(bids) else bids[:nb].copy()
        asks = asks.copy() if na == len(asks) else asks[:na].copy()
        flags = _STATUS_CACHE.get(status) or Status(status)
        # tuple.__new__ skips NamedTuple's Python-level __new__
        return tuple.__new__(Snapshot, (symbol, bids, asks, update_id, event_ms, recv_ns, publish_ns, flags))

    def status(self, symbol: str) -> MarketStatus:
        """Status flags, message, counters and times of one market; never raises OutOfSync or
        WriterDead (a dead writer's markets carry STALE)."""
        buf = self.new_buffer()
        for _ in range(MAX_RESOLVE_ATTEMPTS):
            slot, gen = self._resolve(symbol)
            if len(memoryview(buf)) != self.geometry.slot_size:  # _resolve followed a replaced segment
                buf = self.new_buffer()
            rc = self._seg.read(slot, gen, buf, True)
            if rc == READ_GONE:
                continue
            if rc in (READ_CONTENDED, READ_WRITER_DEAD, READ_WRITER_DEAD_NO_COPY) and self._reattach_if_replaced():
                buf = self.new_buffer()
                continue
            if rc == READ_CONTENDED:
                raise ReadContention(f"market {symbol!r} in {self.name}: no consistent copy within 10 ms")
            if rc == READ_WRITER_DEAD_NO_COPY:
                raise WriterDead(self._dead_message() + f"; market {symbol!r} was left mid-write")
            dead = rc == READ_WRITER_DEAD and not self._seg.probe()
            status = buf.status | (Status.STALE if dead else 0)
            return MarketStatus(
                symbol=symbol,
                slot=slot,
                status=Status(status),
                message=buf.message.decode(errors="replace"),
                in_sync=is_in_sync(status),
                update_id=buf.update_id,
                event_time_ms=buf.event_time_ms,
                recv_time_ns=buf.recv_time_ns,
                publish_time_ns=buf.publish_time_ns,
                status_time_ns=buf.status_time_ns,
                n_bids=buf.n_bids,
                n_asks=buf.n_asks,
                counters=dict(zip(COUNTER_FIELDS, buf.counters)),
            )
        raise MarketNotFound(f"market {symbol!r} in {self.name} kept being replaced during the read")

    def best(self, symbol: str) -> tuple[Level | None, Level | None]:
        """(best bid, best ask) as (price, quantity), None for an empty side."""
        best: tuple[Level | None, Level | None] = self.read_into(symbol, self._scratch).best
        return best

    # ------------------------------------------------------------------ UNICORN-compatible

    def get_asks(self, symbol: str, limit_count: int | None = None, threshold_volume: float | None = None) -> list[list[float]]:
        """Asks as ``[[price, qty], ...]`` lowest first, trimmed like UNICORN's get_asks: see _trim."""
        buf = self.read_into(symbol, self._scratch)
        return _trim(buf.asks[: buf.n_asks].tolist(), limit_count, threshold_volume)

    def get_bids(self, symbol: str, limit_count: int | None = None, threshold_volume: float | None = None) -> list[list[float]]:
        """Bids as ``[[price, qty], ...]`` highest first, trimmed like UNICORN's get_bids."""
        buf = self.read_into(symbol, self._scratch)
        return _trim(buf.bids[: buf.n_bids].tolist(), limit_count, threshold_volume)

    # ------------------------------------------------------------------ waiting

    def wait_for_update(self, symbol: str | None = None, timeout: float = 1.0) -> bool:
        """Sleep until the writer publishes (any market, or ``symbol``'s slot changes); False on
        timeout. Sleeps on the segment's futex word; no spinning."""
        deadline = time.monotonic() + timeout
        word = self._seg.load_u32(self._notify_off)
        seq_off = -1
        if symbol is not None:
            entry = self._slots.get(symbol) or self._resolve(symbol)
            seq_off = self.geometry.slot_offset(entry[0])
            seq0 = self._seg.load_u64(seq_off)
        while True:
            if seq_off >= 0 and self._seg.load_u64(seq_off) != seq0:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            new = self._seg.wait(word, remaining)
            if seq_off < 0 and new != word:
                return True
            word = new

    # asyncio (ldc/shm/aio.py): one waiter thread in the process sleeps on every segment's futex word
    async def wait_for_update_async(self, symbol: str | None = None, timeout: float = 1.0) -> bool:
        """``wait_for_update`` for a coroutine: the event loop runs on while it waits."""
        from ldc.shm import aio

        return await aio.wait_for_update(self, symbol, timeout)

    def updates(self, symbols: Iterable[str], timeout: float = float("inf")) -> AsyncIterator[Snapshot]:
        """``async for snap in reader.updates(["BTCUSDT", ...])``: each market's latest snapshot as it changes
        (ends after ``timeout`` seconds without one)."""
        from ldc.shm import aio

        return aio.updates(self, symbols, timeout=timeout)


_STATUS_CACHE: Final[dict[int, Status]] = {value: Status(value) for value in range(1 << len(Status))}


def _trim(levels: list[list[float]], limit_count: int | None, threshold_volume: float | None) -> list[list[float]]:
    """UNICORN's trimming (manager._sort_depth_cache): without a threshold, the first
    ``limit_count`` levels (None: all). With one, levels are taken while the running notional
    (price * qty) stays <= threshold_volume, the first level always; then cut to limit_count."""
    if threshold_volume is None:
        return levels[:limit_count]
    total = 0.0
    kept: list[list[float]] = []
    for price, qty in levels:
        if price * qty + total <= threshold_volume or total == 0.0:
            kept.append([price, qty])
            total += price * qty
        else:
            break
    return kept[:limit_count]


def _flag_names(status: int) -> str:
    names = [flag.name or "" for flag in Status if status & flag]
    return "|".join(names) if names else "0 (no data yet)"


def _seqlock_magic_fence(mm: mmap.mmap) -> None:
    """Acquire-load the magic before the header is parsed, pairing with the writer's release store."""
    _seqlock.load_acquire_u64(mm, HEADER.offset("magic"))
