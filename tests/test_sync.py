"""ldc.sync.BookSync: the documented Binance rules, resyncs, staleness, coverage, refresh audits.

Diffs are shaped like Binance's (binance-spot-api-docs web-socket-streams.md "Diff. Depth Stream";
derivatives "Diff. Book Depth Streams" with ``pu``); every scenario runs with each book class."""

# mypy: disable-error-code="comparison-overlap"
# (mypy keeps sync.state narrowed across the calls that change it)

from __future__ import annotations

import logging
from typing import Callable, Sequence

import pytest

import ldc._fastbook as fastbook
from ldc.book import OrderBook
from ldc.depth import NO_ID, Book, DepthDiff, DepthSnapshot, Level
from ldc.errors import ConfigError
from ldc.venues.binance import parse_depth_update
from ldc.sync import (
    DISCONNECT,
    MAX_BUFFERED_DIFFS,
    FastPath,
    TICK,
    BookSync,
    FetchSnapshot,
    MarkOutOfSync,
    Notice,
    OutOfSyncReason,
    Publish,
    Resubscribe,
    SequenceRule,
    SnapshotFailed,
    SnapshotPurpose,
    SnapshotResult,
    SyncConfig,
    SyncState,
)

LIVE, SHADOW = SnapshotPurpose.LIVE, SnapshotPurpose.SHADOW
DEPTH = 2
LIMIT = 5
CHANGED, UNCHANGED = (Publish(True),), (Publish(False),)
FETCH_LIVE = FetchSnapshot(LIMIT, LIVE)
FETCH_SHADOW = FetchSnapshot(LIMIT, SHADOW)

BOOK_CLASSES: list[object] = [OrderBook]
if hasattr(fastbook, "FastBook"):
    BOOK_CLASSES.append(fastbook.FastBook)


@pytest.fixture(params=BOOK_CLASSES, ids=lambda cls: cls.__name__)
def factory(request: pytest.FixtureRequest) -> Callable[[], Book]:
    cls = request.param
    return lambda: cls(depth=DEPTH)


def spot(first: int, final: int, bids: Sequence[Level] = (), asks: Sequence[Level] = ()) -> DepthDiff:
    return DepthDiff("BTCUSDT", first, final, NO_ID, 1, NO_ID, list(bids), list(asks))


def fut(first: int, final: int, prev: int, bids: Sequence[Level] = (), asks: Sequence[Level] = ()) -> DepthDiff:
    return DepthDiff("BTCUSDT", first, final, prev, 1, 1, list(bids), list(asks))


def snap(last_update_id: int, bids: Sequence[Level] = ((100.0, 1.0), (99.0, 1.0)), asks: Sequence[Level] = ((101.0, 1.0), (102.0, 1.0))) -> DepthSnapshot:
    return DepthSnapshot(last_update_id, list(bids), list(asks), LIMIT)


def make(factory: Callable[[], Book], rule: SequenceRule = SequenceRule.SPOT, **options: float | None) -> BookSync:
    config = SyncConfig(rule=rule, depth=DEPTH, snapshot_limit=LIMIT, **options)  # type: ignore[arg-type]
    return BookSync("BTCUSDT", factory, config)


def levels(sync: BookSync) -> tuple[list[Level], list[Level]]:
    assert sync.book is not None
    return sync.book.levels()


def synced_spot(factory: Callable[[], Book], **options: float | None) -> BookSync:
    """A spot market synced at update id 10 on the default snapshot."""
    sync = make(factory, SequenceRule.SPOT, **options)
    sync.feed(spot(9, 10), 0.0)
    sync.feed(SnapshotResult(snap(10), LIVE), 0.0)
    assert sync.state is SyncState.SYNCED and sync.update_id == 10
    return sync


def synced_futures(factory: Callable[[], Book], **options: float | None) -> BookSync:
    sync = make(factory, SequenceRule.FUTURES, **options)
    sync.feed(fut(5, 10, 3), 0.0)
    sync.feed(SnapshotResult(snap(10), LIVE), 0.0)
    assert sync.state is SyncState.SYNCED and sync.update_id == 10
    return sync


# -- initial sync, spot -----------------------------------------------------------------------


def test_first_diff_is_buffered_and_fetches_a_snapshot(factory: Callable[[], Book]) -> None:
    sync = make(factory)
    assert sync.state is SyncState.WAITING_FOR_DIFF
    assert sync.feed(spot(100, 105), 0.0) == (FETCH_LIVE,)
    assert sync.state is SyncState.BUFFERING
    assert sync.feed(spot(106, 110), 0.0) == ()  # one request in flight is enough
    assert sync.book is None


def test_spot_drops_diffs_the_snapshot_contains_and_applies_the_rest(factory: Callable[[], Book]) -> None:
    sync = make(factory)
    sync.feed(spot(100, 105, bids=[(100.0, 9.0)]), 0.0)  # u <= lastUpdateId: dropped
    sync.feed(spot(106, 110, bids=[(100.0, 2.0)]), 0.0)  # straddles lastUpdateId + 1 = 108
    sync.feed(spot(111, 112, asks=[(101.0, 0.0)]), 0.0)
    assert sync.feed(SnapshotResult(snap(107), LIVE), 0.0) == CHANGED
    assert (sync.state, sync.update_id) == (SyncState.SYNCED, 112)
    assert levels(sync) == ([(100.0, 2.0), (99.0, 1.0)], [(102.0, 1.0)])
    assert (sync.diffs_applied, sync.diffs_ignored) == (2, 1)


def test_snapshot_older_than_the_first_buffered_event_is_fetched_again(factory: Callable[[], Book]) -> None:
    sync = make(factory)
    sync.feed(spot(100, 105), 0.0)
    assert sync.feed(SnapshotResult(snap(98), LIVE), 0.0) == (FETCH_LIVE,)
    assert sync.state is SyncState.BUFFERING and sync.snapshots_too_old == 1
    # the document's step 4 is strict: lastUpdateId == U - 1 is also "older than the stream"
    assert sync.feed(SnapshotResult(snap(99), LIVE), 0.0) == (FETCH_LIVE,)
    assert sync.feed(SnapshotResult(snap(100), LIVE), 0.0) == CHANGED
    assert sync.update_id == 105


def test_snapshot_ahead_of_the_stream_waits_for_the_stream(factory: Callable[[], Book]) -> None:
    sync = make(factory)
    sync.feed(spot(100, 105), 0.0)
    assert sync.feed(SnapshotResult(snap(120), LIVE), 0.0) == ()
    assert sync.state is SyncState.BUFFERING
    assert sync.feed(spot(106, 115), 0.0) == ()
    assert sync.feed(spot(116, 125, bids=[(100.0, 3.0)]), 0.0) == CHANGED
    assert (sync.state, sync.update_id) == (SyncState.SYNCED, 125)
    assert levels(sync)[0][0] == (100.0, 3.0)


def test_gap_inside_the_buffer_keeps_only_what_follows_it(factory: Callable[[], Book]) -> None:
    sync = make(factory)
    sync.feed(spot(100, 105), 0.0)
    sync.feed(spot(110, 112), 0.0)  # 106..109 lost before any snapshot
    assert sync.gaps == 1
    # a snapshot at 105 cannot be joined to 110 anymore: older than the first buffered event
    assert sync.feed(SnapshotResult(snap(105), LIVE), 0.0) == (FETCH_LIVE,)
    assert sync.feed(SnapshotResult(snap(111), LIVE), 0.0) == CHANGED
    assert sync.update_id == 112


# -- initial sync, futures --------------------------------------------------------------------


def test_futures_first_event_must_straddle_last_update_id(factory: Callable[[], Book]) -> None:
    sync = make(factory, SequenceRule.FUTURES)
    sync.feed(fut(90, 99, 80, bids=[(100.0, 7.0)]), 0.0)  # u < lastUpdateId: dropped
    sync.feed(fut(101, 110, 99, bids=[(100.0, 2.0)]), 0.0)  # U <= 105 <= u
    sync.feed(fut(113, 120, 110, asks=[(101.0, 4.0)]), 0.0)
    assert sync.feed(SnapshotResult(snap(105), LIVE), 0.0) == CHANGED
    assert (sync.state, sync.update_id) == (SyncState.SYNCED, 120)
    assert levels(sync) == ([(100.0, 2.0), (99.0, 1.0)], [(101.0, 4.0), (102.0, 1.0)])


