"""ldc._fastbook.HotPath: a market's in-sync diffs applied and published in one C call, and the feeder's
hand-over between it and BookSync (``ldc.handoff.Handoff``, through ``Feeder``). Sequence rules as Binance documents
them (reference/binance-and-peers.md): spot diffs continue a book when ``U == last u + 1``, futures when
``pu == last u``; any other diff is BookSync's to judge, and the HotPath must leave book and slot alone."""

from __future__ import annotations

import gzip
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import orjson
import pytest

from ldc._fastbook import (
    HOT_DONE,
    HOT_PASS,
    HOT_TOP_FAULT,
    ROUTE_CONTROL,
    ROUTE_DIFF,
    ROUTE_END,
    ROUTE_MALFORMED,
    ROUTE_TOP_FAULT,
    FastBook,
    HotPath,
    ParsedDiff,
    Router,
    parse_depth,
)
from ldc.book import OrderBook
from ldc.config import GroupConfig
from ldc.depth import NO_ID, DepthDiff, DepthSnapshot
from ldc.feeder import Feeder, Market
from ldc.shm.layout import Status
from ldc.shm.reader import Reader
from ldc.shm.writer import SegmentWriter
from ldc.sim.replay import captures_dir
from ldc.sync import FetchSnapshot, SnapshotPurpose, SnapshotResult, SyncState
from shm_helpers import group_fixture

DEPTH = 5
SYNCED = int(Status.SYNCED)
TRUTH_LIMIT = 500  # levels a side the capture's truth can vouch for (see _Exchange.snapshot)


@pytest.fixture
def group() -> Iterator[str]:
    yield from group_fixture()


@pytest.fixture
def writer(group: str) -> Iterator[SegmentWriter]:
    with SegmentWriter(group, depth=DEPTH, capacity=4) as w:
        yield w


def _raw(first: int, final: int, bids: list[tuple[str, str]], asks: list[tuple[str, str]], *, prev: int | None = None) -> bytes:
    msg: dict[str, Any] = {"e": "depthUpdate", "E": 1_700_000_000_000 + final, "s": "BTCUSDT", "U": first, "u": final,
                           "b": [list(level) for level in bids], "a": [list(level) for level in asks]}  # fmt: skip
    if prev is not None:
        msg["T"], msg["pu"] = msg["E"], prev
    return orjson.dumps(msg)


def _diff(first: int, final: int, bids: list[tuple[str, str]] = (), asks: list[tuple[str, str]] = (), *,  # type: ignore[assignment]
          prev: int | None = None) -> ParsedDiff:  # fmt: skip
    parsed = parse_depth(_raw(first, final, list(bids), list(asks), prev=prev))
    assert parsed is not None
    return parsed


def _book(last_update_id: int = 100, *, limit: int = 1000) -> FastBook:
    """Bids 99..90, asks 101..110 (quantity 1), a snapshot at ``last_update_id``."""
    book = FastBook(depth=DEPTH)
    bids = [(float(99 - i), 1.0) for i in range(10)]
    asks = [(float(101 + i), 1.0) for i in range(10)]
    book.load_snapshot(DepthSnapshot(last_update_id, bids, asks, limit))
    return book


def _top(book: FastBook) -> tuple[list[list[float]], list[list[float]]]:
    bids, asks = np.zeros((DEPTH, 2)), np.zeros((DEPTH, 2))
    nb, na = book.top(DEPTH, bids, asks)
    return bids[:nb].tolist(), asks[:na].tolist()


def _slot(group: str) -> Any:
    with Reader(group) as reader:
        return reader.snapshot("BTCUSDT", allow_out_of_sync=True)


def _armed(writer: SegmentWriter, book: FastBook, update_id: int = 100, *, futures: bool = False) -> HotPath:
    slot = writer.add_market("BTCUSDT")
    hot = HotPath(writer.segment, slot, futures=futures)
    hot.arm(book, update_id, SYNCED)
    return hot


