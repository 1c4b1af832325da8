"""Kraken's checksum on the C hot path reused while the top 10 stays as it was (``HotPath.crc_cache``,
ldc/fastbook/checksum.c ``ldc_fb_kraken_crc32_cached``): the CRC32 is a pure function of the top 10 asks' and bids'
doubles and the pair's decimals, so the HotPath keeps a bitwise copy of them with each level's text and the CRC
state after each level, answers the last CRC when both sides are unchanged, and otherwise writes a changed side
again from its first changed level (the asks from the start, the bids from the state after the asks when those did
not change), a level that was in the kept top taking its kept text.

Exactness is the point: every verdict with the cache equals the verdict computed whole every time
(``crc_cache = False``) and the verdict of the Python reference (``kraken.checksum``), on every message of the
genuine recording and on random streams with wrong checksums, short sides, deletes inside the top 10 that pull the
11th level in, changes just below it, and decimals changed between two checksums.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ldc._fastbook import HOT_CHECKSUM_FAULT, HOT_CRC_KRAKEN, HOT_DONE, FastBook, HotPath, parse_kraken
from ldc.depth import DepthSnapshot
from ldc.shm.layout import Status
from ldc.shm.writer import SegmentWriter
from ldc.venues import kraken
from ldc.venues.base import Precision
from shm_helpers import group_fixture
from venue_recordings import venues_dir

SLOT_DEPTH = 10
WINDOW = 1000
US = 1_696_613_755_440_295  # 2023-10-06T17:35:55.440295Z
SYNCED = int(Status.SYNCED)


@pytest.fixture
def group() -> Iterator[str]:
    yield from group_fixture()


def _iso(us: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(us // 1_000_000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{us % 1_000_000:06d}Z"


def _message(kind: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]], us: int, checksum: int) -> bytes:
    def side(levels: list[tuple[str, str]]) -> str:
        return "[" + ",".join(f'{{"price":{p},"qty":{q}}}' for p, q in levels) + "]"

    return (f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"BTC/USD","bids":{side(bids)},"asks":{side(asks)},'
            f'"checksum":{checksum},"timestamp":"{_iso(us)}"}}]}}').encode()  # fmt: skip


class _Pair:
    """One pair's book twice, each with its HotPath: the cache on, and off (computed whole every time)."""

    def __init__(self, writer: SegmentWriter, symbol: str, precision: Precision) -> None:
        self.precision = precision
        self.books = [FastBook(depth=SLOT_DEPTH), FastBook(depth=SLOT_DEPTH)]
        slots = [writer.add_market(f"{symbol} {how}") for how in ("cached", "whole")]
        self.hots = [HotPath(writer.segment, slot, futures=False, unsequenced=True) for slot in slots]
        for hot in self.hots:
            hot.window_whole = True
            hot.set_checksum(kraken.CHECKSUM_LEVELS, precision.price_decimals, precision.size_decimals, HOT_CRC_KRAKEN)
        self.hots[1].crc_cache = False

    def snapshot(self, snapshot: DepthSnapshot) -> None:
        for book, hot in zip(self.books, self.hots):
            book.load_snapshot(snapshot)
            hot.arm(book, snapshot.last_update_id, SYNCED)

    def feed(self, diff: Any) -> int:
        cached, whole = (hot.feed(diff, 1) for hot in self.hots)
        assert cached == whole, (cached, whole)
        assert self.books[0].levels() == self.books[1].levels()
        return cached


def _events(raw: bytes) -> list[tuple[str, Any]]:
    events = parse_kraken(raw, WINDOW)
    assert isinstance(events, list)
    return events