def test_futures_keeps_the_event_whose_u_equals_last_update_id(factory: Callable[[], Book]) -> None:
    sync = make(factory, SequenceRule.FUTURES)
    sync.feed(fut(101, 105, 99, bids=[(100.0, 2.0)]), 0.0)
    assert sync.feed(SnapshotResult(snap(105), LIVE), 0.0) == CHANGED
    assert (sync.update_id, levels(sync)[0][0]) == (105, (100.0, 2.0))


def test_futures_snapshot_in_the_hole_between_events_is_fetched_again(factory: Callable[[], Book]) -> None:
    sync = make(factory, SequenceRule.FUTURES)
    sync.feed(fut(101, 105, 99), 0.0)
    sync.feed(fut(110, 115, 105), 0.0)
    # 107 lies between two events: no event has U <= 107 <= u, as the document requires
    assert sync.feed(SnapshotResult(snap(107), LIVE), 0.0) == (FETCH_LIVE,)
    assert sync.snapshots_too_old == 1


def test_futures_pu_chain_is_followed_when_synced(factory: Callable[[], Book]) -> None:
    sync = synced_futures(factory)
    assert sync.feed(fut(20, 30, 10, bids=[(100.0, 5.0)]), 0.0) == CHANGED
    assert sync.feed(fut(31, 40, 30, bids=[(50.0, 5.0)]), 0.0) == UNCHANGED
    assert sync.update_id == 40
    actions = sync.feed(fut(50, 60, 45), 0.0)
    assert actions == (MarkOutOfSync(OutOfSyncReason.GAP), FETCH_LIVE)
    assert (sync.state, sync.gaps, sync.resyncs) == (SyncState.BUFFERING, 1, 1)


# -- steady state -----------------------------------------------------------------------------


def test_synced_state_uses_the_fast_path(factory: Callable[[], Book]) -> None:
    sync = synced_spot(factory)
    assert sync.on_diff == sync._diff_synced_spot
    futures = synced_futures(factory)
    assert futures.on_diff == futures._diff_synced_futures


def test_publish_reports_whether_the_top_changed(factory: Callable[[], Book]) -> None:
    sync = synced_spot(factory)
    assert sync.on_diff(spot(11, 11, bids=[(90.0, 1.0)]), 0.0) == UNCHANGED  # below the top 2
    assert sync.on_diff(spot(12, 12, bids=[(100.0, 3.0)]), 0.0) == CHANGED
    assert (sync.update_id, sync.diffs_applied) == (12, 2)


def test_spot_overlapping_event_is_applied(factory: Callable[[], Book]) -> None:
    # U <= id + 1 <= u: the event's absolute quantities give the book at u
    sync = synced_spot(factory)
    assert sync.feed(spot(8, 12, bids=[(100.0, 4.0)]), 0.0) == CHANGED
    assert (sync.state, sync.update_id) == (SyncState.SYNCED, 12)


def test_regression_unicorn_duplicate_diff_is_ignored_and_counted_not_a_gap(factory: Callable[[], Book]) -> None:
    # regression: UNICORN 2.14 treats a duplicate diff as a gap and resyncs
    sync = synced_spot(factory)
    sync.feed(spot(11, 15, bids=[(100.0, 2.0)]), 0.0)
    assert sync.feed(spot(11, 15, bids=[(100.0, 2.0)]), 0.0) == ()
    assert sync.feed(spot(3, 9), 0.0) == ()
    assert (sync.state, sync.diffs_ignored, sync.gaps, sync.resyncs) == (SyncState.SYNCED, 3, 0, 0)  # 1 dropped at sync
    assert sync.feed(spot(16, 16), 0.0) == UNCHANGED


def test_futures_duplicate_is_ignored_not_a_gap(factory: Callable[[], Book]) -> None:
    sync = synced_futures(factory)
    sync.feed(fut(20, 30, 10), 0.0)
    assert sync.feed(fut(20, 30, 10), 0.0) == ()
    assert (sync.diffs_ignored, sync.gaps, sync.state) == (1, 0, SyncState.SYNCED)


def test_regression_python_binance_gap_message_is_not_applied_on_top_of_the_new_snapshot(factory: Callable[[], Book]) -> None:
    # regression: python-binance 1.0.37 fetches a new snapshot on a gap but still applies the
    # message that revealed it on top of that snapshot
    sync = synced_spot(factory)
    assert sync.feed(spot(20, 25, bids=[(100.0, 77.0)]), 0.0) == (MarkOutOfSync(OutOfSyncReason.GAP), FETCH_LIVE)
    assert sync.book is None
    sync.feed(spot(26, 30), 0.0)
    # the new snapshot is already past the gap message: its stale quantity 77 must not come back
    assert sync.feed(SnapshotResult(snap(28, bids=[(100.0, 5.0), (99.0, 1.0)]), LIVE), 0.0) == CHANGED
    assert (sync.state, sync.update_id) == (SyncState.SYNCED, 30)
    assert levels(sync)[0] == [(100.0, 5.0), (99.0, 1.0)]


def test_regression_ccxt_non_contiguous_event_is_a_gap_not_skipped(factory: Callable[[], Book]) -> None:
    # ccxt 4.5.90 with checksums off silently skips a non-contiguous event and keeps publishing
    sync = synced_spot(factory)
    assert sync.feed(spot(12, 14, bids=[(100.0, 3.0)]), 0.0) == (MarkOutOfSync(OutOfSyncReason.GAP), FETCH_LIVE)
    assert sync.feed(spot(15, 15), 0.0) == ()  # buffered, not published: no book until a snapshot
    assert (sync.state, sync.book) == (SyncState.BUFFERING, None)


def test_regression_python_binance_futures_zero_quantity_deletes_through_the_whole_path(factory: Callable[[], Book]) -> None:
    # python-binance deletes only on the string "0.00000000"; USD-M sends "0.000"
    sync = synced_futures(factory)
    raw = b'{"e":"depthUpdate","E":1,"T":1,"s":"BTCUSDT","U":11,"u":12,"pu":10,"b":[["100.0","0.000"]],"a":[["101.0","0"]]}'
    assert sync.feed(parse_depth_update(raw), 0.0) == CHANGED
    assert levels(sync) == ([(99.0, 1.0)], [(102.0, 1.0)])


def test_crossed_book_resyncs(factory: Callable[[], Book]) -> None:
    sync = synced_spot(factory)
    assert sync.feed(spot(11, 11, bids=[(101.5, 1.0)], asks=[(101.0, 1.0)]), 0.0) == (MarkOutOfSync(OutOfSyncReason.CROSSED), FETCH_LIVE)
    assert (sync.state, sync.resyncs, sync.book) == (SyncState.BUFFERING, 1, None)


def test_crossed_snapshot_is_not_published(factory: Callable[[], Book]) -> None:
    sync = make(factory)
    sync.feed(spot(9, 10), 0.0)
    actions = sync.feed(SnapshotResult(snap(10, bids=[(103.0, 1.0)]), LIVE), 0.0)
    assert actions == (MarkOutOfSync(OutOfSyncReason.CROSSED), FETCH_LIVE)
    assert sync.state is SyncState.BUFFERING


def test_buffer_overflow_keeps_the_newest_diff(factory: Callable[[], Book]) -> None:
    sync = make(factory, max_buffered_diffs=3)
    for first in range(1, 5):
        sync.feed(spot(first, first), 0.0)
    assert (sync.buffer_overflows, len(sync._buffer)) == (1, 1)
    assert sync.feed(SnapshotResult(snap(3), LIVE), 0.0) == (FETCH_LIVE,)  # older than diff 4
    assert sync.feed(SnapshotResult(snap(4), LIVE), 0.0) == CHANGED


def test_default_buffer_bound() -> None:
    assert MAX_BUFFERED_DIFFS == 10_000
    assert SyncConfig(rule=SequenceRule.SPOT, depth=1, snapshot_limit=1).max_buffered_diffs == MAX_BUFFERED_DIFFS