def test_a_continuing_spot_diff_is_applied_and_its_top_published(group: str, writer: SegmentWriter) -> None:
    book = _book()
    hot = _armed(writer, book)
    assert hot.feed(_diff(101, 103, [("99", "5"), ("98.5", "2")], [("101", "0")]), 1234) == HOT_DONE
    slot = _slot(group)
    assert (slot.update_id, slot.recv_time_ns, slot.event_time_ms, slot.status) == (103, 1234, 1_700_000_000_103, Status.SYNCED)
    assert (slot.bids.tolist(), slot.asks.tolist()) == _top(book)
    assert slot.bids.tolist()[:3] == [[99.0, 5.0], [98.5, 2.0], [98.0, 1.0]] and slot.asks.tolist()[0] == [102.0, 1.0]
    assert (hot.update_id, hot.take_applied(), hot.take_applied()) == (103, 1, 0)


def test_a_diff_beyond_the_top_publishes_ids_only(group: str, writer: SegmentWriter) -> None:
    book = _book()
    hot = _armed(writer, book)
    assert hot.feed(_diff(101, 101, [("99", "3")]), 1) == HOT_DONE
    before = _slot(group)
    assert hot.feed(_diff(102, 102, [("91", "7")]), 2) == HOT_DONE  # rank 9: below the published 5
    after = _slot(group)
    assert (after.update_id, after.recv_time_ns) == (102, 2)
    assert (after.bids.tolist(), after.asks.tolist()) == (before.bids.tolist(), before.asks.tolist())
    with Reader(group) as reader:
        assert reader.status("BTCUSDT").counters["updates"] == 2


@pytest.mark.parametrize(
    ("first", "final", "why"),
    [(103, 104, "a gap: U is past last u + 1"), (95, 100, "an old diff"), (100, 101, "overlaps the book: U <= last u")],
)
def test_a_spot_diff_that_does_not_continue_the_book_is_left_to_book_sync(
    group: str, writer: SegmentWriter, first: int, final: int, why: str
) -> None:
    book = _book()
    hot = _armed(writer, book)
    before = book.levels()
    assert hot.feed(_diff(first, final, [("99", "9")]), 1) == HOT_PASS, why
    assert book.levels() == before and hot.update_id == 100 and hot.take_applied() == 0
    assert _slot(group).update_id == -1  # nothing published


@pytest.mark.parametrize(("futures", "first", "final", "prev"), [(False, 101, 50, None), (True, 90, 100, 100), (True, 90, 60, 100)])
def test_a_diff_ending_at_or_before_the_book_never_moves_it(
    group: str, writer: SegmentWriter, futures: bool, first: int, final: int, prev: int | None
) -> None:
    """u < U, or u <= pu: never sent by Binance; BookSync calls it old, so the HotPath must not apply it."""
    book = _book()
    hot = _armed(writer, book, futures=futures)
    assert hot.feed(_diff(first, final, [("99", "777")], prev=prev), 1) == HOT_PASS
    assert (hot.update_id, book.best_bid(), _slot(group).update_id) == (100, (99.0, 1.0), -1)


def test_futures_diffs_continue_on_pu(group: str, writer: SegmentWriter) -> None:
    book = _book()
    hot = _armed(writer, book, futures=True)
    assert hot.feed(_diff(90, 110, [("99", "2")], prev=101), 1) == HOT_PASS  # pu 101 != 100
    assert hot.feed(_diff(90, 110, [("99", "2")], prev=100), 1) == HOT_DONE  # U may lie far back
    assert hot.feed(_diff(111, 115, [("99", "3")], prev=110), 1) == HOT_DONE
    assert (hot.update_id, _slot(group).update_id, _slot(group).bids.tolist()[0]) == (115, 115, [99.0, 3.0])


def test_a_crossed_top_is_applied_but_not_published(group: str, writer: SegmentWriter) -> None:
    book = _book()
    hot = _armed(writer, book)
    assert hot.feed(_diff(101, 101, [("101.5", "1")]), 1) == HOT_TOP_FAULT
    assert book.crossed() and hot.update_id == 101 and hot.take_applied() == 1
    assert _slot(group).update_id == -1


def test_a_top_beyond_the_snapshot_coverage_is_applied_but_not_published(group: str, writer: SegmentWriter) -> None:
    book = _book(limit=10)  # 10 levels a side: coverage ends at bid 90 / ask 110
    hot = _armed(writer, book)
    deletes = [(str(float(99 - i)), "0") for i in range(6)]  # 5 known bids remain below 99..94: 93..90 only 4
    assert hot.feed(_diff(101, 101, deletes), 1) == HOT_TOP_FAULT
    assert not book.covers(DEPTH) and _slot(group).update_id == -1


