"""The shared-memory segment layout: the single table every offset and size derives from.

``docs/LAYOUT.md`` draws this table for consumers in any language and ``readers/c/ldc.h`` mirrors it
(``tests/test_shm_layout.py`` checks every field of the header against this module). Offsets are
never typed: each region is a list of fields, each offset is the previous offset plus the previous
size, and every field must land on its natural alignment.

Everything is little-endian. A segment is::

    +-------------------+  0
    | header            |  HEADER_SIZE bytes (3 cache-line pairs: identity, liveness, notify word)
    +-------------------+  DIRECTORY_OFFSET
    | directory         |  capacity x DIR_ENTRY_SIZE (symbol + generation per slot)
    +-------------------+  slots_offset (128-byte aligned)
    | slot 0            |  slot_size bytes each (128-byte aligned): slot header, bids, asks, message
    | slot 1 ...        |
    +-------------------+  stats_offset = slots_offset + capacity x slot_size (2.1)
    | feeder stats      |  FEEDER_STATS_SIZE bytes: the feeder's own counters and latency histogram
    +-------------------+  segment_size
"""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass
from typing import Final

# Identity
MAGIC_BYTES: Final = b"LDCDEPTH"  # the segment's first 8 bytes, so `head -c 8` shows what it is
MAGIC: Final = int.from_bytes(MAGIC_BYTES, "little")
VERSION_MAJOR: Final = 2  # a reader rejects any other major version (2.0: fcntl liveness lock, replace-only)
VERSION_MINOR: Final = 2  # minors only add fields in reserved space or past the end; fields never move (2.1: feeder stats, 2.2: notify_paced)
ENDIAN_MARKER: Final = 0x0102030405060708  # reads back as 0x0807060504030201 on a big-endian host

# Geometry
CACHE_LINE: Final = 64
SLOT_ALIGN: Final = 128  # two lines: the adjacent-line prefetcher pulls pairs, keep slots apart
ARRAY_ALIGN: Final = 64  # unaligned large copies hit a slow glibc path on some CPUs
LEVEL_SIZE: Final = 16  # one level: price float64, quantity float64
MESSAGE_SIZE: Final = 128  # per-slot UTF-8 status text, NUL-padded, at most MESSAGE_SIZE - 1 bytes
SYMBOL_SIZE: Final = 40  # directory symbol field, NUL-padded, at most SYMBOL_SIZE - 1 bytes
NAME_SIZE: Final = 64  # group name field in the header
EXCHANGE_SIZE: Final = 32  # exchange name field in the header
NO_ID: Final = -1  # update_id before the first publish
WRITER_LOCK_SIZE: Final = 64  # a glibc pthread_mutex_t (40 bytes on x86-64, 48 on arm64) in a line of its own
FUTEX_TID_MASK: Final = 0x3FFFFFFF  # Linux robust-futex ABI: the owner's TID; 0 once the kernel saw it die

# Defaults and limits
DEFAULT_DEPTH: Final = 20
DEFAULT_CAPACITY: Final = 256
MAX_DEPTH: Final = 5000
MAX_CAPACITY: Final = 65_536
DEFAULT_HEARTBEAT_INTERVAL_MS: Final = 1000
DEFAULT_STALE_AFTER_MS: Final = 5000  # readers flag STALE once the heartbeat is older than this
MIN_STALE_INTERVALS: Final = 2  # stale_after_ms must cover at least two heartbeat intervals
# notify_paced's window (2.2): a waiter on it wakes at most this often (the NATS relay's send cadence, docs/FANOUT.md)
DEFAULT_NOTIFY_PACED_US: Final = 700
MAX_NOTIFY_PACED_US: Final = 100_000  # the relay's longest window too (relay.MAX_COALESCE_US)
# Java 17 maps at most Integer.MAX_VALUE bytes in one MappedByteBuffer (LAYOUT.md, notes per language)
MAX_SEGMENT_SIZE: Final = 2**31 - 1

