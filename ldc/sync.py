"""Per-market sync of a local book with a venue's depth stream. Sans-I/O: no sockets, no clock.

The venue's differences arrive as policies in :class:`SyncConfig` (``ldc.venues``): the sequence rule
(decided in one place, ``ldc.venues.base.verdict``), the snapshot source (REST joined to the stream, or the
stream's own snapshot), an optional checksum.

One :class:`BookSync` per market. The caller feeds events and carries out the actions returned::

    actions = sync.feed(event, now)      # event: a diff, SnapshotResult, SnapshotFailed, TICK, DISCONNECT
    actions = sync.on_diff(diff, now)    # the same for a diff, without the dispatch (hot path)

In the SYNCED state ``on_diff`` is a dedicated fast method returning the preallocated
``PUBLISH_CHANGED`` / ``PUBLISH_UNCHANGED`` tuples (compare with ``is``); ``state``, ``update_id``,
``book`` and the counters (``counters()``) are plain attributes the caller reads after each call.

Actions: :class:`FetchSnapshot` (GET the REST snapshot with ``limit`` and feed back a
:class:`SnapshotResult` or :class:`SnapshotFailed` with the same ``purpose``), :class:`Publish` (write
the top N of ``sync.book`` with the status of ``sync.state``), :class:`MarkOutOfSync` (write the status
now: readers must stop trusting the book), :class:`Resubscribe` (resubscribe this market's stream).

Rules of a REST-snapshot venue, as Binance documents them (binance-spot-api-docs web-socket-streams.md
"How to manage a local order book correctly",
2025-11-12; derivatives "How to manage a local order book correctly" for USD-M and COIN-M):

- Buffer diffs; fetch a snapshot; if its ``lastUpdateId`` is below the ``U`` of the first buffered
  diff, the snapshot is older than the stream: fetch again.
- Spot: drop buffered diffs with ``u <= lastUpdateId``; afterwards a diff with ``u <=`` book id is old
  (ignored and counted: the document says ``u <``, ``u ==`` is the last applied diff again), one with
  ``U >`` book id + 1 is a gap; any other is applied and the book id becomes ``u``.
- Futures: drop buffered diffs with ``u < lastUpdateId``; the first kept one must have
  ``U <= lastUpdateId <= u`` (else fetch again); afterwards ``pu`` must equal the book id, else it is a
  gap, unless ``u <=`` book id (a duplicate or old diff: ignored and counted, never a gap).
- A gap or a crossed book resyncs this market alone; a buffer overflow keeps the newest diff, so
  the snapshot in flight will be older than the stream and is fetched again.

On top of the documents: staleness (no diff for ``stale_after_s``), the coverage guard (when the
book no longer knows its top ``depth`` levels exactly, flag it and refresh), and the periodic refresh
that is an audit: a shadow book is synced from a new snapshot beside the live one, compared with it at
the same update id, and replaces it with no gap for readers. A snapshot exactly at the book's update id
(refresh, or a live one for a flagged book) is swapped in at once: on an idle stream no diff comes to join it.

Snapshot limits climb a ladder (``SyncConfig.escalation_limits``): the first request of a market uses the
cheap ``snapshot_limit``, so a cold start of many markets costs what it always did; a book that loses
coverage within ``escalate_within_s`` of its snapshot joining asks the next limit for its refresh (and any
later request), and a book covered for ``step_down_after_s`` steps one limit down. ``snapshot_limit``
(an attribute) is the limit of the next request.

Named parts, one module each: ``sync_table`` (the transitions: state x trigger -> handler, next states; every
event but a hot-path diff goes through it), ``sync_model`` (states, events, actions, configuration),
``sync_shadow`` (the shadow audit), ``sync_ladder`` (the snapshot limit ladder), ``sync_fetch`` (the live fetch:
retries, backoff, the re-ask budget); the sequence rule is ``venues.base.verdict`` / ``join_index``.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

from ldc.depth import NO_ID, Book, DepthDiff, DepthSnapshot
from ldc.sync_fetch import LiveFetch, too_old_delay_s
from ldc.sync_ladder import SnapshotLadder
from ldc.sync_model import (
    BOOK_STATES,
    DEFAULT_REFRESH_INTERVAL_S as DEFAULT_REFRESH_INTERVAL_S,
    DEFAULT_STALE_AFTER_S as DEFAULT_STALE_AFTER_S,
    DISCONNECT,
    ESCALATE_IF_UNCOVERED_WITHIN_S as ESCALATE_IF_UNCOVERED_WITHIN_S,
    MAX_BUFFERED_DIFFS,
    MAX_LIVE_TOO_OLD_AT_ONCE as MAX_LIVE_TOO_OLD_AT_ONCE,
    MAX_TOO_OLD_REASKS_PER_MIN as MAX_TOO_OLD_REASKS_PER_MIN,
    MAX_TOO_OLD_SNAPSHOTS_PER_REFRESH as MAX_TOO_OLD_SNAPSHOTS_PER_REFRESH,
    MESSAGE_LOST,
    NO_ACTIONS,
    PUBLISH_CHANGED,
    PUBLISH_UNCHANGED,
    REFRESH_WINDOW_S as REFRESH_WINDOW_S,
    SNAPSHOT_RETRY_CAP_S as SNAPSHOT_RETRY_CAP_S,
    SNAPSHOT_RETRY_MIN_S as SNAPSHOT_RETRY_MIN_S,
    STEP_DOWN_AFTER_COVERED_S as STEP_DOWN_AFTER_COVERED_S,
    TICK,
    Action,
    Actions,
    BookFactory,
    Disconnect,
    Event,
    FastPath,
    FetchSnapshot,
    MarkOutOfSync,
    MessageLost,
    Notice,
    OutOfSyncReason,
    Publish,
    Resubscribe,
    SnapshotFailed,
    SnapshotPurpose,
    SnapshotResult,
    SyncConfig,
    SyncCounters,
    SyncState,
    Tick,
)
from ldc.sync_shadow import ShadowRefresh, audit
from ldc.sync_table import TRIGGER_OF_VERDICT, Do, TransitionError, Trigger, step
from ldc.sync_shadow import _count_differences as _count_differences  # the audit's count (test_fastbook)
from ldc.sync_shadow import _diff_count as _diff_count
from ldc.venues.base import JoinWait, SequenceRule, SnapshotSource, Verdict, hot_path_links_prev, join_index, verdict

__all__ = [
    "BOOK_STATES",
    "DISCONNECT",
    "MAX_BUFFERED_DIFFS",
    "MESSAGE_LOST",
    "NO_ACTIONS",
    "PUBLISH_CHANGED",
    "PUBLISH_UNCHANGED",
    "TICK",
    "Action",
    "Actions",
    "BookFactory",
    "BookSync",
    "Disconnect",
    "Event",
    "FastPath",
    "FetchSnapshot",
    "MarkOutOfSync",
    "MessageLost",
    "Notice",
    "OutOfSyncReason",
    "Publish",
    "Resubscribe",
    "SequenceRule",
    "SnapshotFailed",
    "SnapshotPurpose",
    "SnapshotResult",
    "SyncConfig",
    "SyncCounters",
    "SyncState",
    "Tick",
]

logger = logging.getLogger("ldc.sync")


class BookSync:
    """The sync state machine of one market. ``book_factory`` makes an empty book (``OrderBook``,
    ``FastBook``...) whose ``apply_diff`` reports changes within ``config.depth``."""

    __slots__ = (
        "symbol", "config", "state", "book", "update_id", "on_diff",
        "_factory", "_futures", "_rule", "_stream", "_stream_only", "_checksum", "checksums", "checksum_mismatches", "faults", "_depth", "_apply", "_crossed", "_covers",
        "_buffer", "_pending", "_live", "_shadow", "_next_refresh_at", "_noticed",
        "_activity", "_active_at", "_stale_reported", "_ladder",
        "diffs_applied", "diffs_ignored", "diffs_buffered", "gaps", "resyncs", "snapshots", "snapshots_too_old",
        "snapshot_failures", "buffer_overflows", "audits", "audit_differences", "last_audit_differences", "audit_faults",
    )  # fmt: skip

    def __init__(self, symbol: str, book_factory: BookFactory, config: SyncConfig) -> None:
        self.symbol = symbol
        self.config = config
        self._factory = book_factory
        self._rule = config.rule
        self._futures = hot_path_links_prev(config.rule)  # which fast path (and C HotPath) checks the rule
        # books start in the stream: a gap resubscribes; STREAM_OR_REST also buffers and asks REST meanwhile
        self._stream = config.snapshot_source is not SnapshotSource.REST
        self._stream_only = config.snapshot_source is SnapshotSource.STREAM
        self._checksum = config.checksum
        self.checksums = 0  # venue checksums verified
        self.checksum_mismatches = 0
        self.faults = 0  # exceptions inside the engine, each answered by a resync of this market
        self._depth = config.depth
        self.state = SyncState.WAITING_FOR_DIFF
        self.book: Book | None = None
        self.update_id = -1  # id of the last diff (or snapshot) in the book
        self._buffer: list[DepthDiff] = []
        self._pending: DepthSnapshot | None = None  # a live snapshot ahead of the buffered stream
        self._live = LiveFetch(config.max_too_old_reasks_per_min)  # live snapshot requests, retries, re-ask budget
        self._shadow: ShadowRefresh | None = None  # the shadow audit under way
        self._next_refresh_at: float | None = None
        self._noticed = False  # a Notice is in the slot: cleared once the book is exact again
        self._activity = 0  # diffs seen at the last tick; staleness needs no per-diff clock read
        self._active_at: float | None = None
        self._stale_reported = False
        self._ladder = SnapshotLadder(symbol, config)  # the first snapshot is the cheap one
        # counters
        self.diffs_applied = 0
        self.diffs_ignored = 0
        self.diffs_buffered = 0
        self.gaps = 0
        self.resyncs = 0
        self.snapshots = 0
        self.snapshots_too_old = 0
        self.snapshot_failures = 0
        self.buffer_overflows = 0
        self.audits = 0
        self.audit_differences = 0
        self.last_audit_differences = 0
        self.audit_faults = 0
        self.on_diff: Callable[[DepthDiff, float], Actions] = self._diff_general
        # the book's methods, bound once: the hot path calls them without attribute lookups
        self._apply: Callable[[DepthDiff], bool] = _no_book
        self._crossed: Callable[[], bool] = _no_book_check
        self._covers: Callable[[int], bool] = _no_book_check

    # -- public -------------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return self.state is SyncState.SYNCED

    @property
    def snapshot_limit(self) -> int:
        """The limit of the next snapshot request (the ladder's step)."""
        return self._ladder.limit

    @property
    def limit_escalations(self) -> int:
        """Times the snapshot limit went up a step."""
        return self._ladder.escalations

    @property
    def refreshing(self) -> bool:
        """A shadow refresh (audit) is under way."""
        return self._shadow is not None

    def fast_path(self) -> FastPath | None:
        """What a diff that continues the book needs right now, when that is no decision: the states in which
        ``on_diff`` would apply it, record it for a pending refresh (until the refresh's snapshot comes) and
        publish with the state's flags, unless the top turns crossed or changes coverage (then ``top_fault``).
        None in every other state. A caller may apply such diffs to ``book`` itself (the feeder's C
        ``HotPath``, through ``ldc.handoff``) and report them with ``adopt`` before it feeds anything else."""
        state = self.state
        if state is not SyncState.SYNCED and state is not SyncState.UNCOVERED:
            return None
        if self._checksum is not None and not self.config.checksum_in_c:
            return None  # a venue checksum the HotPath cannot verify is verified here after every diff carrying one
        # (window_kept_whole: a HotPath whose window_whole is off checks the book's real coverage and hands a
        # change back through top_fault, which publishes: slower, never wrong)
        shadow = self._shadow
        if shadow is None:
            return FastPath(state, False, 0)
        if shadow.snapshot is not None:  # every diff now tries to join the refresh's snapshot
            return None
        return FastPath(state, True, shadow.room())

    def adopt(self, update_id: int, applied: int, recorded: Sequence[DepthDiff] = (), checksums: int = 0,
              ignored: int = 0) -> None:  # fmt: skip
        """``applied`` diffs continuing the book were applied to ``book`` outside ``on_diff``, ``recorded`` the
        ones among them a pending refresh records (see ``fast_path``, at most its ``record_limit``), ``checksums``
        the venue checksums verified equal among them (``SyncConfig.checksum_in_c``), ``ignored`` diffs ending at
        or before the book were dropped there (``verdict`` OLD); the book is now at ``update_id``."""
        self.update_id = update_id
        self.diffs_applied += applied
        self.diffs_ignored += ignored
        self.checksums += checksums
        if recorded and self._shadow is not None:
            self._shadow.record_all(list(recorded))

    def top_fault(self, now: float) -> Actions:
        """After an adopted diff left the top crossed (resync), beyond the snapshot's coverage (flag, refresh)
        or, UNCOVERED, covered again (SYNCED): ``on_diff``'s answer to that diff."""
        try:
            return self._top_fault(now)
        except Exception as exc:
            return self._fault(exc, "top fault")

    def checksum_fault(self, diff: DepthDiff, now: float) -> Actions:
        """After an adopted diff (the last applied) whose non-zero checksum the C HotPath did not confirm (a
        mismatch there, or a number only Python writes): the checksum is verified here, and ``on_diff``'s answer
        to that diff follows (a mismatch resyncs the market, counted; else record, coverage, publish)."""
        try:
            book = self.book
            assert book is not None and self._checksum is not None and diff.checksum
            return self._verified(book, diff, True, now)  # changed or not, publishing the top again is exact
        except Exception as exc:
            return self._fault(exc, "checksum fault")

    def fail_closed(self, exc: BaseException, where: str) -> Actions:
        """An exception outside BookSync while it touched this market's book (the C HotPath): the book may be
        half-applied, so the market resyncs (counted in ``faults``). Carry out the actions as any others."""
        return self._fault(exc, where)

    def _top_fault(self, now: float) -> Actions:
        book = self.book
        assert book is not None
        if book.crossed():
            return self._resync(OutOfSyncReason.CROSSED, None)
        return self._after_apply(True, now)

    def feed(self, event: Event, now: float) -> Actions:
        """Feed one event at time ``now`` (seconds, any monotonic origin); returns the actions. An exception
        inside the engine resyncs the market (its book may be half-applied) instead of escaping: fail closed."""
        try:
            return self._dispatch(event, now)
        except Exception as exc:
            return self._fault(exc, event)

    def _fault(self, exc: BaseException, event: object) -> Actions:
        self.faults += 1
        what = event if isinstance(event, str) else type(event).__name__
        logger.error("%s: %s handling %s, resyncing: %s", self.symbol, type(exc).__name__, what, exc, exc_info=exc)
        return self._resync(OutOfSyncReason.FAULT, None)

    def _dispatch(self, event: Event, now: float) -> Actions:
        kind = type(event)
        if kind is SnapshotResult:
            return self._step(self._snapshot_trigger(event), event, now)  # type: ignore[arg-type]
        trigger = _TRIGGER_OF_EVENT.get(kind)
        if trigger is None:  # a diff: the fast path when one is armed, else the table
            return self.on_diff(event, now)  # type: ignore[arg-type]
        return self._step(trigger, event, now)

    def _snapshot_trigger(self, event: SnapshotResult) -> Trigger:
        if event.purpose is SnapshotPurpose.SHADOW:
            return Trigger.SHADOW_SNAPSHOT
        if event.purpose is SnapshotPurpose.STREAM or self._stream_only:  # (a REST answer still in flight finds a book)
            return Trigger.STREAM_SNAPSHOT
        return Trigger.LIVE_SNAPSHOT

    def _step(self, trigger: Trigger, event: Event, now: float) -> Actions:
        """The table's row for the state and ``trigger``: its handler, then the check that the state it left
        is one the row allows (TransitionError, a fault, otherwise)."""
        before = self.state
        row = step(before, trigger)
        actions = _HANDLERS[row.do](self, event, now)
        if self.state not in row.next:
            raise TransitionError(f"{row.do.name.lower()} on {trigger.value} left {before.name.lower()} for "
                                  f"{self.state.name.lower()}, expected one of "
                                  f"{sorted(state.name.lower() for state in row.next)}")  # fmt: skip
        return actions

    def counters(self) -> SyncCounters:
        return SyncCounters(
            self.diffs_applied, self.diffs_ignored, self.gaps, self.resyncs, self.snapshots,
            self.snapshots_too_old, self.snapshot_failures, self.buffer_overflows, self.audits,
            self.audit_differences, self.last_audit_differences, self.audit_faults, self.limit_escalations,
            self.snapshot_limit,
        )  # fmt: skip

    # -- diffs --------------------------------------------------------------------------------

    def _diff_synced_spot(self, diff: DepthDiff, now: float) -> Actions:
        # hot path: SYNCED, no refresh recording; anything unusual goes through the general path
        if diff.first_id != self.update_id + 1 or diff.final_id <= self.update_id:
            return self._diff_general(diff, now)
        self.update_id = diff.final_id
        self.diffs_applied += 1
        try:  # free in CPython 3.11 until something raises
            if self._apply(diff):
                if self._crossed() or not self._covers(self._depth):
                    return self.top_fault(now)
                return PUBLISH_CHANGED
            return PUBLISH_UNCHANGED
        except Exception as exc:
            return self._fault(exc, diff)

    def _diff_synced_futures(self, diff: DepthDiff, now: float) -> Actions:
        if diff.prev_final_id != self.update_id or diff.final_id <= self.update_id:
            return self._diff_general(diff, now)
        self.update_id = diff.final_id
        self.diffs_applied += 1
        try:
            if self._apply(diff):
                if self._crossed() or not self._covers(self._depth):
                    return self.top_fault(now)
                return PUBLISH_CHANGED
            return PUBLISH_UNCHANGED
        except Exception as exc:
            return self._fault(exc, diff)

    def _diff_general(self, diff: DepthDiff, now: float) -> Actions:
        try:
            return self._diff_decided(diff, now)
        except Exception as exc:
            return self._fault(exc, diff)

    def _diff_decided(self, diff: DepthDiff, now: float) -> Actions:
        state = self.state
        if state is SyncState.WAITING_FOR_DIFF or state is SyncState.BUFFERING:
            return self._step(Trigger.DIFF_NO_BOOK, diff, now)
        return self._step(TRIGGER_OF_VERDICT[self._verdict(diff, self.update_id)], diff, now)

    def _ignore(self, diff: DepthDiff, now: float) -> Actions:
        self.diffs_ignored += 1
        return NO_ACTIONS

    def _gap(self, diff: DepthDiff, now: float) -> Actions:
        self.gaps += 1
        return self._resync(OutOfSyncReason.GAP, diff)

    def _apply_reset(self, diff: DepthDiff, now: float) -> Actions:
        logger.info("%s: the venue reset its ids: %d after %d", self.symbol, diff.final_id, self.update_id)
        return self._apply_diff(diff, now)

    def _apply_diff(self, diff: DepthDiff, now: float) -> Actions:
        # a venue message without ids (OKX before seqId) is numbered by the book: its checksum is the proof
        if diff.final_id == NO_ID:
            self.update_id += 1
        elif self._rule is SequenceRule.NONE:  # ids that are a clock (Kraken's timestamp) may repeat: never go back
            self.update_id = max(self.update_id, diff.final_id)
        else:
            self.update_id = diff.final_id
        self.diffs_applied += 1
        changed = self._apply(diff)
        book = self.book
        assert book is not None
        if changed and book.crossed():
            return self._resync(OutOfSyncReason.CROSSED, None)
        return self._verified(book, diff, changed, now)

    def _verified(self, book: Book, diff: DepthDiff, changed: bool, now: float) -> Actions:
        """An applied diff, uncrossed: its checksum checked (a mismatch resyncs), recorded for the shadow audit,
        then ``_after_apply`` (the C HotPath's order: crossed, checksum, record)."""
        if self._checksum is not None and diff.checksum and not self._checksum_holds(book, diff.checksum):
            return self._resync(OutOfSyncReason.CHECKSUM, None)
        shadow = self._shadow
        if shadow is not None and not shadow.record(diff):
            self._drop_shadow(shadow.overflow(), now)
        return self._after_apply(changed, now)

    def _after_apply(self, changed: bool, now: float) -> Actions:
        """A continuing diff was applied to a book in SYNCED, UNCOVERED or STALE state (and recorded):
        coverage flags, a pending refresh's join, the publish."""
        state, book = self.state, self.book
        assert book is not None
        flags = NO_ACTIONS
        if state is not SyncState.SYNCED:
            if self._covers(self._depth):
                self._set_state(SyncState.SYNCED, f"diff {self.update_id} continues the book")
            elif state is not SyncState.UNCOVERED:
                flags = self._uncovered(now)
        elif changed and not self._covers(self._depth):
            flags = self._uncovered(now)
        if self._shadow is not None and self._shadow.snapshot is not None:
            return flags + self._try_shadow(now, _publish(changed))
        return flags + _publish(changed)

    def _verdict(self, diff: DepthDiff, book_id: int) -> Verdict:
        # a diff ending at or before the book is old, whatever its other ids say (u < U, u <= pu: never
        # sent by Binance, and never allowed to move the book backwards); only OKX's documented reset may
        return verdict(self._rule, diff.first_id, diff.final_id, diff.prev_final_id, book_id)

    def _checksum_holds(self, book: Book, expected: int) -> bool:
        """The venue's checksum of ``book`` against the one it sent; a mismatch is counted and logged."""
        assert self._checksum is not None
        self.checksums += 1
        if self._checksum(book, expected):
            return True
        self.checksum_mismatches += 1
        logger.warning("%s: the book's checksum at update id %d is not %d, the venue's", self.symbol, self.update_id, expected)
        return False

    def _nothing(self, event: Event, now: float) -> Actions:
        return NO_ACTIONS

    def _buffer_diff(self, diff: DepthDiff, now: float) -> Actions:
        buffer = self._buffer
        self.diffs_buffered += 1
        if self._stream_only:  # the venue's snapshot comes in the stream: nothing before it can be used
            self.diffs_ignored += 1
            if self.state is SyncState.WAITING_FOR_DIFF:
                self._set_state(SyncState.BUFFERING, "waiting for the stream's snapshot")
            return NO_ACTIONS
        if buffer:
            found = self._verdict(diff, buffer[-1].final_id)
            if found is Verdict.OLD:
                self.diffs_ignored += 1
                return NO_ACTIONS
            if found is Verdict.GAP:
                # the buffered stream broke: only what follows the gap can meet a snapshot
                self.gaps += 1
                buffer.clear()
        buffer.append(diff)
        if len(buffer) > self.config.max_buffered_diffs:
            self.buffer_overflows += 1
            logger.warning("%s: %d diffs buffered waiting for a snapshot, keeping the newest", self.symbol, len(buffer))
            del buffer[:-1]
        actions: Actions = NO_ACTIONS
        if self.state is SyncState.WAITING_FOR_DIFF:
            self._set_state(SyncState.BUFFERING, "first diff buffered")
        if self._pending is not None:
            return self._try_sync(now)
        if not self._live.fetching and self._live.retry_at is None:
            actions = self._fetch_live()
        return actions

    # -- live snapshots -----------------------------------------------------------------------

    def _fetch_live(self) -> Actions:
        self._live.fetching = True
        self.snapshots += 1
        return (FetchSnapshot(self.snapshot_limit, SnapshotPurpose.LIVE),)

    def _join_live(self, event: SnapshotResult, now: float) -> Actions:
        self._live.fetching = False
        self._pending = event.snapshot
        self._live.backoff_s = SNAPSHOT_RETRY_MIN_S
        return self._try_sync(now)

    def _join_shadow(self, event: SnapshotResult, now: float) -> Actions:
        shadow = self._shadow
        if shadow is None or shadow.snapshot is not None:
            return NO_ACTIONS  # a refresh that was abandoned
        shadow.snapshot = event.snapshot
        return self._try_shadow(now, NO_ACTIONS)

    def _replace(self, event: SnapshotResult, now: float) -> Actions:
        return self._stream_snapshot(event.snapshot, now)

    def _try_sync(self, now: float) -> Actions:
        """Bring the pending snapshot and the buffered diffs together, per the documented rules."""
        snapshot = self._pending
        buffer = self._buffer
        assert snapshot is not None
        if not buffer:
            return NO_ACTIONS
        start = join_index(self._rule, buffer, snapshot.last_update_id)
        if start is JoinWait.TOO_OLD:
            return self._snapshot_too_old(snapshot, now)
        if start is JoinWait.NOT_YET:
            return NO_ACTIONS  # the stream has not reached the snapshot yet: keep buffering
        book = self._factory()
        book.load_snapshot(snapshot)
        for diff in buffer[start:]:
            book.apply_diff(diff)
        self.diffs_applied += len(buffer) - start
        self.diffs_ignored += start
        self.update_id = max(buffer[-1].final_id, snapshot.last_update_id)
        buffer.clear()
        self._pending = None
        self._live.joined()
        self._noticed = False  # the state's own message replaces any notice
        self._install(book, now)
        if book.crossed():
            return self._resync(OutOfSyncReason.CROSSED, None)
        if self.config.refresh_interval_s is not None:
            self._next_refresh_at = now + self.config.refresh_interval_s
        if not self._covers(self._depth):
            return self._uncovered(now) + PUBLISH_CHANGED
        self._set_state(SyncState.SYNCED, f"snapshot {snapshot.last_update_id} joined the stream")
        return PUBLISH_CHANGED

    def _stream_snapshot(self, snapshot: DepthSnapshot, now: float) -> Actions:
        """A snapshot the venue sent in the stream (after a subscribe, or at will: Bybit's ``u == 1`` after a
        restart): it replaces whatever book there was, in any state."""
        book = self._factory()
        book.load_snapshot(snapshot)
        self.book = None
        self._buffer.clear()
        self._pending = None
        self._shadow = None
        self._live.joined()
        # ids continue from the snapshot's; a venue without ids numbers its messages from 0
        self.update_id = snapshot.last_update_id if snapshot.last_update_id != NO_ID else 0
        self._install(book, now)
        if book.crossed():
            return self._resync(OutOfSyncReason.CROSSED, None)
        if self._checksum is not None and snapshot.checksum and not self._checksum_holds(book, snapshot.checksum):
            return self._resync(OutOfSyncReason.CHECKSUM, None)
        if not self._covers(self._depth):
            return self._uncovered(now) + PUBLISH_CHANGED
        self._set_state(SyncState.SYNCED, f"stream snapshot at update id {self.update_id}")
        return PUBLISH_CHANGED

    def _late_live(self, event: SnapshotResult, now: float) -> Actions:
        """A live snapshot for a book that exists: moot for a SYNCED book or one at another id; a
        flagged book (UNCOVERED, STALE, DISCONNECTED) exactly at its id is audited and replaced at once,
        as no diff may come to join it on an idle stream."""
        self._live.fetching = False
        snapshot = event.snapshot
        if self.state is SyncState.SYNCED or self.book is None or snapshot.last_update_id != self.update_id:
            return NO_ACTIONS
        book = self._factory()
        book.load_snapshot(snapshot)
        return self._swap(book, snapshot, now, NO_ACTIONS)

    def _snapshot_too_old(self, snapshot: DepthSnapshot, now: float) -> Actions:
        """Fetch again: at once the first time (the stream overtook the request), then after a doubling delay
        (an answer that stays old is a lagging cache: asking at once would only spend the weight budget)."""
        self._pending = None
        self.snapshots_too_old += 1
        logger.info("%s: snapshot %d is older than the buffered stream (first U %d), fetching again",
                    self.symbol, snapshot.last_update_id, self._buffer[0].first_id)  # fmt: skip
        delay = self._live.live_too_old(snapshot.last_update_id, now)
        if not delay:
            return self._fetch_live()
        return (self._notice(f"snapshot older than the stream {self._live.too_old} times in a row: "
                             f"asking again in {delay:.1f} s"),)  # fmt: skip

    def _back_off(self, event: SnapshotFailed, now: float) -> Actions:
        self.snapshot_failures += 1
        delay = self._live.failed(event.retry_after_s)
        if event.purpose is SnapshotPurpose.SHADOW:
            if self._shadow is not None:
                self._drop_shadow(f"snapshot failed: {event.reason}", now, retry_in_s=delay)
            return NO_ACTIONS
        self._live.fetching = False
        if self.state is SyncState.WAITING_FOR_DIFF or self.state is SyncState.BUFFERING:
            self._live.retry_at = now + delay
            # the slot says why the market waits (an exchange error, a ban and its end), not only "buffering"
            return (self._notice(f"snapshot failed: {event.reason}; retrying in {delay:.1f} s"),)
        return NO_ACTIONS

    # -- resync, coverage, ticks, disconnects ------------------------------------------------

    def _resync(self, reason: OutOfSyncReason, diff: DepthDiff | None) -> Actions:
        """Discard this market's book and start over; ``diff`` (the one after a gap) is buffered."""
        self.resyncs += 1
        self._noticed = False  # MarkOutOfSync writes the slot message
        self.book = None
        self._apply = _no_book
        self._crossed = self._covers = _no_book_check
        self._shadow = None
        self._pending = None
        self._buffer.clear()
        if diff is not None:
            self._buffer.append(diff)
        self._set_state(SyncState.BUFFERING, f"resync: {reason.name.lower()} at update id {self.update_id}")
        if self._stream:  # a new subscription brings the venue's snapshot (this market's stream only)
            self._buffer.clear()
            return (MarkOutOfSync(reason), Resubscribe(reason))
        if self._live.fetching or self._live.retry_at is not None:
            return (MarkOutOfSync(reason),)
        return (MarkOutOfSync(reason), *self._fetch_live())

    def _uncovered(self, now: float) -> Actions:
        """Flag the book (its top may have holes) and refresh it; the caller still publishes."""
        self._ladder.lost_coverage(now)
        self._set_state(SyncState.UNCOVERED, "book does not cover the published depth")
        flag: Actions = (MarkOutOfSync(OutOfSyncReason.UNCOVERED),)
        return flag + self._start_shadow(now) if self._shadow is None else flag

    def _timers(self, event: Tick, now: float) -> Actions:
        activity = self.diffs_applied + self.diffs_ignored + self.diffs_buffered
        if activity != self._activity or self._active_at is None:
            self._activity = activity
            self._active_at = now
            self._stale_reported = False
        actions: Actions = NO_ACTIONS
        if not self._stale_reported and now - self._active_at >= self.config.stale_after_s:
            actions = self._stale(now)
        if self._live.due(now) and self.state is SyncState.BUFFERING and not self._live.fetching:
            actions += self._fetch_live()
        if self._ladder.raised and self.state is SyncState.SYNCED:
            self._ladder.maybe_step_down(now)
        refresh_due = self._next_refresh_at is not None and now >= self._next_refresh_at
        if refresh_due and self._shadow is None and self.state in BOOK_STATES:
            actions += self._start_shadow(now)
        shadow = self._shadow
        if shadow is not None and shadow.retry_at is not None and now >= shadow.retry_at:
            shadow.retry_at = None
            actions += self._reask_shadow(now)
        return actions

    def _stale(self, now: float) -> Actions:
        self._stale_reported = True
        assert self._active_at is not None
        silent_s = now - self._active_at
        if self.state in (SyncState.SYNCED, SyncState.UNCOVERED):
            self._set_state(SyncState.STALE, f"no diff for {silent_s:.1f} s")
            return (MarkOutOfSync(OutOfSyncReason.STALE), Resubscribe(OutOfSyncReason.STALE))
        logger.warning("%s: no diff for %.1f s in state %s, resubscribing", self.symbol, silent_s, self.state.name.lower())
        return (Resubscribe(OutOfSyncReason.STALE),)

    def _resync_lost(self, event: MessageLost, now: float) -> Actions:
        self.gaps += 1
        logger.warning("%s: a message of its stream could not be read at update id %d: resyncing", self.symbol, self.update_id)
        return self._resync(OutOfSyncReason.GAP, None)

    def _forget_buffer(self, event: Disconnect, now: float) -> Actions:
        self._buffer.clear()  # what follows the reconnect cannot chain to what was buffered
        return NO_ACTIONS

    def _flag_disconnected(self, event: Disconnect, now: float) -> Actions:
        if self._shadow is not None:
            self._drop_shadow("connection lost", now, retry_in_s=0.0)  # again once resumed
        if self.state is SyncState.DISCONNECTED:
            return NO_ACTIONS
        self._set_state(SyncState.DISCONNECTED, f"connection lost at update id {self.update_id}")
        return (MarkOutOfSync(OutOfSyncReason.DISCONNECTED),)

    # -- shadow refresh / audit ---------------------------------------------------------------

    def _start_shadow(self, now: float) -> Actions:
        if self._stream:  # no snapshot to ask for: a new subscription brings one, which replaces the book
            self._next_refresh_at = None
            return (Resubscribe(OutOfSyncReason.UNCOVERED),)
        self._shadow = ShadowRefresh(self.update_id, self.config.max_buffered_diffs)
        self._next_refresh_at = None
        self._route()
        self.snapshots += 1
        return (FetchSnapshot(self.snapshot_limit, SnapshotPurpose.SHADOW),)

    def _reask_shadow(self, now: float) -> Actions:
        self._live.reasked(now)
        self.snapshots += 1
        return (FetchSnapshot(self.snapshot_limit, SnapshotPurpose.SHADOW),)

    def _shadow_too_old(self, shadow: ShadowRefresh, now: float) -> Actions:
        """The refresh's snapshot is older than the book: ask again at once the first time, then after a
        doubling delay (``_on_tick`` asks), and give up after MAX_TOO_OLD_SNAPSHOTS_PER_REFRESH answers."""
        self.snapshots_too_old += 1
        shadow.snapshot = None
        shadow.too_old += 1
        if shadow.too_old >= MAX_TOO_OLD_SNAPSHOTS_PER_REFRESH:
            why = f"{shadow.too_old} snapshots older than the book"
            interval = self.config.refresh_interval_s
            self._drop_shadow(why, now, retry_in_s=max(REFRESH_WINDOW_S, interval if interval is not None else 0.0))
            return (self._notice(f"refresh abandoned: {why}; next refresh in {self._next_refresh_at - now:.0f} s"),)  # type: ignore[operator]
        delay = 0.0 if shadow.too_old == 1 else too_old_delay_s(shadow.too_old)
        delay = max(delay, self._live.reask_wait_s(now))
        if delay <= 0.0:
            return self._reask_shadow(now)
        shadow.retry_at = now + delay
        return (self._notice(f"refresh snapshot older than the book {shadow.too_old} times in a row: "
                             f"asking again in {delay:.1f} s"),)  # fmt: skip

    def _notice(self, text: str) -> Notice:
        self._noticed = True
        logger.warning("%s: %s", self.symbol, text)
        return Notice(text)

    def _clear_notice(self) -> Actions:
        if not self._noticed:
            return NO_ACTIONS
        self._noticed = False
        return (Notice(""),)

    def _drop_shadow(self, why: str, now: float, *, retry_in_s: float | None = None) -> None:
        logger.warning("%s: refresh abandoned: %s", self.symbol, why)
        self._shadow = None
        interval = self.config.refresh_interval_s
        delay = retry_in_s if retry_in_s is not None else (interval if interval is not None else SNAPSHOT_RETRY_CAP_S)
        self._next_refresh_at = now + delay
        self._route()

    def _try_shadow(self, now: float, live: Actions) -> Actions:
        """Build the shadow once the stream reached its snapshot; ``live`` are the actions of the
        diff just applied to the live book (none when called for the snapshot's arrival)."""
        shadow = self._shadow
        assert shadow is not None and shadow.snapshot is not None
        snapshot = shadow.snapshot
        built = shadow.build(self._factory, self._rule, self.update_id)
        if built is JoinWait.NOT_YET:
            return live
        if built is JoinWait.TOO_OLD:
            return live + self._shadow_too_old(shadow, now)
        return self._swap(built, snapshot, now, live)

    def _swap(self, shadow_book: Book, snapshot: DepthSnapshot, now: float, live: Actions) -> Actions:
        """Audit the live book against the shadow at the same update id, then replace it."""
        actions = self._audit_and_swap(shadow_book, snapshot, now, live)
        return self._clear_notice() + actions if self._noticed else actions

    def _audit_and_swap(self, shadow_book: Book, snapshot: DepthSnapshot, now: float, live: Actions) -> Actions:
        live_book = self.book
        assert live_book is not None
        depth = self.config.depth
        top_differs, differences = audit(live_book, shadow_book, snapshot, depth)
        self.audits += 1
        self.audit_differences += differences
        self.last_audit_differences = differences
        if self.state is SyncState.SYNCED and not differences and not shadow_book.covers(depth):
            return self._keep_live(snapshot, now, live)
        if top_differs and self.state is SyncState.SYNCED:
            # published as exact, yet not what the exchange holds: the fault audits exist to catch
            self.audit_faults += 1
            logger.error("%s: audit at update id %d: the published top %d differed from a fresh snapshot",
                         self.symbol, self.update_id, depth)  # fmt: skip
        elif differences or top_differs:
            logger.info("%s: audit at update id %d: %d levels differed within coverage", self.symbol, self.update_id, differences)
        self._shadow = None
        self._live.backoff_s = SNAPSHOT_RETRY_MIN_S
        self._install(shadow_book, now)
        interval = self.config.refresh_interval_s
        if shadow_book.crossed():
            return self._resync(OutOfSyncReason.CROSSED, None)
        if shadow_book.covers(depth):
            self._next_refresh_at = None if interval is None else now + interval
            if self.state is not SyncState.SYNCED:
                # also a STALE book: the exchange's own snapshot reached the live update id
                self._set_state(SyncState.SYNCED, f"refreshed at update id {self.update_id}")
        else:
            return self._swapped_uncovered(now) + _publish(top_differs or live is PUBLISH_CHANGED)
        return PUBLISH_CHANGED if top_differs or live is PUBLISH_CHANGED else PUBLISH_UNCHANGED

    def _keep_live(self, snapshot: DepthSnapshot, now: float, live: Actions) -> Actions:
        """The refresh's book agrees with the live one where both know every price but does not know
        its own top, while the live book (from a larger snapshot) does: keep the live book, and ask
        the next limit from now on, as this one proved too small for the market."""
        logger.info("%s: refresh at update id %d kept the live book: a %d-level snapshot does not cover the top %d",
                    self.symbol, self.update_id, snapshot.limit, self._depth)  # fmt: skip
        self._shadow = None
        self._live.backoff_s = SNAPSHOT_RETRY_MIN_S
        self._ladder.climb()
        interval = self.config.refresh_interval_s
        self._next_refresh_at = None if interval is None else now + interval
        self._route()
        return live

    def _swapped_uncovered(self, now: float) -> Actions:
        """A fresh book that does not cover the depth (the stream moved through a snapshot too small
        for this market): flag it; ask a larger limit at once if the ladder has one (an idle stream
        brings no diff to fill the top), else try again in SNAPSHOT_RETRY_CAP_S."""
        flags: Actions = NO_ACTIONS
        if self.state is SyncState.SYNCED:
            self._set_state(SyncState.UNCOVERED, "refreshed book does not cover the published depth")
            flags = (MarkOutOfSync(OutOfSyncReason.UNCOVERED),)
        if self._ladder.lost_coverage(now):
            return flags + self._start_shadow(now)
        self._next_refresh_at = now + SNAPSHOT_RETRY_CAP_S
        self._route()
        return flags

    # -- plumbing ----------------------------------------------------------------------------

    def _install(self, book: Book, now: float) -> None:
        self._ladder.installed(now)
        self.book = book
        self._apply = book.apply_diff
        self._crossed = book.crossed
        self._covers = _window_whole if self.config.window_kept_whole else book.covers
        self._route()

    def _set_state(self, state: SyncState, why: str) -> None:
        if state is not self.state:
            logger.info("%s: %s -> %s (%s)", self.symbol, self.state.name.lower(), state.name.lower(), why)
            self.state = state
        self._route()

    def _route(self) -> None:
        """Point ``on_diff`` at the fast path only where it is valid: SYNCED, no refresh recording, no venue
        checksum to verify."""
        if self.state is SyncState.SYNCED and self._shadow is None and self._checksum is None:
            self.on_diff = self._diff_synced_futures if self._futures else self._diff_synced_spot
        else:
            self.on_diff = self._diff_general


# the table's handlers (ldc.sync_table.Do), each called as handler(sync, event, now)
_HANDLERS: dict[Do, Callable[[BookSync, Any, float], Actions]] = {
    Do.BUFFER: BookSync._buffer_diff,
    Do.APPLY: BookSync._apply_diff,
    Do.APPLY_RESET: BookSync._apply_reset,
    Do.IGNORE: BookSync._ignore,
    Do.RESYNC_GAP: BookSync._gap,
    Do.JOIN_LIVE: BookSync._join_live,
    Do.LATE_LIVE: BookSync._late_live,
    Do.REPLACE: BookSync._replace,
    Do.JOIN_SHADOW: BookSync._join_shadow,
    Do.BACK_OFF: BookSync._back_off,
    Do.TIMERS: BookSync._timers,
    Do.FLAG_DISCONNECTED: BookSync._flag_disconnected,
    Do.FORGET_BUFFER: BookSync._forget_buffer,
    Do.RESYNC_LOST: BookSync._resync_lost,
    Do.NOTHING: BookSync._nothing,
}
_TRIGGER_OF_EVENT: dict[type, Trigger] = {
    Tick: Trigger.TICK,
    SnapshotFailed: Trigger.SNAPSHOT_FAILED,
    Disconnect: Trigger.DISCONNECT,
    MessageLost: Trigger.MESSAGE_LOST,
}


def _publish(changed: bool) -> Actions:
    return PUBLISH_CHANGED if changed else PUBLISH_UNCHANGED


def _no_book(diff: DepthDiff) -> bool:
    raise AssertionError("no book to apply a diff to")


def _no_book_check(*args: int) -> bool:
    raise AssertionError("no book to check")


def _window_whole(depth: int) -> bool:
    """``Book.covers`` of a book the venue keeps whole to its window (``SyncConfig.window_kept_whole``)."""
    return True
