"""OKX and Bybit replays copied (``replay_copies``) and looped (``replay_loops``): every copy's book equals the
truth at every id, ids run on over the loops, OKX's recorded checksums stay valid, and a stream feeder on
ten client-paced copies ends in sync on the last id, equal to the truth."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from ldc.config import GroupConfig
from ldc.errors import SimError
from ldc.shm.layout import Status
from ldc.shm.reader import Reader
from ldc.sim import SimConfig, Simulator
from ldc.sim.okx import okx_checksum
from ldc.sim.venue_book import BookMessage, ReplayBooks
from ldc.sim.venue_replay import bybit_replay_markets, okx_replay_markets, read_recording
from ldc.sim.venue_replay_copies import bybit_copies, check_counts, okx_copies
from ldc.stream_feeder import StreamFeeder
from shm_helpers import group_fixture
from venue_recordings import venues_dir

OKX_FILE = venues_dir() / "okx_books400_20220513.jsonl.gz"  # shared/data/venues beside the checkout
BYBIT_FILE = venues_dir() / "bybit_v5_orderbook200_20260809.jsonl.gz"
DEPTH = 20
COPIES = 10
LOOPS = 3
FEED_WAIT_S = 60.0

pytestmark = pytest.mark.skipif(not (OKX_FILE.exists() and BYBIT_FILE.exists()), reason="the shared venue recordings are not on this machine")


@pytest.fixture
def group() -> Any:
    yield from group_fixture()


def test_okx_loops_keep_every_checksum_valid_and_copies_equal_the_original() -> None:
    original = okx_replay_markets(read_recording(str(OKX_FILE)), pace=None)
    markets = okx_copies(original, copies=3, loops=LOOPS, pace=None)
    assert [m.inst_id for m in markets] == ["UNI-USD-SWAP", "UNI2-USD-SWAP", "UNI3-USD-SWAP", "BTC-USDT", "BTC2-USDT", "BTC3-USDT"]
    for market in markets:
        base = next(m for m in original if market.inst_id.replace("2-", "-").replace("3-", "-") == m.inst_id)
        assert len(market.messages) == LOOPS * len(base.messages)  # each later pass: the way back, then the updates
        assert all(b > a for a, b in zip(market.seq_ids, market.seq_ids[1:]))
        for index, message in enumerate(market.messages):  # the book the truth keeps meets every checksum sent
            bids, asks = market.books.book_after(index).top(25)
            assert okx_checksum(bids, asks) == int(message.item["checksum"]), (market.inst_id, index)
        n = len(base.messages)
        for k in range(LOOPS):  # pass k's books are the recording's
            assert market.books.book_after(k * n + n - 1).top(None) == base.books.book_after(n - 1).top(None)


def test_bybit_loops_run_u_on_and_copies_carry_their_name() -> None:
    original = [m for m in bybit_replay_markets(read_recording(str(BYBIT_FILE)), pace=None) if m.category == "linear"]
    markets = bybit_copies(original, copies=2, loops=LOOPS, pace=None)
    assert [(m.category, m.symbol) for m in markets] == [("linear", "BTCUSDT"), ("linear", "BTCUSDT2"), ("linear", "ETHUSDT"), ("linear", "ETHUSDT2")]
    for market in markets:
        base = next(m for m in original if m.symbol == market.symbol.rstrip("2"))
        us = [int(d["u"]) for d in market.book_data]
        assert us == list(range(us[0], us[0] + len(us)))
        assert all(e.topic == f"orderbook.200.{market.symbol}" and f'"s":"{market.symbol}"'.encode() in e.raw for e in market.entries)
        n = len(base.book_data)
        expect = base.books.book_after(n - 1).top(None)
        for k in range(LOOPS):
            assert market.books.book_after(k * n + n - 1).top(None) == expect
        assert market.truth(us[-1], 5, 200)["update_id"] == us[-1]  # type: ignore[index]


def test_copies_and_loops_are_bounded() -> None:
    with pytest.raises(SimError, match="replay loops must be within"):
        check_counts(1, 0)
    with pytest.raises(SimError, match="replay copies must be within"):
        check_counts(10**6, 1)


def _feed_to_the_end(group: str, feeder: StreamFeeder, symbols: list[str], last_id: Callable[[str], int], truth: Callable[[str, int], Any]) -> None:
    runner = threading.Thread(target=feeder.run)
    runner.start()
    try:
        with Reader(group) as reader:
            deadline = time.monotonic() + FEED_WAIT_S
            while not all(reader.status(s).update_id == last_id(s) for s in symbols):
                assert time.monotonic() < deadline, {s: (reader.status(s).update_id, last_id(s)) for s in symbols}
                time.sleep(0.05)
            for symbol in symbols:
                snap = reader.snapshot(symbol)
                assert snap.status == Status.SYNCED
                expected = truth(symbol, snap.update_id)
                levels = lambda side: [[float(p), float(q)] for p, q in side[:DEPTH]]  # noqa: E731
                assert (snap.bids.tolist(), snap.asks.tolist()) == (levels(expected["bids"]), levels(expected["asks"])), symbol
    finally:
        feeder.request_stop()
        runner.join(timeout=15.0)


def _base(ws_url: str) -> str:
    return ws_url.split("/", 3)[0] + "//" + ws_url.split("/", 3)[2]


def test_feeder_on_ten_client_paced_okx_copies_stays_in_sync(group: str) -> None:
    symbols = ["BTC-USDT"] + [f"BTC{n}-USDT" for n in range(2, COPIES + 1)]
    markets = {m.inst_id: m for m in okx_copies(okx_replay_markets(read_recording(str(OKX_FILE)), pace=None), copies=COPIES, loops=LOOPS, pace=None)}
    config = SimConfig(spot_symbols=(), venue_replay=(str(OKX_FILE),), replay_copies=COPIES, replay_loops=LOOPS, replay_pace="client")
    with Simulator(config) as sim:
        group_config = GroupConfig(name=group, exchange="okx", symbols=tuple(symbols), depth=DEPTH, channel="books", capacity=16,
                                   ws_url=_base(sim.okx_ws_url), rest_url=sim.okx_rest_url)  # fmt: skip
        feeder = StreamFeeder(group_config)
        _feed_to_the_end(group, feeder, symbols, lambda s: markets[s].seq_ids[-1], lambda s, u: sim.venue_truth("okx", s, update_id=u, limit=DEPTH))
    assert sum(m.sync.checksums for m in feeder.markets.values()) >= COPIES * LOOPS * 90
    assert sum(m.sync.checksum_mismatches + m.sync.gaps + m.sync.resyncs for m in feeder.markets.values()) == 0


def test_feeder_on_ten_client_paced_bybit_copies_stays_in_sync(group: str) -> None:
    symbols = ["BTCUSDT"] + [f"BTCUSDT{n}" for n in range(2, COPIES + 1)]
    found = bybit_copies(bybit_replay_markets(read_recording(str(BYBIT_FILE)), pace=None), copies=COPIES, loops=LOOPS, pace=None)
    last = {m.symbol: int(m.book_data[-1]["u"]) for m in found if m.category == "linear"}
    config = SimConfig(spot_symbols=(), venue_replay=(str(BYBIT_FILE),), replay_copies=COPIES, replay_loops=LOOPS, replay_pace="client")
    with Simulator(config) as sim:
        group_config = GroupConfig(name=group, exchange="bybit-linear", symbols=tuple(symbols), depth=DEPTH, channel="orderbook.200",
                                   capacity=16, ws_url=_base(sim.bybit_ws_url("linear")), rest_url=sim.bybit_rest_url)  # fmt: skip
        feeder = StreamFeeder(group_config)
        truth = lambda s, u: sim.venue_truth("bybit", s, category="linear", update_id=u, limit=DEPTH, depth=200)  # noqa: E731
        _feed_to_the_end(group, feeder, symbols, lambda s: last[s], truth)
    assert sum(m.sync.gaps + m.sync.resyncs for m in feeder.markets.values()) == 0