SEGMENT_PREFIX: Final = "ldc-"  # POSIX name /ldc-<group>, file /dev/shm/ldc-<group>
WAITERS_SUFFIX: Final = ".waiters"  # layout 1.x's reader-writable waiter file; 2.0 has none (ldc clean removes it)
LOCK_SUFFIX: Final = ".lock"  # /dev/shm/ldc-<group>.lock: writers' ownership lock, mode 0600 (readers cannot open it)
TEMP_SUFFIX: Final = ".new"  # /dev/shm/ldc-<group>.new-<token>: a segment being built, mode 0600 until linked
# The build file's name ends in a random token, so no other account can predict and pre-create it (a
# squatted fixed name stopped the group from starting). 2.0 writers up to this change used ".new" alone.
TEMP_TOKEN_BYTES: Final = 8
TEMP_NAME_RE: Final = re.compile(rf"{re.escape(TEMP_SUFFIX)}(?:-[0-9a-f]{{{2 * TEMP_TOKEN_BYTES}}})?")
GROUP_NAME_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,63}")
SHM_DIR: Final = "/dev/shm"
SEGMENT_MODE: Final = 0o640  # group-readable: consumers run as other users in the readers group
LOCK_MODE: Final = 0o600  # the ownership lock file: the feeders' user alone
BUILD_MODE: Final = 0o600  # a segment under construction: no reader may open (or lock) it yet


class State(enum.IntEnum):
    """Header ``state``. Zero never appears in a valid segment (magic is written after state)."""

    INITIALISING = 1  # never in a linked 2.x file (files are built under a private name); kept reserved
    RUNNING = 2  # a writer is attached and publishing
    STOPPED = 3  # the writer closed cleanly; data is the last published
    RETIRED = 4  # a newer writer replaced this file (its successor stores this before linking its own)


class Status(enum.IntFlag):
    """Slot ``status`` flags, set by the writer on every publish and by set_status."""

    SYNCED = 1 << 0  # the levels are exactly the exchange's book at update_id
    STALE = 1 << 1  # data is old: the writer restarted or stopped receiving (readers add it for a dead writer)
    RESYNCING = 1 << 2  # a gap was seen; a new snapshot is being fetched
    CROSSED = 1 << 3  # best bid >= best ask after an update: a fault, a resync follows
    ERROR = 1 << 4  # the market failed (e.g. unknown symbol); the slot message says why
    INCOMPLETE = 1 << 5  # the known levels no longer cover the published depth (holes possible)
    REFRESHING = 1 << 6  # a shadow-book refresh is running; the book stays synced meanwhile


IN_SYNC_MASK: Final = Status.SYNCED | Status.STALE | Status.RESYNCING | Status.CROSSED | Status.ERROR | Status.INCOMPLETE


def is_in_sync(status: int) -> bool:
    """True when a reader may trust the levels: SYNCED and none of the fault flags."""
    return (status & IN_SYNC_MASK) == Status.SYNCED


class Counter(enum.IntEnum):
    """Per-slot counters (u64, cumulative for the slot's market). Values index COUNTER_FIELDS."""

    UPDATES = 0  # publishes into the slot (the writer bumps it on every publish)
    RESYNCS = 1  # full resyncs (new snapshot after a gap, crossed book, or error)
    GAPS = 2  # update-id gaps detected
    IGNORED = 3  # diffs dropped as duplicate or older than the book
    SNAPSHOTS = 4  # REST snapshots loaded (initial, resync and refresh)
    AUDIT_MISMATCHES = 5  # levels that differed in refresh audits (shadow vs live book), summed


COUNTER_FIELDS: Final = ("updates", "resyncs", "gaps", "ignored", "snapshots", "audit_mismatches")

# (type name -> size); the same names are used in docs/LAYOUT.md and readers/c/ldc.h
TYPE_SIZES: Final = {"u8": 1, "u16": 2, "u32": 4, "i32": 4, "u64": 8, "i64": 8, "f64": 8, "char": 1}


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # a TYPE_SIZES key
    count: int  # array length; 1 for a scalar
    offset: int
    doc: str

    @property
    def size(self) -> int:
        return TYPE_SIZES[self.type] * self.count