def test_regression_cryptofeed_resync_of_one_market_does_not_touch_another(factory: Callable[[], Book]) -> None:
    # regression: cryptofeed resets every book of the feed on one gap
    a, b = synced_spot(factory), synced_spot(factory)
    b.feed(spot(11, 12, bids=[(100.0, 6.0)]), 0.0)
    a.feed(spot(30, 31), 0.0)  # gap on market a only
    assert (a.state, b.state) == (SyncState.BUFFERING, SyncState.SYNCED)
    assert (b.update_id, b.resyncs, levels(b)[0][0]) == (12, 0, (100.0, 6.0))
    assert b.feed(spot(13, 13), 0.0) == UNCHANGED


# -- snapshot failures --------------------------------------------------------------------------


def test_snapshot_failure_retries_with_backoff_on_ticks(factory: Callable[[], Book]) -> None:
    sync = make(factory)
    sync.feed(spot(1, 2), 0.0)
    # the slot says why the market waits and for how long (it said only "buffering diffs for a snapshot")
    assert sync.feed(SnapshotFailed(LIVE, "status 503"), 1.0) == (Notice("snapshot failed: status 503; retrying in 0.5 s"),)
    assert sync.feed(TICK, 1.2) == ()
    assert sync.feed(TICK, 1.5) == (FETCH_LIVE,)  # first retry after 0.5 s
    sync.feed(SnapshotFailed(LIVE, "status 503"), 2.0)
    assert sync.feed(TICK, 2.9) == ()
    assert sync.feed(TICK, 3.0) == (FETCH_LIVE,)  # then 1 s
    assert sync.snapshot_failures == 2


def test_snapshot_failure_honours_retry_after(factory: Callable[[], Book]) -> None:
    sync = make(factory)
    sync.feed(spot(1, 2), 0.0)
    banned = "status 418 ip banned, retry after 7 s"
    assert sync.feed(SnapshotFailed(LIVE, banned, retry_after_s=7.0), 10.0) == (Notice(f"snapshot failed: {banned}; retrying in 7.0 s"),)
    assert sync.feed(spot(3, 4), 12.0) == ()  # no request before the retry time
    assert sync.feed(TICK, 16.9) == ()
    assert sync.feed(TICK, 17.0) == (FETCH_LIVE,)


# -- staleness and disconnects ------------------------------------------------------------------


def test_silent_market_turns_stale_and_resumes_on_a_continuing_diff(factory: Callable[[], Book]) -> None:
    sync = synced_spot(factory, stale_after_s=5.0, refresh_interval_s=None)
    sync.feed(TICK, 100.0)
    assert sync.feed(TICK, 104.0) == ()
    assert sync.feed(TICK, 105.0) == (MarkOutOfSync(OutOfSyncReason.STALE), Resubscribe(OutOfSyncReason.STALE))
    assert sync.feed(TICK, 110.0) == ()  # reported once
    assert sync.state is SyncState.STALE
    assert sync.feed(spot(11, 11), 111.0) == UNCHANGED
    assert sync.state is SyncState.SYNCED


def test_stale_then_gap_resyncs(factory: Callable[[], Book]) -> None:
    sync = synced_spot(factory, stale_after_s=1.0, refresh_interval_s=None)
    sync.feed(TICK, 0.0)
    sync.feed(TICK, 2.0)
    assert sync.feed(spot(50, 51), 3.0) == (MarkOutOfSync(OutOfSyncReason.GAP), FETCH_LIVE)


def test_disconnect_marks_out_of_sync_and_a_continuing_diff_resumes(factory: Callable[[], Book]) -> None:
    sync = synced_futures(factory)
    assert sync.feed(DISCONNECT, 1.0) == (MarkOutOfSync(OutOfSyncReason.DISCONNECTED),)
    assert sync.feed(DISCONNECT, 1.0) == ()
    assert sync.state is SyncState.DISCONNECTED
    assert sync.feed(fut(11, 12, 10), 2.0) == UNCHANGED
    assert sync.state is SyncState.SYNCED


def test_disconnect_then_gap_resyncs(factory: Callable[[], Book]) -> None:
    sync = synced_futures(factory)
    sync.feed(DISCONNECT, 1.0)
    assert sync.feed(fut(40, 50, 30), 2.0) == (MarkOutOfSync(OutOfSyncReason.GAP), FETCH_LIVE)


def test_disconnect_while_buffering_drops_the_buffer(factory: Callable[[], Book]) -> None:
    sync = make(factory)
    sync.feed(spot(1, 5), 0.0)
    sync.feed(DISCONNECT, 0.0)
    sync.feed(spot(20, 25), 0.0)  # after the reconnect: no gap counted, the old buffer is gone
    assert sync.feed(SnapshotResult(snap(5), LIVE), 0.0) == (FETCH_LIVE,)
    assert sync.gaps == 0


# -- coverage guard -----------------------------------------------------------------------------


def test_losing_coverage_flags_and_refreshes(factory: Callable[[], Book]) -> None:
    sync = make(factory, refresh_interval_s=None)
    sync.feed(spot(9, 10), 0.0)
    full = [(100.0 - i, 1.0) for i in range(LIMIT)]  # a full side: known down to 96 only
    sync.feed(SnapshotResult(snap(10, bids=full), LIVE), 0.0)
    sync.feed(spot(11, 11, bids=[(100.0, 0.0), (99.0, 0.0), (98.0, 0.0)]), 0.0)
    actions = sync.feed(spot(12, 12, bids=[(97.0, 0.0)]), 0.0)
    assert actions == (MarkOutOfSync(OutOfSyncReason.UNCOVERED), FETCH_SHADOW, Publish(True))
    assert sync.state is SyncState.UNCOVERED
    sync.feed(spot(13, 13), 0.0)
    fresh = [(96.0, 1.0), (95.0, 1.0), (94.0, 1.0)]
    assert sync.feed(SnapshotResult(snap(13, bids=fresh), SHADOW), 0.0) == CHANGED
    assert (sync.state, sync.update_id, levels(sync)[0]) == (SyncState.SYNCED, 13, fresh)


# -- periodic refresh / audit -------------------------------------------------------------------


def test_refresh_builds_a_shadow_and_swaps_it_in_without_a_gap(factory: Callable[[], Book]) -> None:
    sync = synced_spot(factory, refresh_interval_s=60.0, stale_after_s=1000.0)
    assert sync.feed(TICK, 59.0) == ()
    assert sync.feed(TICK, 60.0) == (FETCH_SHADOW,)
    assert sync.on_diff == sync._diff_general  # recording diffs for the shadow
    assert sync.feed(spot(11, 12, bids=[(100.0, 2.0)]), 60.1) == CHANGED  # the live book keeps publishing
    assert sync.feed(SnapshotResult(snap(13, bids=[(100.0, 2.0), (99.0, 1.0)]), SHADOW), 60.2) == ()
    assert sync.state is SyncState.SYNCED
    live = sync.book
    assert sync.feed(spot(13, 14), 60.3) == UNCHANGED  # reaches the snapshot: audit and swap
    assert sync.book is not live
    assert (sync.audits, sync.last_audit_differences, sync.audit_faults) == (1, 0, 0)
    assert sync.on_diff == sync._diff_synced_spot
    assert sync.feed(TICK, 100.0) == ()
    assert sync.feed(TICK, 120.3) == (FETCH_SHADOW,)


def test_fast_path_covers_synced_and_uncovered_books_until_a_refresh_snapshot_comes(factory: Callable[[], Book]) -> None:
    sync = make(factory, refresh_interval_s=60.0, stale_after_s=1000.0)
    assert sync.fast_path() is None  # waiting for a diff
    sync.feed(spot(9, 10), 0.0)
    sync.feed(SnapshotResult(snap(10), LIVE), 0.1)
    sync.feed(spot(11, 11), 0.2)
    assert sync.fast_path() == FastPath(SyncState.SYNCED, False, 0)
    assert sync.feed(TICK, 60.2) == (FETCH_SHADOW,)
    fast = sync.fast_path()  # recording for the refresh: what the fast path records comes back through adopt
    assert fast == FastPath(SyncState.SYNCED, True, MAX_BUFFERED_DIFFS)
    sync.feed(spot(12, 12), 60.3)
    assert sync.fast_path() == FastPath(SyncState.SYNCED, True, MAX_BUFFERED_DIFFS - 1)  # one recorded: less room
    sync.feed(SnapshotResult(snap(20), SHADOW), 60.4)
    assert sync.fast_path() is None  # every diff now tries to join the snapshot


