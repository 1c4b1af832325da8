"""The exchange: markets, stream batching and fan-out, and the simulated clock.

Each model market steps ``rate`` times per simulated second. A stream ``<symbol>@depth@<N>ms`` is an
:class:`Aggregator` that merges the base events of its window and, at the window's end, encodes ONE
payload that every subscriber gets (raw frame once, combined frame once per spelling). Windows are
aligned on the simulated clock; ``speed`` makes that clock run faster than the wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ldc.sim.faults import FaultTable
from ldc.sim.markets import Family, MarketSpec
from ldc.sim.model import ASK, BID, BaseEvent, MarketModel
from ldc.sim.streams import StreamKey, encode_diff, encode_partial_spot, wrap_combined
from ldc.sim.wsframes import text_frame

MAX_STEPS_PER_TICK = 50
# An overloaded tick must end soon so frames go out and clients are answered; steps beyond this are
# skipped (the market moves less), never queued up.
MAX_EVENTS_PER_TICK = 2000
MAX_CACHED_STRINGS = 200_000  # per format; a cache is dropped and rebuilt beyond this
_CACHES: dict[tuple[int, int], dict[int, str]] = {}


def _shared_cache(decimals: int, unit: int) -> dict[int, str]:
    """One int -> string cache per printed format (decimals, unit), shared by all markets using it."""
    return _CACHES.setdefault((decimals, unit), {})  # after a stall, catch up at most this many steps per market, then skip


class Subscriber(Protocol):
    id: int
    combined: bool

    def send_diff(self, frame: bytes, symbol: str) -> None: ...


class Market(Protocol):
    """What REST and the truth endpoint need from a market, model or replay."""

    symbol: str
    family: Family
    partial_streams: bool  # serves @depth<levels> streams too

    def snapshot(self, limit: int, *, behind: int = 0) -> tuple[int, list[list[str]], list[list[str]]]: ...

    def truth(self, update_id: int | None, limit: int | None) -> dict[str, object] | None: ...

    def filters(self) -> tuple[str, str]: ...

    def stats(self) -> dict[str, object]: ...


class ModelMarket:
    """A model-driven market: :class:`MarketModel` plus the exchange's strings."""

    def __init__(self, spec: MarketSpec, *, seed: int, history_events: int) -> None:
        self.spec = spec
        self.symbol = spec.symbol
        self.family = spec.family
        self.partial_streams = True
        self.model = MarketModel(spec, seed=seed, history_events=history_events)
        # Shared by every market with the same format: hundreds of markets reuse the same strings.
        self._prices = _shared_cache(spec.price_decimals, spec.tick_units)
        self._qtys = _shared_cache(spec.qty_decimals, spec.lot_units)

    def price_s(self, ticks: int) -> str:
        text = self._prices.get(ticks)
        if text is None:
            if len(self._prices) > MAX_CACHED_STRINGS:
                self._prices.clear()
            text = self._prices[ticks] = self.spec.price_str(ticks)
        return text

    def qty_s(self, lots: int) -> str:
        text = self._qtys.get(lots)
        if text is None:
            if len(self._qtys) > MAX_CACHED_STRINGS:
                self._qtys.clear()
            text = self._qtys[lots] = self.spec.qty_str(lots)
        return text

    def levels_json(self, levels: list[tuple[int, int]]) -> str:
        """``["price","qty"],...`` with cached strings (most prices and sizes repeat)."""
        prices, qtys = self._prices, self._qtys
        parts = []
        for price, lots in levels:
            p = prices.get(price) or self.price_s(price)
            q = qtys.get(lots) or self.qty_s(lots)
            parts.append(f'["{p}","{q}"]')
        return ",".join(parts)

    def _strings(self, levels: list[tuple[int, int]]) -> list[list[str]]:
        return [[self.price_s(p), self.qty_s(q)] for p, q in levels]

    def snapshot(self, limit: int, *, behind: int = 0) -> tuple[int, list[list[str]], list[list[str]]]:
        """(lastUpdateId, bids, asks) now, or ``behind`` base events ago (a stale snapshot)."""
        if behind > 0:
            update_id = self.model.final_id_events_back(behind)
            books = self.model.book_at(update_id)
            if books is not None:
                bids = sorted(books[BID].items(), reverse=True)[:limit]
                asks = sorted(books[ASK].items())[:limit]
                return update_id, self._strings(bids), self._strings(asks)
        bids_l, asks_l = self.model.top(limit)
        return self.model.last_id, self._strings(bids_l), self._strings(asks_l)

    def truth(self, update_id: int | None, limit: int | None) -> dict[str, object] | None:
        target = self.model.last_id if update_id is None else update_id
        books = self.model.book_at(target)
        if books is None:
            return None
        bids = sorted(books[BID].items(), reverse=True)
        asks = sorted(books[ASK].items())
        if limit is not None:
            bids, asks = bids[:limit], asks[:limit]
        return {"symbol": self.symbol, "update_id": target, "bids": self._strings(bids), "asks": self._strings(asks)}

    def filters(self) -> tuple[str, str]:
        """(tickSize, stepSize) as the exchange prints them."""
        return self.spec.price_str(1), self.spec.qty_str(1)

    def stats(self) -> dict[str, object]:
        m = self.model
        return {
            "kind": "model",
            "events": m.events,
            "last_update_id": m.last_id,
            "oldest_update_id": m.oldest_id,
            "bid_levels": len(m.books[BID]),
            "ask_levels": len(m.books[ASK]),
            "best_bid": self.price_s(m.best_bid),
            "best_ask": self.price_s(m.best_ask),
        }


