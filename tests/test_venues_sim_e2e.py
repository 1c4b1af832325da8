"""OKX and Bybit through the whole path: the simulator's venue families (ldc.sim.okx / ldc.sim.bybit, which
import nothing of the client) -> StreamFeeder -> segment -> Reader, every snapshot read compared with the
simulator's truth (``/_sim/book``) at the update id it carries."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("ldc.sim.okx", reason="the simulator's OKX and Bybit families")

from ldc.config import GroupConfig  # noqa: E402
from ldc.errors import LdcError  # noqa: E402
from ldc.shm.layout import Status  # noqa: E402
from ldc.shm.reader import Reader  # noqa: E402
from ldc.sim import SimConfig, Simulator  # noqa: E402
from ldc.stream_feeder import StreamFeeder  # noqa: E402
from shm_helpers import group_fixture  # noqa: E402

DEPTH = 20
SYNC_WAIT_S = 30.0
CHECK_S = 3.0


@pytest.fixture
def group() -> Iterator[str]:
    yield from group_fixture()


def _base(ws_url: str) -> str:
    """ws://127.0.0.1:PORT: the venue adds its own path."""
    return ws_url.split("/", 3)[0] + "//" + ws_url.split("/", 3)[2]


def _levels(side: Any) -> list[list[float]]:
    return [[float(price), float(size)] for price, size in side[:DEPTH]]


def _check_against_truth(group: str, feeder: StreamFeeder, truth: Any, symbols: tuple[str, ...]) -> int:
    """Wait until every market is in sync, then compare every snapshot read for CHECK_S with the truth."""
    runner = threading.Thread(target=feeder.run)
    runner.start()
    checked = 0
    try:
        with Reader(group) as reader:
            deadline = time.monotonic() + SYNC_WAIT_S
            while not all(reader.status(s).status == Status.SYNCED for s in symbols):
                assert time.monotonic() < deadline, {s: reader.status(s).message for s in symbols}
                time.sleep(0.05)
            end = time.monotonic() + CHECK_S
            while time.monotonic() < end:
                for symbol in symbols:
                    snap = reader.snapshot(symbol)
                    try:
                        expected = truth(symbol, snap.update_id)
                    except LdcError:
                        continue  # an id older than the simulator's history
                    assert (snap.bids.tolist(), snap.asks.tolist()) == (_levels(expected["bids"]), _levels(expected["asks"])), (symbol, snap.update_id)
                    checked += 1
                time.sleep(0.02)
    finally:
        feeder.request_stop()
        runner.join(timeout=15.0)
    return checked


def test_okx_simulator_through_the_stream_feeder_equals_its_truth(group: str) -> None:
    symbols = ("BTC-USDT", "BTC-USDT-SWAP", "BTC-USD-250926")
    with Simulator(SimConfig(spot_symbols=(), okx_symbols=symbols, seed=11)) as sim:
        config = GroupConfig(name=group, exchange="okx", symbols=symbols, depth=DEPTH, channel="books", capacity=8,
                             ws_url=_base(sim.okx_ws_url), rest_url=sim.okx_rest_url)  # fmt: skip
        feeder = StreamFeeder(config)
        checked = _check_against_truth(group, feeder, lambda s, u: sim.venue_truth("okx", s, update_id=u, limit=DEPTH), symbols)
        assert checked >= 30
        assert sum(m.sync.checksums for m in feeder.markets.values()) > 0
        assert sum(m.sync.checksum_mismatches + m.sync.gaps + m.sync.resyncs for m in feeder.markets.values()) == 0


@pytest.mark.parametrize("category", ["linear", "spot"])
def test_bybit_simulator_through_the_stream_feeder_equals_its_truth(group: str, category: str) -> None:
    symbols = ("BTCUSDT", "ETHUSDT")
    with Simulator(SimConfig(spot_symbols=(), **{f"bybit_{category}_symbols": symbols}, seed=12)) as sim:  # type: ignore[arg-type]
        config = GroupConfig(name=group, exchange=f"bybit-{category}", symbols=symbols, depth=DEPTH, channel="orderbook.200",
                             capacity=4, ws_url=_base(sim.bybit_ws_url(category)), rest_url=sim.bybit_rest_url)  # fmt: skip
        feeder = StreamFeeder(config)
        truth = lambda s, u: sim.venue_truth("bybit", s, category=category, update_id=u, limit=DEPTH, depth=200)  # noqa: E731
        assert _check_against_truth(group, feeder, truth, symbols) >= 20
        assert sum(m.sync.gaps + m.sync.resyncs for m in feeder.markets.values()) == 0


def test_okx_over_tls_through_the_stream_feeder_equals_its_truth(group: str) -> None:
    """ldc sim --tls's OKX family -> the stream feeder trusting its CA (ca_file) -> segment: equal to the truth."""
    symbols = ("BTC-USDT", "BTC-USDT-SWAP")
    with Simulator(SimConfig(spot_symbols=(), okx_symbols=symbols, seed=11, tls=True)) as sim:
        assert sim.okx_ws_url.startswith("wss://") and sim.ca_file is not None
        config = GroupConfig(name=group, exchange="okx", symbols=symbols, depth=DEPTH, channel="books", capacity=8,
                             ws_url=_base(sim.okx_ws_url), rest_url=sim.okx_rest_url, ca_file=sim.ca_file)  # fmt: skip
        feeder = StreamFeeder(config)
        checked = _check_against_truth(group, feeder, lambda s, u: sim.venue_truth("okx", s, update_id=u, limit=DEPTH), symbols)
        assert checked >= 30


def test_the_stream_feeder_fills_the_feeder_stats_block(group: str) -> None:
    """Issue 17: a stream venue's feeder writes its own figures into the segment (LAYOUT.md section 16) as the
    Binance feeder does: frames, one latency per read, connections open and opened, a lost one counted."""
    from ldc.sim.venue_faults import venue_fault_from_cli

    symbols = ("BTCUSDT",)
    with Simulator(SimConfig(spot_symbols=(), bybit_linear_symbols=symbols, seed=13)) as sim:
        config = GroupConfig(name=group, exchange="bybit-linear", symbols=symbols, depth=DEPTH, channel="orderbook.200",
                             capacity=4, ws_url=_base(sim.bybit_ws_url("linear")), rest_url=sim.bybit_rest_url)  # fmt: skip
        feeder = StreamFeeder(config)
        runner = threading.Thread(target=feeder.run)
        runner.start()
        try:
            with Reader(group) as reader:

                def stats_when(ready: Any) -> Any:
                    deadline = time.monotonic() + SYNC_WAIT_S
                    while True:
                        stats = reader.feeder_stats()
                        assert stats is not None
                        if ready(stats):
                            return stats
                        assert time.monotonic() < deadline, stats
                        time.sleep(0.05)

                first = stats_when(lambda s: s.counters["frames"] > 5)
                assert (first.counters["ws_opened"], first.gauges["ws_open"], first.counters["ws_reconnects"]) == (1, 1, 0)
                assert 0 < sum(first.latency_counts) <= first.counters["frames"]  # one observation per socket read
                sim.add_venue_fault("bybit", venue_fault_from_cli("disconnect:count=1"))
                frames = first.counters["frames"]
                again = stats_when(lambda s: s.counters["ws_opened"] == 2 and s.counters["frames"] > frames + 2)
                assert (again.counters["ws_reconnects"], again.gauges["ws_open"]) == (1, 1)
        finally:
            feeder.request_stop()
            runner.join(timeout=15.0)
