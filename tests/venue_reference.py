"""Independent Decimal reference replays of OKX v5 and Bybit v5 order-book rules, for tests.

Written from the venues' documents (shared/reference/exchanges.md sections 2 and 3), importing nothing
of ldc: a test feeds it the messages a server sent and compares the books with that server's truth.
The client's end-to-end proofs can reuse it.

OKX: a ``snapshot`` replaces the book; an ``update`` must have ``prevSeqId`` equal to the last ``seqId``
(the empty keep-alive has ``prevSeqId == seqId``; a maintenance reset has ``seqId < prevSeqId``, still
linked by ``prevSeqId``); size "0" deletes; a non-zero ``checksum`` is the signed CRC32 of the top 25
bids and asks interleaved, ``price:size`` as received.

Bybit: every ``snapshot`` (``u == 1`` included) replaces the book; a ``delta`` must have ``u`` one more
than the last; size "0" deletes.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

Level = tuple[str, str]  # (price, size) exactly as received


class ReferenceGap(Exception):
    """A message breaks the venue's sequence rule."""


@dataclass
class RefBook:
    bids: dict[Decimal, Level] = field(default_factory=dict)
    asks: dict[Decimal, Level] = field(default_factory=dict)

    def apply(self, bids: list[list[str]], asks: list[list[str]]) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for level in levels:
                price = Decimal(level[0])
                if Decimal(level[1]) == 0:
                    side.pop(price, None)
                else:
                    side[price] = (level[0], level[1])

    def top(self, limit: int | None = None) -> tuple[list[list[str]], list[list[str]]]:
        bids = [list(self.bids[p]) for p in sorted(self.bids, reverse=True)[:limit]]
        asks = [list(self.asks[p]) for p in sorted(self.asks)[:limit]]
        return bids, asks

    def best(self) -> tuple[Decimal | None, Decimal | None]:
        return (max(self.bids) if self.bids else None, min(self.asks) if self.asks else None)


def okx_crc(bids: list[list[str]], asks: list[list[str]]) -> int:
    """OKX's checksum of a book given best first: signed 32-bit CRC32 of the interleaved top 25."""
    parts: list[str] = []
    for i in range(25):
        if i < len(bids):
            parts.append(f"{bids[i][0]}:{bids[i][1]}")
        if i < len(asks):
            parts.append(f"{asks[i][0]}:{asks[i][1]}")
    crc = zlib.crc32(":".join(parts).encode("utf-8"))
    return crc - 2**32 if crc >= 2**31 else crc


@dataclass
class OkxReference:
    """One OKX channel of one instId. ``apply`` returns the seqId the book now stands at."""

    book: RefBook = field(default_factory=RefBook)
    seq: int | None = None
    checksums: int = 0
    mismatches: int = 0
    resets: int = 0

    def apply(self, message: dict[str, Any]) -> int:
        action = message["action"]
        for item in message["data"]:
            prev, seq = int(item["prevSeqId"]), int(item["seqId"])
            if action == "snapshot":
                self.book = RefBook()
            elif self.seq is None or prev != self.seq:
                raise ReferenceGap(f"prevSeqId {prev} does not follow seqId {self.seq}")
            elif seq < prev:
                self.resets += 1
            self.book.apply(item["bids"], item["asks"])
            self.seq = seq
            checksum = int(item.get("checksum", 0))
            if checksum != 0:
                self.checksums += 1
                bids, asks = self.book.top(25)
                if okx_crc(bids, asks) != checksum:
                    self.mismatches += 1
        assert self.seq is not None
        return self.seq


@dataclass
class BybitReference:
    """One Bybit ``orderbook.D.SYMBOL`` topic. ``apply`` returns the ``u`` the book now stands at."""

    book: RefBook = field(default_factory=RefBook)
    u: int | None = None
    snapshots: int = 0

    def apply(self, message: dict[str, Any]) -> int:
        data = message["data"]
        u = int(data["u"])
        if message["type"] == "snapshot":
            self.book = RefBook()
            self.snapshots += 1
        elif self.u is None or u != self.u + 1:
            raise ReferenceGap(f"delta u {u} does not follow u {self.u}")
        self.book.apply(data["b"], data["a"])
        self.u = u
        return u


class DecimalBook:
    """A book keyed and valued by exact decimals (HTX sends JSON numbers: parse them with Decimal)."""

    def __init__(self) -> None:
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def apply(self, bids: list[list[Decimal]], asks: list[list[Decimal]]) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for price, size in levels:
                if size == 0:
                    side.pop(price, None)
                else:
                    side[price] = size

    def top(self, limit: int | None = None) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        bids = [(p, self.bids[p]) for p in sorted(self.bids, reverse=True)[:limit]]
        asks = [(p, self.asks[p]) for p in sorted(self.asks)[:limit]]
        return bids, asks


