"""Replay of the genuine Binance captures in shared/data/binance (README there): a client written from
Binance's documents syncs on the replayed traffic and ends on the simulator's truth, the truth matches
the exchange's own recorded bookTicker, a client that syncs mid-replay converges too, and copies are
served under other symbol names."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
import requests
import websocket

from ldc.errors import SimError
from ldc.sim import ReplaySource, Simulator
from ldc.sim.replay import load_captures, parse_pace
from test_sim_conformance import DocClient, truth_levels
from ldc.sim.replay import captures_dir

DATA = captures_dir()
SPOT_1 = DATA / "spot_btcusdt_20240808.gz"
SPOT_2 = DATA / "spot_btcusdt_20240809.gz"
USDM = DATA / "usdm_btcusdt_20240808.gz"

pytestmark = pytest.mark.skipif(not SPOT_1.exists(), reason=f"captures not found at {DATA}")


def book_tickers(path: Path) -> dict[int, tuple[Decimal, Decimal]]:
    """u -> (best bid, best ask) from the capture's own @bookTicker messages (independent truth)."""
    out = {}
    with gzip.open(path, "rt") as handle:
        for line in handle:
            if "@bookTicker" in line[:80]:
                data = json.loads(line.split(" ", 1)[1])["data"]
                out[int(data["u"])] = (Decimal(data["b"]), Decimal(data["a"]))
    return out


def replay_sim(sim_factory: Callable[..., Simulator], *paths: Path, copies: int = 1, pace: str = "client") -> Simulator:
    return sim_factory(spot_symbols=(), replay=tuple(ReplaySource(path=str(p)) for p in paths), replay_copies=copies, replay_pace=pace)


def test_spot_capture_replays_onto_the_truth_and_the_recorded_book_ticker(sim_factory: Callable[..., Simulator]) -> None:
    sim = replay_sim(sim_factory, SPOT_1, SPOT_2)
    tickers = book_tickers(SPOT_1) | book_tickers(SPOT_2)
    client = DocClient(sim.rest_url, sim.ws_url, "BTCUSDT", family="spot", stream="depth@100ms")
    last_id = load_captures((ReplaySource(path=str(SPOT_1)), ReplaySource(path=str(SPOT_2))))[0].final_ids[-1]
    checked = 0
    try:
        client.sync()
        while client.update_id < last_id:
            client.step()
            ticker = tickers.get(client.update_id)
            if ticker is not None:
                assert (max(client.bids), min(client.asks)) == ticker
                checked += 1
        bids, asks = client.known_levels()
        assert (bids, asks) == truth_levels(sim.rest_url, "BTCUSDT", "spot", client.update_id, client.low_bid, client.high_ask)
        assert checked > 100
        assert client.update_id == 50093696318  # the last diff of the 2024-08-09 file
    finally:
        client.close()


def test_client_that_syncs_mid_replay_converges(sim_factory: Callable[..., Simulator]) -> None:
    sim = replay_sim(sim_factory, USDM)
    early = websocket.create_connection(f"{sim.usdm_ws_url}/public/ws/btcusdt@depth@0ms", timeout=10)
    late = None
    for _ in range(1000):
        early.recv()
    # The replay runs at the slowest subscriber's pace: the early client keeps reading meanwhile.
    reader = threading.Thread(target=_read_until_closed, args=(early,), daemon=True)
    try:
        late = DocClient(sim.rest_url, sim.usdm_ws_url + "/public", "BTCUSDT", family="usdm", stream="depth@0ms")
        reader.start()
        late.sync()
        assert late.snapshots == 1 and late.update_id > 5123107852948  # past the recorded snapshot
        last_id = load_captures((ReplaySource(path=str(USDM)),))[0].final_ids[-1]
        while late.update_id < last_id:
            late.step()
        bids, asks = late.known_levels()
        assert (bids, asks) == truth_levels(sim.rest_url, "BTCUSDT", "usdm", late.update_id, late.low_bid, late.high_ask)
    finally:
        early.close()
        if late is not None:
            late.close()


def _read_until_closed(ws: websocket.WebSocket) -> None:
    try:
        while ws.recv():
            pass
    except (websocket.WebSocketException, OSError):
        pass


def test_copies_are_served_under_other_names(sim_factory: Callable[..., Simulator]) -> None:
    sim = replay_sim(sim_factory, SPOT_1, copies=3)
    assert sim.urls()["markets"]["spot"] == ["BTCUSDT", "BTCUSDT2", "BTCUSDT3"]
    ws = websocket.create_connection(f"{sim.ws_url}/stream?streams=btcusdt3@depth@100ms", timeout=10)
    try:
        message = json.loads(ws.recv())
        assert message["stream"] == "btcusdt3@depth@100ms"
        assert message["data"]["s"] == "BTCUSDT3"
        assert message["data"]["U"] == 50093239189  # the capture's first diff
    finally:
        ws.close()
    info = requests.get(f"{sim.rest_url}/api/v3/exchangeInfo", timeout=10).json()
    assert info["symbols"][2]["filters"][0]["tickSize"] == "0.01000000"


def test_recorded_pace_takes_recorded_time(sim_factory: Callable[..., Simulator]) -> None:
    sim = replay_sim(sim_factory, SPOT_1, pace="x20")
    ws = websocket.create_connection(f"{sim.ws_url}/ws/btcusdt@depth@100ms", timeout=10)
    try:
        first = json.loads(ws.recv())
        started = time.monotonic()
        for _ in range(60):
            last = json.loads(ws.recv())
        elapsed = time.monotonic() - started
        recorded_s = (last["E"] - first["E"]) / 1000
        assert recorded_s > 5
        assert elapsed >= recorded_s / 20 * 0.7
    finally:
        ws.close()


def test_snapshot_before_the_recorded_one_is_the_recorded_one(sim_factory: Callable[..., Simulator]) -> None:
    sim = replay_sim(sim_factory, SPOT_1)
    snap = requests.get(f"{sim.rest_url}/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 1000}, timeout=10).json()
    assert snap["lastUpdateId"] == 50093239218
    assert snap["bids"][0] == ["61837.63000000", "3.78826000"]


def test_pace_and_missing_snapshot_errors(tmp_path: Path) -> None:
    assert parse_pace("client") is None and parse_pace("recorded") == 1.0 and parse_pace("x10") == 10.0
    with pytest.raises(SimError, match="replay pace must be"):
        parse_pace("fast")
    no_snapshot = tmp_path / "cut.gz"
    with gzip.open(SPOT_1, "rb") as src, gzip.open(no_snapshot, "wb") as dst:
        dst.write(src.readline())
    with pytest.raises(SimError, match="has no REST snapshot"):
        load_captures((ReplaySource(path=str(no_snapshot)),))