def test_a_pending_refresh_records_every_applied_diff_up_to_its_limit(group: str, writer: SegmentWriter) -> None:
    book = _book()
    slot = writer.add_market("BTCUSDT")
    hot = HotPath(writer.segment, slot, futures=False)
    record: list[object] = []
    hot.arm(book, 100, SYNCED, False, record, 2)
    first, second, third = _diff(101, 101, [("99", "2")]), _diff(102, 102, [("91", "2")]), _diff(103, 103, [("99", "3")])
    assert (hot.feed(first, 1), hot.feed(second, 2)) == (HOT_DONE, HOT_DONE)
    assert record == [first, second] and _slot(group).update_id == 102
    assert hot.feed(third, 3) == HOT_PASS  # full: BookSync records it, sees the overflow and drops the refresh
    assert record == [first, second] and book.best_bid() == (99.0, 2.0) and hot.update_id == 102


def test_a_crossing_diff_is_not_recorded(writer: SegmentWriter) -> None:
    slot = writer.add_market("BTCUSDT")
    hot = HotPath(writer.segment, slot, futures=False)
    record: list[object] = []
    hot.arm(_book(), 100, SYNCED, False, record, 10)
    assert hot.feed(_diff(101, 101, [("101.5", "1")]), 1) == HOT_TOP_FAULT and record == []  # BookSync resyncs


def test_an_uncovered_book_publishes_its_flags_until_coverage_comes_back(group: str, writer: SegmentWriter) -> None:
    book = _book(limit=10)
    deletes = [(str(float(99 - i)), "0") for i in range(6)]
    book.apply_diff(_diff(101, 101, deletes))
    assert not book.covers(DEPTH)
    slot = writer.add_market("BTCUSDT")
    hot = HotPath(writer.segment, slot, futures=False)
    flags = int(Status.SYNCED | Status.INCOMPLETE | Status.REFRESHING)
    hot.arm(book, 101, flags, True)
    assert hot.feed(_diff(102, 102, [], [("101", "2")]), 1) == HOT_DONE  # still 4 known bids: published, flagged
    assert (_slot(group).update_id, _slot(group).status) == (102, Status(flags))
    assert hot.feed(_diff(103, 103, [("98.5", "1")]), 2) == HOT_TOP_FAULT  # 5 known bids again: BookSync says SYNCED
    assert book.covers(DEPTH) and _slot(group).update_id == 102


def test_a_disarmed_path_passes_everything(group: str, writer: SegmentWriter) -> None:
    book = _book()
    hot = _armed(writer, book)
    hot.disarm()
    assert not hot.armed and hot.feed(_diff(101, 101, [("99", "2")]), 1) == HOT_PASS
    assert book.best_bid() == (99.0, 1.0)


def test_a_python_depth_diff_is_left_to_book_sync(writer: SegmentWriter) -> None:
    hot = _armed(writer, _book())
    diff = DepthDiff("BTCUSDT", 101, 101, NO_ID, 1, NO_ID, [(99.0, 2.0)], [])
    assert hot.feed(diff, 1) == HOT_PASS


def test_wrong_arguments_name_what_was_expected(writer: SegmentWriter) -> None:
    with pytest.raises(TypeError, match="expected a Segment, found int"):
        HotPath(7, 0, futures=False)
    slot = writer.add_market("BTCUSDT")
    hot = HotPath(writer.segment, slot, futures=False)
    with pytest.raises(TypeError, match="arm\\(\\) needs a FastBook, found OrderBook"):
        hot.arm(OrderBook(depth=DEPTH), 100, SYNCED)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="update_id must be at least 0, found -1"):
        hot.arm(_book(), -1, SYNCED)
    with pytest.raises(TypeError, match="record must be a list or None, found tuple"):
        hot.arm(_book(), 100, SYNCED, False, ())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="feed\\(\\) takes 2 arguments"):
        hot.feed(_diff(101, 101))  # type: ignore[call-arg]


def test_objects_made_without_init_say_so_instead_of_crashing() -> None:
    with pytest.raises(RuntimeError, match="HotPath was not initialised"):
        HotPath.__new__(HotPath).arm(_book(), 100, SYNCED)
    with pytest.raises(RuntimeError, match="Router was not initialised"):
        Router.__new__(Router).paths
    with pytest.raises(RuntimeError, match="Router was not initialised"):
        Router.__new__(Router).feed([], 0, 1, 1)