def test_a_diff_ending_before_the_book_is_old_even_when_its_first_ids_continue_it(factory: Callable[[], Book]) -> None:
    spot_sync = synced_spot(factory, refresh_interval_s=None)
    before, ignored = levels(spot_sync), spot_sync.diffs_ignored
    assert spot_sync.feed(spot(11, 9, bids=[(100.0, 7.0)]), 1.0) == ()  # U continues, u < U: never sent by Binance
    assert (spot_sync.update_id, spot_sync.diffs_ignored, levels(spot_sync)) == (10, ignored + 1, before)
    futures_sync = make(factory, SequenceRule.FUTURES, refresh_interval_s=None)
    futures_sync.feed(fut(8, 10, 7), 0.0)
    futures_sync.feed(SnapshotResult(snap(9), LIVE), 0.1)
    assert futures_sync.state is SyncState.SYNCED and futures_sync.update_id == 10
    ignored = futures_sync.diffs_ignored
    assert futures_sync.feed(fut(5, 10, 10, bids=[(100.0, 7.0)]), 1.0) == ()  # pu continues, u == pu
    assert (futures_sync.update_id, futures_sync.diffs_ignored) == (10, ignored + 1)


def test_adopted_diffs_continue_the_book_as_on_diff_would(factory: Callable[[], Book]) -> None:
    sync = synced_spot(factory, refresh_interval_s=None)
    book, applied = sync.book, sync.diffs_applied
    assert book is not None
    book.apply_diff(spot(11, 12, bids=[(100.0, 3.0)]))  # what the feeder's HotPath does, then tells BookSync
    sync.adopt(12, 1)
    assert (sync.update_id, sync.diffs_applied) == (12, applied + 1)
    assert sync.feed(spot(13, 13, bids=[(100.0, 4.0)]), 1.0) == CHANGED  # the next diff continues it
    assert sync.feed(spot(15, 15), 1.1)[0] == MarkOutOfSync(OutOfSyncReason.GAP)


def test_top_fault_after_an_adopted_diff_resyncs_a_crossed_book(factory: Callable[[], Book]) -> None:
    sync = synced_spot(factory, refresh_interval_s=None)
    assert sync.book is not None
    sync.book.apply_diff(spot(11, 11, bids=[(101.5, 1.0)]))  # crosses the best ask 101
    sync.adopt(11, 1)
    actions = sync.top_fault(1.0)
    assert actions[0] == MarkOutOfSync(OutOfSyncReason.CROSSED) and sync.state is SyncState.BUFFERING
    assert sync.fast_path() is None


def test_audit_counts_differences_and_a_top_difference_is_a_fault(factory: Callable[[], Book], caplog: pytest.LogCaptureFixture) -> None:
    sync = synced_spot(factory, refresh_interval_s=1.0)
    sync.feed(TICK, 1.0)
    sync.feed(spot(11, 11), 1.0)
    # the exchange's fresh view differs from ours at the best bid and at one deeper level
    fresh = snap(11, bids=[(100.0, 9.0), (98.0, 1.0)])
    with caplog.at_level(logging.INFO, logger="ldc.sync"):
        assert sync.feed(SnapshotResult(fresh, SHADOW), 1.0) == CHANGED
    assert (sync.audits, sync.last_audit_differences, sync.audit_differences, sync.audit_faults) == (1, 3, 3, 1)
    assert levels(sync)[0] == [(100.0, 9.0), (98.0, 1.0)]
    assert any("differed from a fresh snapshot" in record.message for record in caplog.records)


def test_shadow_snapshot_older_than_the_recorded_stream_is_fetched_again(factory: Callable[[], Book]) -> None:
    sync = synced_spot(factory, refresh_interval_s=1.0)
    sync.feed(TICK, 1.0)
    sync.feed(spot(11, 15), 1.0)
    assert sync.feed(SnapshotResult(snap(9), SHADOW), 1.0) == (FETCH_SHADOW,)
    assert sync.state is SyncState.SYNCED and sync.snapshots_too_old == 1


def test_shadow_failure_abandons_the_refresh_and_retries_later(factory: Callable[[], Book]) -> None:
    sync = synced_spot(factory, refresh_interval_s=10.0)
    sync.feed(TICK, 10.0)
    assert sync.feed(SnapshotFailed(SHADOW, "timeout", retry_after_s=3.0), 10.0) == ()
    assert sync.on_diff == sync._diff_synced_spot
    assert sync.feed(TICK, 12.9) == ()
    assert sync.feed(TICK, 13.0) == (FETCH_SHADOW,)


def test_gap_during_a_refresh_drops_the_shadow(factory: Callable[[], Book]) -> None:
    sync = synced_spot(factory, refresh_interval_s=1.0)
    sync.feed(TICK, 1.0)
    sync.feed(spot(20, 21), 1.0)
    assert sync.feed(SnapshotResult(snap(21), SHADOW), 1.0) == ()  # the refresh is gone
    assert sync.state is SyncState.BUFFERING and sync.audits == 0


def test_disconnect_during_a_refresh_restarts_it_once_resumed(factory: Callable[[], Book]) -> None:
    sync = synced_futures(factory, refresh_interval_s=10.0, stale_after_s=1000.0)
    assert sync.feed(TICK, 10.0) == (FETCH_SHADOW,)
    sync.feed(DISCONNECT, 11.0)
    assert sync.feed(SnapshotResult(snap(10), SHADOW), 11.5) == ()  # that refresh is gone
    assert sync.feed(TICK, 12.0) == ()  # no book to refresh while disconnected
    sync.feed(fut(11, 12, 10), 13.0)
    assert sync.state is SyncState.SYNCED
    assert sync.feed(TICK, 13.0) == (FETCH_SHADOW,)


# -- less travelled paths -----------------------------------------------------------------------


def test_futures_crossed_book_resyncs_from_the_fast_path(factory: Callable[[], Book]) -> None:
    sync = synced_futures(factory)
    assert sync.on_diff(fut(11, 12, 10, asks=[(99.5, 1.0)]), 0.0) == (MarkOutOfSync(OutOfSyncReason.CROSSED), FETCH_LIVE)
    assert sync.state is SyncState.BUFFERING


def test_crossed_book_during_a_refresh_resyncs_and_drops_the_refresh(factory: Callable[[], Book]) -> None:
    sync = synced_spot(factory, refresh_interval_s=1.0, stale_after_s=1000.0)
    sync.feed(TICK, 1.0)
    assert sync.refreshing
    assert sync.feed(spot(11, 11, bids=[(101.0, 1.0)]), 1.0) == (MarkOutOfSync(OutOfSyncReason.CROSSED), FETCH_LIVE)
    assert not sync.refreshing


def test_duplicate_while_buffering_is_ignored_and_counted(factory: Callable[[], Book]) -> None:
    sync = make(factory)
    sync.feed(spot(1, 5), 0.0)
    assert sync.feed(spot(1, 5), 0.0) == ()
    assert (sync.diffs_ignored, sync.gaps, len(sync._buffer)) == (1, 0, 1)


def test_late_answer_after_a_failure_syncs_and_a_later_gap_fetches_at_once(factory: Callable[[], Book]) -> None:
    sync = make(factory)
    sync.feed(spot(1, 5), 0.0)
    sync.feed(SnapshotFailed(LIVE, "timeout", retry_after_s=60.0), 1.0)
    assert sync.feed(SnapshotResult(snap(5), LIVE), 2.0) == CHANGED  # the first request answered late
    assert sync.synced
    assert sync.feed(spot(9, 9), 3.0) == (MarkOutOfSync(OutOfSyncReason.GAP), FETCH_LIVE)
    assert not sync.synced


