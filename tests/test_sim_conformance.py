"""Conformance: a client written only from Binance's documents syncs against the simulator and, after
minutes of simulated traffic, holds exactly the simulator's truth.

The client follows binance-spot-api-docs web-socket-streams.md "How to manage a local order book
correctly" (2025-11-12 revision) for spot, and the derivatives "How to manage a local order book
correctly" page for USD-M / COIN-M (`pu` chain). It shares nothing with ldc's own client code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import requests
import websocket

from ldc.sim import Simulator

RECV_TIMEOUT_S = 10.0
SIMULATED_S = 150.0  # simulated seconds of traffic the client follows before it is compared
MAX_EVENTS = 20_000


class GapError(Exception):
    """The documented algorithm says: discard the book and start again."""


class DocClient:
    """One market kept with Binance's documented algorithm, on websocket-client + requests."""

    def __init__(self, rest_url: str, ws_url: str, symbol: str, *, family: str, stream: str) -> None:
        self.rest_url, self.symbol, self.family = rest_url, symbol, family
        self.ws = websocket.create_connection(f"{ws_url}/ws/{symbol.lower()}@{stream}", timeout=RECV_TIMEOUT_S, skip_utf8_validation=True)
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.update_id = 0
        self.low_bid = Decimal(0)  # deepest snapshot prices: the book is exact only inside them
        self.high_ask = Decimal(0)
        self.snapshots = 0

    def close(self) -> None:
        self.ws.close()

    def recv_event(self) -> dict[str, Any]:
        return dict(json.loads(self.ws.recv()))

    def snapshot(self) -> dict[str, Any]:
        prefix = {"spot": "/api/v3", "usdm": "/fapi/v1", "coinm": "/dapi/v1"}[self.family]
        limit = 5000 if self.family == "spot" else 1000
        response = requests.get(f"{self.rest_url}{prefix}/depth", params={"symbol": self.symbol, "limit": limit}, timeout=RECV_TIMEOUT_S)
        assert response.status_code == 200, response.text
        self.snapshots += 1
        return dict(response.json())

    def sync(self) -> None:
        """Steps 2-7 of the documented procedure."""
        buffered = [self.recv_event()]
        snap = self.snapshot()
        while snap["lastUpdateId"] < buffered[0]["U"]:  # step 4: snapshot older than the stream
            snap = self.snapshot()
        last = snap["lastUpdateId"]
        self.bids = {Decimal(p): Decimal(q) for p, q in snap["bids"]}
        self.asks = {Decimal(p): Decimal(q) for p, q in snap["asks"]}
        self.low_bid = min(self.bids)
        self.high_ask = max(self.asks)
        self.update_id = last
        first = True
        while True:
            while not buffered:
                buffered.append(self.recv_event())
            event = buffered.pop(0)
            if event["u"] < last if self.family != "spot" else event["u"] <= last:
                continue  # step 5: discard what the snapshot already holds
            if first:
                low = last + 1 if self.family == "spot" else last
                assert event["U"] <= low <= event["u"], f"first event [{event['U']}, {event['u']}] does not straddle {low}"
                self._apply(event)
                self.update_id = event["u"]
                first = False
                return
        # unreachable

    def step(self) -> dict[str, Any]:
        """Read and apply one live event; raises GapError as the documents describe."""
        event = self.recv_event()
        if self.family == "spot":
            if event["u"] < self.update_id:
                return event
            if event["U"] > self.update_id + 1:
                raise GapError(f"U {event['U']} > book id {self.update_id} + 1")
        elif event["pu"] != self.update_id:
            raise GapError(f"pu {event['pu']} != previous u {self.update_id}")
        self._apply(event)
        self.update_id = event["u"]
        return event

    def _apply(self, event: dict[str, Any]) -> None:
        for side, levels in ((self.bids, event["b"]), (self.asks, event["a"])):
            for price, qty in levels:
                if Decimal(qty) == 0:
                    side.pop(Decimal(price), None)
                else:
                    side[Decimal(price)] = Decimal(qty)

    def known_levels(self) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        bids = sorted(((p, q) for p, q in self.bids.items() if p >= self.low_bid), reverse=True)
        asks = sorted((p, q) for p, q in self.asks.items() if p <= self.high_ask)
        return bids, asks


