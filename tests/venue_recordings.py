"""The genuine OKX / Bybit recordings of shared/data/venues (cryptofeed's raw-data collection, see its README),
read as (kind, connection, text) records, and the books an independent Decimal replay of each venue's
documented rules keeps (the reference the tests compare ldc's books with)."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

from ldc.sim.replay import captures_dir

VENUES_ENV = "LDC_VENUE_RECORDINGS"
OKX_FILE = "okx_books400_20220513.jsonl.gz"
BYBIT_FILE = "bybit_v5_orderbook200_20260809.jsonl.gz"
COINBASE_FILE = "coinbase_advanced_level2_20260809.jsonl.gz"
HTX_FILE = "huobi_depth_step0_20210417.jsonl.gz"
KRAKEN_FILE = "kraken_v1_book1000_20210417.jsonl.gz"


def venues_dir() -> Path:
    given = os.environ.get(VENUES_ENV)
    return Path(given) if given else captures_dir().parent / "venues"


def records(name: str) -> Iterator[dict[str, object]]:
    with gzip.open(venues_dir() / name, "rt", encoding="utf-8") as lines:
        for line in lines:
            yield json.loads(line)


class DecimalBook:
    """A side map per side, Decimal price -> (price text, size text) as sent: the documented rules, nothing else."""

    def __init__(self) -> None:
        self.bids: dict[Decimal, tuple[str, str]] = {}
        self.asks: dict[Decimal, tuple[str, str]] = {}

    def reset(self, bids: list[list[str]], asks: list[list[str]]) -> None:
        self.bids, self.asks = {}, {}
        self.apply(bids, asks)

    def apply(self, bids: list[list[str]], asks: list[list[str]]) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for level in levels:
                price = Decimal(level[0])
                if Decimal(level[1]) == 0:
                    side.pop(price, None)
                else:
                    side[price] = (level[0], level[1])

    def top(self, n: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        bids = [self.bids[p] for p in sorted(self.bids, reverse=True)[:n]]
        asks = [self.asks[p] for p in sorted(self.asks)[:n]]
        return bids, asks

    def top_floats(self, n: int) -> tuple[list[list[float]], list[list[float]]]:
        bids, asks = self.top(n)
        return [[float(p), float(q)] for p, q in bids], [[float(p), float(q)] for p, q in asks]