@dataclass(frozen=True)
class Region:
    name: str
    size: int
    fields: tuple[Field, ...]

    def __getitem__(self, name: str) -> Field:
        for field in self.fields:
            if field.name == name:
                return field
        raise KeyError(f"no field {name!r} in {self.name}")

    def offset(self, name: str) -> int:
        return self[name].offset


FieldSpec = tuple[str, str, int, str]  # name, type, count, doc


def _region(name: str, size: int, specs: list[FieldSpec]) -> Region:
    fields: list[Field] = []
    offset = 0
    for fname, ftype, count, doc in specs:
        align = TYPE_SIZES[ftype]
        if offset % align:
            raise AssertionError(f"{name}.{fname} at offset {offset} is not {align}-byte aligned")
        fields.append(Field(fname, ftype, count, offset, doc))
        offset += TYPE_SIZES[ftype] * count
    if offset != size:
        raise AssertionError(f"{name} fields end at {offset}, expected {size}")
    return Region(name, size, tuple(fields))


HEADER: Final = _region(
    "header",
    384,
    [
        # --- line pair 0: identity and geometry (written once, before magic) ---
        ("magic", "u64", 1, 'ASCII "LDCDEPTH" (0x485450454443444C); 0 until the writer has filled the header, then written last (release store)'),
        ("version_major", "u16", 1, "layout major version; readers reject any other"),
        ("version_minor", "u16", 1, "layout minor version; readers accept any"),
        ("header_size", "u32", 1, "bytes of header (384 in 2.0)"),
        ("endian_marker", "u64", 1, "0x0102030405060708 (bytes 08 07 06 05 04 03 02 01: the segment is little-endian)"),
        ("segment_size", "u64", 1, "bytes the segment must have; map at least this many"),
        ("directory_offset", "u32", 1, "byte offset of directory entry 0"),
        ("directory_entry_size", "u32", 1, "bytes per directory entry (64 in 2.0)"),
        ("slots_offset", "u32", 1, "byte offset of slot 0 (128-byte aligned)"),
        ("slot_size", "u32", 1, "bytes per slot (a multiple of 128)"),
        ("capacity", "u32", 1, "number of directory entries and of slots"),
        ("depth", "u32", 1, "levels per side each slot can hold"),
        ("bids_offset", "u32", 1, "offset of the bids array inside a slot (a multiple of 8; ldc writes multiples of 64)"),
        ("asks_offset", "u32", 1, "offset of the asks array inside a slot (a multiple of 8; ldc writes multiples of 64)"),
        ("message_offset", "u32", 1, "offset of the status message inside a slot"),
        ("message_size", "u32", 1, "bytes of the status message field"),
        ("heartbeat_interval_ms", "u32", 1, "the writer refreshes heartbeat_ns at least this often"),
        ("stale_after_ms", "u32", 1, "readers flag every market STALE once heartbeat_ns is older than this"),
        ("exchange", "char", EXCHANGE_SIZE, "exchange name, UTF-8, NUL-padded (e.g. binance.com)"),
        ("reserved1", "u8", 16, "zero"),
        # --- line pair 1: liveness (identity written once before magic; heartbeat every interval) ---
        ("writer_pid", "u32", 1, "pid of the file's writer (informational; liveness is the fcntl lock probe)"),
        ("state", "u32", 1, "2 running, 3 stopped, 4 retired (replaced by a newer file)"),
        ("start_time_ns", "i64", 1, "CLOCK_REALTIME ns when the file's writer created it"),
        ("instance_id", "u64", 1, "random non-zero id of the file's writer; identifies the file"),
        ("heartbeat_ns", "i64", 1, "CLOCK_REALTIME ns of the writer's last heartbeat"),
        ("dir_seq", "u64", 1, "directory seqlock counter: odd while the directory changes"),
        ("takeovers", "u32", 1, "writers of this group before this file's, carried from file to file"),
        ("market_count", "u32", 1, "active directory entries; consistent with the entries only when read between the two dir_seq loads"),
        ("group", "char", NAME_SIZE, "group name, UTF-8, NUL-padded"),
        ("reserved2", "u8", 16, "zero"),
        # --- line pair 2: the notification futex words (only the writer writes them) on a line of their own ---
        ("notify", "u32", 1, "incremented by the writer after each publish batch; futex word"),
        ("notify_paced", "u32", 1, "incremented by the writer after a publish batch at least notify_paced_us after its last "
         "increment (2.2); futex word: at most one wake-up a window, for waiters that coalesce (the NATS relay)"),
        ("notify_paced_us", "u32", 1, "the writer's window for notify_paced in µs, written once before magic; 0: not paced "
         "(a 2.0 / 2.1 writer's zero)"),
        ("reserved3", "u8", 52, "zero"),
        # --- its own line: loaded by readers on every read, never written while the writer lives ---
        ("writer_lock", "u8", WRITER_LOCK_SIZE, "the writer's robust futex: u32 at +0 holds the writer thread's TID (bits 0-29) while it lives; the kernel clears it and sets bit 30 when that thread dies"),
    ],
)