def truth_levels(sim_rest: str, symbol: str, family: str, update_id: int, low_bid: Decimal, high_ask: Decimal) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
    response = requests.get(f"{sim_rest}/_sim/book", params={"symbol": symbol, "family": family, "update_id": update_id}, timeout=RECV_TIMEOUT_S)
    assert response.status_code == 200, response.text
    book = response.json()
    assert book["update_id"] == update_id
    bids = [(Decimal(p), Decimal(q)) for p, q in book["bids"] if Decimal(p) >= low_bid]
    asks = [(Decimal(p), Decimal(q)) for p, q in book["asks"] if Decimal(p) <= high_ask]
    return bids, asks


@pytest.mark.parametrize(
    ("family", "symbol", "stream"),
    [("spot", "BTCUSDT", "depth@100ms"), ("spot", "ETHUSDT", "depth"), ("usdm", "BTCUSDT", "depth@0ms"), ("coinm", "BTCUSD_PERP", "depth@100ms")],
)
def test_documented_client_equals_truth_after_minutes_of_traffic(sim_factory: Callable[..., Simulator], family: str, symbol: str, stream: str) -> None:
    fields: dict[str, Any] = {"spot_symbols": (), "speed": 60.0, "rate": 20.0, "history_events": 20_000}
    fields[f"{family}_symbols"] = (symbol,)
    sim = sim_factory(**fields)
    ws_base = {"spot": sim.ws_url, "usdm": sim.usdm_ws_url, "coinm": sim.coinm_ws_url}[family]
    client = DocClient(sim.rest_url, ws_base, symbol, family=family, stream=stream)
    try:
        client.sync()
        first_id = client.update_id
        start_ms = sim.stats()["sim_ms"]
        for count in range(MAX_EVENTS):
            client.step()
            if count % 50 == 49 and sim.stats()["sim_ms"] - start_ms > SIMULATED_S * 1000:
                break
        bids, asks = client.known_levels()
        truth_bids, truth_asks = truth_levels(sim.rest_url, symbol, family, client.update_id, client.low_bid, client.high_ask)
        assert bids == truth_bids
        assert asks == truth_asks
        assert len(bids) > 10 and len(asks) > 10, "the compared window must not be empty"
        assert bids[0][0] < asks[0][0]
        simulated_s = (sim.stats()["sim_ms"] - start_ms) / 1000
        assert simulated_s > SIMULATED_S, f"expected minutes of simulated traffic, found {simulated_s:.0f} s"
        assert client.update_id > first_id
    finally:
        client.close()


def test_diff_fields_follow_the_documents(sim: Simulator) -> None:
    ws = websocket.create_connection(f"{sim.ws_url}/stream?streams=btcusdt@depth@100ms", timeout=RECV_TIMEOUT_S)
    fws = websocket.create_connection(f"{sim.usdm_ws_url}/public/ws/btcusdt@depth@100ms", timeout=RECV_TIMEOUT_S)
    cws = websocket.create_connection(f"{sim.coinm_ws_url}/ws/btcusd_perp@depth@100ms", timeout=RECV_TIMEOUT_S)
    try:
        wrapped = json.loads(ws.recv())
        assert list(wrapped) == ["stream", "data"] and wrapped["stream"] == "btcusdt@depth@100ms"
        assert list(wrapped["data"]) == ["e", "E", "s", "U", "u", "b", "a"]
        assert wrapped["data"]["s"] == "BTCUSDT" and wrapped["data"]["e"] == "depthUpdate"
        price, qty = (wrapped["data"]["b"] or wrapped["data"]["a"])[0]
        assert len(price.split(".")[1]) == 8 and len(qty.split(".")[1]) == 8
        futures = json.loads(fws.recv())
        assert list(futures) == ["e", "E", "T", "s", "U", "u", "pu", "b", "a"]
        coin = json.loads(cws.recv())
        assert list(coin) == ["e", "E", "T", "s", "ps", "U", "u", "pu", "b", "a"]
        assert coin["s"] == "BTCUSD_PERP" and coin["ps"] == "BTCUSD"
    finally:
        for conn in (ws, fws, cws):
            conn.close()


