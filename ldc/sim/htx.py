"""The HTX (Huobi) spot simulator family: market-by-price books and whole-book pushes on their own port.

Written from HTX's documents (``shared/reference/exchanges.md`` section 1), not from any client. Every
server frame is binary gzip JSON; clients send text JSON. Prices and sizes are JSON numbers, written
as exact decimal tokens (``65000.1``, ``0.5``).

- ``/feed``: ``{"sub":"market.btcusdt.mbp.150","id":"id1"}`` (``sub`` may be a list) answered
  ``{"id":"id1","status":"ok","subbed":"market.btcusdt.mbp.150","ts":...}``, then
  ``{"ch":"market.btcusdt.mbp.150","ts":...,"tick":{"seqNum":N,"prevSeqNum":P,"bids":[[9058.27,0]],
  "asks":[...]}}`` with ``prevSeqNum`` the previous message's ``seqNum`` (ids jump by more than one).
  Levels 5 and 20 are tick by tick (only a changed side is present, nothing is sent without a change);
  150 and 400 are the difference between two books 100 ms apart (an empty side is ``[]``, and a message
  is sent even when nothing changed). ``{"req":"market.btcusdt.mbp.150","id":"id2"}`` on the same
  connection answers ``{"id":"id2","rep":...,"status":"ok","ts":...,"data":{"seqNum":S,"bids":..,"asks":..}}``
  whose ``seqNum`` is the ``prevSeqNum`` of the next message (5, 20 and 150 only, as documented).
- ``/ws``: ``market.btcusdt.depth.step0``, the whole book (150 levels) every second with ``version``.
- Keep-alive: the server sends ``{"ping": ts}`` every ``htx_ping_interval_s`` (5 s) and closes a client
  that left two of them unanswered by ``{"pong": ts}``, just before it would send the next.
- Errors: ``{"status":"error","err-code":"bad-request","err-msg":"invalid topic ...","id":...,"ts":...}``
  (also ``not json string``, ``unsub with not subbed topic``).
- REST ``/market/depth?symbol=&type=step0[&depth=5|10|20]`` and ``/v1/common/symbols``.
- ``/_sim/book?symbol=btcusdt&update_id=N&limit=L``: the exact book at ``seqNum`` or ``version`` ``N``
  (for a replay, at a recorded ``version``).
"""

from __future__ import annotations

import gzip
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from ldc.sim.config import SimConfig
from ldc.sim.httpmsg import Request, Response
from ldc.sim.venue_book import DepthView, Levels, ModelBook, ModelClock, NumberFormat, VenueSpec, base_price_units, truth_json, window_closed
from ldc.sim.venue_faults import VenueFaultKind, VenueFaultTable
from ldc.sim.venue_transport import VenueConn, int_params, json_response
from ldc.sim.wsframes import CLOSE_NORMAL, OP_BINARY, encode_frame

PATHS = {"/feed": "feed", "/ws": "ws"}
MBP_LEVELS = {5: 0, 20: 0, 150: 100, 400: 100}  # levels -> push interval ms (0: tick by tick)
REQ_LEVELS = (5, 20, 150)
STEP0_LEVELS = 150
STEP0_INTERVAL_MS = 1000
MISSED_PINGS_BEFORE_CLOSE = 2
GZIP_LEVEL = 6
MODEL_DEPTH_LEVELS = 600
REST_DEPTHS = (5, 10, 20, 150)


def gzip_frame(raw: bytes) -> bytes:
    """One binary frame of gzip JSON, as HTX sends everything."""
    return encode_frame(OP_BINARY, gzip.compress(raw, compresslevel=GZIP_LEVEL, mtime=0))


def numbers(levels: Levels) -> str:
    """``[[65000.1,0.5],...]``: decimal strings written as JSON number tokens."""
    return "[" + ",".join(f"[{p},{q}]" for p, q in levels) + "]"


