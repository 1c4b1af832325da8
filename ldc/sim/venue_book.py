"""Books of the OKX and Bybit simulator families: the seeded model seen through a channel's depth, and
string books for replays of genuine recordings.

The model is Binance's (:class:`ldc.sim.model.MarketModel`: exact integer ticks and lots, every change
numbered, any recent book rebuilt by undoing newer changes). A venue channel of depth N shows only the
best N levels per side, as OKX and Bybit do: a :class:`DepthView` remembers what it last published and
each window sends the difference to the model's current top N, deletions of levels that fell out
included. Replays keep the recorded strings (:class:`StringBook`), so recorded checksums stay valid.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Protocol

from ldc.errors import SimError
from ldc.sim.markets import Family, MarketSpec, fixed_str
from ldc.sim.model import ASK, BID, MarketModel

MAX_STEPS_PER_TICK = 50  # after a stall the clock skips steps rather than bursting
CHECKPOINT_EVERY_MESSAGES = 32  # replay books saved on the way (truth at any index replays <= 32)
Levels = list[list[str]]


@dataclass(frozen=True, slots=True)
class NumberFormat:
    """How a venue prints a price or size: ``decimals`` digits, or trimmed of trailing zeros."""

    decimals: int
    trimmed: bool

    def text(self, units: int) -> str:
        out = fixed_str(units, self.decimals)
        if self.trimmed and "." in out:
            out = out.rstrip("0").rstrip(".")
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class VenueSpec:
    """One simulated market: its name, its strings and the model's shape (ticks and lots are integers)."""

    symbol: str
    key: str  # seeds the model: the venue, category and symbol
    price: NumberFormat
    tick_units: int
    qty: NumberFormat
    lot_units: int
    base_ticks: int
    depth_levels: int
    spread_ticks: int = 2
    mean_lots: int = 400

    @property
    def tick_size(self) -> str:
        return self.price.text(self.tick_units)

    @property
    def lot_size(self) -> str:
        return self.qty.text(self.lot_units)


def base_price_units(symbol: str, seed: int, decimals: int) -> int:
    """A plausible starting price in units of 10**-decimals: BTC near 65,000, ETH near 1,900, others 1-100."""
    upper = symbol.upper()
    if upper.startswith("BTC"):
        whole = 65_000
    elif upper.startswith("ETH"):
        whole = 1_900
    else:
        whole = 1 + int.from_bytes(hashlib.sha256(f"{seed}/{upper}".encode()).digest()[:2], "little") % 100
    return int(whole * 10**decimals)


class ModelBook:
    """A seeded :class:`MarketModel` with the venue's strings (cached: most prices and sizes repeat)."""

    def __init__(self, spec: VenueSpec, *, seed: int, history_events: int) -> None:
        self.spec = spec
        model_spec = MarketSpec(
            spec.key, Family.USDM, spec.price.decimals, spec.tick_units, spec.qty.decimals, spec.lot_units,
            spec.base_ticks, spec.depth_levels, spec.spread_ticks, spec.mean_lots,
        )  # fmt: skip
        # USD-M's id rule: ids jump by up to 40 per event, so OKX's seqIds are not contiguous, as live.
        self.model = MarketModel(model_spec, seed=seed, history_events=history_events)
        self._prices: dict[int, str] = {}
        self._qtys: dict[int, str] = {}

    def price(self, ticks: int) -> str:
        text = self._prices.get(ticks)
        if text is None:
            text = self._prices[ticks] = self.spec.price.text(ticks * self.spec.tick_units)
        return text

    def qty(self, lots: int) -> str:
        text = self._qtys.get(lots)
        if text is None:
            text = self._qtys[lots] = self.spec.qty.text(lots * self.spec.lot_units)
        return text

    def strings(self, levels: list[tuple[int, int]]) -> Levels:
        return [[self.price(p), self.qty(q)] for p, q in levels]

    def levels_at(self, model_id: int, limit: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]] | None:
        """The best ``limit`` levels per side after every change numbered <= ``model_id``."""
        if model_id == self.model.last_id:
            return self.model.top(limit)
        books = self.model.book_at(model_id)
        if books is None:
            return None
        return sorted(books[BID].items(), reverse=True)[:limit], sorted(books[ASK].items())[:limit]

    def stale_id(self, behind: int) -> int:
        """The model id ``behind`` events ago (a stale snapshot)."""
        return self.model.final_id_events_back(behind)