@dataclass
class HtxReference:
    """HTX market-by-price: a ``req`` refresh starts the book at ``seqNum``; the cached incremental whose
    ``prevSeqNum`` equals it is applied, then each message's ``prevSeqNum`` must equal the last ``seqNum``."""

    book: DecimalBook = field(default_factory=DecimalBook)
    seq: int | None = None

    def join(self, refresh: dict[str, Any]) -> None:
        """Start from a refresh; the next message must link to its ``seqNum``."""
        self.book = DecimalBook()
        self.book.apply(refresh["bids"], refresh["asks"])
        self.seq = int(refresh["seqNum"])

    def start(self, refresh: dict[str, Any], cached: list[dict[str, Any]]) -> list[int]:
        """Apply the refresh and the cached ticks from the one that links to it; the seqNums applied."""
        self.join(refresh)
        linked = [i for i, tick in enumerate(cached) if int(tick["prevSeqNum"]) == self.seq]
        if not linked:
            raise ReferenceGap(f"no cached message links to the refresh's seqNum {self.seq}")
        return [self.apply(tick) for tick in cached[linked[0] :]]

    def apply(self, tick: dict[str, Any]) -> int:
        if int(tick["prevSeqNum"]) != self.seq:
            raise ReferenceGap(f"prevSeqNum {tick['prevSeqNum']} does not follow seqNum {self.seq}")
        self.book.apply(tick.get("bids", []), tick.get("asks", []))
        self.seq = int(tick["seqNum"])
        return self.seq


def kraken_crc(bids: list[tuple[Decimal, Decimal]], asks: list[tuple[Decimal, Decimal]], price_decimals: int, qty_decimals: int) -> int:
    """Kraken's checksum: CRC32 (unsigned) of the top 10 asks then bids, each price and qty printed with
    the pair's decimals, the point removed and leading zeros stripped."""

    def text(value: Decimal, decimals: int) -> str:
        return f"{value.quantize(Decimal(1).scaleb(-decimals)):f}".replace(".", "").lstrip("0")

    parts = [text(p, price_decimals) + text(q, qty_decimals) for p, q in asks[:10] + bids[:10]]
    return zlib.crc32("".join(parts).encode())


@dataclass
class KrakenReference:
    """Kraken websocket v2 ``book``: a snapshot replaces the book, updates apply in order, then each side
    is cut to the subscribed depth; every message's checksum is checked (there is no sequence number)."""

    depth: int
    price_decimals: int
    qty_decimals: int
    book: DecimalBook = field(default_factory=DecimalBook)
    checksums: int = 0
    mismatches: int = 0

    def apply(self, message: dict[str, Any]) -> None:
        for data in message["data"]:
            if message["type"] == "snapshot":
                self.book = DecimalBook()
            bids = [[level["price"], level["qty"]] for level in data["bids"]]
            asks = [[level["price"], level["qty"]] for level in data["asks"]]
            self.book.apply(bids, asks)
            for side, best_first in ((self.book.bids, sorted(self.book.bids, reverse=True)), (self.book.asks, sorted(self.book.asks))):
                for price in best_first[self.depth :]:
                    del side[price]
            self.checksums += 1
            bids_top, asks_top = self.book.top(10)
            if kraken_crc(bids_top, asks_top, self.price_decimals, self.qty_decimals) != int(data["checksum"]):
                self.mismatches += 1


@dataclass
class CoinbaseReference:
    """Coinbase Advanced Trade on one connection: ``sequence_num`` must be the last + 1 across every
    channel; ``l2_data`` snapshots replace a product's book, updates set absolute sizes ("0" deletes)."""

    books: dict[str, RefBook] = field(default_factory=dict)
    seq: int | None = None

    def apply(self, message: dict[str, Any]) -> int:
        seq = int(message["sequence_num"])
        if self.seq is not None and seq != self.seq + 1:
            raise ReferenceGap(f"sequence_num {seq} does not follow {self.seq} on this connection")
        self.seq = seq
        if message["channel"] == "l2_data":
            for event in message["events"]:
                if event["type"] == "snapshot":
                    self.books[event["product_id"]] = RefBook()
                bids = [[u["price_level"], u["new_quantity"]] for u in event["updates"] if u["side"] == "bid"]
                asks = [[u["price_level"], u["new_quantity"]] for u in event["updates"] if u["side"] != "bid"]
                self.books[event["product_id"]].apply(bids, asks)
        return seq