def parse_topic(topic: str) -> tuple[str, str, int] | None:
    """``market.btcusdt.mbp.150`` -> ("btcusdt", "mbp", 150); ``market.x.depth.step0`` -> ("x", "step0", 150)."""
    parts = topic.split(".")
    if len(parts) == 4 and parts[0] == "market" and parts[2] == "mbp" and parts[3].isdigit() and int(parts[3]) in MBP_LEVELS:
        return parts[1], "mbp", int(parts[3])
    if len(parts) == 4 and parts[0] == "market" and parts[2] == "depth" and parts[3] == "step0":
        return parts[1], "step0", STEP0_LEVELS
    return None


class HtxMarket(Protocol):
    symbol: str

    def serves(self, kind: str) -> bool: ...

    def subscribe(self, conn: VenueConn, kind: str, levels: int) -> None: ...

    def unsubscribe(self, conn: VenueConn, kind: str, levels: int) -> None: ...

    def flush(self, now_ms: int, closed: set[int]) -> None: ...

    def refresh(self, levels: int, behind: int) -> tuple[int, Levels, Levels]: ...

    def rest_depth(self, depth: int, behind: int) -> dict[str, object]: ...

    def truth(self, update_id: int | None, limit: int | None) -> dict[str, object] | None: ...

    def instrument(self) -> dict[str, object]: ...

    def stats(self) -> dict[str, object]: ...


@dataclass(slots=True)
class _Mbp:
    topic: str
    view: DepthView
    interval_ms: int
    last_seq: int
    last_model_id: int
    subscribers: dict[VenueConn, None] = field(default_factory=dict)


def htx_spec(symbol: str) -> VenueSpec:
    big = symbol.startswith(("btc", "eth"))
    price = NumberFormat(2 if big else 4, True)
    return VenueSpec(
        symbol=symbol, key=f"htx/{symbol}", price=price, tick_units=1, qty=NumberFormat(6, True), lot_units=100,
        base_ticks=base_price_units(symbol, 0, price.decimals), depth_levels=MODEL_DEPTH_LEVELS,
    )  # fmt: skip


