"""The seeded market model and its ground truth.

One :class:`MarketModel` per market holds the exact book as ``{price_ticks: lots}`` per side, plus a
sorted price list per side for the touch. :meth:`MarketModel.step` makes one base event (a few level
changes: adds, cancels, trades, improvements inside the spread, bursts) and records, for every change,
the update id it got and the quantity it replaced, so the book at any recent update id is the current
book with the newer changes undone. Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import bisect
import random
from collections import deque
from dataclasses import dataclass

from ldc.sim.markets import MarketSpec

BID = 0
ASK = 1

MIN_LEVELS_PER_SIDE = 5  # cancels stop here so no side ever empties
BURST_PROBABILITY = 0.005  # per step: a burst multiplies the step's changes
BURST_FACTOR = 20
FUTURES_MAX_HIDDEN_IDS = 40  # futures ids also count updates the depth stream never shows
SPOT_EXTRA_ID_PROBABILITY = 0.2  # a spot change sometimes nets out several updates at one level
NEAR_TOUCH_MEAN_TICKS = 12.0
DRIFT_REVERSION = 0.02  # pull of the pressure back towards the starting price


@dataclass(slots=True)
class BaseEvent:
    """One model step: update ids ``first_id..final_id`` and the changed levels (side, ticks, lots)."""

    first_id: int
    final_id: int
    prev_final_id: int
    changes: list[tuple[int, int, int]]


@dataclass(slots=True)
class _History:
    first_id: int
    final_id: int
    undo: list[int]  # flat (update_id, side, price_ticks, previous_lots) * n, in applied order


Levels = list[tuple[int, int]]


class MarketModel:
    """The exchange's book for one market, moved by a seeded random model."""

    def __init__(self, spec: MarketSpec, *, seed: int, history_events: int) -> None:
        self.spec = spec
        self._rng = random.Random(f"{seed}/{spec.family.value}/{spec.symbol}")
        self.books: tuple[dict[int, int], dict[int, int]] = ({}, {})
        self._sorted: tuple[list[int], list[int]] = ([], [])  # ascending prices per side
        self._history: deque[_History] = deque(maxlen=history_events)
        self._pressure = 0.0
        self.initial_id = self._rng.randrange(10**10, 10**11) if not spec.family.futures else self._rng.randrange(10**12, 10**13)
        self.last_id = self.initial_id
        self.last_final_id = self.initial_id  # final id of the latest base event
        self.events = 0
        self._seed_book()

    # -- construction

    def _seed_book(self) -> None:
        spec, rng = self.spec, self._rng
        low = spec.base_ticks - spec.spread_ticks // 2
        high = low + max(1, spec.spread_ticks)
        price = low
        for _ in range(spec.depth_levels):
            self._set(BID, price, self._lots())
            price -= rng.randint(1, 3)
            if price <= 0:
                break
        price = high
        for _ in range(spec.depth_levels):
            self._set(ASK, price, self._lots())
            price += rng.randint(1, 3)

    # -- reading

    @property
    def best_bid(self) -> int:
        return self._sorted[BID][-1]

    @property
    def best_ask(self) -> int:
        return self._sorted[ASK][0]

    def top(self, limit: int) -> tuple[Levels, Levels]:
        """The best ``limit`` levels per side, best first, as (ticks, lots)."""
        bids, asks = self.books
        bid_prices = self._sorted[BID][-limit:][::-1] if limit > 0 else []
        ask_prices = self._sorted[ASK][:limit] if limit > 0 else []
        return [(p, bids[p]) for p in bid_prices], [(p, asks[p]) for p in ask_prices]

    @property
    def oldest_id(self) -> int:
        """The oldest update id whose book can still be rebuilt."""
        if self._history and len(self._history) == self._history.maxlen:
            return self._history[0].first_id - 1
        return self.initial_id

    def book_at(self, update_id: int) -> tuple[dict[int, int], dict[int, int]] | None:
        """The exact book after every update with id <= ``update_id``; None outside the history."""
        if update_id > self.last_id or update_id < self.oldest_id:
            return None
        books = (dict(self.books[BID]), dict(self.books[ASK]))
        for item in reversed(self._history):
            if item.final_id <= update_id:
                break
            undo = item.undo
            for i in range(len(undo) - 4, -1, -4):
                if undo[i] <= update_id:
                    break
                side_book = books[undo[i + 1]]
                price, old = undo[i + 2], undo[i + 3]
                if old:
                    side_book[price] = old
                else:
                    side_book.pop(price, None)
        return books

    def final_id_events_back(self, count: int) -> int:
        """The final id of the base event ``count`` events before the latest (clamped to the history)."""
        if count <= 0 or not self._history:
            return self.last_final_id
        index = len(self._history) - 1 - count
        return self._history[index].final_id if index >= 0 else self.oldest_id

    # -- moving

    def step(self, changes: int) -> BaseEvent:
        """Apply one base event of about ``changes`` level changes and return it."""
        rng = self._rng
        if rng.random() < BURST_PROBABILITY:
            changes *= BURST_FACTOR
        if self.spec.family.futures:
            self.last_id += rng.randint(0, FUTURES_MAX_HIDDEN_IDS)
        first_id = self.last_id + 1
        applied: list[tuple[int, int, int]] = []
        undo: list[int] = []
        self._pressure = self._pressure * (1 - DRIFT_REVERSION) + rng.gauss(0.0, 0.08)
        self._pressure -= DRIFT_REVERSION * (self.best_bid - self.spec.base_ticks) / max(1, self.spec.base_ticks) * 50
        for _ in range(max(1, changes)):
            side, price, lots = self._pick()
            old = self._set(side, price, lots)
            self.last_id += 1
            if not self.spec.family.futures and rng.random() < SPOT_EXTRA_ID_PROBABILITY:
                self.last_id += rng.randint(1, 3)
            undo += (self.last_id, side, price, old)
            applied.append((side, price, lots))
        event = BaseEvent(first_id, self.last_id, self.last_final_id, applied)
        self._history.append(_History(first_id, self.last_id, undo))
        self.last_final_id = self.last_id
        self.events += 1
        return event

    def skip_ids(self, count: int) -> None:
        """Advance the update id without a visible change (used by replays and tests)."""
        self.last_id += count

    def _lots(self) -> int:
        return max(1, int(self._rng.expovariate(1.0 / self.spec.mean_lots)))

    def _set(self, side: int, price: int, lots: int) -> int:
        book, prices = self.books[side], self._sorted[side]
        old = book.get(price, 0)
        if lots:
            if not old:
                bisect.insort(prices, price)
            book[price] = lots
        elif old:
            del book[price]
            del prices[bisect.bisect_left(prices, price)]
        return old

    def _pick(self) -> tuple[int, int, int]:
        rng = self._rng
        r = rng.random()
        if r < 0.12:
            return self._trade(ASK if rng.random() < 0.5 + self._pressure else BID)
        if r < 0.22:
            improved = self._improve(BID if rng.random() < 0.5 + self._pressure else ASK)
            if improved is not None:
                return improved
        side = BID if rng.random() < 0.5 else ASK
        count = len(self._sorted[side])
        cancel_bias = 0.35 + 0.3 * (count - self.spec.depth_levels) / max(1, self.spec.depth_levels)
        if count > MIN_LEVELS_PER_SIDE and rng.random() < cancel_bias:
            return self._cancel(side, count)
        return self._add(side)

    def _rank(self, count: int) -> int:
        if self._rng.random() < 0.8:
            return min(count - 1, int(self._rng.expovariate(1.0 / NEAR_TOUCH_MEAN_TICKS)))
        return self._rng.randrange(count)

    def _cancel(self, side: int, count: int) -> tuple[int, int, int]:
        rank = self._rank(count)
        prices = self._sorted[side]
        return side, prices[-1 - rank] if side == BID else prices[rank], 0

    def _add(self, side: int) -> tuple[int, int, int]:
        rng = self._rng
        spread_room = max(1, min(self.spec.depth_levels * 2, self.spec.base_ticks // 2))
        if rng.random() < 0.7:
            distance = int(rng.expovariate(1.0 / NEAR_TOUCH_MEAN_TICKS))
        else:
            distance = rng.randrange(spread_room)
        if side == BID:
            price = max(1, self.best_bid - distance)
        else:
            price = self.best_ask + distance
        return side, price, self._lots()

    def _trade(self, side: int) -> tuple[int, int, int]:
        prices = self._sorted[side]
        if len(prices) <= MIN_LEVELS_PER_SIDE:
            return self._add(side)
        price = prices[-1] if side == BID else prices[0]
        lots = self.books[side][price]
        taken = int(self._rng.expovariate(1.0 / self.spec.mean_lots)) + 1
        return side, price, max(0, lots - taken)

    def _improve(self, side: int) -> tuple[int, int, int] | None:
        gap = self.best_ask - self.best_bid
        if gap <= 1:
            return None
        step = self._rng.randint(1, min(gap - 1, max(1, self.spec.spread_ticks)))
        price = self.best_bid + step if side == BID else self.best_ask - step
        return side, price, self._lots()
