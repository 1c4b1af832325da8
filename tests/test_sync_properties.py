"""Property tests: BookSync never marks a wrong book synced, whatever the stream does.

A reference exchange evolves a true book one update id at a time and emits Binance's event stream
(spot: ``U == previous u + 1``; futures: ``pu`` chains events and ids have holes). Hypothesis corrupts
the stream (drops, duplicates, reorders, disconnects), answers snapshot requests late, stale, ahead of
the stream or not at all, and advances time (staleness, retries, shadow refreshes). After every event:

- a book in a book state holds only exact levels of the truth at its update id (no ghost, no stale
  quantity), and when the state is SYNCED its top ``DEPTH`` levels equal the truth's;
- the reference book and the C book, driven in lockstep, agree on every action and every level.

At the end the stream heals (in-order delivery, fresh snapshots): the market must be synced again.
"""

# mypy: disable-error-code="comparison-overlap"
# (mypy keeps sync.state narrowed across the calls that change it)

from __future__ import annotations

import random
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ldc._fastbook as fastbook
from ldc.book import OrderBook
from ldc.depth import NO_ID, Book, DepthDiff, DepthSnapshot, Level
from ldc.sync import (
    DISCONNECT,
    TICK,
    BookSync,
    FetchSnapshot,
    MarkOutOfSync,
    Publish,
    SequenceRule,
    SnapshotFailed,
    SnapshotPurpose,
    SnapshotResult,
    SyncConfig,
    SyncState,
)

DEPTH = 3
LIMIT = 4  # snapshot levels per side: deep enough to sync, shallow enough to lose coverage often
LADDER = (LIMIT, 6, 10)  # limits a market that keeps losing coverage climbs (10 holds a whole side)
BID_PRICES = [90.0 + i for i in range(10)]  # the truth never crosses: bids <= 99 < 101 <= asks
ASK_PRICES = [101.0 + i for i in range(10)]
EVENTS = 100  # events in a world: the corruption script consumes at most ~2 * OPS, healing ~20
OPS = 45
BOOK_STATES = (SyncState.SYNCED, SyncState.UNCOVERED, SyncState.STALE, SyncState.DISCONNECTED)
HAS_FASTBOOK = hasattr(fastbook, "FastBook")


@dataclass
class World:
    """The exchange: events, and the true book after every update id."""

    rule: SequenceRule
    events: list[DepthDiff]
    ids: list[int]  # update ids, ascending; states[i] is the book after update ids[i]
    states: list[tuple[dict[float, float], dict[float, float]]]

    def truth(self, update_id: int) -> tuple[dict[float, float], dict[float, float]]:
        index = bisect_right(self.ids, update_id) - 1
        assert index >= 0, f"no truth before update id {update_id}"
        return self.states[index]

    def snapshot(self, update_id: int, limit: int = LIMIT) -> DepthSnapshot:
        bids, asks = self.truth(update_id)
        top_bids = sorted(bids.items(), reverse=True)[:limit]
        top_asks = sorted(asks.items())[:limit]
        return DepthSnapshot(update_id, top_bids, top_asks, limit)


WORLD_SEEDS = 64  # worlds are cached and reused: the corruption scripts bring the variety