def test_a_closed_segment_raises_instead_of_writing(group: str) -> None:
    writer = SegmentWriter(group, depth=DEPTH, capacity=4)
    hot = _armed(writer, _book())
    writer.close()
    with pytest.raises(ValueError, match="segment is closed"):
        hot.feed(_diff(101, 101, [("99", "2")]), 1)


# -- Router: a read's raw messages -> their markets' HotPaths ------------------------------------------


def _routed(writer: SegmentWriter, book: FastBook, *, conn: int = 7) -> tuple[Router, HotPath]:
    router, hot = Router(), _armed(writer, book)
    hot.conn = conn
    router.paths["BTCUSDT"] = hot
    return router, hot


def test_the_router_applies_a_whole_read_and_stamps_the_market(group: str, writer: SegmentWriter) -> None:
    book = _book()
    router, hot = _routed(writer, book)
    raws = [_raw(101, 101, [("99", "2")], []), _raw(102, 102, [("99", "3")], []), _raw(103, 104, [], [("101", "4")])]
    assert router.feed(raws, 0, 7, 555) == (3, ROUTE_END, None)
    assert (hot.last_event_ms, hot.last_recv_ns, hot.update_id, hot.take_applied()) == (1_700_000_000_104, 555, 104, 3)
    assert (_slot(group).update_id, book.best_bid(), book.best_ask()) == (104, (99.0, 3.0), (101.0, 4.0))


def test_the_router_stops_at_each_message_python_must_see_and_resumes_after_it(writer: SegmentWriter) -> None:
    book = _book()
    router, hot = _routed(writer, book)
    raws = [
        _raw(101, 101, [("99", "2")], []),  # applied
        b'{"result":null,"id":1}',  # a control message
        _raw(105, 105, [("99", "9")], []),  # a gap: BookSync's
        _raw(102, 102, [], []).replace(b"BTCUSDT", b"ETHUSDT"),  # no HotPath for it
        b'{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":"x","b":[],"a":[]}',  # malformed
        _raw(102, 102, [("101.5", "1")], []),  # crosses the book: applied, a top fault
    ]
    seen = []
    start = 0
    while True:
        index, kind, value = router.feed(raws, start, 7, 9)
        seen.append((index, kind))
        if kind == ROUTE_END:
            break
        if kind in (ROUTE_DIFF, ROUTE_TOP_FAULT):
            assert isinstance(value, ParsedDiff) and value.final_id == (105, 102, 102)[[2, 3, 5].index(index)]
        if kind == ROUTE_MALFORMED:
            assert "field 'u'" in value
        start = index + 1
    assert seen == [(1, ROUTE_CONTROL), (2, ROUTE_DIFF), (3, ROUTE_DIFF), (4, ROUTE_MALFORMED), (5, ROUTE_TOP_FAULT), (6, ROUTE_END)]
    assert hot.update_id == 102 and book.crossed()


def test_the_router_leaves_another_connections_diffs_unstamped(writer: SegmentWriter) -> None:
    book = _book()
    router, hot = _routed(writer, book)
    index, kind, value = router.feed([_raw(101, 101, [("99", "2")], [])], 0, 8, 1)
    assert (index, kind) == (0, ROUTE_DIFF) and value.final_id == 101
    assert (hot.last_recv_ns, hot.update_id, book.best_bid()) == (0, 100, (99.0, 1.0))