class HtxModelMarket:
    """A model market: ``seqNum`` and ``version`` are the model's change ids."""

    def __init__(self, symbol: str, *, config: SimConfig, faults: VenueFaultTable) -> None:
        self.symbol = symbol
        self.spec = htx_spec(symbol)
        self.book = ModelBook(self.spec, seed=config.seed, history_events=config.history_events)
        self.faults = faults
        self.mbp: dict[int, _Mbp] = {}
        self.step0: dict[VenueConn, None] = {}
        self.sent = 0

    def serves(self, kind: str) -> bool:
        return True

    def step_model(self, changes: int) -> None:
        event = self.book.model.step(changes, spread=True)
        for ch in self.mbp.values():
            ch.view.note(event.changes)

    def channel(self, levels: int) -> _Mbp:
        found = self.mbp.get(levels)
        if found is None:
            model = self.book.model
            found = _Mbp(f"market.{self.symbol}.mbp.{levels}", DepthView(levels), MBP_LEVELS[levels], model.last_id, model.last_id)
            found.view.refresh(model)
            self.mbp[levels] = found
        return found

    def subscribe(self, conn: VenueConn, kind: str, levels: int) -> None:
        if kind == "step0":
            self.step0[conn] = None
        else:
            self.channel(levels).subscribers[conn] = None

    def unsubscribe(self, conn: VenueConn, kind: str, levels: int) -> None:
        if kind == "step0":
            self.step0.pop(conn, None)
        elif levels in self.mbp:
            self.mbp[levels].subscribers.pop(conn, None)

    # -- publishing

    def flush(self, now_ms: int, closed: set[int]) -> None:
        for ch in self.mbp.values():
            if ch.interval_ms == 0 or ch.interval_ms in closed:
                self._flush_mbp(ch, now_ms)
        if STEP0_INTERVAL_MS in closed and self.step0:
            bids, asks = self.book.model.top(STEP0_LEVELS)
            version = self.book.model.last_id
            tick = f'"bids":{numbers(self.book.strings(bids))},"asks":{numbers(self.book.strings(asks))},"version":{version},"ts":{now_ms}'
            self._fan_out(self.step0, f'{{"ch":"market.{self.symbol}.depth.step0","ts":{now_ms},"tick":{{{tick}}}}}')

    def _flush_mbp(self, ch: _Mbp, now_ms: int) -> None:
        model = self.book.model
        tick_by_tick = ch.interval_ms == 0
        bids: list[tuple[int, int]] = []
        asks: list[tuple[int, int]] = []
        if model.last_id != ch.last_model_id:
            bids, asks = ch.view.refresh(model)
            ch.last_model_id = model.last_id
        if tick_by_tick and not bids and not asks:
            return  # 5 and 20 send nothing without a change
        sides = []
        if bids or not tick_by_tick:
            sides.append(f'"bids":{numbers(self.book.strings(bids))}')
        if asks or not tick_by_tick:
            sides.append(f'"asks":{numbers(self.book.strings(asks))}')
        seq, prev = model.last_id, ch.last_seq
        ch.last_seq = seq
        self._fan_out(ch.subscribers, f'{{"ch":"{ch.topic}","ts":{now_ms},"tick":{{"seqNum":{seq},"prevSeqNum":{prev},{",".join(sides)}}}}}')

    def _fan_out(self, subscribers: dict[VenueConn, None], text: str) -> None:
        if not subscribers:
            return
        frame = gzip_frame(text.encode())
        self.sent += 1
        for conn in list(subscribers):
            conn.send_book(frame, self.symbol)

    # -- requests, REST and truth

    def refresh(self, levels: int, behind: int) -> tuple[int, Levels, Levels]:
        """The REQ answer: the channel's last published book, whose seqNum the next message links to."""
        ch = self.channel(levels)
        if behind > 0:
            model_id = self.book.stale_id(behind)
            found = self.book.levels_at(model_id, levels)
            if found is not None:
                return model_id, self.book.strings(found[0]), self.book.strings(found[1])
        bids, asks = ch.view.levels()
        return ch.last_seq, self.book.strings(bids), self.book.strings(asks)

    def rest_depth(self, depth: int, behind: int) -> dict[str, object]:
        model_id = self.book.stale_id(behind) if behind > 0 else self.book.model.last_id
        bids, asks = self.book.levels_at(model_id, depth) or self.book.model.top(depth)
        return {"bids": self.book.strings(bids), "asks": self.book.strings(asks), "version": model_id}

    def truth(self, update_id: int | None, limit: int | None) -> dict[str, object] | None:
        model_id = self.book.model.last_id if update_id is None else update_id
        found = self.book.levels_at(model_id, limit if limit is not None else MODEL_DEPTH_LEVELS)
        if found is None:
            return None
        return truth_json(self.symbol, model_id, self.book.strings(found[0]), self.book.strings(found[1]))

    def instrument(self) -> dict[str, object]:
        return symbol_entry(self.symbol, self.spec.price.decimals, self.spec.qty.decimals)

    def stats(self) -> dict[str, object]:
        return {"kind": "model", "events": self.book.model.events, "seqNum": self.book.model.last_id, "messages": self.sent}


def symbol_entry(symbol: str, price_precision: int, amount_precision: int) -> dict[str, object]:
    """A ``/v1/common/symbols`` entry."""
    quote = next((q for q in ("usdt", "husd", "btc", "eth", "usdc") if symbol.endswith(q) and len(symbol) > len(q)), "")
    return {
        "base-currency": symbol[: len(symbol) - len(quote)], "quote-currency": quote, "price-precision": price_precision,
        "amount-precision": amount_precision, "symbol-partition": "main", "symbol": symbol, "state": "online",
    }  # fmt: skip