class DepthView:
    """What one channel of ``depth`` levels per side last published for a market.

    The model's changes are noted as they happen (``note``), so a refresh looks only at the touched prices
    and at the levels that entered or left the depth (set operations on the model's sorted prices), not at
    every level. With ``resend_touched`` (OKX) every level changed in the interval is sent with its final
    size, even one that came back to the size it had, so a book fetched over REST at any id inside the
    interval is made right by the update (OKX's documented sync: ``prevSeqId <= snapshot.seqId < seqId``);
    a touched price outside the new view is then sent as a deletion, as OKX does for levels a client may
    never have held. Without it (Bybit, HTX, Kraken) the update is the difference of the two books.
    """

    def __init__(self, depth: int, *, resend_touched: bool = False) -> None:
        self.depth = depth
        self.resend_touched = resend_touched
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.touched: tuple[set[int], set[int]] = (set(), set())

    def note(self, changes: list[tuple[int, int, int]]) -> None:
        for side, price, _ in changes:
            self.touched[side].add(price)

    def refresh(self, model: MarketModel) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """The changes (price, lots; 0 deletes) that turn the published view into the model's top now.

        Every change of the model since the last refresh must have been noted: levels that stayed in
        the depth are compared only when touched.
        """
        bid_prices, ask_prices = model._sorted  # the model's ascending price lists, read only
        depth = self.depth
        bids = self._side(self.bids, bid_prices[-depth:] if depth else [], model.books[BID], self.touched[BID])
        asks = self._side(self.asks, ask_prices[:depth], model.books[ASK], self.touched[ASK])
        bids.sort(reverse=True)
        asks.sort()
        return bids, asks

    def _side(self, old: dict[int, int], prices: list[int], book: dict[int, int], touched: set[int]) -> list[tuple[int, int]]:
        new = set(prices)
        entered = new - old.keys()
        left = old.keys() - new
        if self.resend_touched:
            out = [(p, book[p]) for p in (touched & new) | entered]
            gone = left | (touched - new)
        else:
            out = [(p, book[p]) for p in entered]
            out += [(p, q) for p in (touched & new) - entered if (q := book[p]) != old[p]]
            gone = left
        for p in left:
            del old[p]
        old.update(out)
        out += [(p, 0) for p in gone]
        touched.clear()
        return out

    def levels(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        return sorted(self.bids.items(), reverse=True), sorted(self.asks.items())


class Stepper(Protocol):
    def step_model(self, changes: int) -> None: ...


class ModelClock:
    """Steps model markets ``rate`` times per simulated second; ``speed`` simulated seconds per wall second."""

    def __init__(self, *, rate: float, speed: float, changes_per_event: int) -> None:
        self.rate = rate
        self.speed = speed
        self.changes = changes_per_event
        self._done = 0
        self.sim_ms = 0.0
        self.events = 0

    def advance(self, elapsed_ms: float, markets: Sequence[Stepper]) -> int:
        """Move to ``elapsed_ms`` wall milliseconds after start; returns the steps each market took."""
        self.sim_ms = elapsed_ms * self.speed
        due = int(self.sim_ms * self.rate / 1000.0) - self._done
        if due <= 0:
            return 0
        self._done += due
        steps = min(due, MAX_STEPS_PER_TICK)
        for _ in range(steps):
            for market in markets:
                market.step_model(self.changes)
        self.events += steps * len(markets)
        return steps


def window_closed(last_index: dict[int, int], interval_ms: int, sim_ms: float) -> bool:
    """True once per ``interval_ms`` window of the simulated clock (per interval, shared by channels)."""
    index = int(sim_ms // interval_ms)
    if last_index.get(interval_ms, -1) < index:
        last_index[interval_ms] = index
        return True
    return False


# -- replays: books of the recorded strings


def decimal_of(text: object, what: str) -> Decimal:
    if not isinstance(text, str):
        raise SimError(f"{what} must be a decimal string, found {text!r}")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise SimError(f"{what} must be a decimal string, found {text!r}") from None
    if not value.is_finite() or value < 0:
        raise SimError(f"{what} must be a finite decimal >= 0, found {text!r}")
    return value


class StringBook:
    """A book of recorded levels (lists of strings, exactly as sent), ordered by their exact decimal price."""

    def __init__(self) -> None:
        self.sides: tuple[dict[Decimal, list[str]], dict[Decimal, list[str]]] = ({}, {})

    def copy(self) -> StringBook:
        out = StringBook()
        out.sides = (dict(self.sides[BID]), dict(self.sides[ASK]))
        return out

    def apply(self, bids: list[list[str]], asks: list[list[str]]) -> None:
        for side, levels in ((BID, bids), (ASK, asks)):
            book = self.sides[side]
            for level in levels:
                price = decimal_of(level[0], "price")
                if decimal_of(level[1], "size") == 0:
                    book.pop(price, None)
                else:
                    book[price] = level

    def truncate(self, depth: int) -> None:
        """Keep the best ``depth`` levels per side (Kraken's rule after each message)."""
        for side, worst_first in ((self.sides[BID], False), (self.sides[ASK], True)):
            if len(side) > depth:
                for price in sorted(side, reverse=worst_first)[: len(side) - depth]:
                    del side[price]

    def top(self, limit: int | None) -> tuple[list[list[str]], list[list[str]]]:
        bids, asks = self.sides
        bid_keys = sorted(bids, reverse=True)[:limit]
        ask_keys = sorted(asks)[:limit]
        return [bids[k] for k in bid_keys], [asks[k] for k in ask_keys]


@dataclass(frozen=True, slots=True)
class BookMessage:
    """One recorded book message: a snapshot replaces the book, an update changes it."""

    snapshot: bool
    bids: list[list[str]]
    asks: list[list[str]]


class ReplayBooks:
    """The book after each recorded message, with copies saved every few messages to answer any index."""

    def __init__(self, messages: list[BookMessage], *, depth: int | None = None) -> None:
        self.messages = messages
        self.depth = depth  # a client's book truncated to this after each message (Kraken), or None
        self._saved: list[tuple[int, StringBook]] = []
        book = StringBook()
        for index, message in enumerate(messages):
            book = self._apply(book, message)
            if index % CHECKPOINT_EVERY_MESSAGES == 0:
                self._saved.append((index, book.copy()))

    def book_after(self, index: int) -> StringBook:
        """The book after message ``index`` (0-based) has been applied."""
        if not 0 <= index < len(self.messages):
            raise SimError(f"message index must be within [0, {len(self.messages)}), found {index}")
        start, saved = self._saved[bisect.bisect_right([i for i, _ in self._saved], index) - 1]
        book = saved.copy()
        for message in self.messages[start + 1 : index + 1]:
            book = self._apply(book, message)
        return book

    def _apply(self, book: StringBook, message: BookMessage) -> StringBook:
        if message.snapshot:
            book = StringBook()
        book.apply(message.bids, message.asks)
        if self.depth is not None:
            book.truncate(self.depth)
        return book


def truth_json(symbol: str, update_id: int, bids: Levels, asks: Levels) -> dict[str, object]:
    """The ``/_sim/book`` answer: the same shape as Binance's (price and size strings, best first)."""
    return {"symbol": symbol, "update_id": update_id, "bids": [lvl[:2] for lvl in bids], "asks": [lvl[:2] for lvl in asks]}