@dataclass(slots=True)
class _Pending:
    first_id: int
    final_id: int
    bids: dict[int, int]
    asks: dict[int, int]


class Aggregator:
    """One stream (market + interval): merges base events, then encodes once and fans out."""

    def __init__(self, key: StreamKey, market: ModelMarket) -> None:
        self.key = key
        self.market = market
        self.subscribers: dict[Subscriber, str] = {}
        self._pending: _Pending | None = None
        self._prev_final_id = market.model.last_final_id  # `pu` of the first event sent
        self.sent = 0

    def add(self, event: BaseEvent) -> None:
        pending = self._pending
        if pending is None:
            pending = self._pending = _Pending(event.first_id, event.final_id, {}, {})
        pending.final_id = event.final_id
        bids, asks = pending.bids, pending.asks
        for side, price, lots in event.changes:
            if side == BID:
                bids[price] = lots
            else:
                asks[price] = lots

    def send_event(self, event: BaseEvent, event_ms: int) -> None:
        """A real-time (``@0ms``) stream: one message per base event, no batching."""
        if self._pending is None and not self.key.levels:
            bids: dict[int, int] = {}
            asks: dict[int, int] = {}
            for side, price, lots in event.changes:
                if side == BID:
                    bids[price] = lots
                else:
                    asks[price] = lots
            self._pending = _Pending(event.first_id, event.final_id, bids, asks)
        else:
            self.add(event)
        self.flush(event_ms)

    def flush(self, event_ms: int) -> None:
        pending = self._pending
        if pending is None:
            return
        self._pending = None
        market = self.market
        if self.key.levels:
            top_bids, top_asks = market.model.top(self.key.levels)
            bids, asks = market.levels_json(top_bids), market.levels_json(top_asks)
            if self.key.family is Family.SPOT:
                raw = encode_partial_spot(pending.final_id, bids, asks)
                self.sent += 1
                self.fan_out(raw)
                return
        else:
            bids = market.levels_json(sorted(pending.bids.items(), reverse=True))
            asks = market.levels_json(sorted(pending.asks.items()))
        raw = encode_diff(
            self.key.family,
            market.symbol,
            event_ms=event_ms,
            first_id=pending.first_id,
            final_id=pending.final_id,
            prev_final_id=self._prev_final_id,
            bids=bids,
            asks=asks,
            pair=market.spec.pair,
        )
        self._prev_final_id = pending.final_id
        self.sent += 1
        self.fan_out(raw)

    def fan_out(self, raw: bytes) -> None:
        raw_frame: bytes | None = None
        combined: dict[str, bytes] = {}
        symbol = self.market.symbol
        for sub, name in list(self.subscribers.items()):
            if sub.combined:
                frame = combined.get(name)
                if frame is None:
                    frame = combined[name] = text_frame(wrap_combined(name, raw))
            else:
                if raw_frame is None:
                    raw_frame = text_frame(raw)
                frame = raw_frame
            sub.send_diff(frame, symbol)


