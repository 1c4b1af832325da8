"""BookSync's shadow audit: a refresh builds a second book from a new snapshot beside the live one, and the
audit compares the two at the same update id before the shadow replaces the live book (no gap for readers).

Pure data and functions; ``BookSync`` decides what an audit's outcome does to the market (``ldc.sync``).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np

from ldc._fastbook import FastBook
from ldc.depth import Book, DepthDiff, DepthSnapshot
from ldc.venues.base import JoinWait, SequenceRule, join_index

__all__ = ["Audit", "ShadowRefresh", "audit"]


class ShadowRefresh:
    """A refresh in progress: the diffs recorded since the request and, once it came, the snapshot. Diffs the
    C HotPath applied are handed over by ``BookSync.adopt`` (``ldc.handoff``); the HotPath records into a list
    of its own, never into ``diffs``."""

    __slots__ = ("start_id", "diffs", "snapshot", "limit", "too_old", "retry_at")

    def __init__(self, start_id: int, limit: int) -> None:
        self.start_id = start_id  # the live book's id when recording began: diffs continue it
        self.diffs: list[DepthDiff] = []
        self.snapshot: DepthSnapshot | None = None
        self.limit = limit
        self.too_old = 0  # answers older than the book so far
        self.retry_at: float | None = None  # when to ask again after a too-old answer

    def room(self) -> int:
        """Diffs it may still record before it is abandoned."""
        return self.limit - len(self.diffs)

    def record(self, diff: DepthDiff) -> bool:
        """Record a diff applied to the live book; False once more than ``limit`` are held (``overflow``)."""
        self.diffs.append(diff)
        return len(self.diffs) <= self.limit

    def record_all(self, diffs: list[DepthDiff]) -> bool:
        """``record`` for diffs applied outside BookSync, in order; False as ``record``."""
        self.diffs.extend(diffs)
        return len(self.diffs) <= self.limit

    def overflow(self) -> str:
        """Why a refresh that recorded too many diffs is abandoned."""
        return f"{len(self.diffs)} diffs recorded, expected at most {self.limit}"

    def build(self, factory: Callable[[], Book], rule: SequenceRule, live_id: int) -> Book | JoinWait:
        """The shadow book at ``live_id``, or why not yet (the stream has not reached the snapshot, or the
        snapshot is older than the recorded stream)."""
        snapshot = self.snapshot
        assert snapshot is not None
        diffs = self.diffs
        last_update_id = snapshot.last_update_id
        if last_update_id < self.start_id:
            return JoinWait.TOO_OLD
        # unlike a cold start, the stream is known to continue the book at start_id, so a
        # snapshot at exactly that id joins it (the documented check would refetch)
        if last_update_id == self.start_id:
            start: int | JoinWait = 0
        else:
            start = join_index(rule, diffs, last_update_id) if diffs else JoinWait.NOT_YET
        if isinstance(start, JoinWait):
            return start
        book = factory()
        book.load_snapshot(snapshot)
        for diff in diffs[start:]:
            book.apply_diff(diff)
        assert max(diffs[-1].final_id if diffs else self.start_id, last_update_id) == live_id
        return book


class Audit(NamedTuple):
    """The live book against a shadow at the same update id."""

    top_differs: bool  # the published top ``depth`` differs: if it was shown as exact, a fault
    differences: int  # levels differing where both books know every price


def audit(live: Book, shadow: Book, snapshot: DepthSnapshot, depth: int) -> Audit:
    return Audit(_tops_differ(live, shadow, depth), _count_differences(live, shadow, snapshot))


def _tops_differ(live: Book, shadow: Book, depth: int) -> bool:
    live_bids, live_asks = np.zeros((depth, 2)), np.zeros((depth, 2))
    shadow_bids, shadow_asks = np.zeros((depth, 2)), np.zeros((depth, 2))
    counts = live.top(depth, live_bids, live_asks)
    if counts != shadow.top(depth, shadow_bids, shadow_asks):
        return True
    return not (np.array_equal(live_bids, shadow_bids) and np.array_equal(live_asks, shadow_asks))


def _count_differences(live: Book, shadow: Book, snapshot: DepthSnapshot) -> int:
    """Levels that differ (missing from one book, or another quantity) where both books claim to
    know every price: inside the shadow snapshot's range and inside each book's own coverage."""
    bid_floor, ask_ceiling = _snapshot_range(snapshot)
    for book in (live, shadow):
        floor, ceiling = _coverage(book)
        bid_floor, ask_ceiling = max(bid_floor, floor), min(ask_ceiling, ceiling)
    if isinstance(live, FastBook) and isinstance(shadow, FastBook):
        return live.count_differences(shadow, bid_floor, ask_ceiling)  # the same count, merge-walked in C
    live_bids, live_asks = live.levels()
    shadow_bids, shadow_asks = shadow.levels()
    bids_a = {p: q for p, q in live_bids if p >= bid_floor}
    bids_b = {p: q for p, q in shadow_bids if p >= bid_floor}
    asks_a = {p: q for p, q in live_asks if p <= ask_ceiling}
    asks_b = {p: q for p, q in shadow_asks if p <= ask_ceiling}
    return _diff_count(bids_a, bids_b) + _diff_count(asks_a, asks_b)


def _snapshot_range(snapshot: DepthSnapshot) -> tuple[float, float]:
    """Deepest bid and ask price a snapshot vouches for (a side shorter than the limit is whole)."""
    bids, asks, limit = snapshot.bids, snapshot.asks, snapshot.limit
    bid_floor = bids[-1][0] if len(bids) >= limit and bids else -math.inf
    ask_ceiling = asks[-1][0] if len(asks) >= limit and asks else math.inf
    return bid_floor, ask_ceiling


def _coverage(book: Book) -> tuple[float, float]:
    """The book's deepest known bid and ask price, when it tells (OrderBook and FastBook do)."""
    coverage = getattr(book, "coverage", None)
    if coverage is None:
        return -math.inf, math.inf
    floor, ceiling = coverage()
    return float(floor), float(ceiling)


def _diff_count(a: dict[float, float], b: dict[float, float]) -> int:
    if a == b:  # the usual audit outcome: one C-level comparison instead of a lookup per price
        return 0
    return sum(1 for price in a.keys() | b.keys() if a.get(price) != b.get(price))
