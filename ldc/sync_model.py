"""BookSync's vocabulary: its states, the events it takes, the actions it returns, its configuration and counters.

Data only (``ldc.sync`` is the engine, ``ldc.sync_table`` its transitions); everything here is re-exported by
``ldc.sync``, which callers import.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Callable, NamedTuple, Union

from ldc.depth import Book, DepthDiff, DepthSnapshot
from ldc.errors import ConfigError
from ldc.venues.base import SequenceRule, SnapshotSource

# Limits
MAX_BUFFERED_DIFFS = 10_000  # per market, while waiting for a snapshot (live or shadow)
# Backoff of snapshot retries after a failure, doubling from MIN to CAP
SNAPSHOT_RETRY_MIN_S = 0.5
SNAPSHOT_RETRY_CAP_S = 30.0
# A refresh answered by snapshots older than the book (a lagging REST cache or proxy re-serving an old
# answer): the first is asked again at once (the documented race of a request and the stream), the next
# ones after SNAPSHOT_RETRY_MIN_S doubling, and the refresh is abandoned after this many answers, until
# the next refresh interval. Measured before the bound: 192 requests in 0.12 s, a minute's weight gone.
MAX_TOO_OLD_SNAPSHOTS_PER_REFRESH = 6
# Snapshot requests one market may make in any minute to re-ask after answers older than its book (live
# and refresh); a refresh abandoned for such answers is started again no sooner than REFRESH_WINDOW_S later.
# So with a lagging source a market spends at most (2 + this) snapshot weights a minute, whatever the
# refresh interval; refreshes that meet their stream (coverage, audits) are not held back.
MAX_TOO_OLD_REASKS_PER_MIN = 6
REFRESH_WINDOW_S = 60.0
# Live snapshots older than the buffered stream asked again at once, while each answer is newer than the
# one before (the stream keeps overtaking the request); an answer that did not advance waits.
MAX_LIVE_TOO_OLD_AT_ONCE = 3
# Defaults
DEFAULT_STALE_AFTER_S = 10.0
DEFAULT_REFRESH_INTERVAL_S = 1800.0
# Snapshot limit ladder (SyncConfig.escalation_limits): a book that loses coverage this soon after its
# snapshot was installed asks for the next larger limit; one that stays covered this long steps down a
# limit. Replaying the captures at depth 20 (scripts/bench_sync_coverage.py), USD-M BTCUSDT lost coverage
# every ~8 s on limit 100 and every ~60 s on limit 500; a quiet market keeps a limit-100 book for minutes.
ESCALATE_IF_UNCOVERED_WITHIN_S = 60.0
STEP_DOWN_AFTER_COVERED_S = 1800.0  # one default refresh interval: that refresh is then the cheaper one


class SyncState(IntEnum):
    WAITING_FOR_DIFF = 0  # nothing buffered: a snapshot is fetched once the first diff arrives
    BUFFERING = 1  # diffs buffered, a snapshot fetched or awaited; no book
    SYNCED = 2  # the book is the exchange's book at ``update_id``, its top ``depth`` known exactly
    UNCOVERED = 3  # exact levels, but the top ``depth`` may have holes: a refresh is under way
    STALE = 4  # no diff for ``stale_after_s``: resumes on the next diff that continues the book
    DISCONNECTED = 5  # the connection dropped: resumes on a diff that continues the book, else resyncs


BOOK_STATES = (SyncState.SYNCED, SyncState.UNCOVERED, SyncState.STALE)  # a book exists and diffs continue it


class SnapshotPurpose(IntEnum):
    LIVE = 1  # (re)build the live book
    SHADOW = 2  # periodic refresh / audit: build a shadow book beside the live one
    STREAM = 3  # a snapshot the venue sent in the stream: it replaces the book (SnapshotSource STREAM*)


class OutOfSyncReason(IntEnum):
    GAP = 1
    CROSSED = 2
    BUFFER_OVERFLOW = 3
    STALE = 4
    DISCONNECTED = 5
    UNCOVERED = 6
    CHECKSUM = 7  # the book's checksum differs from the venue's
    FAULT = 8  # the engine raised while handling an event: the book may be half-applied (fail closed)


# ---------------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True, slots=True)
class SnapshotResult:
    snapshot: DepthSnapshot
    purpose: SnapshotPurpose


@dataclass(frozen=True, slots=True)
class SnapshotFailed:
    purpose: SnapshotPurpose
    reason: str
    retry_after_s: float = 0.0  # the exchange's Retry-After, if any


@dataclass(frozen=True, slots=True)
class Tick:
    """Timer event: feed one every ~0.1-1 s; staleness, retries and refreshes happen on ticks."""


@dataclass(frozen=True, slots=True)
class Disconnect:
    """The connection carrying this market's stream dropped (feed it to every market on it)."""


@dataclass(frozen=True, slots=True)
class MessageLost:
    """A message of this market's stream could not be read (malformed): what it changed is unknown. A gap,
    for venues whose sequence would not show it (Kraken has none; its checksum covers only the top 10)."""


TICK = Tick()
DISCONNECT = Disconnect()
MESSAGE_LOST = MessageLost()
# a diff is fed as itself: a DepthDiff, or the C parser's ParsedDiff (same attributes)
Event = Union[DepthDiff, SnapshotResult, SnapshotFailed, Tick, Disconnect, MessageLost]


# ---------------------------------------------------------------------------------------------
# Actions


@dataclass(frozen=True, slots=True)
class FetchSnapshot:
    limit: int
    purpose: SnapshotPurpose


