"""ldc.publish: the one state-to-status table and the one Python publish path both feeders use."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest

from ldc._fastbook import FastBook
from ldc.depth import NO_ID, DepthDiff, DepthSnapshot
from ldc.publish import SlotPublisher, reason_status, status_of, text_of
from ldc.shm.layout import Status
from ldc.shm.reader import Reader
from ldc.shm.writer import SegmentWriter
from ldc.sync import (
    Action,
    BookSync,
    FetchSnapshot,
    OutOfSyncReason,
    SequenceRule,
    SnapshotPurpose,
    SnapshotResult,
    SyncConfig,
    SyncState,
)
from shm_helpers import group_fixture

DEPTH = 2


@pytest.fixture
def group() -> Iterator[str]:
    yield from group_fixture()


def test_the_state_table_gives_each_state_its_flags() -> None:
    assert {state: status_of(state) for state in SyncState} == {
        SyncState.WAITING_FOR_DIFF: Status.RESYNCING,
        SyncState.BUFFERING: Status.RESYNCING,
        SyncState.SYNCED: Status.SYNCED,
        SyncState.UNCOVERED: Status.SYNCED | Status.INCOMPLETE | Status.REFRESHING,
        SyncState.STALE: Status.SYNCED | Status.STALE,
        SyncState.DISCONNECTED: Status.STALE | Status.RESYNCING,
    }
    assert text_of(SyncState.SYNCED) == "" and all(text_of(state) for state in SyncState if state is not SyncState.SYNCED)


def test_an_out_of_sync_reason_shows_the_flags_of_the_state_it_leaves_and_its_own() -> None:
    assert {reason: reason_status(reason) for reason in OutOfSyncReason} == {
        OutOfSyncReason.GAP: Status.RESYNCING,
        OutOfSyncReason.CROSSED: Status.RESYNCING | Status.CROSSED,
        OutOfSyncReason.BUFFER_OVERFLOW: Status.RESYNCING,
        OutOfSyncReason.STALE: Status.SYNCED | Status.STALE,
        OutOfSyncReason.DISCONNECTED: Status.STALE | Status.RESYNCING,
        OutOfSyncReason.UNCOVERED: Status.SYNCED | Status.INCOMPLETE | Status.REFRESHING,
        OutOfSyncReason.CHECKSUM: Status.RESYNCING,
        OutOfSyncReason.FAULT: Status.RESYNCING,
    }


@dataclass(eq=False)
class _Market:
    symbol: str
    slot: int
    sync: BookSync
    bids: npt.NDArray[np.float64]
    asks: npt.NDArray[np.float64]
    shown_state: SyncState | None = None
    last_event_ms: int = 7
    last_recv_ns: int = 8


def _diff(first: int, final: int, bids: list[tuple[float, float]]) -> DepthDiff:
    return DepthDiff("BTCUSDT", first, final, NO_ID, 1, NO_ID, bids, [])


def test_a_market_s_slot_follows_its_book_through_sync_a_crossed_top_and_a_resync(group: str) -> None:
    config = SyncConfig(rule=SequenceRule.SPOT, depth=DEPTH, snapshot_limit=100, refresh_interval_s=None)
    sync = BookSync("BTCUSDT", lambda: FastBook(depth=DEPTH), config)
    other: list[Action] = []
    with SegmentWriter(group, depth=DEPTH, capacity=1) as writer, Reader(group) as reader:
        market = _Market("BTCUSDT", writer.add_market("BTCUSDT"), sync, np.zeros((DEPTH, 2)), np.zeros((DEPTH, 2)))
        slots = SlotPublisher(writer, DEPTH)
        slots.carry_out(market, sync.feed(_diff(9, 10, []), 0.0), lambda m, action: other.append(action))
        assert other == [FetchSnapshot(100, SnapshotPurpose.LIVE)]
        said = reader.status("BTCUSDT")
        assert (said.status, said.message) == (Status.RESYNCING, "buffering diffs for a snapshot")
        snapshot = DepthSnapshot(10, [(99.0, 1.0), (98.0, 1.0)], [(101.0, 1.0), (102.0, 1.0)], 100)
        slots.carry_out(market, sync.feed(SnapshotResult(snapshot, SnapshotPurpose.LIVE), 0.1), lambda m, a: None)
        read = reader.snapshot("BTCUSDT")
        assert (read.in_sync, read.update_id, read.bids.tolist(), reader.status("BTCUSDT").message) == (
            True, 10, [[99.0, 1.0], [98.0, 1.0]], "")  # fmt: skip
        actions = sync.on_diff(_diff(11, 11, [(100.0, 2.0)]), 0.2)  # the diff path: BookSync's preallocated answer
        slots.top(market, update_id=11, event_time_ms=1, recv_time_ns=2, changed=True)
        assert reader.snapshot("BTCUSDT").bids.tolist() == [[100.0, 2.0], [99.0, 1.0]] and len(actions) == 1
        slots.carry_out(market, sync.on_diff(_diff(12, 12, [(101.5, 1.0)]), 0.3), lambda m, a: None)  # crosses
        said = reader.status("BTCUSDT")
        assert (said.status, said.message, said.update_id) == (Status.RESYNCING | Status.CROSSED, "crossed", 11)
        slots.say(market, "websocket connection failed, retrying: refused")
        said = reader.status("BTCUSDT")
        assert (said.status, said.message) == (Status.RESYNCING, "websocket connection failed, retrying: refused")