class HtxDialect:
    """HTX's protocol over :class:`ldc.sim.venue_transport.VenueServer`."""

    venue = "htx"

    def __init__(self, config: SimConfig, faults: VenueFaultTable, markets: list[HtxMarket]) -> None:
        self.faults = faults
        self.markets: dict[str, HtxMarket] = {m.symbol: m for m in markets}
        self.model_markets = [m for m in markets if isinstance(m, HtxModelMarket)]
        self.clock = ModelClock(rate=config.rate, speed=config.speed, changes_per_event=config.changes_per_event)
        self._windows: dict[int, int] = {}
        self.ping_interval_s = config.htx_ping_interval_s
        self._pings: dict[VenueConn, list[int]] = {}  # pings sent and not answered, per connection

    def tick(self, sim_ms: float, now_ms: int) -> None:
        self.clock.advance(sim_ms, self.model_markets)
        intervals = {i for i in MBP_LEVELS.values() if i} | {STEP0_INTERVAL_MS}
        closed = {i for i in intervals if window_closed(self._windows, i, self.clock.sim_ms)}
        for market in self.markets.values():
            market.flush(now_ms, closed)

    def housekeeping(self, conn: VenueConn, now: float) -> None:
        if now - conn.last_ping < self.ping_interval_s:
            return
        pending = self._pings.setdefault(conn, [])
        if len(pending) >= MISSED_PINGS_BEFORE_CLOSE:
            conn.close(CLOSE_NORMAL, f"{len(pending)} pings unanswered")
            return
        ts = int(time.time() * 1000)
        while pending and pending[-1] >= ts:
            ts += 1  # each ping distinct, so a pong names exactly one
        pending.append(ts)
        conn.last_ping = now
        conn.send_frame(gzip_frame(orjson.dumps({"ping": ts})))

    # -- websocket

    def ws_category(self, path: str) -> str | None:
        return PATHS.get(path.rstrip("/") or "/")

    def on_open(self, conn: VenueConn) -> None:
        self._pings[conn] = []

    def on_close(self, conn: VenueConn) -> None:
        self._pings.pop(conn, None)
        for topic, symbol in list(conn.topics.items()):
            parsed, market = parse_topic(topic), self.markets.get(symbol)
            if parsed is not None and market is not None:
                market.unsubscribe(conn, parsed[1], parsed[2])
        conn.topics.clear()

    def on_text(self, conn: VenueConn, text: str) -> None:
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            msg = None
        if not isinstance(msg, dict):
            self._error(conn, None, "not json string")
            return
        req_id = msg.get("id")
        if "pong" in msg:
            pending = self._pings.get(conn, [])
            if msg["pong"] in pending:
                del pending[: pending.index(msg["pong"]) + 1]
            return
        if "sub" in msg:
            topics = msg["sub"] if isinstance(msg["sub"], list) else [msg["sub"]]
            for topic in topics:
                self._sub(conn, str(topic), req_id)
        elif "unsub" in msg:
            self._unsub(conn, str(msg["unsub"]), req_id)
        elif "req" in msg:
            self._req(conn, str(msg["req"]), req_id)
        else:
            self._error(conn, req_id, f"invalid request: expected sub, unsub, req or pong, found {sorted(msg)}")

    def _resolve(self, conn: VenueConn, topic: str) -> tuple[HtxMarket, str, int] | None:
        parsed = parse_topic(topic)
        if parsed is None:
            return None
        market = self.markets.get(parsed[0])
        on_path = (parsed[1] == "mbp") == (conn.category == "feed")  # mbp on /feed, depth.step0 on /ws
        if market is None or not on_path or not market.serves(parsed[1]):
            return None
        return market, parsed[1], parsed[2]

    def _sub(self, conn: VenueConn, topic: str, req_id: object) -> None:
        found = self._resolve(conn, topic)
        if found is None:
            self._error(conn, req_id, f"invalid topic {topic}")
            return
        self._send(conn, {**_id(req_id), "status": "ok", "subbed": topic, "ts": int(time.time() * 1000)})
        if topic not in conn.topics:
            market, kind, levels = found
            conn.topics[topic] = market.symbol
            market.subscribe(conn, kind, levels)

    def _unsub(self, conn: VenueConn, topic: str, req_id: object) -> None:
        symbol = conn.topics.pop(topic, None)
        parsed = parse_topic(topic)
        if symbol is None or parsed is None:
            self._error(conn, req_id, "unsub with not subbed topic")
            return
        self.markets[symbol].unsubscribe(conn, parsed[1], parsed[2])
        self._send(conn, {**_id(req_id), "status": "ok", "unsubbed": topic, "ts": int(time.time() * 1000)})

    def _req(self, conn: VenueConn, topic: str, req_id: object) -> None:
        found = self._resolve(conn, topic)
        if found is None or found[1] != "mbp" or found[2] not in REQ_LEVELS:
            self._error(conn, req_id, f"invalid topic {topic}")
            return
        market, _, levels = found
        if self.faults.take(VenueFaultKind.REST_ERROR, conn=conn.id, symbol=market.symbol) is not None:
            self._error(conn, req_id, "request timeout")
            return
        stale = self.faults.take(VenueFaultKind.STALE_SNAPSHOT, conn=conn.id, symbol=market.symbol)
        seq, bids, asks = market.refresh(levels, stale.behind if stale else 0)
        head = orjson.dumps({**_id(req_id), "rep": topic, "status": "ok", "ts": int(time.time() * 1000)})[:-1].decode()
        conn.send_frame(gzip_frame(f'{head},"data":{{"seqNum":{seq},"bids":{numbers(bids)},"asks":{numbers(asks)}}}}}'.encode()))

    def _error(self, conn: VenueConn, req_id: object, msg: str) -> None:
        self._send(conn, {"status": "error", "err-code": "bad-request", "err-msg": msg, **_id(req_id), "ts": int(time.time() * 1000)})

    @staticmethod
    def _send(conn: VenueConn, obj: dict[str, Any]) -> None:
        conn.send_frame(gzip_frame(orjson.dumps(obj)))

    # -- REST

    def rest(self, req: Request) -> Response:
        if req.method != "GET":
            return _htx_error(405, "bad-request", f"method {req.method} not allowed, expected GET")
        if req.path == "/v1/common/symbols":
            return json_response({"status": "ok", "data": [m.instrument() for m in self.markets.values()]})
        if req.path != "/market/depth":
            return _htx_error(404, "bad-request", f"unknown path {req.path!r}")
        symbol = req.query.get("symbol", "")
        market = self.markets.get(symbol)
        if market is None:
            return _htx_error(200, "invalid-parameter", "invalid symbol")
        if req.query.get("type") != "step0":
            return _htx_error(200, "invalid-parameter", f"invalid type, expected step0, found {req.query.get('type')!r}")
        depth_text = req.query.get("depth", "150")
        if not depth_text.isdigit() or int(depth_text) not in REST_DEPTHS:
            return _htx_error(200, "invalid-parameter", f"invalid depth, expected one of 5, 10, 20, found {depth_text!r}")
        if self.faults.take(VenueFaultKind.REST_ERROR, symbol=symbol) is not None:
            return _htx_error(500, "base-system-error", "Internal error")
        stale = self.faults.take(VenueFaultKind.STALE_SNAPSHOT, symbol=symbol)
        tick = market.rest_depth(int(depth_text), stale.behind if stale else 0)
        now_ms = int(time.time() * 1000)
        bids, asks = tick["bids"], tick["asks"]
        assert isinstance(bids, list) and isinstance(asks, list)
        body = f'{{"ch":"market.{symbol}.depth.step0","status":"ok","ts":{now_ms},"tick":{{"bids":{numbers(bids)},"asks":{numbers(asks)},"version":{tick["version"]},"ts":{now_ms}}}}}'
        return Response(200, body.encode())

    def truth(self, query: dict[str, str]) -> dict[str, object] | str:
        symbol = query.get("symbol", "").lower()
        market = self.markets.get(symbol)
        if market is None:
            return f"unknown symbol {symbol!r}, expected one of {sorted(self.markets)}"
        params = int_params(query, "update_id", "limit")
        if isinstance(params, str):
            return params
        update_id, limit = params
        found = market.truth(update_id, limit)
        return found if found is not None else f"seqNum / version {update_id} is outside the kept history of {symbol}"

    def stats(self) -> dict[str, object]:
        return {"sim_ms": round(self.clock.sim_ms, 1), "markets": {k: m.stats() for k, m in self.markets.items()}}


def _id(req_id: object) -> dict[str, object]:
    return {} if req_id is None else {"id": req_id}


def _htx_error(status: int, code: str, msg: str) -> Response:
    return json_response({"status": "error", "err-code": code, "err-msg": msg, "data": None}, status)
