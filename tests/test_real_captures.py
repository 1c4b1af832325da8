"""Genuine Binance captures (shared/data/binance, from hftbacktest's examples) through BookSync.

Each capture holds the diffs a client buffered before its REST snapshot, the snapshot, the diffs
after it and Binance's own ``@bookTicker`` stream. The bookTicker's ``u`` is the order book update id
it reflects, so at every update id where both a diff and a bookTicker exist the book's best bid and
ask (price and quantity) must equal it: an independent truth, not our own replay."""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import orjson
import pytest

import ldc._fastbook as fastbook
from ldc.book import OrderBook
from ldc.depth import Book, DepthDiff, DepthSnapshot, Level
from ldc.sync import TICK, BookSync, FetchSnapshot, SequenceRule, SnapshotPurpose, SnapshotResult, SyncConfig, SyncState
from ldc.venues.binance import parse_depth_update, parse_snapshot
from ldc.sim.replay import captures_dir

DATA = captures_dir()
SNAPSHOT_LIMIT = 1000  # the captures' snapshots hold 1000 levels per side
DEPTH = 20

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="captures not present")

Ticker = tuple[float, float, float, float]  # best bid, bid qty, best ask, ask qty


@dataclass
class Capture:
    """One replay: events in file order (raw diff bytes or a snapshot), and the bookTickers by ``u``."""

    events: list[tuple[int, bytes | DepthSnapshot]] = field(default_factory=list)  # (file index, event)
    tickers: dict[int, Ticker] = field(default_factory=dict)


@lru_cache(maxsize=None)
def load(*names: str) -> Capture:
    capture = Capture()
    for index, name in enumerate(names):
        with gzip.open(DATA / name, "rb") as lines:
            for line in lines:
                raw = line.split(b" ", 1)[1]
                head = raw[:48]
                if head.startswith(b'{"lastUpdateId"'):
                    capture.events.append((index, parse_snapshot(raw, SNAPSHOT_LIMIT)))
                elif b"@depth" in head:
                    capture.events.append((index, raw))
                elif b"@bookTicker" in head:
                    data = orjson.loads(raw)["data"]
                    capture.tickers[data["u"]] = (float(data["b"]), float(data["B"]), float(data["a"]), float(data["A"]))
    return capture


@lru_cache(maxsize=None)  # each test replays the same messages: parse them once per process
def reference_parse(raw: bytes) -> DepthDiff:
    return parse_depth_update(raw)


def c_parse(raw: bytes) -> Any:
    parsed = fastbook.parse_depth(raw)
    assert parsed is not None
    return parsed


COMBOS: list[tuple[str, Callable[[], Book], Callable[[bytes], Any]]] = [
    ("OrderBook+reference_parser", lambda: OrderBook(depth=DEPTH), reference_parse),
]
if hasattr(fastbook, "FastBook"):
    COMBOS.append(("FastBook+reference_parser", lambda: fastbook.FastBook(depth=DEPTH), reference_parse))
    COMBOS.append(("FastBook+c_parser", lambda: fastbook.FastBook(depth=DEPTH), c_parse))


@dataclass
class Replay:
    sync: BookSync
    checkpoints: list[int]  # per file: update ids where the book's top was compared with a bookTicker
    mismatches: list[str]
    live_fetches: int


def replay(capture: Capture, rule: SequenceRule, factory: Callable[[], Book], parse: Callable[[bytes], Any], files: int) -> Replay:
    config = SyncConfig(rule=rule, depth=DEPTH, snapshot_limit=SNAPSHOT_LIMIT, refresh_interval_s=None, stale_after_s=1e9)
    sync = BookSync("CAPTURE", factory, config)
    result = Replay(sync, [0] * files, [], 0)
    tickers = capture.tickers
    for file_index, event in capture.events:
        if isinstance(event, DepthSnapshot):
            actions = sync.feed(SnapshotResult(event, SnapshotPurpose.LIVE), 0.0)
            continue
        diff = parse(event)
        actions = sync.on_diff(diff, 0.0)
        result.live_fetches += sum(1 for a in actions if a == FetchSnapshot(SNAPSHOT_LIMIT, SnapshotPurpose.LIVE))
        uid = diff.final_id
        if sync.book is None or sync.update_id != uid or uid not in tickers:
            continue
        result.checkpoints[file_index] += 1
        bid, ask = sync.book.best_bid(), sync.book.best_ask()
        assert bid is not None and ask is not None
        if (*bid, *ask) != tickers[uid]:
            result.mismatches.append(f"u={uid}: book {(*bid, *ask)} ticker {tickers[uid]}")
    return result


