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

import numpy as np

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
PRESSURE_NOISE = 0.1  # buy/sell imbalance random walk step (uniform width)
PRESSURE_PULL = 200.0  # imbalance added per unit of relative distance from the starting price
RANDOM_BLOCK = 256  # random numbers drawn per refill, per market (small: 500 markets stay in cache)


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
        # (futures, depth, far distance, mean lots, typical spread, starting price): read every step
        self._params = (
            spec.family.futures,
            max(1, spec.depth_levels),
            max(1, min(spec.depth_levels * 2, spec.base_ticks // 2)),
            spec.mean_lots,
            max(1, spec.spread_ticks),
            max(1, spec.base_ticks),
        )
        self._np_rng = np.random.default_rng(self._rng.getrandbits(64))
        self._uni: list[float] = []
        self._expo: list[float] = []
        self._pos = 0
        self.initial_id = self._rng.randrange(10**10, 10**11) if not spec.family.futures else self._rng.randrange(10**12, 10**13)
        self.last_id = self.initial_id
        self.last_final_id = self.initial_id  # final id of the latest base event
        self.events = 0
        self._seed_book()

    # -- construction

    def _seed_book(self) -> None:
        """Both sides laid out at once (sorted lists built directly: no insort per level)."""
        spec, rng = self.spec, self._rng
        low = spec.base_ticks - spec.spread_ticks // 2
        high = low + max(1, spec.spread_ticks)
        bid_prices, ask_prices = [], []
        price = low
        for _ in range(spec.depth_levels):
            if price <= 0:
                break
            bid_prices.append(price)
            price -= rng.randint(1, 3)
        price = high
        for _ in range(spec.depth_levels):
            ask_prices.append(price)
            price += rng.randint(1, 3)
        bid_prices.reverse()
        self._sorted[BID].extend(bid_prices)
        self._sorted[ASK].extend(ask_prices)
        self.books[BID].update((p, self._lots()) for p in bid_prices)
        self.books[ASK].update((p, self._lots()) for p in ask_prices)

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

    def step(self, changes: int, *, spread: bool = False) -> BaseEvent:
        """Apply one base event of ``changes`` level changes (``spread``: between 1 and 2 * changes - 1,
        drawn here) and return it.

        One flat loop on pre-drawn random numbers (refilled in blocks by numpy): this is the
        simulator's hot path, run tens of thousands of times a second across hundreds of markets.
        """
        if self._pos + 2 >= len(self._uni):
            self._refill(2)
        burst_draw, count_draw = self._uni[self._pos], self._uni[self._pos + 1]
        self._pos += 2
        if spread and changes > 1:
            changes = 1 + int(count_draw * (2 * changes - 1))
        if burst_draw < BURST_PROBABILITY:
            changes *= BURST_FACTOR
        if self._pos + 8 * changes + 8 >= len(self._uni):  # at most 8 draws per change, 3 per step
            self._refill(8 * changes + 8)
        uni, expo = self._uni, self._expo
        k = self._pos
        futures, depth, far, mean_lots, spread_ticks, base = self._params
        last_id = self.last_id
        if futures:
            last_id += int(uni[k] * (FUTURES_MAX_HIDDEN_IDS + 1))
            k += 1
        first_id = last_id + 1
        bids, asks = self.books
        bid_prices, ask_prices = self._sorted
        pressure = self._pressure * (1 - DRIFT_REVERSION) + (uni[k] - 0.5) * PRESSURE_NOISE
        pressure -= (bid_prices[-1] - base) / base * (DRIFT_REVERSION * PRESSURE_PULL)
        self._pressure = pressure
        k += 1
        applied: list[tuple[int, int, int]] = []
        undo: list[int] = []
        for _ in range(changes if changes > 0 else 1):
            r = uni[k]
            side_draw = uni[k + 1]
            size = uni[k + 2]
            dist = expo[k]
            k += 3
            best_bid, best_ask = bid_prices[-1], ask_prices[0]
            if r < 0.12:  # a trade takes from the touch
                side = ASK if side_draw < 0.5 + pressure else BID
                prices = ask_prices if side == ASK else bid_prices
                if len(prices) <= MIN_LEVELS_PER_SIDE:
                    r = 1.0
                else:
                    price = best_ask if side == ASK else best_bid
                    lots = (asks if side == ASK else bids)[price] - int(dist * mean_lots) - 1
                    if lots < 0:
                        lots = 0
            elif r < 0.22 and best_ask - best_bid > 1:  # a new best inside the spread
                side = BID if side_draw < 0.5 + pressure else ASK
                gap = best_ask - best_bid - 1
                step_ticks = 1 + int(size * min(gap, spread_ticks))
                if step_ticks > gap:
                    step_ticks = gap
                price = best_bid + step_ticks if side == BID else best_ask - step_ticks
                lots = 1 + int(dist * mean_lots)
            else:
                r = 1.0
            if r >= 1.0:
                side = BID if side_draw < 0.5 else ASK
                prices = bid_prices if side == BID else ask_prices
                count = len(prices)
                cancel_bias = 0.35 + 0.3 * (count - depth) / depth
                if count > MIN_LEVELS_PER_SIDE and uni[k] < cancel_bias:
                    rank = int(dist * NEAR_TOUCH_MEAN_TICKS) if size < 0.8 else int(uni[k + 1] * count)
                    if rank >= count:
                        rank = count - 1
                    price = prices[-1 - rank] if side == BID else prices[rank]
                    lots = 0
                else:
                    distance = int(expo[k + 1] * NEAR_TOUCH_MEAN_TICKS) if size < 0.7 else int(uni[k + 1] * far)
                    price = best_bid - distance if side == BID else best_ask + distance
                    if price < 1:
                        price = 1
                    lots = 1 + int(dist * mean_lots)
                k += 2
            book = bids if side == BID else asks
            old = book.get(price, 0)
            if lots:
                if not old:
                    bisect.insort(bid_prices if side == BID else ask_prices, price)
                book[price] = lots
            elif old:
                del book[price]
                prices = bid_prices if side == BID else ask_prices
                del prices[bisect.bisect_left(prices, price)]
            last_id += 1
            if not futures and uni[k] < SPOT_EXTRA_ID_PROBABILITY:
                last_id += 1 + int(uni[k + 1] * 3)
            k += 2
            undo += (last_id, side, price, old)
            applied.append((side, price, lots))
        self._pos = k
        self.last_id = last_id
        event = BaseEvent(first_id, last_id, self.last_final_id, applied)
        self._history.append(_History(first_id, last_id, undo))
        self.last_final_id = last_id
        self.events += 1
        return event

    def _refill(self, need: int) -> None:
        block = max(RANDOM_BLOCK, 2 * need)
        self._uni = self._np_rng.random(block).tolist()
        self._expo = self._np_rng.exponential(1.0, block).tolist()
        self._pos = 0

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