def test_live_snapshot_arriving_after_the_book_resumed_is_ignored(factory: Callable[[], Book]) -> None:
    sync = synced_spot(factory)
    sync.feed(spot(20, 21), 0.0)  # gap: a live fetch goes out
    sync.feed(SnapshotResult(snap(21), LIVE), 0.0)
    assert sync.state is SyncState.SYNCED
    assert sync.feed(SnapshotResult(snap(5), LIVE), 0.0) == ()  # a late duplicate answer
    assert (sync.state, sync.update_id) == (SyncState.SYNCED, 21)


def test_snapshot_with_an_empty_buffer_waits_for_the_next_diff(factory: Callable[[], Book]) -> None:
    sync = make(factory)
    sync.feed(spot(1, 5), 0.0)
    sync.feed(DISCONNECT, 0.0)  # the buffer is dropped; the request is still in flight
    assert sync.feed(SnapshotResult(snap(7), LIVE), 0.0) == ()
    assert sync.feed(spot(6, 8), 0.0) == CHANGED
    assert (sync.state, sync.update_id) == (SyncState.SYNCED, 8)


def test_resync_while_a_request_is_in_flight_does_not_ask_twice(factory: Callable[[], Book]) -> None:
    sync = synced_spot(factory)
    sync.feed(spot(20, 21), 0.0)  # gap: FETCH_LIVE in flight
    sync.feed(SnapshotResult(snap(21, bids=[(103.0, 1.0)]), LIVE), 0.0)  # crossed: resync again
    assert sync.resyncs == 2 and sync.state is SyncState.BUFFERING
    sync.feed(spot(22, 22), 0.0)
    assert sync.feed(spot(30, 31), 0.0) == ()  # a gap inside the buffer: no second request
    assert sync.gaps == 2


def test_silent_market_while_buffering_is_resubscribed(factory: Callable[[], Book]) -> None:
    sync = make(factory, stale_after_s=5.0)
    sync.feed(spot(1, 5), 0.0)
    sync.feed(TICK, 0.0)
    assert sync.feed(TICK, 5.0) == (Resubscribe(OutOfSyncReason.STALE),)
    assert sync.state is SyncState.BUFFERING


def test_disconnect_before_any_diff_changes_nothing(factory: Callable[[], Book]) -> None:
    sync = make(factory)
    assert sync.feed(DISCONNECT, 0.0) == ()
    assert sync.state is SyncState.WAITING_FOR_DIFF


def test_snapshot_that_does_not_cover_the_depth_syncs_uncovered_and_refreshes(factory: Callable[[], Book]) -> None:
    sync = make(factory, refresh_interval_s=None)
    sync.feed(spot(9, 10), 0.0)
    full = [(100.0 - i, 1.0) for i in range(LIMIT)]
    sync.feed(spot(11, 11, bids=[(100.0 - i, 0.0) for i in range(LIMIT - 1)]), 0.0)  # buffered
    actions = sync.feed(SnapshotResult(snap(10, bids=full), LIVE), 0.0)
    assert actions == (MarkOutOfSync(OutOfSyncReason.UNCOVERED), FETCH_SHADOW, Publish(True))
    assert sync.state is SyncState.UNCOVERED


def test_resuming_after_a_disconnect_without_coverage_flags_and_refreshes(factory: Callable[[], Book]) -> None:
    sync = make(factory, refresh_interval_s=None)
    sync.feed(spot(9, 10), 0.0)
    full = [(100.0 - i, 1.0) for i in range(LIMIT)]
    sync.feed(SnapshotResult(snap(10, bids=full), LIVE), 0.0)
    sync.feed(DISCONNECT, 0.0)
    actions = sync.feed(spot(11, 11, bids=[(100.0 - i, 0.0) for i in range(LIMIT - 1)]), 0.0)
    assert actions == (MarkOutOfSync(OutOfSyncReason.UNCOVERED), FETCH_SHADOW, Publish(True))


def test_losing_coverage_while_recording_a_refresh_flags_without_a_second_request(factory: Callable[[], Book]) -> None:
    sync = make(factory, refresh_interval_s=1.0, stale_after_s=1000.0)
    sync.feed(spot(9, 10), 0.0)
    full = [(100.0 - i, 1.0) for i in range(LIMIT)]
    sync.feed(SnapshotResult(snap(10, bids=full), LIVE), 0.0)
    assert sync.feed(TICK, 1.0) == (FETCH_SHADOW,)
    actions = sync.feed(spot(11, 11, bids=[(100.0 - i, 0.0) for i in range(LIMIT - 1)]), 1.0)
    assert actions == (MarkOutOfSync(OutOfSyncReason.UNCOVERED), Publish(True))


def test_refresh_recording_overflow_abandons_the_refresh(factory: Callable[[], Book]) -> None:
    sync = synced_spot(factory, refresh_interval_s=1.0, stale_after_s=1000.0, max_buffered_diffs=2)
    sync.feed(TICK, 1.0)
    for uid in (11, 12, 13):
        assert sync.feed(spot(uid, uid), 1.0) == UNCHANGED  # the live book never stops
    assert not sync.refreshing
    assert sync.feed(TICK, 1.5) == ()
    assert sync.feed(TICK, 2.0) == (FETCH_SHADOW,)  # retried one interval later


def test_shadow_snapshot_at_the_live_id_joins_at_once(factory: Callable[[], Book]) -> None:
    sync = synced_spot(factory, refresh_interval_s=1.0, stale_after_s=1000.0)
    sync.feed(TICK, 1.0)
    assert sync.feed(SnapshotResult(snap(10), SHADOW), 1.0) == UNCHANGED
    assert (sync.audits, sync.refreshing) == (1, False)


def test_futures_shadow_snapshot_in_a_hole_is_fetched_again(factory: Callable[[], Book]) -> None:
    sync = synced_futures(factory, refresh_interval_s=1.0, stale_after_s=1000.0)
    sync.feed(TICK, 1.0)
    sync.feed(fut(20, 30, 10), 1.0)
    assert sync.feed(SnapshotResult(snap(15), SHADOW), 1.0) == (FETCH_SHADOW,)  # 15 lies in 11..19
    assert sync.snapshots_too_old == 1


def test_crossed_shadow_resyncs(factory: Callable[[], Book]) -> None:
    sync = synced_spot(factory, refresh_interval_s=1.0, stale_after_s=1000.0)
    sync.feed(TICK, 1.0)
    actions = sync.feed(SnapshotResult(snap(10, bids=[(103.0, 1.0)]), SHADOW), 1.0)
    assert actions == (MarkOutOfSync(OutOfSyncReason.CROSSED), FETCH_LIVE)


def test_shadow_that_does_not_cover_keeps_the_flag_and_retries_soon(factory: Callable[[], Book]) -> None:
    sync = make(factory, refresh_interval_s=None, stale_after_s=1000.0)
    sync.feed(spot(9, 10), 0.0)
    full = [(100.0 - i, 1.0) for i in range(LIMIT)]
    sync.feed(SnapshotResult(snap(10, bids=full), LIVE), 0.0)
    sync.feed(spot(11, 11, bids=[(100.0 - i, 0.0) for i in range(LIMIT - 1)]), 0.0)  # uncovered
    sync.feed(spot(12, 12, bids=[(96.0 - i, 0.0) for i in range(LIMIT - 1)]), 0.0)  # recorded
    thin = [(96.0 - i, 1.0) for i in range(LIMIT - 1)] + [(91.0, 0.5)]
    # swapped in: the top changed (91 was unknown to the live book), not a fault for an uncovered book
    assert sync.feed(SnapshotResult(snap(11, bids=thin), SHADOW), 0.0) == CHANGED
    assert (sync.audits, sync.audit_faults, sync.refreshing, sync.state) == (1, 0, False, SyncState.UNCOVERED)
    assert levels(sync)[0] == [(91.0, 0.5)]
    assert sync.feed(TICK, 29.0) == ()
    assert sync.feed(TICK, 30.0) == (FETCH_SHADOW,)


def test_quiet_market_is_stale_until_a_snapshot_at_the_live_id_proves_it_current(factory: Callable[[], Book]) -> None:
    sync = synced_spot(factory, refresh_interval_s=20.0, stale_after_s=5.0)
    sync.feed(TICK, 0.0)
    sync.feed(TICK, 10.0)
    assert sync.state is SyncState.STALE
    assert sync.feed(TICK, 20.0) == (FETCH_SHADOW,)
    assert sync.feed(SnapshotResult(snap(10), SHADOW), 20.0) == UNCHANGED
    assert (sync.state, sync.audits) == (SyncState.SYNCED, 1)