@dataclass(frozen=True, slots=True)
class Publish:
    top_changed: bool  # False: only the update id and times advance, the top N is unchanged


@dataclass(frozen=True, slots=True)
class MarkOutOfSync:
    reason: OutOfSyncReason


@dataclass(frozen=True, slots=True)
class Resubscribe:
    reason: OutOfSyncReason


@dataclass(frozen=True, slots=True)
class Notice:
    """Say ``text`` in the market's slot message; its flags stay those of the state ("" clears it)."""

    text: str


Action = Union[FetchSnapshot, Publish, MarkOutOfSync, Resubscribe, Notice]
Actions = tuple[Action, ...]

NO_ACTIONS: Actions = ()
PUBLISH_CHANGED: Actions = (Publish(True),)  # preallocated: the hot path allocates no action
PUBLISH_UNCHANGED: Actions = (Publish(False),)


# ---------------------------------------------------------------------------------------------
# Configuration and counters


class FastPath(NamedTuple):
    """BookSync.fast_path(): a diff continuing the book is applied, recorded when ``recording`` (a refresh is
    pending: at most ``record_limit`` diffs, handed back with ``BookSync.adopt``), and published with ``state``'s
    flags."""

    state: SyncState  # SYNCED or UNCOVERED
    recording: bool
    record_limit: int  # diffs the pending refresh may still record (0 when not recording)


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncConfig:
    rule: SequenceRule
    depth: int  # levels per side published; the coverage guard keeps these exact
    snapshot_limit: int  # ``limit`` of the first snapshot request (see venues.binance.snapshot_limit_for)
    # Snapshot limit ladder: larger allowed limits, ascending, for markets that keep losing coverage
    # (see venues.binance.snapshot_ladder); empty: every request uses ``snapshot_limit``
    escalation_limits: tuple[int, ...] = ()
    escalate_within_s: float = ESCALATE_IF_UNCOVERED_WITHIN_S
    step_down_after_s: float = STEP_DOWN_AFTER_COVERED_S
    # Timeouts
    stale_after_s: float = DEFAULT_STALE_AFTER_S
    refresh_interval_s: float | None = DEFAULT_REFRESH_INTERVAL_S  # None: no periodic refresh
    # Venue policies: where books start, and whether a book's checksum is the one the venue sent (called with a
    # diff's or a snapshot's non-zero ``checksum``; a mismatch resyncs the market). The rule is ``rule`` above.
    snapshot_source: SnapshotSource = SnapshotSource.REST
    checksum: Callable[[Book, int], bool] | None = None
    # The caller's C HotPath verifies ``checksum`` itself (``HotPath.set_checksum``, the venue's ``hot_checksum``):
    # ``BookSync.fast_path`` then hands the book over although the venue sends checksums; one not confirmed in C
    # comes back through ``BookSync.checksum_fault``, which verifies it here
    checksum_in_c: bool = False
    # The venue keeps the book whole to ``snapshot_limit`` in the stream (``StreamVenue.keeps_window_whole``,
    # Kraken): the top ``depth`` is always known, so the coverage guard (a REST snapshot's deepest price) is off
    window_kept_whole: bool = False
    # Limits
    max_buffered_diffs: int = MAX_BUFFERED_DIFFS
    max_too_old_reasks_per_min: int = MAX_TOO_OLD_REASKS_PER_MIN

    def __post_init__(self) -> None:
        for name, value, least in (("depth", self.depth, 1), ("snapshot_limit", self.snapshot_limit, self.depth),
                                   ("max_buffered_diffs", self.max_buffered_diffs, 1),
                                   ("max_too_old_reasks_per_min", self.max_too_old_reasks_per_min, 1)):  # fmt: skip
            if value < least:
                raise ConfigError(f"{name} {value} too small, expected at least {least}")
        ladder = (self.snapshot_limit, *self.escalation_limits)
        if any(lower >= higher for lower, higher in zip(ladder, ladder[1:])):
            raise ConfigError(f"escalation_limits {list(self.escalation_limits)} not ascending above "
                              f"snapshot_limit {self.snapshot_limit}, expected each larger than the one before")  # fmt: skip
        for period, seconds in (("stale_after_s", self.stale_after_s), ("escalate_within_s", self.escalate_within_s),
                                ("step_down_after_s", self.step_down_after_s)):  # fmt: skip
            if not seconds > 0:
                raise ConfigError(f"{period} {seconds} too small, expected more than 0")
        if self.window_kept_whole and self.snapshot_source is not SnapshotSource.STREAM:
            raise ConfigError(f"window_kept_whole needs a stream snapshot source, found {self.snapshot_source.value} "
                              "(a REST snapshot's limit is what it covers)")  # fmt: skip
        if self.refresh_interval_s is not None and not self.refresh_interval_s > 0:
            raise ConfigError(f"refresh_interval_s {self.refresh_interval_s} too small, expected more than 0 or None")


@dataclass(frozen=True, slots=True)
class SyncCounters:
    diffs_applied: int
    diffs_ignored: int  # duplicate or old diffs (never a gap)
    gaps: int
    resyncs: int
    snapshots: int  # snapshot requests issued (live and shadow)
    snapshots_too_old: int
    snapshot_failures: int
    buffer_overflows: int
    audits: int
    audit_differences: int  # levels differing within the covered depth, summed over audits
    last_audit_differences: int  # the health figure: levels differing at the last audit
    audit_faults: int  # audits whose published top N differed: the live book was wrong
    limit_escalations: int  # times the snapshot limit went up a step (coverage lost soon after a snapshot)
    snapshot_limit: int  # the limit of the next snapshot request


BookFactory = Callable[[], Book]