def test_the_router_names_a_wrong_argument(writer: SegmentWriter) -> None:
    router, _ = _routed(writer, _book())
    with pytest.raises(TypeError, match="raws must be a list, found tuple"):
        router.feed((b"{}",), 0, 7, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes 4 arguments"):
        router.feed([b"{}"], 0, 7)  # type: ignore[call-arg]


@contextmanager
def _synced_feeder(group: str, *, limit: int) -> Iterator[tuple[Feeder, Market]]:
    """A feeder of this process (nothing is contacted: snapshot requests are dropped), its BTCUSDT market on
    connection 1 and synced at update id 100 on a 10-level snapshot asked with ``limit``."""
    config = GroupConfig(name=group, exchange="binance.com", symbols=("BTCUSDT",), depth=DEPTH, refresh_interval_s=0,
                         rest_url="http://127.0.0.1:9", ws_url="ws://127.0.0.1:9")  # fmt: skip
    feeder = Feeder(config)
    feeder._fetch = lambda market, action: None  # type: ignore[method-assign]
    try:
        market = feeder._add_market("BTCUSDT")
        market.conn = 1
        feeder.on_messages(1, [_raw(100, 100, [], [])], 1)
        snapshot = DepthSnapshot(100, [(99.0 - i, 1.0) for i in range(10)], [(101.0 + i, 1.0) for i in range(10)], limit)
        with feeder._lock:
            feeder._feed(market, SnapshotResult(snapshot, SnapshotPurpose.LIVE), 0.0)
        yield feeder, market
    finally:
        feeder.writer.close()
        feeder._governor.close()


def test_a_failed_market_takes_no_more_diffs_even_those_in_flight(group: str) -> None:
    """An unknown symbol found after start (exchangeInfo, or a snapshot's -1121): the slot says ERROR and no
    diff already on its way may republish the book as in sync."""
    with _synced_feeder(group, limit=1000) as (feeder, market):
        feeder.on_messages(1, [_raw(101, 101, [("99", "2")], [])], 2)
        assert market.hot.armed and _slot(group).update_id == 101
        with feeder._lock:
            feeder._fail(market, "unknown symbol BTCUSDT: test")
        feeder.on_messages(1, [_raw(102, 102, [("99", "3")], [])], 3)
        feeder.tick()
        slot = _slot(group)
        assert (slot.update_id, slot.in_sync, market.hot.armed) == (101, False, False)
        assert slot.status & Status.ERROR


def test_a_rollover_successor_ahead_of_an_uncovered_book_waits_like_for_a_synced_one(group: str) -> None:
    with _synced_feeder(group, limit=10) as (feeder, market):
        feeder.on_messages(1, [_raw(101, 101, [(str(float(99 - i)), "0") for i in range(6)], [])], 2)
        assert market.sync.state is SyncState.UNCOVERED
        market.successor = 2
        feeder.on_messages(2, [_raw(103, 103, [("90", "5")], [])], 3)  # the successor is ahead: not yet
        assert (market.conn, market.sync.gaps, market.sync.update_id) == (1, 0, 101)
        feeder.on_messages(1, [_raw(102, 102, [("90", "2")], [])], 4)
        feeder.on_messages(2, [_raw(103, 103, [("90", "5")], [])], 5)  # continues the book: the market moves
        market.handoff.settle()
        assert (market.conn, market.sync.gaps, market.sync.update_id) == (2, 0, 103)
        assert market.successor is None


# -- the feeder's hand-over, on the genuine capture with faults -----------------------------------------


def _capture(name: str) -> tuple[dict[str, Any], list[bytes]]:
    path = captures_dir() / name
    if not path.exists():
        pytest.skip(f"capture {path} not present")
    snapshot: dict[str, Any] | None = None
    diffs: list[bytes] = []
    with gzip.open(path, "rb") as f:
        for line in f:
            raw = line.rstrip(b"\n").split(b" ", 1)[1]
            if snapshot is None and b'"lastUpdateId"' in raw[:40]:
                snapshot = orjson.loads(raw)
            elif b'"depthUpdate"' in raw[:120]:
                diffs.append(raw)  # also those recorded before the snapshot's answer: some follow it
    assert snapshot is not None
    return snapshot, diffs


class _Exchange:
    """The truth: the capture's snapshot plus every later diff, whether the feeder saw it or not."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.book = OrderBook(depth=20)
        self.book.load_snapshot(_snapshot(snapshot["lastUpdateId"], snapshot["bids"], snapshot["asks"], 1000))
        self.update_id = snapshot["lastUpdateId"]
        self.tops: dict[int, tuple[list[list[float]], list[list[float]]] | None] = {}

    def apply(self, diff: ParsedDiff) -> None:
        if diff.final_id <= self.update_id:
            return
        self.book.apply_diff(diff)  # type: ignore[arg-type]
        self.update_id = diff.final_id
        bids, asks = np.zeros((20, 2)), np.zeros((20, 2))
        nb, na = self.book.top(20, bids, asks)
        self.tops[diff.final_id] = (bids[:nb].tolist(), asks[:na].tolist()) if self.book.covers(20) else None

    def snapshot(self, limit: int) -> DepthSnapshot:
        """What the exchange would answer, as far as the truth knows: at most TRUTH_LIMIT levels a side
        (the capture's snapshot had 1000; the run stops before the truth knows fewer than TRUTH_LIMIT)."""
        limit = min(limit, TRUTH_LIMIT)
        assert self.book.covers(limit)
        bids, asks = self.book.levels()
        return DepthSnapshot(self.update_id, bids[:limit], asks[:limit], limit)


def _snapshot(last_id: int, bids: list[list[str]], asks: list[list[str]], limit: int) -> DepthSnapshot:
    return DepthSnapshot(last_id, [(float(p), float(q)) for p, q in bids], [(float(p), float(q)) for p, q in asks], limit)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_feeder_publishes_only_the_exchange_book_through_gaps_and_duplicates(group: str, seed: int) -> None:
    """Every diff of the spot capture through ``Feeder.on_messages`` in reads of 1-10 messages, with drops
    and duplicates; snapshots answered from the truth a few reads after they are asked for. After every
    read: a slot marked in sync holds exactly the exchange's top 20 at its update id. Most diffs take the
    HotPath."""
    snapshot, raws = _capture("spot_btcusdt_20240808.gz")
    rng = random.Random(seed)
    config = GroupConfig(name=group, exchange="binance.com", symbols=("BTCUSDT",), depth=20, refresh_interval_s=0,
                         rest_url="http://127.0.0.1:9", ws_url="ws://127.0.0.1:9")  # fmt: skip  (never contacted)
    feeder = Feeder(config)
    exchange = _Exchange(snapshot)
    # taken when asked, answered 1-5 diffs later: the stream runs ahead of every snapshot, as on the exchange
    asked: list[tuple[Market, FetchSnapshot, DepthSnapshot, int]] = []
    feeder._fetch = lambda market, action: asked.append(  # type: ignore[method-assign]
        (market, action, exchange.snapshot(action.limit), rng.randint(1, 5)))
    try:
        market = feeder._add_market("BTCUSDT")
        market.conn = 1
        checked = dropped = hot_published = fed = last_fed = reads = 0
        read: list[bytes] = []
        with Reader(group) as reader:
            for i, raw in enumerate(raws):
                diff = parse_depth(raw)
                assert diff is not None
                exchange.apply(diff)
                if not exchange.book.covers(TRUTH_LIMIT):
                    break  # ~2,100 diffs in: beyond here the truth itself has holes
                fed += 1
                fault = rng.random() if 50 < i < 1800 else 0.5  # the end: time to recover
                if fault < 0.004:
                    dropped += 1
                    continue
                read.append(raw)
                last_fed = diff.final_id
                if fault > 0.996:
                    read.append(raw)  # a duplicate
                if len(read) < 10 and rng.random() < 0.7 and fed < 2000:
                    continue  # more frames in this socket read
                armed = market.hot.armed
                feeder.on_messages(1, read, i)
                reads += 1
                hot_published += len(read) if armed and market.hot.armed else 0
                read = []
                for entry in list(asked):
                    m, action, answer, wait = entry
                    if wait > 0:
                        asked[asked.index(entry)] = (m, action, answer, wait - 1)
                        continue
                    asked.remove(entry)
                    with feeder._lock:
                        feeder._feed(m, SnapshotResult(answer, action.purpose), float(i))
                slot = reader.snapshot("BTCUSDT", allow_out_of_sync=True)
                if slot.in_sync:
                    truth = exchange.tops.get(slot.update_id)
                    assert truth is not None, f"in sync at {slot.update_id}, where the truth has no covered top"
                    assert (slot.bids.tolist(), slot.asks.tolist()) == truth, f"diff {i}: slot {slot.update_id}"
                    checked += 1
        feeder.on_messages(1, read, len(raws))
        market.handoff.settle()
        assert dropped >= 3 and market.sync.gaps >= 1
        assert market.sync.state is SyncState.SYNCED and market.sync.update_id == last_fed
        assert fed > 2000 and checked > reads * 0.8 and hot_published > fed * 0.6
    finally:
        feeder.writer.close()
        feeder._governor.close()