@lru_cache(maxsize=2 * WORLD_SEEDS)
def build_world(seed: int, rule: SequenceRule) -> World:
    rng = random.Random(seed)
    bids = {p: float(rng.randint(1, 9)) for p in rng.sample(BID_PRICES, 7)}
    asks = {p: float(rng.randint(1, 9)) for p in rng.sample(ASK_PRICES, 7)}
    next_id = rng.randint(1_000, 1_000_000)
    ids, states = [next_id - 1], [(dict(bids), dict(asks))]
    events: list[DepthDiff] = []
    prev_final = next_id - 1
    for _ in range(EVENTS):
        changed: dict[tuple[int, float], float] = {}
        first = next_id
        for _ in range(rng.randint(1, 4)):
            is_bid = rng.random() < 0.5
            side, prices = (bids, BID_PRICES) if is_bid else (asks, ASK_PRICES)
            price = rng.choice(prices)
            qty = 0.0 if rng.random() < 0.35 else float(rng.randint(1, 9))
            if qty == 0.0:
                side.pop(price, None)  # deleting an absent level happens on Binance too
            else:
                side[price] = qty
            changed[(0 if is_bid else 1, price)] = qty
            ids.append(next_id)
            states.append((dict(bids), dict(asks)))
            last = next_id
            # futures ids have holes (other updates of the engine); spot ids are contiguous
            next_id += 1 if rule is SequenceRule.SPOT else rng.choice((1, 1, 2, 7))
        levels_b = [(p, q) for (s, p), q in changed.items() if s == 0]
        levels_a = [(p, q) for (s, p), q in changed.items() if s == 1]
        prev = prev_final if rule is SequenceRule.FUTURES else NO_ID
        events.append(DepthDiff("SIM", first, last, prev, 0, NO_ID, levels_b, levels_a))
        prev_final = last
    return World(rule, events, ids, states)


# -- the corruption script ------------------------------------------------------------------------

# An op is (kind, offset, where, dt): the kind list is weighted by repetition (in-order delivery
# dominates); "snapshot" answers the oldest request with the truth at an id chosen by offset (in
# events, from the exchange's last emitted one) and where (that event's u, its middle, before its U);
# "fresh" answers with the truth at the end of the last or next event; "tick" advances time by dt.
_OP_KINDS = ["deliver"] * 10 + ["fresh"] * 3 + ["tick"] * 3 + ["snapshot"] * 2 + [
    "drop", "dup", "swap", "disconnect", "fail", "unsolicited"]  # fmt: skip
op_strategy = st.tuples(
    st.sampled_from(_OP_KINDS),
    st.integers(-6, 4),
    st.sampled_from(("end", "middle", "before")),
    st.sampled_from((0.2, 2.0, 6.0, 31.0)),
)