DIR_ENTRY: Final = _region(
    "directory entry",
    64,
    [
        ("symbol", "char", SYMBOL_SIZE, "market symbol, UTF-8, NUL-padded; empty when free"),
        ("gen", "u64", 1, "market generation; 0 when free; equals the slot's gen while active"),
        ("reserved", "u8", 16, "zero"),
    ],
)

SLOT_HEADER: Final = _region(
    "slot header",
    128,
    [
        ("seq", "u64", 1, "slot seqlock counter: odd while the writer writes the slot"),
        ("gen", "u64", 1, "market generation; 0 when the slot is free"),
        ("update_id", "i64", 1, "the venue's last update id of the book (Binance `u`, OKX `seqId`, Bybit `u`, HTX `seqNum` "
         "(`depth.step0`: `version`), Coinbase `sequence_num`, Kraken the message timestamp in µs: `docs/VENUES.md`); "
         "-1 before the first"),
        ("event_time_ms", "i64", 1, "exchange event time of that update, ms since the Unix epoch (Binance E)"),
        ("recv_time_ns", "i64", 1, "CLOCK_REALTIME ns when the feeder received that update"),
        ("publish_time_ns", "i64", 1, "CLOCK_REALTIME ns when the writer published the slot"),
        ("status", "u32", 1, "status flags (Status)"),
        ("n_bids", "u32", 1, "valid bid levels; clamp to depth before use"),
        ("n_asks", "u32", 1, "valid ask levels; clamp to depth before use"),
        ("reserved0", "u32", 1, "zero"),
        ("updates", "u64", 1, "counter: publishes"),
        ("resyncs", "u64", 1, "counter: full resyncs"),
        ("gaps", "u64", 1, "counter: update-id gaps"),
        ("ignored", "u64", 1, "counter: duplicate or old diffs dropped"),
        ("snapshots", "u64", 1, "counter: REST snapshots loaded"),
        ("audit_mismatches", "u64", 1, "counter: levels differing in refresh audits, summed"),
        ("status_time_ns", "i64", 1, "CLOCK_REALTIME ns when status and message were last set outside a publish (market added, carried into a new file, status change)"),
        ("reserved1", "u64", 1, "zero"),
    ],
)

# Receive-to-publish latency buckets (upper bounds, ns, inclusive), fixed so a histogram never needs
# a lock to resize; the last one is +Inf (u64 max). 5 us .. 1 s covers a healthy read (tens of us) up
# to a GIL stall or a swapped-out feeder.
LATENCY_BOUNDS_NS: Final = (
    5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000,
    2_000_000, 5_000_000, 10_000_000, 20_000_000, 50_000_000, 100_000_000, 1_000_000_000, 2**64 - 1,
)  # fmt: skip
LATENCY_BUCKETS: Final = len(LATENCY_BOUNDS_NS)