class Exchange:
    """All markets and streams; single-threaded (the simulator's event loop)."""

    def __init__(self, *, rate: float, changes_per_event: int, speed: float, faults: FaultTable) -> None:
        self.markets: dict[tuple[Family, str], Market] = {}
        self.model_markets: list[ModelMarket] = []
        self.aggregators: dict[StreamKey, Aggregator] = {}
        self._by_market: dict[int, list[Aggregator]] = {}
        self._by_interval: dict[int, list[Aggregator]] = {}
        self._window_index: dict[int, int] = {}
        self.rate = rate
        self.speed = speed
        self.changes_per_event = changes_per_event
        self.faults = faults
        self._steps_done = 0
        self.sim_ms = 0.0
        self.events = 0

    def add_market(self, market: Market) -> None:
        self.markets[(market.family, market.symbol)] = market
        if isinstance(market, ModelMarket):
            self.model_markets.append(market)
            self._by_market[id(market)] = []

    def find(self, family: Family, symbol: str) -> Market | None:
        return self.markets.get((family, symbol))

    def subscribe(self, sub: Subscriber, key: StreamKey, name: str) -> bool:
        market = self.markets.get((key.family, key.symbol))
        if market is None:
            return False
        if not isinstance(market, ModelMarket):
            subscribe = getattr(market, "subscribe")
            subscribe(sub, name)
            return True
        agg = self.aggregators.get(key)
        if agg is None:
            agg = self.aggregators[key] = Aggregator(key, market)
            self._by_market[id(market)].append(agg)
            self._by_interval.setdefault(key.interval_ms, []).append(agg)
        agg.subscribers[sub] = name
        return True

    def unsubscribe(self, sub: Subscriber, key: StreamKey) -> None:
        market = self.markets.get((key.family, key.symbol))
        if market is not None and not isinstance(market, ModelMarket):
            getattr(market, "unsubscribe")(sub)
            return
        agg = self.aggregators.get(key)
        if agg is None:
            return
        agg.subscribers.pop(sub, None)
        if not agg.subscribers:
            del self.aggregators[key]
            self._by_market[id(agg.market)].remove(agg)
            self._by_interval[key.interval_ms].remove(agg)

    def advance(self, elapsed_s: float, event_ms: int) -> int:
        """Move the simulated clock to ``elapsed_s`` wall seconds after start; returns steps taken.

        Windows close on the simulated time of each step, so a tick that had to catch up several
        steps still sends one message per window, as the exchange would have.
        """
        self.sim_ms = elapsed_s * self.speed * 1000.0
        due = int(self.sim_ms * self.rate / 1000.0) - self._steps_done
        if due <= 0:
            self._flush_windows(event_ms, self.sim_ms)
            return 0
        cap = max(1, min(MAX_STEPS_PER_TICK, MAX_EVENTS_PER_TICK // max(1, len(self.model_markets))))
        steps = min(due, cap)
        first = self._steps_done + due - steps  # a stall skips steps rather than bursting forever
        self._steps_done += due
        mean = self.changes_per_event
        by_market = self._by_market
        for i in range(steps):
            for market in self.model_markets:
                event = market.model.step(mean, spread=True)
                for agg in by_market[id(market)]:
                    if agg.key.interval_ms == 0:
                        agg.send_event(event, event_ms)
                    else:
                        agg.add(event)
            self._flush_windows(event_ms, (first + i + 1) * 1000.0 / self.rate)
        self.events += steps * len(self.model_markets)
        self._flush_windows(event_ms, self.sim_ms)
        return steps

    def _flush_windows(self, event_ms: int, sim_ms: float) -> None:
        for interval, aggs in self._by_interval.items():
            if interval == 0 or not aggs:
                continue
            index = int(sim_ms // interval)
            if self._window_index.get(interval, -1) < index:
                self._window_index[interval] = index
                for agg in list(aggs):
                    agg.flush(event_ms)
