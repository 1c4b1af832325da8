"""ldc.handoff.Handoff: the one owner of a market's book between its BookSync and its C HotPath. Sequence rule
as Binance documents it for spot (reference/binance-and-peers.md): a diff continues the book when
``U == last u + 1``; the HotPath applies exactly those, BookSync decides everything else."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from ldc._fastbook import HOT_DONE, FastBook, HotPath, ParsedDiff, parse_depth
from ldc.config import GroupConfig
from ldc.depth import DepthSnapshot
from ldc.feeder import Feeder
from ldc.handoff import Handoff
from ldc.shm.writer import SegmentWriter
from ldc.sync import (
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
)
from shm_helpers import group_fixture

DEPTH = 5
SNAPSHOT = DepthSnapshot(100, [(99.0 - i, 1.0) for i in range(10)], [(101.0 + i, 1.0) for i in range(10)], 1000)


@pytest.fixture
def group() -> Iterator[str]:
    yield from group_fixture()


def _raw(first: int, final: int, bids: list[tuple[str, str]] = [], symbol: str = "BTCUSDT") -> bytes:  # noqa: B006
    msg: dict[str, Any] = {"e": "depthUpdate", "E": 1_700_000_000_000 + final, "s": symbol, "U": first, "u": final,
                           "b": [list(level) for level in bids], "a": []}  # fmt: skip
    return orjson.dumps(msg)


def _diff(first: int, final: int, bids: list[tuple[str, str]] = []) -> ParsedDiff:  # noqa: B006
    parsed = parse_depth(_raw(first, final, bids))
    assert parsed is not None
    return parsed


def _synced(*, refresh_interval_s: float | None = None) -> BookSync:
    config = SyncConfig(rule=SequenceRule.SPOT, depth=DEPTH, snapshot_limit=1000, refresh_interval_s=refresh_interval_s,
                        stale_after_s=1e9)  # fmt: skip
    sync = BookSync("BTCUSDT", lambda: FastBook(depth=DEPTH), config)
    sync.feed(_diff(100, 100), 0.0)  # type: ignore[arg-type]
    sync.feed(SnapshotResult(SNAPSHOT, SnapshotPurpose.LIVE), 0.0)
    assert sync.state is SyncState.SYNCED and sync.update_id == 100
    return sync


def test_settle_hands_back_what_the_hot_path_applied(group: str) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=1) as writer:
        sync = _synced()
        handoff = Handoff(sync, HotPath(writer.segment, writer.add_market("BTCUSDT"), futures=False))
        assert handoff.rearm(SyncState.SYNCED) and handoff.armed
        assert [handoff.hot.feed(_diff(i, i, [("99", str(i))]), 1) for i in (101, 102)] == [HOT_DONE, HOT_DONE]
        assert (sync.update_id, sync.diffs_applied) == (100, 0)  # the HotPath holds the book
        handoff.settle()
        assert (handoff.armed, sync.update_id, sync.diffs_applied) == (False, 102, 2)


def test_the_hot_path_is_armed_only_where_the_slot_already_shows_the_state(group: str) -> None:
    """The HotPath publishes with the state's flags: it must not take over before the slot says that state."""
    with SegmentWriter(group, depth=DEPTH, capacity=1) as writer:
        handoff = Handoff(_synced(), HotPath(writer.segment, writer.add_market("BTCUSDT"), futures=False))
        assert not handoff.rearm(None) and not handoff.rearm(SyncState.UNCOVERED) and not handoff.armed
        assert handoff.rearm(SyncState.SYNCED) and handoff.armed