# (field, help) of the feeder-stats counters: each only goes up while its writer lives
STATS_COUNTERS: Final = (
    ("rest_429", "REST answers with status 429 (rate limited)"),
    ("rest_418", "REST answers with status 418 (IP banned)"),
    ("ws_opened", "websocket connections opened"),
    ("ws_reconnects", "websocket connections lost (closed other than by stop or rollover); each is reopened"),
    ("frames", "websocket data frames received"),
    ("record_written", "frames and snapshots the recorder wrote"),
    ("record_dropped", "frames the recorder dropped (its queue was full or it had stopped)"),
    ("record_errors", "recorder write errors (the recording stopped; the books went on) and compressions that failed (their spool kept)"),
)
# gauges: the last value stored
STATS_GAUGES: Final = (
    ("ws_open", "websocket connections open now"),
    ("rest_weight_used", "REST weight used in the exchange's window, from its last answer's header"),
    ("rest_weight_limit", "REST weight budget per window the feeder keeps to"),
)

FEEDER_STATS: Final = _region(
    "feeder stats",
    384,
    [
        ("stats_size", "u32", 1, "bytes of this block (384 in 2.1); a reader uses no field past it"),
        ("latency_buckets", "u32", 1, f"entries of latency_bounds_ns and latency_counts ({LATENCY_BUCKETS} in 2.1)"),
        *[(name, "u64", 1, f"counter: {doc}") for name, doc in STATS_COUNTERS],
        *[(name, "u64", 1, f"gauge: {doc}") for name, doc in STATS_GAUGES],
        ("latency_sum_ns", "u64", 1, "counter: sum of every receive-to-publish latency observed, ns, each capped at 60 s (wraps at 2^64)"),
        ("reserved", "u8", 24, "zero"),
        ("latency_bounds_ns", "u64", LATENCY_BUCKETS, "bucket upper bounds, ns, inclusive, ascending; the last is 2^64-1 (+Inf); written once"),
        ("latency_counts", "u64", LATENCY_BUCKETS, "counters: observations in each bucket (not cumulative)"),
    ],
)
FEEDER_STATS_SIZE: Final = FEEDER_STATS.size
STATS_MIN_MINOR: Final = 1  # the first minor version with the block

HEADER_SIZE: Final = HEADER.size
DIRECTORY_OFFSET: Final = HEADER_SIZE
DIR_ENTRY_SIZE: Final = DIR_ENTRY.size
SLOT_HEADER_SIZE: Final = SLOT_HEADER.size
COUNTER_OFFSETS: Final = tuple(SLOT_HEADER.offset(name) for name in COUNTER_FIELDS)


def align_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


