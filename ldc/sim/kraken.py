"""The Kraken spot websocket v2 simulator family: ``book`` on its own port (and v1 at ``/``: ``kraken_v1``).

Written from Kraken's documents (``shared/reference/exchanges.md`` section 4), not from any client:

- websocket ``/v2``: on connect ``{"channel":"status","type":"update","data":[{"api_version":"v2",...}]}``;
  ``{"method":"subscribe","params":{"channel":"book","symbol":["BTC/USD"],"depth":10,"snapshot":true},
  "req_id":1}`` is answered once per symbol ``{"method":"subscribe","result":{"channel":"book","depth":10,
  "snapshot":true,"symbol":"BTC/USD"},"success":true,"time_in":..,"time_out":..,"req_id":1}``, then
  ``{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":[{"price":65000.1,"qty":0.50000000}],
  "asks":[..],"checksum":2439117997,"timestamp":"2026-..Z"}]}`` and ``"type":"update"`` messages. Prices and
  quantities are JSON numbers written to the pair's precision (trailing zeros kept). Depths 10, 25, 100,
  500, 1000; a level pushed out of the depth is not deleted (the client truncates to its depth after each
  message), a level removed from the book is sent with ``qty`` 0 and the level that comes into the depth
  is sent. There is no sequence number: ``checksum`` (CRC32, unsigned, of the top 10 asks then bids, each
  price and qty to the pair's precision with the point and leading zeros removed) is on every message.
  ``{"channel":"heartbeat"}`` every second on a connection with a subscription; ``{"method":"ping"}`` is
  answered ``{"method":"pong",...}``. The ``instrument`` channel gives each pair's precisions.
- REST ``/0/public/AssetPairs`` (``wsname``, ``pair_decimals``, ``lot_decimals``) and
  ``/0/public/Depth?pair=&count=``.
- ``/_sim/book?symbol=BTC/USD&update_id=T&limit=N[&depth=D]``: Kraken v2 has no update id, so ``T`` is the
  message's ``timestamp`` in microseconds since the epoch (strictly increasing per pair here); the answer
  is the book a client of depth ``D`` holds after that message.
"""

from __future__ import annotations

import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import orjson

from ldc.sim import kraken_v1
from ldc.sim.config import SimConfig
from ldc.sim.httpmsg import Request, Response
from ldc.sim.kraken_market import KrakenMarket
from ldc.sim.venue_book import DepthView, Levels, ModelBook, ModelClock, NumberFormat, VenueSpec, base_price_units, truth_json
from ldc.sim.venue_faults import VenueFaultKind, VenueFaultTable
from ldc.sim.venue_transport import VenueConn, int_params, json_response
from ldc.sim.wsframes import text_frame

WS_PATH = "/v2"
DEPTHS = (10, 25, 100, 500, 1000)
DEFAULT_DEPTH = 10
CHECKSUM_LEVELS = 10
HEARTBEAT_INTERVAL_S = 1.0
MODEL_DEPTH_LEVELS = 1400
TRUTH_HISTORY_MESSAGES = 20_000
REST_MAX_COUNT = 500


def kraken_checksum(bids: Levels, asks: Levels) -> int:
    """CRC32 (unsigned) of the top 10 asks then bids: price and qty texts without the point and leading zeros."""
    parts = []
    for level in asks[:CHECKSUM_LEVELS] + bids[:CHECKSUM_LEVELS]:
        for text in level[:2]:
            parts.append(text.replace(".", "").lstrip("0"))
    return zlib.crc32("".join(parts).encode())


