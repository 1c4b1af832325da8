"""The Bybit v5 simulator family: public order books of spot, linear and inverse on their own port.

Written from Bybit's documents (``shared/reference/exchanges.md`` section 3, bybit-exchange/docs
``v5/websocket/public/orderbook``), not from any client:

- websocket ``/v5/public/spot``, ``/v5/public/linear``, ``/v5/public/inverse`` (one URL per category):
  ``{"req_id":"1","op":"subscribe","args":["orderbook.50.BTCUSDT"]}`` answered (linear / inverse)
  ``{"success":true,"ret_msg":"","conn_id":"...","req_id":"1","op":"subscribe"}`` or (spot)
  ``{"success":true,"ret_msg":"subscribe","conn_id":"...","req_id":"1","op":"subscribe"}``, then a
  ``"type":"snapshot"`` and ``"type":"delta"`` messages ``{"topic":..,"type":..,"ts":..,"data":{"s":..,
  "b":[["16493.50","0.006"]],"a":[..],"u":18521288,"seq":7961638724},"cts":..}`` (spot puts ``ts``
  before ``type``). ``u`` is +1 per message of a topic; ``seq`` is the cross sequence (the model's id,
  comparable across depths). Depths 1 (10 ms, snapshots only, re-pushed with the same ``u`` after 3 s
  without change), 50 (20 ms), 200 (100 ms), 1000 (200 ms); a topic keeps exactly its depth.
  Spot takes at most 10 args per subscribe; the args of one connection may total 21,000 characters.
  ``{"op":"ping"}`` is answered with the category's pong; a client that has not pinged for
  ``bybit_ping_timeout_s`` (default 600 s: "no ping-pong and no data, cut after 10 minutes") is closed.
  Other public topics of a listed symbol (``tickers.``, ``publicTrade.``, ``kline.``, ...) are accepted;
  model markets send nothing on them, replays send what was recorded.
- REST ``/v5/market/orderbook?category=&symbol=&limit=`` (its ``u`` is the 1000-level topic's) and
  ``/v5/market/instruments-info?category=``.
- ``/_sim/book?category=linear&symbol=BTCUSDT&update_id=U&limit=N[&depth=D]``: the exact book after the
  message ``u == U`` of topic ``orderbook.D.SYMBOL`` (``depth`` may be left out when the market has one
  topic). After a reset (``u`` back to 1) the newest message with that ``u`` answers.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from ldc.sim.config import SimConfig
from ldc.sim.httpmsg import Request, Response
from ldc.sim.venue_book import DepthView, Levels, ModelBook, ModelClock, NumberFormat, VenueSpec, base_price_units, truth_json, window_closed
from ldc.sim.venue_faults import VenueFaultKind, VenueFaultTable
from ldc.sim.venue_transport import VenueConn, int_params, json_response
from ldc.sim.wsframes import CLOSE_NORMAL, text_frame

CATEGORIES = ("spot", "linear", "inverse")
WS_PREFIX = "/v5/public/"
DEPTHS = {1: 10, 50: 20, 200: 100, 1000: 200}  # depth -> push interval, ms
SPOT_MAX_ARGS_PER_SUBSCRIBE = 10
MAX_ARGS_CHARS_PER_CONNECTION = 21_000
PING_TIMEOUT_S = 600.0
REST_MAX_LIMIT = 1000
REST_DEFAULT_LIMIT = {"spot": 1, "linear": 25, "inverse": 25}
TRUTH_HISTORY_MESSAGES = 20_000  # u -> model id pairs kept per topic
MODEL_DEPTH_LEVELS = 1400  # more than 1000 so levels move in and out of every topic
SILENT_TOPICS = ("tickers.", "publicTrade.", "kline.", "allLiquidation.", "liquidation.", "orderbook.rpi.")
QUOTES = ("USDT", "USDC", "USD")


def book_message(category: str, topic: str, kind: str, symbol: str, bids: Levels, asks: Levels, *, u: int, seq: int, ts_ms: int) -> bytes:
    data = {"s": symbol, "b": bids, "a": asks, "u": u, "seq": seq}
    if category == "spot":  # spot's field order differs (cosmetic, as recorded)
        return orjson.dumps({"topic": topic, "ts": ts_ms, "type": kind, "data": data, "cts": ts_ms - 1})
    return orjson.dumps({"topic": topic, "type": kind, "ts": ts_ms, "data": data, "cts": ts_ms - 1})


def parse_topic(topic: str) -> tuple[int, str] | None:
    """``orderbook.50.BTCUSDT`` -> (50, "BTCUSDT"); None when not a book topic of a known depth."""
    parts = topic.split(".")
    if len(parts) != 3 or parts[0] != "orderbook" or not parts[1].isdigit() or int(parts[1]) not in DEPTHS:
        return None
    return int(parts[1]), parts[2]


class BybitMarket(Protocol):
    category: str
    symbol: str

    def book_depths(self) -> tuple[int, ...]: ...

    def subscribe(self, conn: VenueConn, topic: str) -> None: ...

    def unsubscribe(self, conn: VenueConn, topic: str) -> None: ...

    def flush(self, now_ms: int, closed: set[int]) -> None: ...

    def rest_book(self, limit: int, behind: int) -> dict[str, object]: ...

    def truth(self, u: int | None, limit: int | None, depth: int | None) -> dict[str, object] | str: ...

    def instrument(self) -> dict[str, object]: ...

    def stats(self) -> dict[str, object]: ...


@dataclass(slots=True)
class _Topic:
    name: str
    view: DepthView
    interval_ms: int
    u: int
    model_id: int
    subscribers: dict[VenueConn, None] = field(default_factory=dict)
    history: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=TRUTH_HISTORY_MESSAGES))
    last_sent_s: float = 0.0

    def remember(self) -> None:
        self.history.append((self.u, self.model_id))


def bybit_spec(category: str, symbol: str) -> VenueSpec:
    """Linear: fixed decimals (``"65114.20"``, ``"0.006"``); spot: trimmed (``"65140"``); inverse: contracts."""
    big = symbol.startswith(("BTC", "ETH"))
    if category == "inverse":
        price, tick, qty, lot = NumberFormat(2, False), 50, NumberFormat(0, False), 1
    elif category == "linear":
        price, tick, qty, lot = NumberFormat(2, False), 10 if big else 1, NumberFormat(3, False), 1
    else:
        price, tick, qty, lot = NumberFormat(2, True), 1, NumberFormat(6, True), 100
    base = base_price_units(symbol, 0, price.decimals) // tick
    return VenueSpec(symbol=symbol, key=f"bybit/{category}/{symbol}", price=price, tick_units=tick, qty=qty, lot_units=lot, base_ticks=base, depth_levels=MODEL_DEPTH_LEVELS)


class BybitModelMarket:
    """A model market of one category. Topics live from their first use (their ``u`` never restarts
    except by a reset fault), so the REST snapshot's ``u`` always lines up with the 1000-level topic."""

    def __init__(self, category: str, symbol: str, *, config: SimConfig, faults: VenueFaultTable) -> None:
        self.category = category
        self.symbol = symbol
        self.spec = bybit_spec(category, symbol)
        self.book = ModelBook(self.spec, seed=config.seed, history_events=config.history_events)
        self.faults = faults
        self.topics: dict[int, _Topic] = {}
        self.level1_repush_s = config.bybit_level1_repush_s
        self.sent = 0

    def book_depths(self) -> tuple[int, ...]:
        return tuple(DEPTHS)

    def step_model(self, changes: int) -> None:
        event = self.book.model.step(changes, spread=True)
        for t in self.topics.values():
            t.view.note(event.changes)

    def topic(self, depth: int) -> _Topic:
        found = self.topics.get(depth)
        if found is None:
            model = self.book.model
            first_u = 1 + model.initial_id % 1_000_000  # any start: clients must not expect 1
            found = _Topic(f"orderbook.{depth}.{self.symbol}", DepthView(depth), DEPTHS[depth], first_u, model.last_id, last_sent_s=time.monotonic())
            self.topics[depth] = found
            found.view.refresh(model)
            found.remember()
        return found

    def subscribe(self, conn: VenueConn, topic: str) -> None:
        parsed = parse_topic(topic)
        if parsed is None:
            return  # a silent topic
        t = self.topic(parsed[0])
        t.subscribers[conn] = None
        stale = self.faults.take(VenueFaultKind.STALE_SNAPSHOT, conn=conn.id, symbol=self.symbol)
        if stale is not None:
            u, model_id = self._older(t, self.book.stale_id(stale.behind))
            levels = self.book.levels_at(model_id, t.view.depth)
            if levels is not None:
                self._send(conn, t, "snapshot", self.book.strings(levels[0]), self.book.strings(levels[1]), u=u, seq=model_id)
                return
        bids, asks = t.view.levels()
        self._send(conn, t, "snapshot", self.book.strings(bids), self.book.strings(asks), u=t.u, seq=t.model_id)

    def _send(self, conn: VenueConn, t: _Topic, kind: str, bids: Levels, asks: Levels, *, u: int, seq: int) -> None:
        raw = book_message(self.category, t.name, kind, self.symbol, bids, asks, u=u, seq=seq, ts_ms=int(time.time() * 1000))
        conn.send_book(text_frame(raw), self.symbol)

    def unsubscribe(self, conn: VenueConn, topic: str) -> None:
        parsed = parse_topic(topic)
        if parsed is not None and parsed[0] in self.topics:
            self.topics[parsed[0]].subscribers.pop(conn, None)

    # -- publishing

    def flush(self, now_ms: int, closed: set[int]) -> None:
        reset = self.faults.take(VenueFaultKind.RESET, symbol=self.symbol) is not None
        now = time.monotonic()
        for t in self.topics.values():
            if reset:
                self._reset(t, now_ms, now)
            elif t.interval_ms in closed:
                self._flush_topic(t, now_ms, now)

    def _reset(self, t: _Topic, now_ms: int, now: float) -> None:
        """Bybit's service restart: a snapshot with ``u`` 1 that overwrites the book."""
        t.view.refresh(self.book.model)
        t.u, t.model_id, t.last_sent_s = 1, self.book.model.last_id, now
        t.remember()
        bids, asks = t.view.levels()
        self._fan_out(t, "snapshot", self.book.strings(bids), self.book.strings(asks), now_ms)

    def _flush_topic(self, t: _Topic, now_ms: int, now: float) -> None:
        model = self.book.model
        if model.last_id == t.model_id:
            if t.view.depth == 1 and now - t.last_sent_s >= self.level1_repush_s and t.subscribers:
                bids, asks = t.view.levels()
                t.last_sent_s = now
                self._fan_out(t, "snapshot", self.book.strings(bids), self.book.strings(asks), now_ms)
            return
        bids, asks = t.view.refresh(model)
        t.model_id = model.last_id
        if not bids and not asks:
            return  # nothing inside this topic's depth moved: no message, u stays
        t.u += 1
        t.last_sent_s = now
        t.remember()
        if t.view.depth == 1:  # level 1 is only ever a snapshot
            bids_l, asks_l = t.view.levels()
            self._fan_out(t, "snapshot", self.book.strings(bids_l), self.book.strings(asks_l), now_ms)
        else:
            self._fan_out(t, "delta", self.book.strings(bids), self.book.strings(asks), now_ms)

    def _fan_out(self, t: _Topic, kind: str, bids: Levels, asks: Levels, now_ms: int) -> None:
        if not t.subscribers:
            return
        frame = text_frame(book_message(self.category, t.name, kind, self.symbol, bids, asks, u=t.u, seq=t.model_id, ts_ms=now_ms))
        self.sent += 1
        for conn in list(t.subscribers):
            conn.send_book(frame, self.symbol)

    @staticmethod
    def _older(t: _Topic, model_id: int) -> tuple[int, int]:
        """The newest message of ``t`` at or before ``model_id`` (its u and model id)."""
        for u, mid in reversed(t.history):
            if mid <= model_id:
                return u, mid
        return t.history[0]

    # -- REST and truth

    def rest_book(self, limit: int, behind: int) -> dict[str, object]:
        t = self.topic(max(DEPTHS))
        u, model_id = (t.u, t.model_id) if behind <= 0 else self._older(t, self.book.stale_id(behind))
        levels = self.book.levels_at(model_id, limit) or self.book.model.top(limit)
        now_ms = int(time.time() * 1000)
        return {"s": self.symbol, "b": self.book.strings(levels[0]), "a": self.book.strings(levels[1]), "ts": now_ms, "u": u, "seq": model_id, "cts": now_ms - 1}

    def truth(self, u: int | None, limit: int | None, depth: int | None) -> dict[str, object] | str:
        if depth is None:
            if len(self.topics) != 1:
                return f"depth must be given for {self.category} {self.symbol}: its topics have depths {sorted(self.topics)}"
            depth = next(iter(self.topics))
        t = self.topics.get(depth)
        if t is None:
            return f"no topic orderbook.{depth}.{self.symbol} has been served in {self.category}, found depths {sorted(self.topics)}"
        target = t.u if u is None else u
        model_id = next((mid for uu, mid in reversed(t.history) if uu == target), None)
        levels = None if model_id is None else self.book.levels_at(model_id, min(limit or depth, depth))
        if levels is None:
            return f"u {target} is outside the kept history of {t.name} ({self.category})"
        return truth_json(self.symbol, target, self.book.strings(levels[0]), self.book.strings(levels[1]))

    def instrument(self) -> dict[str, object]:
        return instrument_entry(self.category, self.symbol, tick=self.spec.tick_size, lot=self.spec.lot_size, price_scale=self.spec.price.decimals)

    def stats(self) -> dict[str, object]:
        return {"kind": "model", "events": self.book.model.events, "messages": self.sent, "topics": {t.name: t.u for t in self.topics.values()}}