@lru_cache(maxsize=None)
def reference_book(names: tuple[str, ...], rule: SequenceRule) -> tuple[int, dict[float, float], dict[float, float]]:
    """A straightforward replay: the snapshot, then every diff it does not contain (buffered ones
    recorded before it included) in order, with plain dicts: no pruning, no coverage."""
    capture = load(*names)
    snapshot = next(event for _, event in capture.events if isinstance(event, DepthSnapshot))
    bids, asks, last = dict(snapshot.bids), dict(snapshot.asks), snapshot.last_update_id
    for _, event in capture.events:
        if isinstance(event, DepthSnapshot):
            continue
        diff = reference_parse(event)
        if diff.final_id < last or (rule is SequenceRule.SPOT and diff.final_id == last):
            continue
        for side, levels in ((bids, diff.bids), (asks, diff.asks)):
            for price, qty in levels:
                if qty == 0.0:
                    side.pop(price, None)
                else:
                    side[price] = qty
        last = diff.final_id
    return last, bids, asks


CASES = [
    # files, rule, bookTicker checkpoints per file, covered levels (bids, asks) at the end, final state
    pytest.param(("spot_btcusdt_20240808.gz", "spot_btcusdt_20240809.gz"), SequenceRule.SPOT, [564, 508], (0, 987), SyncState.UNCOVERED, id="spot-0808-0809"),
    pytest.param(("spot_btcusdt_20240808.gz",), SequenceRule.SPOT, [564], (114, 788), SyncState.SYNCED, id="spot-0808"),
    pytest.param(("usdm_btcusdt_20240808.gz",), SequenceRule.FUTURES, [629], (0, 728), SyncState.UNCOVERED, id="usdm"),
    pytest.param(("coinm_btcusd_perp_20240808.gz",), SequenceRule.FUTURES, [1124], (570, 583), SyncState.SYNCED, id="coinm"),
]
# Spot and USD-M end UNCOVERED: the price fell through the whole bid side of the 1000-level snapshot
# (spot BTCUSDT from 61837 to 61602, below the snapshot's deepest bid 61637.69), so the book flags
# its top as possibly incomplete and asks for a refresh, which a recording cannot answer.


@pytest.mark.parametrize(("names", "rule", "checkpoints", "covered", "final_state"), CASES)
@pytest.mark.parametrize(("combo", "factory", "parse"), COMBOS, ids=[c[0] for c in COMBOS])
def test_capture_replays_without_gap_matching_every_book_ticker_and_a_plain_replay(
    names: tuple[str, ...], rule: SequenceRule, checkpoints: list[int], covered: tuple[int, int], final_state: SyncState,
    combo: str, factory: Callable[[], Book], parse: Callable[[bytes], Any],
) -> None:
    capture = load(*names)
    result = replay(capture, rule, factory, parse, len(names))
    sync = result.sync
    assert result.live_fetches == 1  # one snapshot request, on the first diff; the capture's snapshot joins
    assert (sync.gaps, sync.resyncs, sync.snapshots_too_old, sync.buffer_overflows) == (0, 0, 0, 0)
    assert sync.state is final_state
    assert result.mismatches == []
    assert result.checkpoints == checkpoints
    # at the end every level within the book's snapshot coverage equals a plain replay's
    last, ref_bids, ref_asks = reference_book(names, rule)
    assert sync.update_id == last
    book = sync.book
    assert book is not None
    bid_floor, ask_ceiling = book.coverage()  # type: ignore[attr-defined]
    held_bids, held_asks = book.levels()
    covered_bids = [(p, q) for p, q in sorted(ref_bids.items(), reverse=True) if p >= bid_floor]
    covered_asks = [(p, q) for p, q in sorted(ref_asks.items()) if p <= ask_ceiling]
    assert (len(covered_bids), len(covered_asks)) == covered
    assert [lv for lv in held_bids if lv[0] >= bid_floor] == covered_bids
    assert [lv for lv in held_asks if lv[0] <= ask_ceiling] == covered_asks
    # beyond coverage the book may miss levels, but what it holds is exact
    assert all(ref_bids.get(p) == q for p, q in held_bids)
    assert all(ref_asks.get(p) == q for p, q in held_asks)


