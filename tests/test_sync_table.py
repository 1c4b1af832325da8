"""ldc.sync_table: BookSync's transitions as data, and the engine held to them (a row it breaks is a fault,
answered by a resync of that market alone)."""

from __future__ import annotations

import pytest

from ldc._fastbook import FastBook
from ldc.depth import NO_ID, DepthDiff, DepthSnapshot
from ldc.sync import (
    DISCONNECT,
    MESSAGE_LOST,
    TICK,
    BookSync,
    FetchSnapshot,
    MarkOutOfSync,
    OutOfSyncReason,
    SequenceRule,
    SnapshotPurpose,
    SnapshotResult,
    SyncConfig,
    SyncState,
    _HANDLERS,
)
from ldc.sync_table import TRANSITIONS, TRIGGER_OF_VERDICT, Do, TransitionError, Trigger, step
from ldc.venues.base import Verdict

NO_BOOK = (SyncState.WAITING_FOR_DIFF, SyncState.BUFFERING)
VERDICT_TRIGGERS = set(TRIGGER_OF_VERDICT.values())


def test_every_handler_the_table_names_exists_and_every_handler_is_named() -> None:
    assert set(_HANDLERS) == set(Do) == {row.do for row in TRANSITIONS.values()}


def test_every_verdict_of_the_sequence_rule_is_a_trigger() -> None:
    assert set(TRIGGER_OF_VERDICT) == set(Verdict)


@pytest.mark.parametrize("state", list(SyncState), ids=lambda s: s.name)
def test_each_state_has_a_row_for_every_event_it_can_meet(state: SyncState) -> None:
    """A diff meets the sequence rule only where a book exists; every other trigger may come in any state."""
    triggers = {trigger for (st, trigger) in TRANSITIONS if st is state}
    diffs = {Trigger.DIFF_NO_BOOK} if state in NO_BOOK else VERDICT_TRIGGERS
    assert triggers == (set(Trigger) - VERDICT_TRIGGERS - {Trigger.DIFF_NO_BOOK}) | diffs


def test_a_pair_missing_from_the_table_says_which() -> None:
    with pytest.raises(TransitionError, match="^no transition from synced on diff while no book exists$"):
        step(SyncState.SYNCED, Trigger.DIFF_NO_BOOK)


def test_only_a_gap_a_lost_message_or_a_disconnect_leaves_a_book_state_unconditionally() -> None:
    """The rows' next states, read as documentation: the forced moves of a book."""
    forced = {(state, trigger): next(iter(row.next)) for (state, trigger), row in TRANSITIONS.items()
              if state not in NO_BOOK and len(row.next) == 1 and state not in row.next}  # fmt: skip
    assert set(forced.values()) == {SyncState.BUFFERING, SyncState.DISCONNECTED}
    assert {trigger for _, trigger in forced} == {Trigger.DIFF_GAP, Trigger.MESSAGE_LOST, Trigger.DISCONNECT}


def _spot() -> BookSync:
    config = SyncConfig(rule=SequenceRule.SPOT, depth=2, snapshot_limit=100, refresh_interval_s=None, stale_after_s=5.0)
    return BookSync("BTCUSDT", lambda: FastBook(depth=2), config)


def _diff(first: int, final: int) -> DepthDiff:
    return DepthDiff("BTCUSDT", first, final, NO_ID, 1, NO_ID, [(99.0, 1.0)], [])


SNAPSHOT = DepthSnapshot(10, [(99.0, 1.0), (98.0, 1.0)], [(101.0, 1.0), (102.0, 1.0)], 100)


def test_a_market_walks_the_table_from_first_diff_to_resync() -> None:
    """Every state a scripted market passes through is one its row allows (else the engine would fault)."""
    sync = _spot()
    seen = [sync.state]
    for event, now in ((_diff(9, 10), 0.0), (SnapshotResult(SNAPSHOT, SnapshotPurpose.LIVE), 0.1), (_diff(11, 11), 0.2),
                       (TICK, 0.3), (TICK, 6.0), (_diff(12, 12), 6.1), (DISCONNECT, 6.2), (_diff(13, 13), 6.3),
                       (MESSAGE_LOST, 6.4)):  # fmt: skip
        sync.feed(event, now)
        seen.append(sync.state)
    W, B, S, T, D = (SyncState.WAITING_FOR_DIFF, SyncState.BUFFERING, SyncState.SYNCED, SyncState.STALE,
                     SyncState.DISCONNECTED)  # fmt: skip
    assert seen == [W, B, S, S, S, T, S, D, S, B]
    assert (sync.faults, sync.resyncs, sync.gaps) == (0, 1, 1)


def test_the_fault_path_resyncs_the_market_when_a_handler_raises() -> None:
    """h11's rule: an exception inside the engine moves the market to a resync, never on with a half-applied book.
    A snapshot whose price is not a number raises inside the book's own load (a real fault of the real book)."""
    sync = _spot()
    sync.feed(_diff(9, 10), 0.0)
    broken = DepthSnapshot(10, [(99.0, 1.0)], [("x", 1.0)], 100)  # type: ignore[list-item]
    actions = sync.feed(SnapshotResult(broken, SnapshotPurpose.LIVE), 0.1)
    assert actions == (MarkOutOfSync(OutOfSyncReason.FAULT), FetchSnapshot(100, SnapshotPurpose.LIVE))
    assert (sync.state, sync.book, sync.faults) == (SyncState.BUFFERING, None, 1)
