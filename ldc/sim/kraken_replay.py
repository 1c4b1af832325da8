"""The genuine Kraken websocket v1 ``book-1000`` recording served as websocket v2 (``ldc.sim.kraken``).

v1 messages are ``[channelID, {"as": [[price, volume, time], ...], "bs": [...]}, "book-1000", "XBT/CHF"]``
(snapshot) and ``[channelID, {"a": [...]}, {"b": [...], "c": "checksum"}, "book-1000", pair]`` (updates;
``r`` marks a level republished from beyond the depth). Served as v2 (the checksum algorithm is the same,
its formatting is not):

- the pair is named as v2 names it (``BTC`` where v1 and AssetPairs say ``XBT``);
- prices and volumes are written to the pair's ``pair_decimals`` / ``lot_decimals`` from the recorded
  AssetPairs answer (v1 pads them: ``"56218.30000"`` becomes ``56218.3``; a value that would lose a digit
  is refused at load);
- each message carries the v2 checksum of the book after it, computed anew (the recorded v1 checksum
  proves the same book with the v1 texts; the tests check both);
- ``timestamp`` is the newest level time of the message, raised by a microsecond where needed so it is
  strictly increasing per pair: ``/_sim/book`` is keyed by it (in microseconds).

Only depth 1000 is served (the recorded one); the client keeps its book to 1000 levels, as the recording's.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from ldc.errors import SimError
from ldc.sim.kraken import book_frame, fan_out, kraken_checksum
from ldc.sim.venue_book import BookMessage, Levels, ReplayBooks, StringBook, truth_json
from ldc.sim.venue_replay import Recording, Timeline
from ldc.sim.venue_transport import VenueConn

RECORDED_DEPTH = 1000
CHECKSUM_LEVELS = 10


@dataclass(frozen=True, slots=True)
class _Message:
    time: float
    snapshot: bool
    bids: Levels  # v2 texts (pair precision), in the recorded order
    asks: Levels
    us: int
    checksum: int  # v2, of the book after this message


class KrakenReplayMarket:
    """One recorded pair, served as v2 ``book`` of depth 1000."""

    def __init__(self, symbol: str, messages: list[_Message], precisions: tuple[int, int], *, pace: float | None) -> None:
        self.symbol = symbol
        self.messages = messages
        self._precisions = precisions
        self.books = ReplayBooks([BookMessage(m.snapshot, m.bids, m.asks) for m in messages], depth=RECORDED_DEPTH)
        self._by_us = {m.us: i for i, m in enumerate(messages)}
        self.subscribers: dict[VenueConn, None] = {}
        self.timeline = Timeline([m.time for m in messages], pace, self._send)

    def depths(self) -> tuple[int, ...]:
        return (RECORDED_DEPTH,)

    def subscribe(self, conn: VenueConn, depth: int, snapshot: bool) -> None:
        self.subscribers[conn] = None
        sent = self.timeline.position
        if sent > 0 and snapshot:
            bids, asks = self.books.book_after(sent - 1).top(RECORDED_DEPTH)
            frame = book_frame(conn.category, "snapshot", self.symbol, RECORDED_DEPTH, bids, asks, checksum=kraken_checksum(bids, asks), us=self.messages[sent - 1].us)
            conn.send_book(frame, self.symbol)
        self.timeline.start()

    def unsubscribe(self, conn: VenueConn, depth: int) -> None:
        self.subscribers.pop(conn, None)

    def _send(self, index: int) -> None:
        m = self.messages[index]

        def encode(category: str, checksum: int) -> bytes:
            kind = "snapshot" if m.snapshot else "update"
            return book_frame(category, kind, self.symbol, RECORDED_DEPTH, m.bids, m.asks, checksum=checksum, us=m.us)

        fan_out(self.subscribers, self.symbol, encode, m.checksum)

    def flush(self, now_us: int) -> None:
        pass  # the timeline sends

    def truth(self, us: int | None, limit: int | None, depth: int | None) -> dict[str, object] | str:
        index = max(0, self.timeline.position - 1) if us is None else self._by_us.get(us)
        if index is None:
            return f"timestamp {us} us is not a recorded message of {self.symbol}"
        bids, asks = self.books.book_after(index).top(min(limit or RECORDED_DEPTH, depth or RECORDED_DEPTH))
        return truth_json(self.symbol, self.messages[index].us, bids, asks)

    def precisions(self) -> tuple[int, int]:
        return self._precisions

    def rest_depth(self, count: int) -> tuple[Levels, Levels]:
        bids, asks = self.books.book_after(max(0, self.timeline.position - 1)).top(count)
        return [lvl[:2] for lvl in bids], [lvl[:2] for lvl in asks]

    def stats(self) -> dict[str, object]:
        return {"kind": "replay", "messages": len(self.messages), "sent": self.timeline.position}


def _v2_text(text: str, decimals: int, what: str) -> str:
    value = Decimal(text)
    exact = value.quantize(Decimal(1).scaleb(-decimals))
    if exact != value:
        raise SimError(f"recorded {what} {text!r} has more digits than the pair's {decimals} decimals")
    return f"{exact:f}"


def _levels(raw: list[Any], precisions: tuple[int, int]) -> tuple[Levels, float]:
    out, newest = [], 0.0
    for level in raw:
        out.append([_v2_text(level[0], precisions[0], "price"), _v2_text(level[1], precisions[1], "volume")])
        newest = max(newest, float(level[2]))
    return out, newest


def kraken_replay_markets(rec: Recording, *, pace: float | None) -> list[KrakenReplayMarket]:
    precisions = _asset_pairs(rec)
    found: dict[str, list[tuple[float, bool, Levels, Levels, float]]] = {}
    for _, ts, text in rec.received:
        msg = orjson.loads(text) if text.startswith("[") else None
        if not isinstance(msg, list) or len(msg) < 4 or msg[-2] != f"book-{RECORDED_DEPTH}":
            continue
        pair = str(msg[-1])
        if pair not in precisions:
            raise SimError(f"{rec.path}: pair {pair!r} has no AssetPairs entry in the recording")
        sides = {key: value for part in msg[1:-2] for key, value in part.items()}
        snapshot = "as" in sides or "bs" in sides
        bids, newest_b = _levels(sides.get("bs" if snapshot else "b", []), precisions[pair])
        asks, newest_a = _levels(sides.get("as" if snapshot else "a", []), precisions[pair])
        found.setdefault(pair, []).append((ts, snapshot, bids, asks, max(newest_b, newest_a)))
    if not found:
        raise SimError(f"{rec.path}: no Kraken book-{RECORDED_DEPTH} messages found")
    return [KrakenReplayMarket(pair.replace("XBT", "BTC"), _messages(items), precisions[pair], pace=pace) for pair, items in found.items() if items[0][1]]


def _messages(items: list[tuple[float, bool, Levels, Levels, float]]) -> list[_Message]:
    """Stamp each message and compute the v2 checksum of the book after it (one walk)."""
    out: list[_Message] = []
    book, last_us = StringBook(), 0
    for ts, snapshot, bids, asks, newest in items:
        if snapshot:
            book = StringBook()
        book.apply(bids, asks)
        book.truncate(RECORDED_DEPTH)
        top_bids = [book.sides[0][p] for p in heapq.nlargest(CHECKSUM_LEVELS, book.sides[0])]
        top_asks = [book.sides[1][p] for p in heapq.nsmallest(CHECKSUM_LEVELS, book.sides[1])]
        last_us = max(int(round(newest * 1e6)) if newest else int(time.time() * 1e6), last_us + 1)
        out.append(_Message(ts, snapshot, bids, asks, last_us, kraken_checksum(top_bids, top_asks)))
    return out


def _asset_pairs(rec: Recording) -> dict[str, tuple[int, int]]:
    """wsname (``XBT/CHF``) -> (pair_decimals, lot_decimals) from the recorded AssetPairs answer."""
    out: dict[str, tuple[int, int]] = {}
    for url, body in rec.http:
        if "/0/public/AssetPairs" not in url:
            continue
        for entry in (orjson.loads(body).get("result") or {}).values():
            if isinstance(entry, dict) and "wsname" in entry:
                out[str(entry["wsname"])] = (int(entry["pair_decimals"]), int(entry["lot_decimals"]))
    return out