def test_spot_capture_0809_continues_0808_with_no_gap() -> None:
    first = load("spot_btcusdt_20240808.gz")
    both = load("spot_btcusdt_20240808.gz", "spot_btcusdt_20240809.gz")
    last_0808 = parse_depth_update(next(e for _, e in reversed(first.events) if isinstance(e, bytes)))
    first_0809 = parse_depth_update(next(e for i, e in both.events if i == 1 and isinstance(e, bytes)))
    assert first_0809.first_id == last_0808.final_id + 1
    assert not any(isinstance(e, DepthSnapshot) for i, e in both.events if i == 1)  # no snapshot of its own




@pytest.mark.skipif(not hasattr(fastbook, "FastBook"), reason="ldc._fastbook.FastBook not built")
@pytest.mark.parametrize(("names", "rule", "checkpoints", "covered", "final_state"), CASES)
def test_refresh_audit_mid_capture_finds_no_difference_and_keeps_matching_book_tickers(
    names: tuple[str, ...], rule: SequenceRule, checkpoints: list[int], covered: tuple[int, int], final_state: SyncState
) -> None:
    """Half way through, a refresh is due; its snapshot is the plain replay's top 1000 levels at the
    live book's update id. The audit must find no difference, the swap must leave no gap, and every
    later bookTicker checkpoint must still match."""
    capture = load(*names)
    config = SyncConfig(rule=rule, depth=DEPTH, snapshot_limit=SNAPSHOT_LIMIT, refresh_interval_s=60.0, stale_after_s=1e9)
    sync = BookSync("CAPTURE", lambda: fastbook.FastBook(depth=DEPTH), config)
    ref: tuple[dict[float, float], dict[float, float]] = ({}, {})
    ref_id = -1
    early: list[Any] = []  # diffs recorded before the snapshot: the plain replay applies them after it

    def plain_apply(diff: Any) -> None:
        nonlocal ref_id
        if diff.final_id > ref_id or (rule is SequenceRule.FUTURES and diff.final_id == ref_id):
            for side, levels in zip(ref, (diff.bids, diff.asks)):
                for price, qty in levels:
                    if qty == 0.0:
                        side.pop(price, None)
                    else:
                        side[price] = qty
            ref_id = diff.final_id

    refresh_at = len(capture.events) // 2
    shadow_requests = 0
    matched = 0
    for index, (_, event) in enumerate(capture.events):
        if isinstance(event, DepthSnapshot):
            sync.feed(SnapshotResult(event, SnapshotPurpose.LIVE), 0.0)
            ref, ref_id = (dict(event.bids), dict(event.asks)), event.last_update_id
            for diff in early:
                plain_apply(diff)
            continue
        if index == refresh_at:
            assert sync.feed(TICK, 0.0) == ()  # starts the clock
            actions = sync.feed(TICK, 61.0)
            shadow_requests += actions.count(FetchSnapshot(SNAPSHOT_LIMIT, SnapshotPurpose.SHADOW))
            assert sync.refreshing  # requested now, or already when the book lost coverage
            fresh = DepthSnapshot(ref_id, sorted(ref[0].items(), reverse=True)[:SNAPSHOT_LIMIT], sorted(ref[1].items())[:SNAPSHOT_LIMIT], SNAPSHOT_LIMIT)
            sync.feed(SnapshotResult(fresh, SnapshotPurpose.SHADOW), 61.0)
        diff = c_parse(event)
        actions = sync.on_diff(diff, 61.0)
        if index < refresh_at:
            shadow_requests += actions.count(FetchSnapshot(SNAPSHOT_LIMIT, SnapshotPurpose.SHADOW))
        if ref_id < 0:
            early.append(diff)
        else:
            plain_apply(diff)
        book = sync.book
        if index > refresh_at and book is not None and sync.update_id == diff.final_id and diff.final_id in capture.tickers:
            bid, ask = book.best_bid(), book.best_ask()
            assert bid is not None and ask is not None
            assert (*bid, *ask) == capture.tickers[diff.final_id]
            matched += 1
    assert shadow_requests >= 1
    counters = sync.counters()
    assert (counters.audits, counters.audit_differences, counters.audit_faults) == (1, 0, 0)
    assert (counters.gaps, counters.resyncs) == (0, 0)
    assert matched > 0


