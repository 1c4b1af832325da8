"""Regression tests for the peers' book bugs (``shared/reference/binance-and-peers.md`` §2-§4), run
against both books: the reference ``OrderBook`` and the C ``FastBook``.

Each scenario is shaped after the genuine captures in ``shared/data/binance/`` (Binance combined
stream ``depthUpdate`` messages and REST depth snapshots).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pytest

from ldc._fastbook import FastBook
from ldc.book import OrderBook
from ldc.depth import DepthDiff, DepthSnapshot, Level

AnyBook = OrderBook | FastBook
BookFactory = Callable[..., AnyBook]


def diff(bids: list[Level], asks: list[Level]) -> DepthDiff:
    return DepthDiff("BTCUSDT", 1, 1, -1, 0, -1, bids, asks)


@pytest.fixture(params=[OrderBook, FastBook], ids=lambda f: f.__name__)
def make_book(request: pytest.FixtureRequest) -> BookFactory:
    factory: BookFactory = request.param
    return factory


def test_futures_zero_quantity_000_deletes_the_level(make_book: BookFactory) -> None:
    # python-binance deletes only on the string "0.00000000"; USD-M sends "0.000" and its book kept
    # 12,309 dead levels and ended crossed.
    book = make_book()
    book.load_snapshot(DepthSnapshot(1, [(61800.2, 2.909), (61800.1, 0.696)], [(61800.3, 1.0)], 1000))
    book.apply_diff(diff([(61800.2, float("0.000"))], [(61800.3, float("0.000")), (61800.4, float("0"))]))
    assert book.levels() == ([(61800.1, 0.696)], [])
    book.apply_diff(diff([], [(61800.2, 0.5)]))  # the level the peer kept would cross this ask
    assert not book.crossed()


def test_prices_across_a_power_of_ten_sort_numerically(make_book: BookFactory) -> None:
    # UNICORN sorts price strings: '100.1' < '99.5'; a numeric book must not care.
    book = make_book()
    book.load_snapshot(DepthSnapshot(1, [(99.9, 1.0), (99.5, 1.0)], [(100.1, 1.0), (100.5, 1.0)], 1000))
    book.apply_diff(diff([(100.0, 2.0), (9.99, 1.0)], [(1000.0, 1.0), (99.95, 3.0)]))
    assert book.levels() == (
        [(100.0, 2.0), (99.9, 1.0), (99.5, 1.0), (9.99, 1.0)],
        [(99.95, 3.0), (100.1, 1.0), (100.5, 1.0), (1000.0, 1.0)],
    )
    assert book.best_bid() == (100.0, 2.0) and book.best_ask() == (99.95, 3.0)
    assert book.crossed()


def test_string_sorted_trimming_would_delete_the_best_levels(make_book: BookFactory) -> None:
    # UNICORN trims to N levels by string order: with bids 99.x and 100.x it keeps '99.x' (string-max)
    # and drops the real best bids at 100.x. Pruning here is by numeric rank.
    book = make_book()
    book.load_snapshot(DepthSnapshot(1, [(100.2, 1.0), (100.1, 1.0), (99.9, 1.0)], [(100.3, 1.0)], 3))
    book.apply_diff(diff([(99.8, 1.0), (100.25, 1.0)], []))
    assert book.levels()[0] == [(100.25, 1.0), (100.2, 1.0), (100.1, 1.0)]
    assert book.best_bid() == (100.25, 1.0)


def test_levels_pruned_away_are_not_trusted_when_needed_again(make_book: BookFactory) -> None:
    # UNICORN cuts at 1,000 levels and a cut level never comes back: later its deep book is wrong
    # and nothing says so. Here pruning moves the coverage boundary, so covers() turns False.
    book = make_book(depth=3)
    book.load_snapshot(DepthSnapshot(1, [(10.0, 1.0), (9.0, 1.0), (8.0, 1.0)], [(11.0, 1.0)], 3))
    assert book.covers(3)
    book.apply_diff(diff([(10.5, 1.0)], []))  # 8.0 is pruned: rank 4 > window 3
    assert book.levels()[0] == [(10.5, 1.0), (10.0, 1.0), (9.0, 1.0)]
    assert book.covers(1)
    book.apply_diff(diff([(10.5, 0.0), (10.0, 0.0)], []))  # 8.0 would rank 2nd again: unknown now
    assert book.levels()[0] == [(9.0, 1.0)]
    assert not book.covers(2)
    assert book.covers(1)
    book.apply_diff(diff([(8.0, 4.0)], []))  # a diff tells 8.0 again: held, still not trusted
    assert book.levels()[0] == [(9.0, 1.0), (8.0, 4.0)]
    assert not book.covers(2)


def test_prices_crossing_powers_of_ten_keep_coverage_numeric(make_book: BookFactory) -> None:
    book = make_book(depth=2)
    book.load_snapshot(DepthSnapshot(1, [(100.1, 1.0), (99.9, 1.0)], [(100.2, 1.0), (1000.0, 1.0)], 2))
    bid_boundary, ask_boundary = book.coverage()
    assert (bid_boundary, ask_boundary) == (99.9, 1000.0)
    book.apply_diff(diff([(99.95, 1.0)], [(999.9, 1.0)]))  # both rank 2nd: pruning drops 99.9 and 1000
    assert book.levels() == ([(100.1, 1.0), (99.95, 1.0)], [(100.2, 1.0), (999.9, 1.0)])
    assert book.coverage() == (99.95, 999.9)


def test_unpruned_deep_levels_do_not_accumulate(make_book: BookFactory) -> None:
    # depth cache rot: deep levels far from the mid pile up as ghosts unless pruned by rank
    book = make_book()
    book.load_snapshot(DepthSnapshot(1, [(100.0 - i, 1.0) for i in range(5)], [(101.0, 1.0)], 5))
    for step in range(50):
        book.apply_diff(diff([(100.5 + step, 1.0), (10.0 - step * 0.01, 1.0)], []))
    bids, _ = book.levels()
    assert len(bids) == 5
    assert bids[0] == (149.5, 1.0) and bids[-1] == (145.5, 1.0)
    assert book.covers(5)


def test_whole_side_turns_bounded_once_pruned(make_book: BookFactory) -> None:
    book = make_book(depth=2)
    book.load_snapshot(DepthSnapshot(1, [(100.0, 1.0)], [(101.0, 1.0)], 2))
    assert book.coverage() == (-math.inf, math.inf)
    book.apply_diff(diff([(99.0, 1.0), (98.0, 1.0)], []))
    assert book.coverage()[0] == 99.0
    out_b, out_a = np.zeros((2, 2)), np.zeros((2, 2))
    assert book.top(2, out_b, out_a) == (2, 1)
    assert out_b.tolist() == [[100.0, 1.0], [99.0, 1.0]]