@pytest.mark.skipif(not (venues_dir() / "kraken_v1_book1000_20210417.jsonl.gz").is_file(), reason="the Kraken recording is not there")
def test_every_recorded_checksum_has_the_same_verdict_with_the_cache_and_computed_whole(group: str) -> None:
    """The genuine recording as ``ldc sim --replay`` serves it (v2 book.1000, 2,682 updates of 6 pairs): each
    update fed to a HotPath with the cache and one without, every verdict equal and HOT_DONE (0 mismatches), the
    books equal; the cache answered a share of them whole and the bids alone another (it is really used)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_venues", Path(__file__).resolve().parent.parent / "scripts" / "bench_venues.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    messages, precision = bench.kraken_v2_messages(venues_dir() / "kraken_v1_book1000_20210417.jsonl.gz")
    with SegmentWriter(group, depth=SLOT_DEPTH, capacity=2 * len(precision)) as writer:
        pairs = {symbol: _Pair(writer, symbol, p) for symbol, p in precision.items()}
        updates = 0
        for raw in messages:
            for symbol, event in _events(raw):
                if isinstance(event, DepthSnapshot):
                    pairs[symbol].snapshot(event)
                    continue
                assert pairs[symbol].feed(event) == HOT_DONE
                updates += 1
        reused = sum(p.hots[0].crc_reused for p in pairs.values())
        bids_only = sum(p.hots[0].crc_bids_only for p in pairs.values())
        assert updates == len(messages) - len(pairs) == 2682
        assert sum(p.hots[0].take_checksums() for p in pairs.values()) == updates
        assert sum(p.hots[1].take_checksums() for p in pairs.values()) == updates
        assert reused > 300 and bids_only > 600, (reused, bids_only)
        assert all(p.hots[1].crc_reused == p.hots[1].crc_bids_only == 0 for p in pairs.values())


def _text(x: float, decimals: int) -> str:
    return f"{x:.{decimals}f}"


def _checksum(bids: dict[float, float], asks: dict[float, float], precision: Precision) -> int:
    return kraken.checksum(sorted(bids.items(), reverse=True), sorted(asks.items()), precision)


@pytest.mark.parametrize("seed", range(6))
def test_random_streams_have_the_verdicts_of_the_python_reference_with_and_without_the_cache(group: str, seed: int) -> None:
    """Random v2 updates on a book of 0-25 levels a side (short sides included), most inside or just below the top
    10 (inserts, changes, deletes pulling the 11th level in), a fifth with a wrong checksum: both HotPaths give the
    reference's verdict (``kraken.checksum`` of the Python book equal to the message's) on every one; the decimals
    change between checksums now and then (the cache must not answer for the old ones)."""
    rng = random.Random(seed)
    precision = Precision(1, 3)
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    for _ in range(rng.randint(0, 25)):
        bids[round(999.9 - 0.1 * rng.randint(0, 40), 1)] = round(rng.randint(1, 5000) / 1000, 3)
    for _ in range(rng.randint(0, 25)):
        asks[round(1000.0 + 0.1 * rng.randint(0, 40), 1)] = round(rng.randint(1, 5000) / 1000, 3)

    def levels(side: dict[float, float], p: Precision) -> list[tuple[str, str]]:
        return [(_text(price, p.price_decimals), _text(qty, p.size_decimals)) for price, qty in side.items()]

    verdicts = {HOT_DONE: 0, HOT_CHECKSUM_FAULT: 0}
    with SegmentWriter(group, depth=SLOT_DEPTH, capacity=2) as writer:
        pair = _Pair(writer, "BTC/USD", precision)
        us = US
        raw = _message("snapshot", levels(dict(sorted(bids.items(), reverse=True)), precision), levels(dict(sorted(asks.items())), precision),
                       us, _checksum(bids, asks, precision))  # fmt: skip
        ((_, snapshot),) = _events(raw)
        pair.snapshot(snapshot)
        for step in range(1500):
            if rng.random() < 0.03:  # other decimals: the same book, its checksum written at other scales
                precision = Precision(rng.randint(1, 3), rng.randint(3, 5))
                for hot in pair.hots:
                    hot.set_checksum(kraken.CHECKSUM_LEVELS, precision.price_decimals, precision.size_decimals, HOT_CRC_KRAKEN)
            changed: dict[str, dict[float, float]] = {"bids": {}, "asks": {}}
            for _ in range(rng.randint(1, 3)):
                name = rng.choice(["bids", "asks"])
                side = bids if name == "bids" else asks
                ranked = sorted(side, reverse=name == "bids")
                roll = rng.random()
                if ranked and roll < 0.35:  # at a rank around the 10th: 0..12
                    price = ranked[min(rng.randint(0, 12), len(ranked) - 1)]
                elif ranked and roll < 0.5:  # deep
                    price = ranked[rng.randint(0, len(ranked) - 1)]
                else:  # a new price, anywhere on the side's grid
                    price = round(999.9 - 0.1 * rng.randint(0, 40), 1) if name == "bids" else round(1000.0 + 0.1 * rng.randint(0, 40), 1)
                delete = rng.random() < (0.5 if len(side) > 15 else 0.25)
                qty = 0.0 if delete else round(rng.randint(1, 5000) / 1000, 3)
                changed[name][price] = qty
            for name, side in (("bids", bids), ("asks", asks)):
                for price, qty in changed[name].items():
                    if qty == 0.0:
                        side.pop(price, None)
                    else:
                        side[price] = qty
            truth = _checksum(bids, asks, precision)
            wrong = rng.random() < 0.2
            expected = truth ^ (1 << rng.randint(0, 31)) if wrong else truth
            us += 1
            raw = _message("update", levels(changed["bids"], Precision(1, 3)), levels(changed["asks"], Precision(1, 3)),
                           us, expected)  # fmt: skip
            ((_, diff),) = _events(raw)
            verdict = pair.feed(diff)
            assert verdict == (HOT_CHECKSUM_FAULT if wrong else HOT_DONE), (seed, step)
            verdicts[verdict] += 1
            assert pair.books[0].levels() == (sorted(bids.items(), reverse=True), sorted(asks.items()))
        assert verdicts[HOT_DONE] > 1000 and verdicts[HOT_CHECKSUM_FAULT] > 200
        assert pair.hots[0].crc_reused > 50 and pair.hots[0].crc_bids_only > 50


def test_a_delete_inside_the_top_10_pulls_the_11th_in_and_a_change_below_it_reuses_the_checksum(group: str) -> None:
    """12 asks and 12 bids: a change at the 11th ask (rank 10) leaves the top 10 as it was (reused, and right); a
    delete of the 3rd ask pulls the 11th in (the asks rewritten: reusing would confirm the old checksum, now
    wrong); the old checksum after that delete is a mismatch with the cache as without it; a change of the 10th bid
    rewrites the bids alone."""
    precision = Precision(1, 3)
    bids = {round(99.9 - 0.1 * i, 1): 1.0 + i for i in range(12)}
    asks = {round(100.0 + 0.1 * i, 1): 1.0 + i for i in range(12)}

    def side(levels: dict[float, float]) -> list[tuple[str, str]]:
        return [(_text(p, 1), _text(q, 3)) for p, q in levels.items()]

    with SegmentWriter(group, depth=SLOT_DEPTH, capacity=2) as writer:
        pair = _Pair(writer, "BTC/USD", precision)
        ((_, snapshot),) = _events(_message("snapshot", side(bids), side(asks), US, _checksum(bids, asks, precision)))
        pair.snapshot(snapshot)
        hot = pair.hots[0]
        first = _checksum(bids, asks, precision)
        ((_, diff),) = _events(_message("update", [], [], US + 1, first))  # nothing changed: a first checksum
        assert pair.feed(diff) == HOT_DONE
        asks[101.0] = 7.5  # the 11th ask (rank 10): below the top 10
        ((_, diff),) = _events(_message("update", [], [("101.0", "7.500")], US + 2, first))
        assert _checksum(bids, asks, precision) == first
        assert pair.feed(diff) == HOT_DONE and hot.crc_reused == 1
        del asks[100.2]  # the 3rd ask: the 11th (101.0, 7.5) comes into the top 10
        after = _checksum(bids, asks, precision)
        assert after != first
        ((_, diff),) = _events(_message("update", [], [("100.2", "0")], US + 3, first))
        assert pair.feed(diff) == HOT_CHECKSUM_FAULT  # the old checksum no longer holds, cached or not
        assert hot.crc_reused == 1 and hot.crc_bids_only == 0
        ((_, diff),) = _events(_message("update", [], [], US + 4, after))
        assert pair.feed(diff) == HOT_DONE and hot.crc_reused == 2
        bids[99.0] = 3.25  # the 10th bid (rank 9)
        ((_, diff),) = _events(_message("update", [("99.0", "3.250")], [], US + 5, _checksum(bids, asks, precision)))
        assert pair.feed(diff) == HOT_DONE and hot.crc_bids_only == 1 and hot.crc_reused == 2