@pytest.mark.skipif(not hasattr(fastbook, "FastBook"), reason="ldc._fastbook.FastBook not built")
@pytest.mark.parametrize(
    ("names", "rule", "limit", "refreshes"),
    [
        pytest.param(("spot_btcusdt_20240808.gz", "spot_btcusdt_20240809.gz"), SequenceRule.SPOT, 100, 72, id="spot-limit100"),
        pytest.param(("usdm_btcusdt_20240808.gz",), SequenceRule.FUTURES, 100, 50, id="usdm-limit100"),
        pytest.param(("coinm_btcusd_perp_20240808.gz",), SequenceRule.FUTURES, 50, 80, id="coinm-limit50"),
    ],
)
def test_small_snapshots_lose_coverage_and_every_refresh_audits_clean(
    names: tuple[str, ...], rule: SequenceRule, limit: int, refreshes: int
) -> None:
    """With ``limit``-level snapshots the price soon leaves what a snapshot vouches for: the book
    flags itself and asks for a refresh, answered here at once with the plain replay's top ``limit``
    levels at the live update id. Every refresh audits clean and bookTickers keep matching."""
    capture = load(*names)
    config = SyncConfig(rule=rule, depth=DEPTH, snapshot_limit=limit, refresh_interval_s=None, stale_after_s=1e9)
    sync = BookSync("CAPTURE", lambda: fastbook.FastBook(depth=DEPTH), config)
    asked, matched = _replay_answering_refreshes(capture, sync, rule, first_limit=limit)
    requested = asked.get(limit, 0)
    counters = sync.counters()
    assert requested == refreshes
    assert (counters.audits, counters.audit_differences, counters.audit_faults) == (refreshes, 0, 0)
    assert (counters.gaps, counters.resyncs) == (0, 0)
    assert matched == sum(CHECKPOINTS[names])


CHECKPOINTS: dict[Any, list[int]] = {case.values[0]: case.values[2] for case in CASES}  # type: ignore[misc]


def _replay_answering_refreshes(capture: Capture, sync: BookSync, rule: SequenceRule, *, first_limit: int) -> tuple[dict[int, int], int]:
    """The capture through ``sync``: its snapshot cut to ``first_limit`` levels, every refresh answered at once
    with the plain replay's top levels at the live id and the limit asked. Every bookTicker at an update id
    the book is at must equal its best bid / ask. Returns (refreshes asked per limit, bookTickers matched)."""
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    ref_id = -1
    early: list[Any] = []
    asked: dict[int, int] = {}
    matched = 0
    for _, event in capture.events:
        if isinstance(event, DepthSnapshot):
            bids, asks, ref_id = dict(event.bids), dict(event.asks), event.last_update_id
            for diff in early:
                ref_id = _plain_apply(bids, asks, ref_id, diff, rule)
            cut = DepthSnapshot(event.last_update_id, list(event.bids)[:first_limit], list(event.asks)[:first_limit], first_limit)
            sync.feed(SnapshotResult(cut, SnapshotPurpose.LIVE), 0.0)
            continue
        diff = c_parse(event)
        actions = sync.on_diff(diff, 0.0)
        if ref_id < 0:
            early.append(diff)
            continue
        ref_id = _plain_apply(bids, asks, ref_id, diff, rule)
        for action in actions:
            if isinstance(action, FetchSnapshot) and action.purpose is SnapshotPurpose.SHADOW:
                limit = action.limit
                asked[limit] = asked.get(limit, 0) + 1
                fresh = DepthSnapshot(ref_id, sorted(bids.items(), reverse=True)[:limit], sorted(asks.items())[:limit], limit)
                sync.feed(SnapshotResult(fresh, SnapshotPurpose.SHADOW), 0.0)
        book = sync.book
        if book is not None and sync.update_id == diff.final_id and diff.final_id in capture.tickers:
            bid, ask = book.best_bid(), book.best_ask()
            assert bid is not None and ask is not None
            assert (*bid, *ask) == capture.tickers[diff.final_id]
            matched += 1
    return asked, matched


