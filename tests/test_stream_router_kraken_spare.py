"""The StreamRouter's Kraken path writes each update into the ParsedDiff of the one before when the router was its
last holder (ldc/fastbook/stream_router.c ``kraken_run``, dialect_binance.c ``ldc_fb_parsed_diff_reuse``): no list,
tuple or diff made a message. A diff anybody else holds -- one Python was handed (a snapshot's pair, an unknown
pair, a checksum to decide), one a pending refresh recorded -- is never rewritten: these tests hold such diffs
across many later messages and check every one still reads as its own message."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ldc._fastbook import ROUTE_DIFF, ROUTE_END, FastBook, HotPath, ParsedDiff, StreamRouter, parse_kraken
from ldc.depth import DepthSnapshot
from ldc.shm.layout import Status
from ldc.shm.writer import SegmentWriter
from shm_helpers import group_fixture

WINDOW = 25
US = 1_696_613_755_440_295  # 2023-10-06T17:35:55.440295Z


@pytest.fixture
def group() -> Iterator[str]:
    yield from group_fixture()


def _iso(us: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(us // 1_000_000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{us % 1_000_000:06d}Z"


def _message(symbol: str, kind: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]], us: int) -> bytes:
    def side(levels: list[tuple[str, str]]) -> str:
        return "[" + ",".join(f'{{"price":{p},"qty":{q}}}' for p, q in levels) + "]"

    return (f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{symbol}","bids":{side(bids)},"asks":{side(asks)},'
            f'"checksum":1,"timestamp":"{_iso(us)}"}}]}}').encode()  # fmt: skip


def _update(symbol: str, k: int) -> bytes:
    """Update k: 1 + k % 5 bids and k % 3 asks, prices and quantities its own (up to 40 levels now and then: more
    than a spare's room of 16)."""
    n_bids, n_asks = (20, 20) if k % 11 == 0 else (1 + k % 5, k % 3)
    bids = [(f"{99 - 0.1 * i - 0.01 * (k % 7):.2f}", f"{k}.{i + 1}") for i in range(n_bids)]
    asks = [(f"{101 + 0.1 * i + 0.01 * (k % 7):.2f}", f"{k + 1}.{i + 1}") for i in range(n_asks)]
    return _message(symbol, "update", bids, asks, US + k)


def _reads(diff: ParsedDiff) -> tuple[Any, ...]:
    return (diff.symbol, diff.final_id, diff.event_time_ms, diff.checksum, list(diff.bids), list(diff.asks))


def _expected(raw: bytes) -> tuple[Any, ...]:
    events = parse_kraken(raw, WINDOW)
    assert isinstance(events, list)
    ((_, diff),) = events
    return _reads(diff)


def _btc_usd(writer: SegmentWriter) -> tuple[HotPath, FastBook]:
    """BTC/USD's HotPath (Kraken's: unsequenced, its window kept whole, connection 0) and a one-level book for it."""
    hot = HotPath(writer.segment, writer.add_market("BTC/USD"), futures=False, unsequenced=True)
    hot.window_whole = True
    hot.conn = 0
    book = FastBook(depth=10)
    book.load_snapshot(DepthSnapshot(US, [(98.0, 1.0)], [(102.0, 1.0)], WINDOW))
    return hot, book


def test_diffs_a_pending_refresh_recorded_are_never_rewritten_by_later_messages(group: str) -> None:
    """A HotPath armed with a record list (a refresh pending): 200 updates in reads of 1 to 7, each appended to
    the record; afterwards every recorded diff reads as its own message (a rewritten spare would read as a later one)."""
    with SegmentWriter(group, depth=10, capacity=1) as writer:
        hot, book = _btc_usd(writer)
        record: list[Any] = []
        hot.arm(book, US, int(Status.SYNCED), False, record, 1000)
        router = StreamRouter(parse_kraken, WINDOW)
        router.paths["BTC/USD"] = hot
        raws = [_update("BTC/USD", k) for k in range(1, 201)]
        i = 0
        while i < len(raws):
            n = 1 + i % 7
            assert router.feed(raws[i : i + n], 0, 0, 1)[:2] == (n if i + n <= len(raws) else len(raws) - i, ROUTE_END)
            i += n
        assert len(record) == len(raws)
        assert [_reads(diff) for diff in record] == [_expected(raw) for raw in raws]


def test_diffs_handed_to_python_are_never_rewritten_by_later_messages(group: str) -> None:
    """Two pairs in one read stream: ETH/USD's updates have no HotPath (each handed to Python as [(pair, diff)]),
    BTC/USD's are applied in C between them; every diff Python was handed, held to the end, reads as its own
    message; a snapshot's pair is handed over too."""
    with SegmentWriter(group, depth=10, capacity=1) as writer:
        hot, book = _btc_usd(writer)
        hot.arm(book, US, int(Status.SYNCED))
        router = StreamRouter(parse_kraken, WINDOW)
        router.paths["BTC/USD"] = hot
        raws: list[bytes] = []
        for k in range(1, 301):
            raws.append(_update("ETH/USD" if k % 4 == 0 else "BTC/USD", k))
        raws.append(_message("ETH/USD", "snapshot", [("99.5", "1")], [("100.5", "2")], US + 999))
        held: list[tuple[bytes, ParsedDiff]] = []
        start = 0
        while start < len(raws):
            index, kind, value = router.feed(raws, start, 0, 1)
            if kind == ROUTE_END:
                break
            assert kind == ROUTE_DIFF
            ((pair, event),) = value
            assert pair == "ETH/USD"
            if isinstance(event, DepthSnapshot):
                assert (index, event.last_update_id, list(event.bids)) == (len(raws) - 1, US + 999, [(99.5, 1.0)])
            else:
                held.append((raws[index], event))
            start = index + 1
        assert len(held) == 75
        assert [_reads(diff) for _, diff in held] == [_expected(raw) for raw, _ in held]
        assert hot.take_applied() == 225
