"""The Coinbase Advanced Trade simulator family: ``level2`` (received as ``l2_data``) on its own port.

Written from Coinbase's documents (``shared/reference/exchanges.md`` section 5) and the shapes recorded
in ``shared/data/venues``, not from any client:

- websocket ``/``: ``{"type":"subscribe","product_ids":["BTC-USD"],"channel":"level2"}`` (a ``jwt`` is
  accepted and ignored). Every message is ``{"channel":..,"timestamp":..,"sequence_num":N,"events":[..]}``
  with ``sequence_num`` counted per connection, shared by every channel on it (0, 1, 2, ...): a gap
  anywhere means every book on that connection is suspect. ``l2_data`` events are ``snapshot`` (the whole
  book in one frame) then ``update`` with ``{"side":"bid"|"offer","event_time":..,"price_level":"65062.5",
  "new_quantity":"0.00583"}`` (absolute sizes, ``"0"`` deletes). The data of a subscription comes first,
  then a ``subscriptions`` message listing what the connection holds. ``heartbeats`` sends
  ``{"current_time":..,"heartbeat_counter":N}`` every second. Other channels of a listed product
  (``ticker``, ``market_trades``, ``candles``) are accepted; model markets send nothing on them, replays
  what was recorded. A connection with nothing sent for ``coinbase_idle_s`` (60 s) is closed.
- REST ``/api/v3/brokerage/market/product_book?product_id=&limit=`` (no sequence) and
  ``/api/v3/brokerage/market/products``.
- ``/_sim/book?symbol=BTC-USD&update_id=SEQ[&conn=ID|&port=P]&limit=N``: the book after the ``l2_data``
  message numbered ``SEQ`` on that connection (``conn`` from ``/_sim/connections``, or the client's local
  ``port``); without either, the newest connection that has that number for the product answers.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from datetime import datetime, timezone
from typing import Protocol

import orjson

from ldc.sim.config import SimConfig
from ldc.sim.httpmsg import Request, Response
from ldc.sim.venue_book import Levels, ModelBook, ModelClock, NumberFormat, VenueSpec, base_price_units, truth_json
from ldc.sim.venue_faults import VenueFaultKind, VenueFaultTable
from ldc.sim.venue_transport import VenueConn, int_params, json_response
from ldc.sim.wsframes import CLOSE_NORMAL, text_frame

WS_PATHS = ("", "/")
BOOK_CHANNEL = "level2"
SILENT_CHANNELS = ("ticker", "ticker_batch", "market_trades", "candles", "status")
HEARTBEAT_INTERVAL_S = 1.0
MODEL_DEPTH_LEVELS = 1400
TRUTH_HISTORY_MESSAGES = 20_000  # per connection
TRUTH_CONNECTIONS_KEPT = 64  # closed connections whose numbers still answer /_sim/book
REST_MAX_LIMIT = 1000
SIDES = ("bid", "offer")
# The product list behind authentication: the same answer, for a well-formed signature of any key.
AUTHENTICATED_PRODUCTS_PATH = "/api/v3/brokerage/products"
JWT_PARTS = 3  # header.payload.signature
HMAC_SHA256_HEX_CHARS = 64


def well_formed_auth(headers: dict[str, str]) -> bool:
    """A request signed in either form Coinbase documents, checked for form only: the simulator holds no
    secret, so any key and any well-formed signature is taken (a client that insists on signing public
    data, as cryptofeed's Coinbase does for its product list, gets it)."""
    bearer = headers.get("authorization", "")
    if bearer.startswith("Bearer "):
        return len(bearer[len("Bearer ") :].split(".")) == JWT_PARTS
    sign = headers.get("cb-access-sign", "")
    hex_sign = len(sign) == HMAC_SHA256_HEX_CHARS and all(c in "0123456789abcdefABCDEF" for c in sign)
    return bool(headers.get("cb-access-key")) and headers.get("cb-access-timestamp", "").isdigit() and hex_sign


def rfc3339_ns(ts: float | None = None) -> str:
    now = time.time() if ts is None else ts
    base = datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{int((now % 1) * 1e9):09d}Z"


def updates_json(bids: Levels, asks: Levels, event_time: str) -> str:
    parts = [
        f'{{"side":"{side}","event_time":"{event_time}","price_level":"{p}","new_quantity":"{q}"}}'
        for side, levels in (("bid", bids), ("offer", asks))
        for p, q in levels
    ]
    return "[" + ",".join(parts) + "]"


def l2_event(kind: str, product_id: str, updates: str) -> str:
    return f'[{{"type":"{kind}","product_id":"{product_id}","updates":{updates}}}]'


class Emitter(Protocol):
    """How a market sends on a connection: the dialect numbers every message of the connection."""

    def l2(self, conn: VenueConn, product_id: str, events: str, key: int) -> None: ...

    def channel(self, conn: VenueConn, channel: str, events: str) -> None: ...


class CoinbaseMarket(Protocol):
    product_id: str

    def subscribe(self, conn: VenueConn, channel: str, emit: Emitter) -> None: ...

    def unsubscribe(self, conn: VenueConn, channel: str) -> None: ...

    def flush(self, emit: Emitter) -> None: ...

    def levels_at(self, key: int, limit: int | None) -> tuple[Levels, Levels] | None: ...

    def product(self) -> dict[str, object]: ...

    def stats(self) -> dict[str, object]: ...


def coinbase_spec(product_id: str) -> VenueSpec:
    return VenueSpec(
        symbol=product_id, key=f"coinbase/{product_id}", price=NumberFormat(2, True), tick_units=1, qty=NumberFormat(8, True),
        lot_units=10**4, base_ticks=base_price_units(product_id, 0, 2), depth_levels=MODEL_DEPTH_LEVELS,
    )  # fmt: skip


class CoinbaseModelMarket:
    """A model product: the whole book, every level the model changed sent with its final size."""

    def __init__(self, product_id: str, *, config: SimConfig) -> None:
        self.product_id = product_id
        self.spec = coinbase_spec(product_id)
        self.book = ModelBook(self.spec, seed=config.seed, history_events=config.history_events)
        self.subscribers: dict[VenueConn, None] = {}
        self._touched: tuple[set[int], set[int]] = (set(), set())
        self.sent = 0

    def step_model(self, changes: int) -> None:
        event = self.book.model.step(changes, spread=True)
        if self.subscribers:
            for side, price, _ in event.changes:
                self._touched[side].add(price)

    def subscribe(self, conn: VenueConn, channel: str, emit: Emitter) -> None:
        if channel != BOOK_CHANNEL:
            return
        self.flush(emit)  # others first, so the snapshot and the next update meet exactly
        self.subscribers[conn] = None
        bids, asks = self.book.model.top(MODEL_DEPTH_LEVELS * 4)
        updates = updates_json(self.book.strings(bids), self.book.strings(asks), rfc3339_ns())
        emit.l2(conn, self.product_id, l2_event("snapshot", self.product_id, updates), self.book.model.last_id)

    def unsubscribe(self, conn: VenueConn, channel: str) -> None:
        if channel == BOOK_CHANNEL:
            self.subscribers.pop(conn, None)

    def flush(self, emit: Emitter) -> None:
        touched_bids, touched_asks = self._touched
        if not touched_bids and not touched_asks:
            return
        live_bids, live_asks = self.book.model.books
        bids = sorted(((p, live_bids.get(p, 0)) for p in touched_bids), reverse=True)
        asks = sorted((p, live_asks.get(p, 0)) for p in touched_asks)
        touched_bids.clear()
        touched_asks.clear()
        events = l2_event("update", self.product_id, updates_json(self.book.strings(bids), self.book.strings(asks), rfc3339_ns()))
        self.sent += 1
        for conn in list(self.subscribers):
            emit.l2(conn, self.product_id, events, self.book.model.last_id)

    def levels_at(self, key: int, limit: int | None) -> tuple[Levels, Levels] | None:
        """The book at model id ``key`` (-1: now)."""
        found = self.book.levels_at(self.book.model.last_id if key < 0 else key, limit or MODEL_DEPTH_LEVELS * 4)
        return None if found is None else (self.book.strings(found[0]), self.book.strings(found[1]))

    def product(self) -> dict[str, object]:
        return product_entry(self.product_id, price_increment=self.spec.tick_size, base_increment=self.spec.lot_size)

    def stats(self) -> dict[str, object]:
        return {"kind": "model", "events": self.book.model.events, "messages": self.sent, "subscribers": len(self.subscribers)}


def product_entry(product_id: str, *, price_increment: str, base_increment: str) -> dict[str, object]:
    base, _, quote = product_id.partition("-")
    return {
        "product_id": product_id, "base_currency_id": base, "quote_currency_id": quote, "price_increment": price_increment,
        "base_increment": base_increment, "quote_increment": price_increment, "status": "online", "trading_disabled": False,
        "product_type": "SPOT",
    }  # fmt: skip


class _ConnState:
    __slots__ = ("seq", "heartbeats", "last_heartbeat", "history")

    def __init__(self) -> None:
        self.seq = 0
        self.heartbeats = False
        self.last_heartbeat = 0.0
        self.history: deque[tuple[int, str, int]] = deque(maxlen=TRUTH_HISTORY_MESSAGES)  # (seq, product, key)


class CoinbaseDialect:
    """Coinbase Advanced Trade's protocol over :class:`ldc.sim.venue_transport.VenueServer`."""

    venue = "coinbase"

    def __init__(self, config: SimConfig, faults: VenueFaultTable, markets: list[CoinbaseMarket]) -> None:
        self.faults = faults
        self.markets: dict[str, CoinbaseMarket] = {m.product_id: m for m in markets}
        self.model_markets = [m for m in markets if isinstance(m, CoinbaseModelMarket)]
        self.clock = ModelClock(rate=config.rate, speed=config.speed, changes_per_event=config.changes_per_event)
        self.idle_s = config.coinbase_idle_s
        self._conns: OrderedDict[int, _ConnState] = OrderedDict()  # by connection id, closed ones kept a while
        self._ports: dict[int, int] = {}  # client port -> connection id
        self._counter = 0

    # -- numbering (every message of a connection)

    def _envelope(self, conn: VenueConn, channel: str, events: str) -> bytes:
        state = self._conns[conn.id]
        seq, state.seq = state.seq, state.seq + 1
        return f'{{"channel":"{channel}","timestamp":"{rfc3339_ns()}","sequence_num":{seq},"events":{events}}}'.encode()

    def l2(self, conn: VenueConn, product_id: str, events: str, key: int) -> None:
        state = self._conns.get(conn.id)
        if state is None or conn.closing:
            return
        state.history.append((state.seq, product_id, key))
        conn.send_book(text_frame(self._envelope(conn, "l2_data", events)), product_id)

    def channel(self, conn: VenueConn, channel: str, events: str) -> None:
        if conn.id in self._conns and not conn.closing:
            conn.send_book(text_frame(self._envelope(conn, channel, events)), "")

    # -- clock

    def tick(self, sim_ms: float, now_ms: int) -> None:
        self.clock.advance(sim_ms, self.model_markets)
        for market in self.markets.values():
            market.flush(self)

    def housekeeping(self, conn: VenueConn, now: float) -> None:
        state = self._conns.get(conn.id)
        if state is not None and state.heartbeats and now - state.last_heartbeat >= HEARTBEAT_INTERVAL_S:
            state.last_heartbeat = now
            self._counter += 1
            current = datetime.now(tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f000 +0000 UTC")
            self.channel(conn, "heartbeats", orjson.dumps([{"current_time": current, "heartbeat_counter": self._counter}]).decode())
        if now - conn.last_tx >= self.idle_s:
            conn.close(CLOSE_NORMAL, f"no message sent for {self.idle_s:g} s")

    # -- websocket

    def ws_category(self, path: str) -> str | None:
        return "public" if path.split("?")[0].rstrip("/") in WS_PATHS else None

    def on_open(self, conn: VenueConn) -> None:
        self._conns[conn.id] = _ConnState()
        self._ports[conn.port] = conn.id
        while len(self._conns) > TRUTH_CONNECTIONS_KEPT:
            old, _ = self._conns.popitem(last=False)
            self._ports = {p: c for p, c in self._ports.items() if c != old}

    def on_close(self, conn: VenueConn) -> None:
        for topic, product_id in list(conn.topics.items()):
            market = self.markets.get(product_id)
            if market is not None:
                market.unsubscribe(conn, topic.partition(":")[0])
        conn.topics.clear()
        state = self._conns.get(conn.id)
        if state is not None:
            state.heartbeats = False

    def on_text(self, conn: VenueConn, text: str) -> None:
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            msg = None
        if not isinstance(msg, dict) or msg.get("type") not in ("subscribe", "unsubscribe"):
            self._error(conn, f"malformed request: expected a subscribe or unsubscribe object, found {text[:100]!r}")
            return
        channel, products = msg.get("channel"), msg.get("product_ids", [])
        if channel == "heartbeats":
            self._conns[conn.id].heartbeats = msg["type"] == "subscribe"
            self._subscriptions(conn)
            return
        if channel != BOOK_CHANNEL and channel not in SILENT_CHANNELS:
            self._error(conn, f"Failed to subscribe: unknown channel {channel!r}")
            return
        if not isinstance(products, list) or not products or any(p not in self.markets for p in products):
            self._error(conn, f"Failed to subscribe: unknown product ids {products!r}, expected some of {sorted(self.markets)}")
            return
        for product_id in map(str, products):
            topic = f"{channel}:{product_id}"
            market = self.markets[product_id]
            if msg["type"] == "subscribe" and topic not in conn.topics:
                conn.topics[topic] = product_id
                market.subscribe(conn, str(channel), self)
            elif msg["type"] == "unsubscribe" and conn.topics.pop(topic, None) is not None:
                market.unsubscribe(conn, str(channel))
        self._subscriptions(conn)

    def _subscriptions(self, conn: VenueConn) -> None:
        held: dict[str, list[str]] = {}
        for topic in conn.topics:
            channel, _, product_id = topic.partition(":")
            held.setdefault(channel, []).append(product_id)
        if self._conns[conn.id].heartbeats:
            held["heartbeats"] = []
        conn.send_text(self._envelope(conn, "subscriptions", orjson.dumps([{"subscriptions": held}]).decode()))

    def _error(self, conn: VenueConn, message: str) -> None:
        conn.send_text(orjson.dumps({"type": "error", "message": message}))

    # -- REST

    def rest(self, req: Request) -> Response:
        if req.path in ("/api/v3/brokerage/market/products", AUTHENTICATED_PRODUCTS_PATH):
            unsigned = req.path == AUTHENTICATED_PRODUCTS_PATH and not well_formed_auth(req.headers)
            if unsigned:
                return json_response({"error": "UNAUTHENTICATED", "message": "expected a Bearer JWT or CB-ACCESS-KEY, CB-ACCESS-TIMESTAMP and a hex CB-ACCESS-SIGN"}, 401)
            products = [m.product() for m in self.markets.values()]
            return json_response({"products": products, "num_products": len(products)})
        if req.path != "/api/v3/brokerage/market/product_book":
            return json_response({"error": "NOT_FOUND", "message": f"unknown path {req.path!r}"}, 404)
        market = self.markets.get(req.query.get("product_id", ""))
        if market is None:
            return json_response({"error": "NOT_FOUND", "error_details": "ProductID is invalid", "message": "ProductID is invalid"}, 404)
        if self.faults.take(VenueFaultKind.REST_ERROR, symbol=market.product_id) is not None:
            return json_response({"error": "INTERNAL", "message": "internal error"}, 500)
        limit_text = req.query.get("limit", "")
        limit = int(limit_text) if limit_text.isdigit() and int(limit_text) > 0 else None
        found = market.levels_at(-1, min(limit or REST_MAX_LIMIT, REST_MAX_LIMIT))
        bids, asks = found if found is not None else ([], [])
        book = {"product_id": market.product_id, "bids": [{"price": p, "size": q} for p, q in bids], "asks": [{"price": p, "size": q} for p, q in asks], "time": rfc3339_ns()}
        return json_response({"pricebook": book})

    # -- private

    def truth(self, query: dict[str, str]) -> dict[str, object] | str:
        product_id = query.get("symbol", "").upper()
        market = self.markets.get(product_id)
        if market is None:
            return f"unknown product {product_id!r}, expected one of {sorted(self.markets)}"
        params = int_params(query, "update_id", "limit", "conn", "port")
        if isinstance(params, str):
            return params
        seq, limit, conn, port = params
        if conn is None and port is not None:
            conn = self._ports.get(port)
        key = -1 if seq is None else self._key(product_id, seq, conn)
        if key is None:
            return f"sequence_num {seq} is not an l2_data message of {product_id} on connection {conn if conn is not None else 'any'}"
        found = market.levels_at(key, limit)
        if found is None:
            return f"sequence_num {seq} of {product_id} is older than the kept history"
        return truth_json(product_id, -1 if seq is None else seq, found[0], found[1])

    def _key(self, product_id: str, seq: int, conn: int | None) -> int | None:
        if conn is None:
            states = list(reversed(self._conns.values()))
        else:
            states = [self._conns[conn]] if conn in self._conns else []
        for state in states:
            for number, product, key in reversed(state.history):
                if number == seq and product == product_id:
                    return key
        return None

    def stats(self) -> dict[str, object]:
        return {"sim_ms": round(self.clock.sim_ms, 1), "markets": {k: m.stats() for k, m in self.markets.items()}}