def test_snapshot_shapes_and_weight_header(sim: Simulator) -> None:
    spot = requests.get(f"{sim.rest_url}/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 10}, timeout=5)
    assert spot.status_code == 200
    assert list(spot.json()) == ["lastUpdateId", "bids", "asks"]
    assert len(spot.json()["bids"]) == 10 and spot.headers["X-MBX-USED-WEIGHT-1M"] == "5"
    fut = requests.get(f"{sim.rest_url}/fapi/v1/depth", params={"symbol": "BTCUSDT", "limit": 1000}, timeout=5)
    assert list(fut.json()) == ["lastUpdateId", "E", "T", "bids", "asks"]
    assert fut.headers["X-MBX-USED-WEIGHT-1M"] == "20"
    coin = requests.get(f"{sim.rest_url}/dapi/v1/depth", params={"symbol": "BTCUSD_PERP"}, timeout=5)
    assert list(coin.json()) == ["lastUpdateId", "E", "T", "symbol", "pair", "bids", "asks"]
    assert coin.headers["X-MBX-USED-WEIGHT-1M"] == "30"  # default limit 500 -> 10, on the futures budget after 20
    assert len(coin.json()["bids"]) == 500


def test_documented_client_sees_an_injected_gap_resyncs_and_equals_truth(sim_factory: Callable[..., Simulator]) -> None:
    from ldc.sim import FaultKind, FaultRule

    sim = sim_factory(spot_symbols=("BTCUSDT",), speed=10.0, history_events=20_000)
    client = DocClient(sim.rest_url, sim.ws_url, "BTCUSDT", family="spot", stream="depth@100ms")
    gaps = 0
    try:
        client.sync()
        sim.add_fault(FaultRule(FaultKind.DROP, count=1, port=int(client.ws.sock.getsockname()[1])))
        for _ in range(200):
            try:
                client.step()
            except GapError:
                gaps += 1
                client.sync()  # "discard the book and restart from the beginning"
        assert gaps == 1 and client.snapshots == 2
        bids, asks = client.known_levels()
        assert (bids, asks) == truth_levels(sim.rest_url, "BTCUSDT", "spot", client.update_id, client.low_bid, client.high_ask)
    finally:
        client.close()


def test_partial_book_streams_show_the_truth_top(sim: Simulator) -> None:
    spot = websocket.create_connection(f"{sim.ws_url}/ws/btcusdt@depth5@100ms", timeout=RECV_TIMEOUT_S)
    futures = websocket.create_connection(f"{sim.usdm_ws_url}/public/stream?streams=btcusdt@depth10@100ms", timeout=RECV_TIMEOUT_S)
    try:
        top = json.loads(spot.recv())
        assert list(top) == ["lastUpdateId", "bids", "asks"] and len(top["bids"]) == 5
        truth = sim.truth("BTCUSDT", update_id=top["lastUpdateId"], limit=5, family="spot")
        assert truth is not None and (truth["bids"], truth["asks"]) == (top["bids"], top["asks"])
        wrapped = json.loads(futures.recv())
        assert wrapped["stream"] == "btcusdt@depth10@100ms" and len(wrapped["data"]["b"]) == 10
        ftruth = sim.truth("BTCUSDT", update_id=wrapped["data"]["u"], limit=10, family="usdm")
        assert ftruth is not None and ftruth["asks"] == wrapped["data"]["a"]
    finally:
        spot.close()
        futures.close()