def test_stale_feed_with_a_moving_market_stays_stale(factory: Callable[[], Book]) -> None:
    sync = synced_spot(factory, refresh_interval_s=20.0, stale_after_s=5.0)
    sync.feed(TICK, 0.0)
    sync.feed(TICK, 10.0)
    sync.feed(TICK, 20.0)
    assert sync.feed(SnapshotResult(snap(15), SHADOW), 20.0) == ()  # waits for diffs that do not come
    assert (sync.state, sync.audits, sync.refreshing) == (SyncState.STALE, 0, True)


# -- configuration and logging ------------------------------------------------------------------


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="snapshot_limit 5 too small, expected at least 10"):
        SyncConfig(rule=SequenceRule.SPOT, depth=10, snapshot_limit=5)
    with pytest.raises(ConfigError, match="stale_after_s 0 too small"):
        SyncConfig(rule=SequenceRule.SPOT, depth=1, snapshot_limit=5, stale_after_s=0)
    with pytest.raises(ConfigError, match="refresh_interval_s -1 too small, expected more than 0 or None"):
        SyncConfig(rule=SequenceRule.SPOT, depth=1, snapshot_limit=5, refresh_interval_s=-1)


def test_one_log_line_per_state_change_never_per_message(factory: Callable[[], Book], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="ldc.sync"):
        sync = synced_spot(factory)
        for uid in range(11, 200):
            sync.feed(spot(uid, uid, bids=[(100.0, float(uid))]), 0.0)
        sync.feed(spot(11, 11), 0.0)  # ignored duplicate: counted, not logged
    assert [record.message for record in caplog.records] == [
        "BTCUSDT: waiting_for_diff -> buffering (first diff buffered)",
        "BTCUSDT: buffering -> synced (snapshot 10 joined the stream)",
    ]


def test_counters_snapshot(factory: Callable[[], Book]) -> None:
    sync = synced_spot(factory)
    sync.feed(spot(11, 11), 0.0)
    counters = sync.counters()
    assert (counters.diffs_applied, counters.diffs_ignored, counters.snapshots, counters.gaps) == (1, 1, 1, 0)  # the buffered 9..10 was in the snapshot


# -- a refresh at the live id on an idle stream (issues 7 and 8: flagged books at the end of a replay) --

RULES = pytest.mark.parametrize("rule", [SequenceRule.SPOT, SequenceRule.FUTURES], ids=["spot", "futures"])
FULL_BIDS = [(100.0 - i, 1.0) for i in range(LIMIT)]  # a full side: known down to 96 only
FRESH_BIDS = [(95.0, 1.0), (94.0, 1.0)]


def step(rule: SequenceRule, first: int, final: int, prev: int, bids: Sequence[Level] = ()) -> DepthDiff:
    """The diff after update id ``prev`` under ``rule``: spot chains by U, futures by pu."""
    return spot(first, final, bids) if rule is SequenceRule.SPOT else fut(first, final, prev, bids)


def uncovered(factory: Callable[[], Book], rule: SequenceRule, **options: float | None) -> BookSync:
    """A market synced at 10 on a full bid side, flagged UNCOVERED at 11 with a refresh in flight."""
    sync = make(factory, rule, refresh_interval_s=None, stale_after_s=1000.0, **options)
    sync.feed(step(rule, 9, 10, 8), 0.0)
    sync.feed(SnapshotResult(snap(10, bids=FULL_BIDS), LIVE), 0.0)
    actions = sync.feed(step(rule, 11, 11, 10, bids=[(100.0 - i, 0.0) for i in range(LIMIT - 1)]), 0.0)
    assert actions == (MarkOutOfSync(OutOfSyncReason.UNCOVERED), FETCH_SHADOW, Publish(True))
    assert (sync.state, sync.update_id, sync.refreshing) == (SyncState.UNCOVERED, 11, True)
    return sync


@RULES
def test_shadow_snapshot_at_the_id_of_an_uncovered_book_on_an_idle_stream_swaps_at_once(factory: Callable[[], Book], rule: SequenceRule) -> None:
    sync = uncovered(factory, rule)
    assert sync.feed(SnapshotResult(snap(11, bids=[(96.0, 1.0), *FRESH_BIDS]), SHADOW), 1.0) == CHANGED
    assert (sync.state, sync.update_id, sync.refreshing) == (SyncState.SYNCED, 11, False)
    assert (sync.audits, sync.last_audit_differences, sync.audit_faults) == (1, 0, 0)
    assert levels(sync)[0] == [(96.0, 1.0), *FRESH_BIDS]
    assert sync.on_diff == (sync._diff_synced_spot if rule is SequenceRule.SPOT else sync._diff_synced_futures)


@RULES
def test_shadow_snapshot_the_recorded_stream_already_reached_swaps_at_once(factory: Callable[[], Book], rule: SequenceRule) -> None:
    sync = uncovered(factory, rule)
    sync.feed(step(rule, 12, 12, 11, bids=[(96.0, 0.0)]), 0.5)  # recorded for the shadow
    sync.feed(step(rule, 13, 14, 12, bids=[(95.0, 3.0)]), 0.6)
    assert sync.feed(SnapshotResult(snap(14, bids=[(95.0, 3.0), (94.0, 1.0)]), SHADOW), 1.0) == CHANGED
    assert (sync.state, sync.update_id, sync.refreshing, sync.audits) == (SyncState.SYNCED, 14, False, 1)
    assert levels(sync)[0] == [(95.0, 3.0), (94.0, 1.0)]


def flagged(factory: Callable[[], Book], rule: SequenceRule, state: SyncState) -> BookSync:
    """A market whose book is at update id 11 and flagged ``state``."""
    if state is SyncState.UNCOVERED:
        return uncovered(factory, rule)
    sync = make(factory, rule, refresh_interval_s=None, stale_after_s=5.0)
    sync.feed(step(rule, 9, 10, 8), 0.0)
    sync.feed(SnapshotResult(snap(10), LIVE), 0.0)
    sync.feed(step(rule, 11, 11, 10), 0.0)
    if state is SyncState.STALE:
        sync.feed(TICK, 0.0)
        sync.feed(TICK, 5.0)
    else:
        sync.feed(DISCONNECT, 0.0)
    assert (sync.state, sync.update_id) == (state, 11)
    return sync


FLAGGED = pytest.mark.parametrize("state", [SyncState.UNCOVERED, SyncState.STALE, SyncState.DISCONNECTED], ids=lambda s: s.name.lower())


@RULES
@FLAGGED
def test_live_snapshot_at_the_id_of_a_flagged_book_replaces_it_at_once(factory: Callable[[], Book], rule: SequenceRule, state: SyncState) -> None:
    sync = flagged(factory, rule, state)
    fresh = snap(11, bids=[(100.0, 1.0), (99.0, 1.0)] if state is not SyncState.UNCOVERED else FRESH_BIDS)
    assert sync.feed(SnapshotResult(fresh, LIVE), 6.0) in (CHANGED, UNCHANGED)
    assert (sync.state, sync.update_id, sync.refreshing, sync.audits, sync.audit_faults) == (SyncState.SYNCED, 11, False, 1, 0)
    assert levels(sync)[0] == fresh.bids
    assert sync.feed(SnapshotResult(snap(11), SHADOW), 6.0) == ()  # the refresh it made moot
    assert sync.feed(step(rule, 12, 12, 11), 7.0) == UNCHANGED  # the stream continues the new book
    assert (sync.gaps, sync.resyncs) == (0, 0)


@RULES
@FLAGGED
def test_live_snapshot_at_another_id_of_a_flagged_book_changes_nothing(factory: Callable[[], Book], rule: SequenceRule, state: SyncState) -> None:
    sync = flagged(factory, rule, state)
    book = sync.book
    for other in (10, 12):
        assert sync.feed(SnapshotResult(snap(other), LIVE), 6.0) == ()
    assert (sync.state, sync.update_id, sync.book, sync.audits) == (state, 11, book, 0)