def _plain_apply(bids: dict[float, float], asks: dict[float, float], ref_id: int, diff: Any, rule: SequenceRule) -> int:
    """The plain replay's step: apply a diff the replay does not contain yet; returns the new id."""
    if diff.final_id < ref_id or (rule is SequenceRule.SPOT and diff.final_id == ref_id):
        return ref_id
    for side, levels in ((bids, diff.bids), (asks, diff.asks)):
        for price, qty in levels:
            if qty == 0.0:
                side.pop(price, None)
            else:
                side[price] = qty
    return int(diff.final_id)


@pytest.mark.skipif(not hasattr(fastbook, "FastBook"), reason="ldc._fastbook.FastBook not built")
@pytest.mark.parametrize("purpose", [SnapshotPurpose.SHADOW, SnapshotPurpose.LIVE], ids=["shadow", "live"])
@pytest.mark.parametrize(("names", "rule"), [CASES[0].values[:2], CASES[2].values[:2]], ids=["spot-0808-0809", "usdm"])
def test_flagged_book_at_the_end_of_a_capture_is_synced_by_a_snapshot_at_its_id_with_no_further_diff(
    names: tuple[str, ...], rule: SequenceRule, purpose: SnapshotPurpose
) -> None:
    """Spot and USD-M end UNCOVERED with a refresh requested, and the stream ends: the exchange's
    answer (the plain replay at the book's own id) must join at once, audited clean, not wait for a
    diff that never comes (issue 8: every replay ended flagged)."""
    result = replay(load(*names), rule, lambda: fastbook.FastBook(depth=DEPTH), c_parse, len(names))
    sync = result.sync
    assert (sync.state, sync.refreshing) == (SyncState.UNCOVERED, True)
    last, bids, asks = reference_book(names, rule)
    fresh = DepthSnapshot(last, sorted(bids.items(), reverse=True)[:SNAPSHOT_LIMIT], sorted(asks.items())[:SNAPSHOT_LIMIT], SNAPSHOT_LIMIT)
    sync.feed(SnapshotResult(fresh, purpose), 0.0)
    assert (sync.state, sync.update_id, sync.refreshing) == (SyncState.SYNCED, last, False)
    counters = sync.counters()
    assert (counters.audits, counters.audit_differences, counters.audit_faults, counters.resyncs) == (1, 0, 0, 0)


@pytest.mark.skipif(not hasattr(fastbook, "FastBook"), reason="ldc._fastbook.FastBook not built")
@pytest.mark.parametrize(
    ("names", "rule", "requests"),
    [
        pytest.param(CASES[0].values[0], SequenceRule.SPOT, {500: 1, 1000: 1}, id="spot-0808-0809"),
        pytest.param(CASES[2].values[0], SequenceRule.FUTURES, {500: 1, 1000: 2}, id="usdm"),
    ],
)
def test_snapshot_limit_ladder_climbs_on_real_data_and_every_refresh_audits_clean(
    names: tuple[str, ...], rule: SequenceRule, requests: dict[int, int]
) -> None:
    """The first snapshot is the capture's cut to 100 levels; each coverage loss comes at once (the
    clock stands still), so each refresh asks the next limit up to 1000, answered at once with the
    plain replay's top levels at the live id. The books the refreshes swap in hold windows of
    different sizes: audits stay clean, bookTickers keep matching, and far fewer requests go out
    than with a static limit 100 (72 on spot, 50 on USD-M: test_small_snapshots_lose_coverage_and_every_refresh_audits_clean)."""
    ladder = (100, 500, 1000)
    capture = load(*names)
    config = SyncConfig(rule=rule, depth=DEPTH, snapshot_limit=ladder[0], escalation_limits=ladder[1:],
                        refresh_interval_s=None, stale_after_s=1e9)  # fmt: skip
    sync = BookSync("CAPTURE", lambda: fastbook.FastBook(depth=DEPTH), config)
    asked, matched = _replay_answering_refreshes(capture, sync, rule, first_limit=ladder[0])
    assert asked == requests
    counters = sync.counters()
    assert (counters.audits, counters.audit_differences, counters.audit_faults) == (sum(requests.values()), 0, 0)
    assert (counters.gaps, counters.resyncs, counters.limit_escalations, counters.snapshot_limit) == (0, 0, 2, 1000)
    assert matched == sum(CHECKPOINTS[names])
