"""The genuine Coinbase Advanced Trade recording served through ``ldc.sim.coinbase``.

The recording is one connection: ``l2_data``, ``ticker``, ``market_trades``, ``candles`` (and
``heartbeats`` / ``subscriptions``, which the simulator makes itself) numbered by one ``sequence_num``.
Served, each message keeps its recorded ``events`` (strings as recorded) in a new envelope numbered on
the client's own connection, sent to a client that subscribed that channel for a product the message
names. One timeline for the whole recording starts at the first subscription. A client joining after the
start gets a ``level2`` snapshot of the book at that point. ``/_sim/book`` answers by the client's
``sequence_num`` as for model markets.
"""

from __future__ import annotations

from typing import Any

import orjson

from ldc.errors import SimError
from ldc.sim.coinbase import BOOK_CHANNEL, Emitter, l2_event, product_entry, rfc3339_ns, updates_json
from ldc.sim.venue_book import BookMessage, Levels, ReplayBooks
from ldc.sim.venue_replay import Recording, Timeline
from ldc.sim.venue_transport import VenueConn

SERVED_CHANNELS = ("l2_data", "ticker", "market_trades", "candles")
SUBSCRIBED_AS = {"l2_data": BOOK_CHANNEL}


def _products(events: list[Any]) -> set[str]:
    """Every product id an events list names (l2 events, tickers, trades, candles)."""
    found: set[str] = set()
    for event in events:
        if "product_id" in event:
            found.add(str(event["product_id"]))
        for key in ("tickers", "trades", "candles"):
            found.update(str(item["product_id"]) for item in event.get(key, []) if "product_id" in item)
    return found


def _sides(updates: list[dict[str, str]]) -> tuple[Levels, Levels]:
    bids = [[u["price_level"], u["new_quantity"]] for u in updates if u["side"] == "bid"]
    asks = [[u["price_level"], u["new_quantity"]] for u in updates if u["side"] != "bid"]  # "offer"
    return bids, asks


class CoinbaseReplayMarket:
    """One recorded product's book; the feed sends, this answers snapshots and the truth."""

    def __init__(self, feed: CoinbaseReplayFeed, product_id: str, messages: list[BookMessage], product: dict[str, object] | None) -> None:
        self.feed = feed
        self.product_id = product_id
        self.books = ReplayBooks(messages)
        self._product = product
        self.last_sent = -1  # index of the last l2 message of this product sent

    def subscribe(self, conn: VenueConn, channel: str, emit: Emitter) -> None:
        self.feed.emitter = emit
        self.feed.subscribers.setdefault(channel, {}).setdefault(conn, set()).add(self.product_id)
        if channel == BOOK_CHANNEL and self.last_sent >= 0:
            bids, asks = self.books.book_after(self.last_sent).top(None)
            updates = updates_json([lvl[:2] for lvl in bids], [lvl[:2] for lvl in asks], rfc3339_ns())
            emit.l2(conn, self.product_id, l2_event("snapshot", self.product_id, updates), self.last_sent)
        self.feed.timeline.start()

    def unsubscribe(self, conn: VenueConn, channel: str) -> None:
        products = self.feed.subscribers.get(channel, {}).get(conn)
        if products is not None:
            products.discard(self.product_id)

    def flush(self, emit: Emitter) -> None:
        pass  # the feed's timeline sends

    def levels_at(self, key: int, limit: int | None) -> tuple[Levels, Levels] | None:
        index = self.last_sent if key < 0 else key
        if index < 0:
            return [], []
        bids, asks = self.books.book_after(index).top(limit)
        return [lvl[:2] for lvl in bids], [lvl[:2] for lvl in asks]

    def product(self) -> dict[str, object]:
        return self._product or product_entry(self.product_id, price_increment="0.01", base_increment="0.00000001")

    def stats(self) -> dict[str, object]:
        return {"kind": "replay", "l2_messages": len(self.books.messages), "sent": self.last_sent + 1}


class CoinbaseReplayFeed:
    """The recorded connection: every served message in order, one timeline for all products."""

    def __init__(self, rec: Recording, *, pace: float | None) -> None:
        self.entries: list[tuple[str, str, set[str], int]] = []  # (channel, events json, products, l2 index or -1)
        times: list[float] = []
        books: dict[str, list[BookMessage]] = {}
        for _, ts, text in rec.received:
            msg = orjson.loads(text) if text.startswith("{") else None
            if not isinstance(msg, dict) or msg.get("channel") not in SERVED_CHANNELS or not isinstance(msg.get("events"), list):
                continue
            events, channel = msg["events"], str(msg["channel"])
            products = _products(events)
            index = -1
            if channel == "l2_data":
                if len(events) != 1 or len(products) != 1:
                    raise SimError(f"{rec.path}: expected one l2_data event of one product per message, found {len(events)}")
                product_id = next(iter(products))
                bids, asks = _sides(events[0]["updates"])
                books.setdefault(product_id, []).append(BookMessage(events[0]["type"] == "snapshot", bids, asks))
                index = len(books[product_id]) - 1
            self.entries.append((channel, orjson.dumps(events).decode(), products, index))
            times.append(ts)
        if not books:
            raise SimError(f"{rec.path}: no Coinbase l2_data messages found")
        recorded_products = _recorded_products(rec)
        self.markets = [CoinbaseReplayMarket(self, p, msgs, recorded_products.get(p)) for p, msgs in books.items()]
        self._by_product = {m.product_id: m for m in self.markets}
        self.subscribers: dict[str, dict[VenueConn, set[str]]] = {}  # subscribed channel -> conn -> products
        self.emitter: Emitter | None = None
        self.timeline = Timeline(times, pace, self._send)

    def _send(self, index: int) -> None:
        channel, events, products, l2_index = self.entries[index]
        if l2_index >= 0:
            market = self._by_product[next(iter(products))]
            market.last_sent = l2_index
        emit = self.emitter
        if emit is None:
            return
        for conn, wanted in list(self.subscribers.get(SUBSCRIBED_AS.get(channel, channel), {}).items()):
            if not wanted & products or conn.closing:
                continue
            if l2_index >= 0:
                emit.l2(conn, next(iter(products)), events, l2_index)
            else:
                emit.channel(conn, channel, events)


def _recorded_products(rec: Recording) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for url, body in rec.http:
        if "/market/products" in url:
            for entry in orjson.loads(body).get("products") or []:
                if isinstance(entry, dict) and "product_id" in entry:
                    out[str(entry["product_id"])] = entry
    return out

