"""The libraries peers' OKX and Bybit clients are built on talk to the simulator families unchanged:
`websockets` (cryptofeed, which offers permessage-deflate and sends its own pings) and aiohttp (ccxt's
REST and websocket transport, with heartbeat pings)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import aiohttp
import pytest
import websockets

from ldc.sim import SimConfig, Simulator


@pytest.fixture(scope="module")
def venues() -> Iterator[Simulator]:
    sim = Simulator(SimConfig(spot_symbols=(), okx_symbols=("BTC-USDT",), bybit_linear_symbols=("BTCUSDT",))).start()
    yield sim
    sim.stop()


def test_websockets_client_subscribes_to_okx_and_pings_by_text(venues: Simulator) -> None:
    async def run() -> tuple[dict[str, object], dict[str, object], str]:
        async with websockets.connect(venues.okx_ws_url, ping_interval=0.2) as ws:
            await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]}))
            ack, snapshot = json.loads(await ws.recv()), json.loads(await ws.recv())
            await ws.send("ping")
            while (text := await ws.recv()) != "pong":
                assert json.loads(text)["action"] == "update"
            return ack, snapshot, str(text)

    ack, snapshot, pong = asyncio.run(run())
    assert ack["event"] == "subscribe" and snapshot["action"] == "snapshot" and pong == "pong"


def test_aiohttp_reads_bybit_rest_and_websocket(venues: Simulator) -> None:
    async def run() -> tuple[int, list[dict[str, object]]]:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{venues.bybit_rest_url}/v5/market/orderbook", params={"category": "linear", "symbol": "BTCUSDT", "limit": "50"}) as response:
                body = await response.json()
            async with session.ws_connect(venues.bybit_ws_url("linear"), heartbeat=2.0) as ws:
                await ws.send_str(json.dumps({"op": "subscribe", "args": ["orderbook.50.BTCUSDT"]}))
                messages = [json.loads(await ws.receive_str(timeout=5)) for _ in range(3)]
        return int(body["retCode"]), messages

    code, messages = asyncio.run(run())
    assert code == 0
    assert messages[0]["success"] is True and [m["type"] for m in messages[1:]] == ["snapshot", "delta"]
    assert messages[2]["data"]["u"] == messages[1]["data"]["u"] + 1