# -- snapshot limit ladder ------------------------------------------------------------------------

LADDER = (LIMIT, 8, 12)


def laddered(factory: Callable[[], Book], rule: SequenceRule = SequenceRule.SPOT, **options: float | None) -> BookSync:
    config = SyncConfig(rule=rule, depth=DEPTH, snapshot_limit=LIMIT, escalation_limits=LADDER[1:],
                        refresh_interval_s=None, stale_after_s=1e9, **options)  # type: ignore[arg-type]  # fmt: skip
    return BookSync("BTCUSDT", factory, config)


def lose_coverage(sync: BookSync, rule: SequenceRule, now: float) -> tuple[object, ...]:
    """Delete every bid the book holds at once: it no longer knows its top 2 bids."""
    assert sync.book is not None
    held = sync.book.levels()[0]
    uid = sync.update_id
    return sync.feed(step(rule, uid + 1, uid + 1, uid, bids=[(p, 0.0) for p, _ in held]), now)


def full_snapshot(update_id: int, limit: int, top: float) -> DepthSnapshot:
    return DepthSnapshot(update_id, [(top - i, 1.0) for i in range(limit)], [(101.0, 1.0)], limit)


@RULES
def test_cold_start_asks_the_cheap_limit_and_a_quick_loss_of_coverage_climbs_the_ladder(factory: Callable[[], Book], rule: SequenceRule) -> None:
    sync = laddered(factory, rule)
    assert sync.feed(step(rule, 9, 10, 8), 0.0) == (FetchSnapshot(LIMIT, LIVE),)
    sync.feed(SnapshotResult(full_snapshot(10, LIMIT, 100.0), LIVE), 0.0)
    actions = lose_coverage(sync, rule, 59.0)  # within ESCALATE_IF_UNCOVERED_WITHIN_S of the snapshot
    assert actions == (MarkOutOfSync(OutOfSyncReason.UNCOVERED), FetchSnapshot(8, SHADOW), Publish(True))
    assert (sync.limit_escalations, sync.snapshot_limit) == (1, 8)
    sync.feed(SnapshotResult(full_snapshot(11, 8, 90.0), SHADOW), 60.0)
    assert sync.state is SyncState.SYNCED
    assert lose_coverage(sync, rule, 61.0)[1] == FetchSnapshot(12, SHADOW)
    sync.feed(SnapshotResult(full_snapshot(12, 12, 80.0), SHADOW), 62.0)
    assert lose_coverage(sync, rule, 63.0)[1] == FetchSnapshot(12, SHADOW)  # the top of the ladder
    assert (sync.limit_escalations, sync.counters().snapshot_limit) == (2, 12)


def test_coverage_lost_long_after_the_snapshot_keeps_the_limit(factory: Callable[[], Book]) -> None:
    sync = laddered(factory, escalate_within_s=60.0)
    sync.feed(spot(9, 10), 0.0)
    sync.feed(SnapshotResult(full_snapshot(10, LIMIT, 100.0), LIVE), 0.0)
    assert lose_coverage(sync, SequenceRule.SPOT, 60.5)[1] == FETCH_SHADOW
    assert (sync.limit_escalations, sync.snapshot_limit) == (0, LIMIT)


def test_a_fresh_snapshot_that_does_not_cover_asks_the_next_limit_at_once(factory: Callable[[], Book]) -> None:
    """The stream moved through the refresh's snapshot before it arrived (spot BTCUSDT in the
    simulator's replay): on an idle stream no diff would fill the top, so the larger limit is asked
    now; at the top of the ladder the retry waits SNAPSHOT_RETRY_CAP_S as without a ladder."""
    sync = laddered(factory)
    sync.feed(spot(9, 10), 0.0)
    sync.feed(SnapshotResult(full_snapshot(10, LIMIT, 100.0), LIVE), 0.0)
    lose_coverage(sync, SequenceRule.SPOT, 100.0)  # long after: same limit
    sync.feed(spot(12, 12, bids=[(95.0 - i, 0.0) for i in range(LIMIT - 1)]), 100.0)
    thin = DepthSnapshot(11, [(95.0 - i, 1.0) for i in range(LIMIT)], [(101.0, 1.0)], LIMIT)
    # joins at 12 knowing one bid of LIMIT: still uncovered
    assert sync.feed(SnapshotResult(thin, SHADOW), 100.0) == (FetchSnapshot(8, SHADOW), Publish(True))
    assert (sync.state, sync.snapshot_limit, sync.refreshing) == (SyncState.UNCOVERED, 8, True)
    sync.feed(SnapshotResult(full_snapshot(12, 8, 94.0), SHADOW), 100.1)
    assert sync.state is SyncState.SYNCED
    lose_coverage(sync, SequenceRule.SPOT, 100.2)  # climbs to 12
    sync.feed(spot(14, 14, bids=[(90.0 - i, 0.0) for i in range(11)]), 100.2)
    thin = DepthSnapshot(13, [(90.0 - i, 1.0) for i in range(12)], [(101.0, 1.0)], 12)
    assert sync.feed(SnapshotResult(thin, SHADOW), 100.3) == CHANGED  # the top of the ladder: wait
    assert (sync.state, sync.refreshing) == (SyncState.UNCOVERED, False)
    assert sync.feed(TICK, 130.3) == (FetchSnapshot(12, SHADOW),)


@pytest.mark.parametrize("ladder", [(), (8,)], ids=["static", "ladder"])
def test_a_refresh_too_small_to_cover_keeps_a_live_book_that_covers(factory: Callable[[], Book], ladder: tuple[int, ...]) -> None:
    """The live book came from a larger snapshot (the limit stepped down since) and knows the whole bid
    side; the refresh's snapshot vouches down to 96 only, and the recorded diff leaves it one bid there.
    Both agree where both know every price: the live book stays (swapping would flag a correct book),
    and with a ladder the next request asks the next limit."""
    config = SyncConfig(rule=SequenceRule.SPOT, depth=DEPTH, snapshot_limit=LIMIT, escalation_limits=ladder,
                        refresh_interval_s=1.0, stale_after_s=1000.0)  # fmt: skip
    sync = BookSync("BTCUSDT", factory, config)
    sync.feed(spot(9, 10), 0.0)
    wide = DepthSnapshot(10, [(100.0 - i, 1.0) for i in range(7)], [(101.0, 1.0), (102.0, 1.0)], 10)
    sync.feed(SnapshotResult(wide, LIVE), 0.0)
    assert sync.feed(TICK, 1.0) == (FETCH_SHADOW,)
    sync.feed(spot(11, 11, bids=[(100.0 - i, 0.0) for i in range(4)]), 1.0)  # recorded; live: 96, 95, 94
    live = sync.book
    narrow = DepthSnapshot(10, [(100.0 - i, 1.0) for i in range(LIMIT)], [(101.0, 1.0), (102.0, 1.0)], LIMIT)
    assert sync.feed(SnapshotResult(narrow, SHADOW), 1.0) == ()
    assert (sync.state, sync.book, sync.refreshing) == (SyncState.SYNCED, live, False)
    assert (sync.audits, sync.audit_differences, sync.audit_faults) == (1, 0, 0)
    assert levels(sync)[0] == [(96.0, 1.0), (95.0, 1.0), (94.0, 1.0)]
    assert sync.feed(TICK, 2.0) == (FetchSnapshot((LIMIT, *ladder)[-1], SHADOW),)  # the next interval


def test_a_book_covered_for_step_down_after_s_steps_down_one_limit(factory: Callable[[], Book]) -> None:
    sync = laddered(factory, step_down_after_s=100.0)
    sync.feed(spot(9, 10), 0.0)
    sync.feed(SnapshotResult(full_snapshot(10, LIMIT, 100.0), LIVE), 0.0)
    lose_coverage(sync, SequenceRule.SPOT, 1.0)
    sync.feed(SnapshotResult(full_snapshot(11, 8, 90.0), SHADOW), 2.0)  # covered again from 2.0
    lose_coverage(sync, SequenceRule.SPOT, 3.0)
    sync.feed(SnapshotResult(full_snapshot(12, 12, 80.0), SHADOW), 4.0)  # covered again from 4.0
    assert sync.snapshot_limit == 12
    sync.feed(TICK, 103.9)
    assert sync.snapshot_limit == 12
    sync.feed(TICK, 104.0)
    assert sync.snapshot_limit == 8
    sync.feed(TICK, 203.9)
    assert sync.snapshot_limit == 8
    sync.feed(TICK, 204.0)
    assert sync.snapshot_limit == LIMIT
    sync.feed(TICK, 1000.0)
    assert (sync.snapshot_limit, sync.limit_escalations) == (LIMIT, 2)  # the bottom of the ladder