@dataclass(frozen=True)
class Geometry:
    """Sizes and offsets of one segment, derived from (depth, capacity)."""

    depth: int
    capacity: int
    header_size: int
    directory_offset: int
    directory_entry_size: int
    slots_offset: int
    slot_size: int
    bids_offset: int
    asks_offset: int
    message_offset: int
    message_size: int
    segment_size: int
    stats_offset: int = 0  # the feeder-stats block (2.1); 0: the segment has none (a 2.0 writer's)

    @classmethod
    def for_size(cls, *, depth: int, capacity: int) -> Geometry:
        if not 1 <= depth <= MAX_DEPTH:
            raise ValueError(f"depth must be 1..{MAX_DEPTH}, got {depth}")
        if not 1 <= capacity <= MAX_CAPACITY:
            raise ValueError(f"capacity must be 1..{MAX_CAPACITY}, got {capacity}")
        geometry = cls._derive(depth, capacity)
        if geometry.segment_size > MAX_SEGMENT_SIZE:
            raise ValueError(
                f"depth {depth} x capacity {capacity} makes a {geometry.segment_size}-byte segment; "
                f"at most {MAX_SEGMENT_SIZE} bytes (2 GiB - 1, what a Java reader can map)"
            )
        return geometry

    @classmethod
    def _derive(cls, depth: int, capacity: int) -> Geometry:
        bids = align_up(SLOT_HEADER_SIZE, ARRAY_ALIGN)
        asks = align_up(bids + depth * LEVEL_SIZE, ARRAY_ALIGN)
        message = align_up(asks + depth * LEVEL_SIZE, ARRAY_ALIGN)
        slot_size = align_up(message + MESSAGE_SIZE, SLOT_ALIGN)
        slots = align_up(DIRECTORY_OFFSET + capacity * DIR_ENTRY_SIZE, SLOT_ALIGN)
        return cls(
            depth=depth,
            capacity=capacity,
            header_size=HEADER_SIZE,
            directory_offset=DIRECTORY_OFFSET,
            directory_entry_size=DIR_ENTRY_SIZE,
            slots_offset=slots,
            slot_size=slot_size,
            bids_offset=bids,
            asks_offset=asks,
            message_offset=message,
            message_size=MESSAGE_SIZE,
            segment_size=slots + capacity * slot_size + FEEDER_STATS_SIZE,
            stats_offset=slots + capacity * slot_size,
        )

    def slot_offset(self, slot: int) -> int:
        return self.slots_offset + slot * self.slot_size

    def dir_entry_offset(self, slot: int) -> int:
        return self.directory_offset + slot * self.directory_entry_size

    def c_layout(self) -> dict[str, int]:
        """What the C extension needs: geometry plus the field offsets it touches."""
        fields = {f"slot_{f.name}": f.offset for f in SLOT_HEADER.fields}
        names = ("magic", "state", "notify", "notify_paced", "notify_paced_us", "dir_seq", "heartbeat_ns", "stale_after_ms",
                 "writer_lock")
        fields.update({f"hdr_{name}": HEADER.offset(name) for name in names})
        fields.update(dir_symbol=DIR_ENTRY.offset("symbol"), dir_symbol_size=SYMBOL_SIZE, dir_gen=DIR_ENTRY.offset("gen"))
        fields.update(slot_header_size=SLOT_HEADER_SIZE, segment_size=self.segment_size)
        for name in ("depth", "capacity", "directory_offset", "directory_entry_size", "slots_offset", "slot_size"):
            fields[name] = getattr(self, name)
        for name in ("bids_offset", "asks_offset", "message_offset", "message_size"):
            fields[name] = getattr(self, name)
        return fields


def segment_name(group: str) -> str:
    """POSIX shm name of a group's segment (``/ldc-<group>``); rejects names that could escape it."""
    if not GROUP_NAME_RE.fullmatch(group):
        raise ValueError(f"group name must match {GROUP_NAME_RE.pattern}, got {group!r}")
    return f"/{SEGMENT_PREFIX}{group}"


def waiters_name(group: str) -> str:
    return segment_name(group) + WAITERS_SUFFIX


def lock_path(group: str) -> str:
    return SHM_DIR + segment_name(group) + LOCK_SUFFIX


def temp_path(group: str, token: str = "") -> str:
    """The build file ``/dev/shm/ldc-G.new-<token>`` (``token`` hex); without a token the fixed name
    earlier 2.0 writers used, which ``ldc clean`` and a new writer still remove when it is theirs."""
    return SHM_DIR + segment_name(group) + TEMP_SUFFIX + (f"-{token}" if token else "")


def temp_paths(group: str) -> list[str]:
    """Every build file of ``group`` in /dev/shm, of any owner (the fixed and the random names)."""
    prefix = segment_name(group).lstrip("/")
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return []
    return sorted(f"{SHM_DIR}/{n}" for n in names if n.startswith(prefix) and TEMP_NAME_RE.fullmatch(n[len(prefix):]))


def segment_path(group: str) -> str:
    return SHM_DIR + segment_name(group)


def waiters_path(group: str) -> str:
    return SHM_DIR + waiters_name(group)