def iso_us(us: int) -> str:
    """``2026-08-09T12:00:00.123456Z`` for microseconds since the epoch."""
    return datetime.fromtimestamp(us / 1e6, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def levels_json(levels: Levels) -> str:
    """``[{"price":65000.1,"qty":0.50000000},...]``: the decimal texts written as JSON number tokens."""
    return "[" + ",".join(f'{{"price":{p},"qty":{q}}}' for p, q in levels) + "]"


def book_message(kind: str, symbol: str, bids: Levels, asks: Levels, *, checksum: int, us: int) -> bytes:
    data = f'{{"symbol":{orjson.dumps(symbol).decode()},"bids":{levels_json(bids)},"asks":{levels_json(asks)},"checksum":{checksum},"timestamp":"{iso_us(us)}"}}'
    return f'{{"channel":"book","type":"{kind}","data":[{data}]}}'.encode()


def book_frame(category: str, kind: str, symbol: str, depth: int, bids: Levels, asks: Levels, *, checksum: int, us: int) -> bytes:
    """The book message in the connection's protocol (v2, or v1 on ``/``), framed."""
    if category == kraken_v1.CATEGORY:
        return text_frame(kraken_v1.book_message(kind, symbol, depth, bids, asks, checksum=checksum, us=us))
    return text_frame(book_message(kind, symbol, bids, asks, checksum=checksum, us=us))


def fan_out(subscribers: dict[VenueConn, None], symbol: str, encode: Callable[[str, int], bytes], checksum: int) -> None:
    """One frame per protocol among the subscribers, each encoded once; a checksum fault gets a wrong one."""
    frames: dict[str, bytes] = {}
    for conn in list(subscribers):
        frame = frames.get(conn.category) or frames.setdefault(conn.category, encode(conn.category, checksum))
        conn.send_book(frame, symbol, lambda category=conn.category: encode(category, checksum ^ 1))  # type: ignore[misc]


@dataclass(slots=True)
class _Book:
    depth: int
    view: DepthView
    subscribers: dict[VenueConn, None] = field(default_factory=dict)


def kraken_spec(symbol: str) -> VenueSpec:
    price_decimals = 1 if symbol.startswith("BTC") else 2 if symbol.startswith("ETH") else 5
    return VenueSpec(
        symbol=symbol, key=f"kraken/{symbol}", price=NumberFormat(price_decimals, False), tick_units=1,
        qty=NumberFormat(8, False), lot_units=10**4, base_ticks=base_price_units(symbol, 0, price_decimals),
        depth_levels=MODEL_DEPTH_LEVELS,
    )  # fmt: skip


class KrakenModelMarket:
    """A model pair. Each message's timestamp (microseconds, strictly increasing) keys the truth."""

    def __init__(self, symbol: str, *, config: SimConfig, faults: VenueFaultTable) -> None:
        self.symbol = symbol
        self.spec = kraken_spec(symbol)
        self.book = ModelBook(self.spec, seed=config.seed, history_events=config.history_events)
        self.faults = faults
        self.books: dict[int, _Book] = {}
        self._history: deque[tuple[int, int]] = deque(maxlen=TRUTH_HISTORY_MESSAGES)  # (us, model id)
        self._last_us = 0
        self._last_model_id = self.book.model.last_id
        self.sent = 0

    def depths(self) -> tuple[int, ...]:
        return DEPTHS

    def step_model(self, changes: int) -> None:
        event = self.book.model.step(changes, spread=True)
        for book in self.books.values():
            book.view.note(event.changes)

    def _stamp(self, now_us: int) -> int:
        us = self._last_us = max(now_us, self._last_us + 1)
        self._history.append((us, self.book.model.last_id))
        return us

    def subscribe(self, conn: VenueConn, depth: int, snapshot: bool) -> None:
        now_us = int(time.time() * 1e6)
        self.flush(now_us)  # the other clients get what moved first, so every view is the model's top now
        book = self.books.get(depth)
        if book is None:
            book = self.books[depth] = _Book(depth, DepthView(depth))
            book.view.refresh(self.book.model)
        book.subscribers[conn] = None
        if snapshot:
            bids, asks = book.view.levels()
            b, a = self.book.strings(bids), self.book.strings(asks)
            frame = book_frame(conn.category, "snapshot", self.symbol, depth, b, a, checksum=kraken_checksum(b, a), us=self._stamp(now_us))
            conn.send_book(frame, self.symbol)

    def unsubscribe(self, conn: VenueConn, depth: int) -> None:
        book = self.books.get(depth)
        if book is not None:
            book.subscribers.pop(conn, None)
            if not book.subscribers:
                del self.books[depth]

    def flush(self, now_us: int) -> None:
        model = self.book.model
        if model.last_id == self._last_model_id or not self.books:
            return
        self._last_model_id = model.last_id
        updates = [(b, *self._changes(b)) for b in self.books.values()]
        updates = [u for u in updates if u[1] or u[2]]
        if not updates:
            return
        us = self._stamp(now_us)
        top_bids, top_asks = model.top(CHECKSUM_LEVELS)
        checksum = kraken_checksum(self.book.strings(top_bids), self.book.strings(top_asks))
        for book, bids, asks in updates:
            self._fan_out(book, self.book.strings(bids), self.book.strings(asks), checksum, us)

    def _fan_out(self, book: _Book, bids: Levels, asks: Levels, checksum: int, us: int) -> None:
        def encode(category: str, value: int) -> bytes:
            return book_frame(category, "update", self.symbol, book.depth, bids, asks, checksum=value, us=us)

        self.sent += 1
        fan_out(book.subscribers, self.symbol, encode, checksum)

    def _changes(self, book: _Book) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """The view's changes without deletions of levels that only fell out of the depth (they still exist)."""
        bids, asks = book.view.refresh(self.book.model)
        live_bids, live_asks = self.book.model.books
        return [(p, q) for p, q in bids if q or p not in live_bids], [(p, q) for p, q in asks if q or p not in live_asks]

    def truth(self, us: int | None, limit: int | None, depth: int | None) -> dict[str, object] | str:
        depth = depth or max(self.books, default=max(DEPTHS))
        found = self._history[-1] if us is None and self._history else next(((u, m) for u, m in reversed(self._history) if u == us), None)
        if found is None:
            return f"timestamp {us} us is not a message of {self.symbol} in the kept history"
        levels = self.book.levels_at(found[1], min(limit or depth, depth))
        if levels is None:
            return f"timestamp {us} us of {self.symbol} is older than the model's history"
        return truth_json(self.symbol, found[0], self.book.strings(levels[0]), self.book.strings(levels[1]))

    def precisions(self) -> tuple[int, int]:
        return self.spec.price.decimals, self.spec.qty.decimals

    def rest_depth(self, count: int) -> tuple[Levels, Levels]:
        bids, asks = self.book.model.top(count)
        return self.book.strings(bids), self.book.strings(asks)

    def stats(self) -> dict[str, object]:
        return {"kind": "model", "events": self.book.model.events, "messages": self.sent, "depths": sorted(self.books)}


def now_text() -> str:
    return iso_us(int(time.time() * 1e6))


class KrakenDialect:
    """Kraken v2's protocol over :class:`ldc.sim.venue_transport.VenueServer`."""

    venue = "kraken"

    def __init__(self, config: SimConfig, faults: VenueFaultTable, markets: list[KrakenMarket]) -> None:
        self.faults = faults
        self.markets: dict[str, KrakenMarket] = {m.symbol: m for m in markets}
        self.model_markets = [m for m in markets if isinstance(m, KrakenModelMarket)]
        self.clock = ModelClock(rate=config.rate, speed=config.speed, changes_per_event=config.changes_per_event)
        self._heartbeats: dict[VenueConn, float] = {}

    def tick(self, sim_ms: float, now_ms: int) -> None:
        self.clock.advance(sim_ms, self.model_markets)
        now_us = int(time.time() * 1e6)
        for market in self.markets.values():
            market.flush(now_us)

    def housekeeping(self, conn: VenueConn, now: float) -> None:
        if conn.topics and now - self._heartbeats.get(conn, 0.0) >= HEARTBEAT_INTERVAL_S:
            self._heartbeats[conn] = now
            conn.send_text(kraken_v1.HEARTBEAT if conn.category == kraken_v1.CATEGORY else b'{"channel":"heartbeat"}')

    def ws_category(self, path: str) -> str | None:
        path = path.split("?")[0]
        if path in kraken_v1.PATHS:
            return kraken_v1.CATEGORY
        return "v2" if path.rstrip("/") == WS_PATH else None

    def on_open(self, conn: VenueConn) -> None:
        if conn.category == kraken_v1.CATEGORY:
            kraken_v1.on_open(conn)
            return
        status = {"api_version": "v2", "connection_id": conn.id, "system": "online", "version": "2.0.10"}
        conn.send_text(orjson.dumps({"channel": "status", "type": "update", "data": [status]}))

    def on_close(self, conn: VenueConn) -> None:
        self._heartbeats.pop(conn, None)
        for topic, symbol in list(conn.topics.items()):
            market = self.markets.get(symbol)
            if market is not None and topic.startswith("book:"):
                market.unsubscribe(conn, int(topic.split(":")[1]))
        conn.topics.clear()

    def on_text(self, conn: VenueConn, text: str) -> None:
        if conn.category == kraken_v1.CATEGORY:
            kraken_v1.on_text(conn, text, self.markets)
            return
        time_in = now_text()
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            msg = None
        if not isinstance(msg, dict) or not isinstance(msg.get("method"), str):
            conn.send_text(orjson.dumps({"error": "Malformed request", "success": False, "time_in": time_in, "time_out": now_text()}))
            return
        method, req_id, params = msg["method"], msg.get("req_id"), msg.get("params") or {}
        if method == "ping":
            conn.send_text(orjson.dumps({"method": "pong", **_req(req_id), "time_in": time_in, "time_out": now_text()}))
        elif method in ("subscribe", "unsubscribe") and isinstance(params, dict):
            self._subscription(conn, method, params, req_id, time_in)
        else:
            conn.send_text(orjson.dumps({"error": f"Method not found: {method}", "method": method, **_req(req_id), "success": False, "time_in": time_in, "time_out": now_text()}))

    def _subscription(self, conn: VenueConn, method: str, params: dict[str, object], req_id: object, time_in: str) -> None:
        channel = params.get("channel")
        if channel == "instrument":
            self._instrument(conn, method, req_id, time_in)
            return
        symbols, depth = params.get("symbol"), params.get("depth", DEFAULT_DEPTH)
        snapshot = params.get("snapshot", True) is not False
        if channel != "book" or not isinstance(symbols, list) or not symbols:
            self._refuse(conn, method, req_id, time_in, f"invalid channel or symbol list: channel {channel!r}, symbol {symbols!r}", None)
            return
        for symbol in map(str, symbols):
            market = self.markets.get(symbol)
            if market is None:
                self._refuse(conn, method, req_id, time_in, f"Currency pair not supported {symbol}", symbol)
            elif not isinstance(depth, int) or depth not in market.depths():
                self._refuse(conn, method, req_id, time_in, f"depth must be one of {', '.join(map(str, market.depths()))}, found {depth!r}", symbol)
            else:
                self._one(conn, method, market, depth, snapshot, req_id, time_in)

    def _one(self, conn: VenueConn, method: str, market: KrakenMarket, depth: int, snapshot: bool, req_id: object, time_in: str) -> None:
        topic = f"book:{depth}:{market.symbol}"
        if method == "subscribe" and topic in conn.topics:
            self._refuse(conn, method, req_id, time_in, "Already subscribed", market.symbol)
            return
        if method == "unsubscribe" and topic not in conn.topics:
            self._refuse(conn, method, req_id, time_in, "Subscription Not Found", market.symbol)
            return
        result = {"channel": "book", "depth": depth, "snapshot": snapshot, "symbol": market.symbol}
        conn.send_text(orjson.dumps({"method": method, "result": result, "success": True, "time_in": time_in, "time_out": now_text(), **_req(req_id)}))
        kraken_v1.hold_book(conn, method == "subscribe", market, depth, snapshot=snapshot)

    def _instrument(self, conn: VenueConn, method: str, req_id: object, time_in: str) -> None:
        conn.send_text(orjson.dumps({"method": method, "result": {"channel": "instrument", "snapshot": True}, "success": True, "time_in": time_in, "time_out": now_text(), **_req(req_id)}))
        if method != "subscribe":
            conn.topics.pop("instrument", None)
            return
        conn.topics["instrument"] = ""
        pairs = []
        for symbol, market in self.markets.items():
            price, qty = market.precisions()
            base, _, quote = symbol.partition("/")
            increment = "1" if price == 0 else f"0.{'0' * (price - 1)}1"
            pairs.append({"symbol": symbol, "base": base, "quote": quote, "status": "online", "price_precision": price, "qty_precision": qty, "price_increment": increment})
        conn.send_text(orjson.dumps({"channel": "instrument", "type": "snapshot", "data": {"assets": [], "pairs": pairs}}))

    @staticmethod
    def _refuse(conn: VenueConn, method: str, req_id: object, time_in: str, error: str, symbol: str | None) -> None:
        body: dict[str, object] = {"error": error, "method": method, **_req(req_id), "success": False}
        if symbol is not None:
            body["symbol"] = symbol
        conn.send_text(orjson.dumps({**body, "time_in": time_in, "time_out": now_text()}))

    # -- REST

    def rest(self, req: Request) -> Response:
        if req.path == "/0/public/AssetPairs":
            return json_response({"error": [], "result": {_rest_name(s): _asset_pair(s, m) for s, m in self.markets.items()}})
        if req.path != "/0/public/Depth":
            return json_response({"error": [f"EGeneral:Unknown method {req.path}"]}, 404)
        by_name = {_rest_name(s): m for s, m in self.markets.items()} | {s.replace("/", ""): m for s, m in self.markets.items()}
        market = by_name.get(req.query.get("pair", ""))
        if market is None:
            return json_response({"error": ["EQuery:Unknown asset pair"]})
        if self.faults.take(VenueFaultKind.REST_ERROR, symbol=market.symbol) is not None:
            return json_response({"error": ["EService:Unavailable"]}, 503)
        count_text = req.query.get("count", "100")
        count = int(count_text) if count_text.isdigit() else 100
        bids, asks = market.rest_depth(max(1, min(count, REST_MAX_COUNT)))
        ts = int(time.time())
        result = {"asks": [[p, q, ts] for p, q in asks], "bids": [[p, q, ts] for p, q in bids]}
        return json_response({"error": [], "result": {_rest_name(market.symbol): result}})

    def truth(self, query: dict[str, str]) -> dict[str, object] | str:
        symbol = query.get("symbol", "")
        market = self.markets.get(symbol)
        if market is None:
            return f"unknown symbol {symbol!r}, expected one of {sorted(self.markets)}"
        params = int_params(query, "update_id", "limit", "depth")
        if isinstance(params, str):
            return params
        us, limit, depth = params
        return market.truth(us, limit, depth)

    def stats(self) -> dict[str, object]:
        return {"sim_ms": round(self.clock.sim_ms, 1), "markets": {k: m.stats() for k, m in self.markets.items()}}


def _req(req_id: object) -> dict[str, object]:
    return {} if req_id is None else {"req_id": req_id}


def _rest_name(symbol: str) -> str:
    """AssetPairs keys name BTC as XBT: ``BTC/USD`` -> ``XBTUSD``."""
    return symbol.replace("BTC", "XBT").replace("/", "")


def _asset_pair(symbol: str, market: KrakenMarket) -> dict[str, object]:
    price, qty = market.precisions()
    base, _, quote = symbol.replace("BTC", "XBT").partition("/")
    return {"altname": _rest_name(symbol), "wsname": symbol.replace("BTC", "XBT"), "base": base, "quote": quote, "pair_decimals": price, "lot_decimals": qty, "status": "online"}