def test_an_uncovered_book_does_not_step_down(factory: Callable[[], Book]) -> None:
    sync = laddered(factory, step_down_after_s=100.0)
    sync.feed(spot(9, 10), 0.0)
    sync.feed(SnapshotResult(full_snapshot(10, LIMIT, 100.0), LIVE), 0.0)
    lose_coverage(sync, SequenceRule.SPOT, 1.0)  # the refresh at limit 8 is never answered
    sync.feed(TICK, 500.0)
    assert (sync.state, sync.snapshot_limit) == (SyncState.UNCOVERED, 8)


def test_a_resync_asks_the_limit_the_market_climbed_to(factory: Callable[[], Book]) -> None:
    sync = laddered(factory)
    sync.feed(spot(9, 10), 0.0)
    sync.feed(SnapshotResult(full_snapshot(10, LIMIT, 100.0), LIVE), 0.0)
    lose_coverage(sync, SequenceRule.SPOT, 1.0)
    assert sync.feed(spot(50, 51), 2.0) == (MarkOutOfSync(OutOfSyncReason.GAP), FetchSnapshot(8, LIVE))


def test_ladder_config_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"escalation_limits \[5, 8\] not ascending above snapshot_limit 5, expected each larger than the one before"):
        SyncConfig(rule=SequenceRule.SPOT, depth=1, snapshot_limit=5, escalation_limits=(5, 8))
    with pytest.raises(ConfigError, match=r"escalation_limits \[9, 8\] not ascending"):
        SyncConfig(rule=SequenceRule.SPOT, depth=1, snapshot_limit=5, escalation_limits=(9, 8))
    with pytest.raises(ConfigError, match="escalate_within_s 0 too small, expected more than 0"):
        SyncConfig(rule=SequenceRule.SPOT, depth=1, snapshot_limit=5, escalate_within_s=0)
    with pytest.raises(ConfigError, match="step_down_after_s -1 too small, expected more than 0"):
        SyncConfig(rule=SequenceRule.SPOT, depth=1, snapshot_limit=5, step_down_after_s=-1)


# -- a refresh answered by older snapshots (issue 14 item 12) ------------------------------------


def test_regression_refresh_answered_by_older_snapshots_backs_off_and_gives_up(factory: Callable[[], Book]) -> None:
    """A lagging REST cache that keeps serving the same old snapshot: the first too-old answer is asked
    again at once (the documented race), the next ones only after a growing delay, and the refresh is
    abandoned after MAX_TOO_OLD_SNAPSHOTS_PER_REFRESH answers; each wait is said in the slot."""
    from ldc.sync import MAX_TOO_OLD_SNAPSHOTS_PER_REFRESH, Notice

    sync = synced_spot(factory, refresh_interval_s=100.0, stale_after_s=1e9)
    sync.feed(TICK, 100.0)  # the refresh starts
    sync.feed(spot(11, 15), 100.0)
    requests, now = 1, 100.0
    assert sync.feed(SnapshotResult(snap(9), SHADOW), now) == (FETCH_SHADOW,)
    requests += 1
    notices: list[str] = []
    for _ in range(MAX_TOO_OLD_SNAPSHOTS_PER_REFRESH * 4):
        actions = sync.feed(SnapshotResult(snap(9), SHADOW), now)
        assert FETCH_SHADOW not in actions  # never at once again
        notices += [a.text for a in actions if isinstance(a, Notice)]
        for _ in range(240):  # ticks until the delayed request (or none within 60 s: the refresh was abandoned)
            now += 0.25
            if FETCH_SHADOW in sync.feed(TICK, now):
                requests += 1
                break
        else:
            break
    assert requests == MAX_TOO_OLD_SNAPSHOTS_PER_REFRESH
    assert sync.state is SyncState.SYNCED and not sync.refreshing
    assert notices and "older than the book" in notices[0] and "abandoned" in notices[-1]


def test_refresh_requests_of_one_market_answered_too_old_are_bounded_per_minute(factory: Callable[[], Book]) -> None:
    """Whatever the refresh interval, a market whose refreshes are all answered by older snapshots asks at
    most 2 + max_too_old_reasks_per_min refresh snapshots in any minute (a refresh, its re-asks, the next)."""
    sync = synced_spot(factory, refresh_interval_s=0.5, stale_after_s=1e9)
    times: list[float] = []
    update_id, now = 10, 0.0
    while now < 300.0:
        now += 0.25
        update_id += 1
        actions = sync.feed(TICK, now) + sync.feed(spot(update_id, update_id), now)
        while FETCH_SHADOW in actions:
            times.append(now)
            actions = sync.feed(SnapshotResult(snap(9), SHADOW), now)  # older than the book
    bound = 2 + SyncConfig(rule=SequenceRule.SPOT, depth=DEPTH, snapshot_limit=LIMIT).max_too_old_reasks_per_min
    assert len(times) > bound
    assert max(sum(1 for t in times if start <= t < start + 60.0) for start in times) <= bound


def test_regression_live_snapshot_that_stays_older_than_the_stream_is_asked_again_after_a_delay(factory: Callable[[], Book]) -> None:
    from ldc.sync import Notice

    sync = make(factory, stale_after_s=1e9)
    sync.feed(spot(100, 105), 0.0)
    assert sync.feed(SnapshotResult(snap(98), LIVE), 0.0) == (FETCH_LIVE,)
    actions = sync.feed(SnapshotResult(snap(98), LIVE), 0.0)  # the same old answer: a lagging cache
    assert FETCH_LIVE not in actions and isinstance(actions[0], Notice) and "asking again in 0.5 s" in actions[0].text
    assert sync.feed(TICK, 0.25) == ()
    assert sync.feed(TICK, 0.5) == (FETCH_LIVE,)


# -- fail closed -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", [SequenceRule.SPOT, SequenceRule.FUTURES])
def test_an_exception_inside_the_engine_resyncs_that_market_instead_of_escaping(factory: Callable[[], Book], rule: SequenceRule) -> None:
    """h11's rule: a half-applied book is never resumed. A book that raises while applying a diff (fast path and
    general path alike) leaves the market resyncing, counted; the exception does not reach the caller."""
    raising = {"on": False}

    def flaky() -> Book:
        book = factory()

        class Flaky:
            def __getattr__(self, name: str) -> object:
                return getattr(book, name)

            def apply_diff(self, diff: DepthDiff) -> bool:
                if raising["on"]:
                    raise ValueError("level table full")
                return book.apply_diff(diff)

        return Flaky()  # type: ignore[return-value]

    sync = make(flaky, rule, stale_after_s=1e9)
    other = synced_spot(factory)
    diff = spot if rule is SequenceRule.SPOT else (lambda first, final, **kw: fut(first, final, first - 1))
    sync.feed(diff(9, 10), 0.0)  # type: ignore[operator]
    sync.feed(SnapshotResult(snap(10), LIVE), 0.0)
    assert sync.state is SyncState.SYNCED
    raising["on"] = True
    actions = sync.on_diff(diff(11, 11, bids=[(100.0, 2.0)]), 0.0)  # type: ignore[operator]
    assert actions == (MarkOutOfSync(OutOfSyncReason.FAULT), FETCH_LIVE)
    assert (sync.state, sync.book, sync.faults) == (SyncState.BUFFERING, None, 1)
    raising["on"] = False
    sync.feed(diff(12, 12), 0.0)  # type: ignore[operator]
    assert sync.feed(SnapshotResult(snap(12), LIVE), 0.0) == CHANGED and sync.state is SyncState.SYNCED
    assert other.state is SyncState.SYNCED