def split_symbol(symbol: str) -> tuple[str, str]:
    for quote in QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol, ""


def instrument_entry(category: str, symbol: str, *, tick: str, lot: str, price_scale: int) -> dict[str, object]:
    """An ``/v5/market/instruments-info`` entry with the fields Bybit documents for the category."""
    base, quote = split_symbol(symbol)
    if category == "spot":
        lot_filter = {"basePrecision": lot, "quotePrecision": "0.0000001", "minOrderQty": lot, "maxOrderQty": "230", "minOrderAmt": "5", "maxOrderAmt": "8000000"}
        return {"symbol": symbol, "baseCoin": base, "quoteCoin": quote, "innovation": "0", "status": "Trading", "lotSizeFilter": lot_filter, "priceFilter": {"tickSize": tick}}
    return {
        "symbol": symbol, "contractType": "InversePerpetual" if category == "inverse" else "LinearPerpetual", "status": "Trading",
        "baseCoin": base, "quoteCoin": quote, "settleCoin": base if category == "inverse" else quote, "priceScale": str(price_scale),
        "priceFilter": {"minPrice": tick, "maxPrice": "1999999.80", "tickSize": tick},
        "lotSizeFilter": {"maxOrderQty": "1190.000", "minOrderQty": lot, "qtyStep": lot, "postOnlyMaxOrderQty": "1190.000"},
    }  # fmt: skip