class Driver:
    """Feeds one world to one or two BookSyncs in lockstep and checks the invariants."""

    def __init__(self, world: World, book_classes: list[Any]) -> None:
        self.world = world
        # the limit ladder climbs and steps down within a script: tick steps (up to 31 s) meet both windows
        config = SyncConfig(rule=world.rule, depth=DEPTH, snapshot_limit=LIMIT, escalation_limits=LADDER[1:],
                            escalate_within_s=10.0, step_down_after_s=30.0,
                            stale_after_s=5.0, refresh_interval_s=4.0)  # fmt: skip
        self.syncs = [BookSync("SIM", _factory(cls), config) for cls in book_classes]
        self.now = 0.0
        self.emitted = 0  # index of the next event the exchange emits
        self.last_delivered: DepthDiff | None = None
        self.outstanding: list[tuple[SnapshotPurpose, int]] = []  # requests not answered yet, with their limit
        self.had_book = False  # until a first snapshot joined, every request is the cheap one
        self.ever_synced = False

    # feeding ---------------------------------------------------------------------------------

    def feed(self, event: Any) -> None:
        results = [sync.feed(event, self.now) for sync in self.syncs]
        reference = results[0]
        for sync, actions in zip(self.syncs[1:], results[1:]):
            assert actions == reference, f"book classes disagree on actions: {reference} vs {actions}"
            assert (sync.state, sync.update_id) == (self.syncs[0].state, self.syncs[0].update_id)
        # the exchange model never rots: an audit finding a wrong published top, or any level
        # differing where both books claim to know every price, is a sync bug
        assert (self.syncs[0].audit_faults, self.syncs[0].audit_differences) == (0, 0)
        self.had_book |= self.syncs[0].book is not None
        for action in reference:
            if isinstance(action, FetchSnapshot):
                assert action.limit in LADDER and (self.had_book or action.limit == LIMIT), action  # cold start: cheap
                self.outstanding.append((action.purpose, action.limit))
        self.check(reference)

    def deliver(self, index: int) -> None:
        if index < len(self.world.events):
            self.last_delivered = self.world.events[index]
            self.feed(self.last_delivered)

    def answer(self, offset: int, where: str) -> None:
        purpose, limit = self.outstanding.pop(0)
        self.feed(SnapshotResult(self.snapshot_at(offset, where, limit), purpose))

    def snapshot_at(self, offset: int, where: str, limit: int = LIMIT) -> DepthSnapshot:
        events = self.world.events
        index = min(max(self.emitted - 1 + offset, 0), len(events) - 1)
        event = events[index]
        update_id = {"end": event.final_id, "middle": (event.first_id + event.final_id) // 2, "before": event.first_id - 1}[where]
        return self.world.snapshot(update_id, limit)

    def run(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        if kind == "deliver":
            self.deliver(self.emitted)
            self.emitted += 1
        elif kind == "drop":
            self.emitted += 1
        elif kind == "dup" and self.last_delivered is not None:
            self.feed(self.last_delivered)
        elif kind == "swap":
            self.deliver(self.emitted + 1)
            self.deliver(self.emitted)
            self.emitted += 2
        elif kind == "disconnect":
            self.feed(DISCONNECT)
        elif kind == "snapshot" and self.outstanding:
            self.answer(op[1], op[2])
        elif kind == "fresh" and self.outstanding:
            self.answer(op[1] % 2, "end")
        elif kind == "fail" and self.outstanding:
            self.feed(SnapshotFailed(self.outstanding.pop(0)[0], "status 503"))
        elif kind == "tick":
            self.now += op[3]
            self.feed(TICK)
        elif kind == "unsolicited":
            self.feed(SnapshotResult(self.snapshot_at(op[1] // 2, "end"), SnapshotPurpose.LIVE))

    def heal(self) -> None:
        """In-order delivery and fresh snapshots from now on: the market must sync again."""
        for _ in range(20):
            while self.outstanding:
                self.answer(0, "end")
            if self.syncs[0].state is SyncState.SYNCED:
                return self.check_refresh_is_scheduled()
            self.deliver(self.emitted)
            self.emitted += 1
            if self.syncs[0].state is SyncState.SYNCED:
                return self.check_refresh_is_scheduled()
            self.now += 31.0  # past any retry backoff and refresh interval
            self.feed(TICK)
        raise AssertionError(f"not synced after healing: {self.syncs[0].state.name}, counters {self.syncs[0].counters()}")

    def check_refresh_is_scheduled(self) -> None:
        """Whatever happened before, a synced market keeps refreshing (and auditing) its book."""
        self.outstanding.clear()
        self.now += 31.0  # beyond the refresh interval
        self.feed(TICK)
        assert any(purpose is SnapshotPurpose.SHADOW for purpose, _ in self.outstanding) or self.syncs[0].refreshing

    # invariants ------------------------------------------------------------------------------

    def check(self, actions: tuple[Any, ...]) -> None:
        first = self.syncs[0]
        marks = [i for i, action in enumerate(actions) if isinstance(action, MarkOutOfSync)]
        if marks and first.state is SyncState.SYNCED:
            # flagged and repaired within one event: a later Publish must carry the synced status
            assert any(isinstance(action, Publish) for action in actions[marks[-1]:])
        if any(isinstance(action, Publish) for action in actions):
            assert first.book is not None
        if first.state not in BOOK_STATES:
            assert first.book is None
            return
        self.ever_synced |= first.state is SyncState.SYNCED
        truth_bids, truth_asks = self.world.truth(first.update_id)
        for sync in self.syncs:
            book = sync.book
            assert book is not None
            held_bids, held_asks = book.levels()
            for held, truth in ((held_bids, truth_bids), (held_asks, truth_asks)):
                ghosts = [(p, q) for p, q in held if truth.get(p) != q]
                assert ghosts == [], f"{sync.state.name} book at {sync.update_id} holds levels the truth does not: {ghosts}"
            if sync.state is SyncState.SYNCED:
                assert book.covers(DEPTH)
                assert _top(book) == (sorted(truth_bids.items(), reverse=True)[:DEPTH], sorted(truth_asks.items())[:DEPTH])
        if len(self.syncs) > 1:
            assert self.syncs[1].book is not None and self.syncs[1].book.levels() == first.book.levels()  # type: ignore[union-attr]


def _factory(cls: Any) -> Any:
    return lambda: cls(depth=DEPTH)


def _top(book: Book) -> tuple[list[Level], list[Level]]:
    bids, asks = np.zeros((DEPTH, 2)), np.zeros((DEPTH, 2))
    n_bids, n_asks = book.top(DEPTH, bids, asks)
    return [(float(p), float(q)) for p, q in bids[:n_bids]], [(float(p), float(q)) for p, q in asks[:n_asks]]


def _book_classes() -> list[Any]:
    return [OrderBook, fastbook.FastBook] if HAS_FASTBOOK else [OrderBook]


PROPERTY_SETTINGS = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


@pytest.mark.parametrize("rule", [SequenceRule.SPOT, SequenceRule.FUTURES], ids=["spot", "futures"])
@PROPERTY_SETTINGS
@given(seed=st.integers(0, WORLD_SEEDS - 1), ops=st.lists(op_strategy, min_size=OPS // 2, max_size=OPS))
def test_never_a_wrong_book_marked_synced_and_the_books_agree(rule: SequenceRule, seed: int, ops: list[tuple[Any, ...]]) -> None:
    driver = Driver(build_world(seed, rule), _book_classes())
    for op in ops:
        driver.run(op)
    driver.heal()


@pytest.mark.parametrize("rule", [SequenceRule.SPOT, SequenceRule.FUTURES], ids=["spot", "futures"])
@settings(max_examples=100, deadline=None, database=None)
@given(seed=st.integers(0, WORLD_SEEDS - 1))
def test_a_clean_stream_syncs_once_and_never_resyncs(rule: SequenceRule, seed: int) -> None:
    driver = Driver(build_world(seed, rule), _book_classes())
    deliver, tick = ("deliver", 0, "end", 0.0), ("tick", 0, "end", 0.2)
    driver.run(deliver)
    driver.run(deliver)
    driver.run(("snapshot", 0, "end", 0.0))
    for _ in range(30):
        driver.run(deliver)
        driver.run(tick)
    sync = driver.syncs[0]
    # the snapshot is at the second event's u: spot drops it (u <= lastUpdateId), futures keeps it
    expected = (0, 0, 2, 30) if rule is SequenceRule.SPOT else (0, 0, 1, 31)
    assert (sync.gaps, sync.resyncs, sync.diffs_ignored, sync.diffs_applied) == expected
    assert sync.state in (SyncState.SYNCED, SyncState.UNCOVERED)


def test_world_model_emits_the_documented_chains() -> None:
    spot = build_world(7, SequenceRule.SPOT).events
    assert all(b.first_id == a.final_id + 1 for a, b in zip(spot, spot[1:]))
    futures = build_world(7, SequenceRule.FUTURES).events
    assert all(b.prev_final_id == a.final_id for a, b in zip(futures, futures[1:]))
    assert any(b.first_id > a.final_id + 1 for a, b in zip(futures, futures[1:]))  # holes exist


@pytest.mark.skipif(not HAS_FASTBOOK, reason="ldc._fastbook.FastBook not built")
def test_lockstep_driver_detects_a_book_that_disagrees() -> None:
    """Negative control: a book that drops one level on load must be caught by the invariants."""

    class LosesBestBid(OrderBook):
        def load_snapshot(self, snapshot: DepthSnapshot) -> None:
            super().load_snapshot(DepthSnapshot(snapshot.last_update_id, list(snapshot.bids)[1:], snapshot.asks, snapshot.limit))

    driver = Driver(build_world(3, SequenceRule.SPOT), [OrderBook, LosesBestBid])
    driver.run(("deliver", 0, "end", 0.0))
    with pytest.raises(AssertionError):
        driver.run(("snapshot", 0, "end", 0.0))