def test_a_pending_refresh_gets_every_diff_the_hot_path_applied_and_audits_them(group: str) -> None:
    """The HotPath records into the hand-off's own list; settle gives those diffs to the refresh, whose audit
    then agrees with the live book at the same update id."""
    with SegmentWriter(group, depth=DEPTH, capacity=1) as writer:
        sync = _synced(refresh_interval_s=60.0)
        assert sync.feed(TICK, 0.0) == () and sync.feed(TICK, 60.0) == (FetchSnapshot(1000, SnapshotPurpose.SHADOW),)
        handoff = Handoff(sync, HotPath(writer.segment, writer.add_market("BTCUSDT"), futures=False))
        assert handoff.rearm(SyncState.SYNCED)
        for i in (101, 102, 103):
            assert handoff.hot.feed(_diff(i, i, [("99", str(i))]), 1) == HOT_DONE
        shadow = DepthSnapshot(101, [(99.0, 101.0), *SNAPSHOT.bids[1:]], SNAPSHOT.asks, 1000)
        handoff.feed(SnapshotResult(shadow, SnapshotPurpose.SHADOW), 60.5)  # settles, then the audit
        assert (sync.audits, sync.last_audit_differences, sync.audit_faults, sync.refreshing) == (1, 0, 0, False)
        assert (sync.state, sync.update_id) == (SyncState.SYNCED, 103)


def test_an_exception_in_the_hot_path_resyncs_the_market_instead_of_resuming_its_book(group: str) -> None:
    """A HotPath whose slot holds no market applies the diff, then its publish raises in C: the book moved and the
    slot did not. The hand-off never gives that book back: the market resyncs (fail closed)."""
    with SegmentWriter(group, depth=DEPTH, capacity=2) as writer:
        writer.add_market("BTCUSDT")
        sync = _synced()
        handoff = Handoff(sync, HotPath(writer.segment, 1, futures=False))  # slot 1: no market there
        assert handoff.rearm(SyncState.SYNCED)
        with pytest.raises(ValueError, match="slot 1 holds no market") as raised:
            handoff.hot.feed(_diff(101, 101, [("99", "7")]), 1)
        actions = handoff.fault(raised.value, "a diff in the hot path")
        assert actions == (MarkOutOfSync(OutOfSyncReason.FAULT), FetchSnapshot(1000, SnapshotPurpose.LIVE))
        assert (handoff.armed, sync.state, sync.book, sync.faults, sync.resyncs) == (False, SyncState.BUFFERING, None, 1, 1)
        assert not handoff.rearm(SyncState.SYNCED)  # no book to hand over until a snapshot joins again


def test_the_feeder_resyncs_a_market_whose_hot_path_raised_inside_the_router(group: str) -> None:
    """The same fault through the Feeder: the Router raises mid-read; the market named by the read resyncs and
    asks a new snapshot, and the feeder goes on reading the other market in its hot path."""
    config = GroupConfig(name=group, exchange="binance.com", symbols=("BTCUSDT", "ETHUSDT"), depth=DEPTH,
                         refresh_interval_s=0, rest_url="http://127.0.0.1:9", ws_url="ws://127.0.0.1:9")  # fmt: skip
    feeder = Feeder(config)
    fetched: list[tuple[str, FetchSnapshot]] = []
    feeder._fetch = lambda market, action: fetched.append((market.symbol, action))  # type: ignore[method-assign]
    try:
        markets = {symbol: feeder._add_market(symbol) for symbol in ("BTCUSDT", "ETHUSDT")}
        for symbol, market in markets.items():
            market.conn = 1
            feeder.on_messages(1, [_raw(100, 100, symbol=symbol)], 1)
            with feeder._lock:
                feeder._feed(market, SnapshotResult(SNAPSHOT, SnapshotPurpose.LIVE), 0.0)
            assert market.hot.armed
        btc, eth = markets["BTCUSDT"], markets["ETHUSDT"]
        # the slot leaves under the armed HotPath (what no feeder path does): its next publish raises in C
        feeder.writer.remove_market("ETHUSDT")
        feeder.on_messages(1, [_raw(101, 101, [("99", "3")], symbol="ETHUSDT")], 2)
        assert (eth.hot.armed, eth.sync.state, eth.sync.faults, eth.sync.book) == (False, SyncState.BUFFERING, 1, None)
        assert fetched[-1] == ("ETHUSDT", FetchSnapshot(100, SnapshotPurpose.LIVE))  # the depth's snapshot limit
        feeder.on_messages(1, [_raw(101, 101, [("99", "4")])], 3)  # the other market goes on in the hot path
        assert (btc.hot.armed, btc.sync.faults, btc.hot.update_id) == (True, 0, 101)
        assert feeder.writer.markets() == {"BTCUSDT": btc.slot}
    finally:
        feeder.writer.close()
        feeder._governor.close()