class BybitDialect:
    """Bybit's protocol over :class:`ldc.sim.venue_transport.VenueServer`."""

    venue = "bybit"

    def __init__(self, config: SimConfig, faults: VenueFaultTable, markets: list[BybitMarket]) -> None:
        self.faults = faults
        self.markets: dict[tuple[str, str], BybitMarket] = {(m.category, m.symbol): m for m in markets}
        self.model_markets = [m for m in markets if isinstance(m, BybitModelMarket)]
        self.clock = ModelClock(rate=config.rate, speed=config.speed, changes_per_event=config.changes_per_event)
        self._windows: dict[int, int] = {}
        self.ping_timeout_s = config.bybit_ping_timeout_s

    # -- clock

    def tick(self, sim_ms: float, now_ms: int) -> None:
        self.clock.advance(sim_ms, self.model_markets)
        closed = {interval for interval in DEPTHS.values() if window_closed(self._windows, interval, self.clock.sim_ms)}
        for market in self.markets.values():
            market.flush(now_ms, closed)

    def housekeeping(self, conn: VenueConn, now: float) -> None:
        if now - conn.last_ping >= self.ping_timeout_s:
            conn.close(CLOSE_NORMAL, f"no ping for {self.ping_timeout_s:g} s")

    # -- websocket

    def ws_category(self, path: str) -> str | None:
        path = path.rstrip("/")
        if not path.startswith(WS_PREFIX) or path[len(WS_PREFIX) :] not in CATEGORIES:
            return None
        return path[len(WS_PREFIX) :]

    def on_open(self, conn: VenueConn) -> None:
        pass

    def on_close(self, conn: VenueConn) -> None:
        for topic, symbol in list(conn.topics.items()):
            market = self.markets.get((conn.category, symbol))
            if market is not None:
                market.unsubscribe(conn, topic)
        conn.topics.clear()

    def on_text(self, conn: VenueConn, text: str) -> None:
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            msg = None
        if not isinstance(msg, dict):
            self._answer(conn, None, "", success=False, ret_msg=f"error:request is not a json object: {text[:100]}")
            return
        op, req_id = msg.get("op"), msg.get("req_id")
        if op == "ping":
            conn.last_ping = time.monotonic()
            self._answer(conn, req_id, "ping", success=True, ret_msg="pong")
            return
        args = msg.get("args")
        if op not in ("subscribe", "unsubscribe"):
            self._answer(conn, req_id, str(op or ""), success=False, ret_msg=f"error:unsupported op {op!r}, expected subscribe, unsubscribe or ping")
            return
        if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
            self._answer(conn, req_id, str(op), success=False, ret_msg="error:args must be a non-empty array of topic strings")
            return
        problem = self._check(conn, str(op), args)
        if problem is not None:
            self._answer(conn, req_id, str(op), success=False, ret_msg=problem)
            return
        self._answer(conn, req_id, str(op), success=True, ret_msg="subscribe" if conn.category == "spot" and op == "subscribe" else "")
        for topic in args:
            if op == "subscribe":
                symbol = topic.rpartition(".")[2]
                conn.topics[topic] = symbol
                self.markets[(conn.category, symbol)].subscribe(conn, topic)
            else:
                symbol = conn.topics.pop(topic)
                self.markets[(conn.category, symbol)].unsubscribe(conn, topic)

    def _check(self, conn: VenueConn, op: str, args: list[str]) -> str | None:
        """Why a request is refused (all its args or none are taken), or None."""
        if conn.category == "spot" and len(args) > SPOT_MAX_ARGS_PER_SUBSCRIBE:
            return f"args size >{SPOT_MAX_ARGS_PER_SUBSCRIBE}"
        for topic in args:
            if op == "unsubscribe":
                if topic not in conn.topics:
                    return f"error:not subscribed,topic:{topic}"
                continue
            if topic in conn.topics or args.count(topic) > 1:
                return f"error:already subscribed,topic:{topic}"
            if not self._known(conn.category, topic):
                return f"error:handler not found,topic:{topic}"
        if op == "subscribe" and sum(map(len, conn.topics)) + sum(map(len, args)) > MAX_ARGS_CHARS_PER_CONNECTION:
            return f"error:args length over {MAX_ARGS_CHARS_PER_CONNECTION} characters on one connection"
        return None

    def _known(self, category: str, topic: str) -> bool:
        parsed = parse_topic(topic)
        if parsed is not None:
            market = self.markets.get((category, parsed[1]))
            return market is not None and parsed[0] in market.book_depths()
        return topic.startswith(SILENT_TOPICS) and (category, topic.rpartition(".")[2]) in self.markets

    @staticmethod
    def _answer(conn: VenueConn, req_id: object, op: str, *, success: bool, ret_msg: str) -> None:
        body: dict[str, object] = {"success": success, "ret_msg": ret_msg, "conn_id": conn_id(conn)}
        if conn.category != "spot" or req_id is not None:  # linear / inverse always carry req_id
            body["req_id"] = "" if req_id is None else req_id
        body["op"] = op
        conn.send_text(orjson.dumps(body))

    # -- REST

    def rest(self, req: Request) -> Response:
        if req.method != "GET":
            return _bybit_error(405, 10001, f"method {req.method} not allowed, expected GET")
        if req.path not in ("/v5/market/orderbook", "/v5/market/instruments-info"):
            return _bybit_error(404, 10001, f"unknown path {req.path!r}")
        category = req.query.get("category", "")
        if category not in CATEGORIES:
            return _bybit_error(200, 10001, f"params error: category must be one of {', '.join(CATEGORIES)}, found {category!r}")
        failing = self.faults.take(VenueFaultKind.REST_ERROR, symbol=req.query.get("symbol") or None)
        if failing is not None:
            return _bybit_error(failing.status, 10016, "Internal server error.")
        if req.path == "/v5/market/instruments-info":
            found = [m.instrument() for (cat, _), m in self.markets.items() if cat == category]
            return _bybit_ok({"category": category, "list": found, "nextPageCursor": ""})
        return self._orderbook(req, category)

    def _orderbook(self, req: Request, category: str) -> Response:
        symbol = req.query.get("symbol", "")
        market = self.markets.get((category, symbol))
        if market is None:
            return _bybit_error(200, 10001, "The requested symbol is invalid.")
        limit_text = req.query.get("limit") or str(REST_DEFAULT_LIMIT[category])
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= REST_MAX_LIMIT:
            return _bybit_error(200, 10001, f"params error: limit must be 1..{REST_MAX_LIMIT}, found {limit_text!r}")
        stale = self.faults.take(VenueFaultKind.STALE_SNAPSHOT, symbol=symbol)
        return _bybit_ok(market.rest_book(int(limit_text), stale.behind if stale else 0))

    # -- private

    def truth(self, query: dict[str, str]) -> dict[str, object] | str:
        symbol = query.get("symbol", "").upper()
        category = query.get("category")
        found = [m for (cat, sym), m in self.markets.items() if sym == symbol and category in (None, "", cat)]
        if len(found) != 1:
            where = sorted(f"{cat}:{sym}" for cat, sym in self.markets)
            return f"category and symbol must name one market, found {len(found)} for {category or 'any'}:{symbol} among {where}"
        params = int_params(query, "update_id", "limit", "depth")
        if isinstance(params, str):
            return params
        u, limit, depth = params
        return found[0].truth(u, limit, depth)

    def stats(self) -> dict[str, object]:
        return {"sim_ms": round(self.clock.sim_ms, 1), "markets": {f"{c}:{s}": m.stats() for (c, s), m in self.markets.items()}}


def conn_id(conn: VenueConn) -> str:
    return f"{conn.id:08x}-0000-4000-8000-sim{conn.id:08x}"


def _bybit_ok(result: dict[str, object]) -> Response:
    return json_response({"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": int(time.time() * 1000)})


def _bybit_error(status: int, code: int, msg: str) -> Response:
    return json_response({"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {}, "time": int(time.time() * 1000)}, status)
