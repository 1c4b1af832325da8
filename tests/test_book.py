"""Unit tests of the reference book ``ldc.book.OrderBook``.

Fixtures follow Binance's "How to manage a local order book correctly" (binance-spot-api-docs,
web-socket-streams.md): REST snapshot ``{lastUpdateId, bids, asks}`` requested with a ``limit``, then
``depthUpdate`` diffs carrying absolute quantities where a zero quantity removes the level.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ldc.book import OrderBook
from ldc.depth import DepthDiff, DepthSnapshot, Level


def snap(bids: list[Level], asks: list[Level], *, limit: int = 1000, last_update_id: int = 100) -> DepthSnapshot:
    return DepthSnapshot(last_update_id=last_update_id, bids=bids, asks=asks, limit=limit)


def diff(bids: list[Level], asks: list[Level], *, first_id: int = 101, final_id: int = 101) -> DepthDiff:
    return DepthDiff("BTCUSDT", first_id, final_id, -1, 0, -1, bids, asks)


def test_snapshot_levels_are_sorted_best_first_whatever_the_input_order() -> None:
    book = OrderBook()
    book.load_snapshot(snap([(99.0, 1.0), (101.0, 2.0), (100.0, 3.0)], [(103.0, 1.0), (102.0, 4.0)]))
    assert book.levels() == ([(101.0, 2.0), (100.0, 3.0), (99.0, 1.0)], [(102.0, 4.0), (103.0, 1.0)])
    assert book.best_bid() == (101.0, 2.0)
    assert book.best_ask() == (102.0, 4.0)
    assert len(book) == 5


def test_diff_sets_absolute_quantities_inserts_and_deletes() -> None:
    book = OrderBook()
    book.load_snapshot(snap([(100.0, 1.0), (99.0, 1.0)], [(101.0, 1.0)]))
    assert book.apply_diff(diff([(100.0, 5.0), (99.0, 0.0), (98.0, 2.0)], [(101.5, 3.0)]))
    assert book.levels() == ([(100.0, 5.0), (98.0, 2.0)], [(101.0, 1.0), (101.5, 3.0)])


def test_every_numeric_zero_deletes() -> None:
    book = OrderBook()
    book.load_snapshot(snap([(100.0, 1.0), (99.0, 1.0), (98.0, 1.0)], []))
    # the parsers turn "0", "0.000" and "0.00000000" into 0.0; -0.0 is the same number
    book.apply_diff(diff([(100.0, float("0")), (99.0, float("0.000")), (98.0, float("-0.00000000"))], []))
    assert book.levels() == ([], [])


def test_deleting_an_unknown_level_changes_nothing() -> None:
    book = OrderBook()
    book.load_snapshot(snap([(100.0, 1.0)], [(101.0, 1.0)]))
    assert book.apply_diff(diff([(50.0, 0.0)], [])) is False
    assert book.levels() == ([(100.0, 1.0)], [(101.0, 1.0)])


def test_apply_diff_reports_changes_only_within_the_top_depth() -> None:
    book = OrderBook(depth=2)
    book.load_snapshot(snap([(100.0, 1.0), (99.0, 1.0), (98.0, 1.0)], [(101.0, 1.0), (102.0, 1.0), (103.0, 1.0)]))
    assert book.apply_diff(diff([(98.0, 7.0)], [(103.0, 7.0)])) is False  # third level, below depth 2
    assert book.apply_diff(diff([(97.5, 1.0)], [])) is False  # new level below the top 2
    assert book.apply_diff(diff([(99.0, 1.0)], [])) is False  # same quantity: no change
    assert book.apply_diff(diff([(99.0, 2.0)], [])) is True  # second level changed
    assert book.apply_diff(diff([], [(101.5, 1.0)])) is True  # new second-best ask
    assert book.apply_diff(diff([], [(101.0, 0.0)])) is True  # best ask deleted


def test_top_writes_best_first_into_caller_buffers() -> None:
    book = OrderBook()
    book.load_snapshot(snap([(100.0, 1.0), (99.0, 2.0), (98.0, 3.0)], [(101.0, 4.0)]))
    bids = np.full((2, 2), -1.0)
    asks = np.full((3, 2), -1.0)
    assert book.top(2, bids, asks) == (2, 1)
    assert bids.tolist() == [[100.0, 1.0], [99.0, 2.0]]
    assert asks.tolist() == [[101.0, 4.0], [-1.0, -1.0], [-1.0, -1.0]]


def test_top_rejects_a_buffer_too_small() -> None:
    book = OrderBook()
    with pytest.raises(ValueError, match=r"bids_out must have shape \(>= 3, 2\), found \(2, 2\)"):
        book.top(3, np.zeros((2, 2)), np.zeros((3, 2)))


def test_crossed_when_best_bid_reaches_best_ask() -> None:
    book = OrderBook()
    book.load_snapshot(snap([(100.0, 1.0)], [(101.0, 1.0)]))
    assert not book.crossed()
    book.apply_diff(diff([(101.0, 1.0)], []))
    assert book.crossed()


def test_empty_book_has_no_best_levels_and_is_not_crossed() -> None:
    book = OrderBook()
    assert book.best_bid() is None and book.best_ask() is None
    assert not book.crossed()


def test_nothing_is_covered_before_the_first_snapshot() -> None:
    book = OrderBook()
    book.apply_diff(diff([(100.0, 1.0)], [(101.0, 1.0)]))
    assert not book.covers(1)
    assert book.covers(0)
    assert book.coverage() == (math.inf, -math.inf)


def test_snapshot_side_shorter_than_limit_is_the_whole_side() -> None:
    book = OrderBook()
    book.load_snapshot(snap([(100.0, 1.0)], [(101.0, 1.0), (102.0, 1.0)], limit=2))
    assert book.coverage() == (-math.inf, 102.0)
    assert book.covers(2)  # one bid, but that is every bid there is
    assert not book.covers(3)  # asks are known only down to 102


def test_covers_counts_only_levels_inside_the_boundary() -> None:
    book = OrderBook()
    book.load_snapshot(snap([(100.0, 1.0), (99.0, 1.0)], [(101.0, 1.0), (102.0, 1.0)], limit=2))
    assert book.covers(2)
    book.apply_diff(diff([(98.0, 1.0)], []))  # beyond the boundary 99: held, but what lies between?
    assert book.levels()[0] == [(100.0, 1.0), (99.0, 1.0)]  # and pruned at once: rank 3 > limit 2
    book.apply_diff(diff([(100.0, 0.0)], []))
    assert not book.covers(2)
    assert book.covers(1)


def test_invalid_depth_and_limit_are_rejected() -> None:
    with pytest.raises(ValueError, match="depth must be at least 1, found 0"):
        OrderBook(depth=0)
    with pytest.raises(ValueError, match="snapshot limit must be at least 1, found 0"):
        OrderBook().load_snapshot(snap([], [], limit=0))


def test_new_snapshot_replaces_levels_and_coverage() -> None:
    book = OrderBook()
    book.load_snapshot(snap([(100.0, 1.0), (99.0, 1.0)], [(101.0, 1.0), (102.0, 1.0)], limit=2))
    book.apply_diff(diff([(100.0, 0.0)], []))
    book.load_snapshot(snap([(90.0, 1.0)], [(91.0, 1.0)], limit=5))
    assert book.levels() == ([(90.0, 1.0)], [(91.0, 1.0)])
    assert book.coverage() == (-math.inf, math.inf)
    assert book.window == 5
