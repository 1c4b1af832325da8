"""The libraries peers use talk to the simulator unchanged: `websockets` (python-binance, UNICORN,
cryptofeed) and aiohttp for REST and websocket."""

from __future__ import annotations

import asyncio
import json

import pytest

from ldc.sim import Simulator

websockets = pytest.importorskip("websockets")
aiohttp = pytest.importorskip("aiohttp")

TIMEOUT_S = 10.0


def test_websockets_library_subscribes_and_receives(sim: Simulator) -> None:
    async def run() -> list[dict[str, object]]:
        async with websockets.connect(f"{sim.ws_url}/ws", open_timeout=TIMEOUT_S) as ws:
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms"], "id": 1}))
            messages = [json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S)) for _ in range(3)]
            return messages

    messages = asyncio.run(run())
    assert messages[0] == {"result": None, "id": 1}
    assert messages[2]["U"] == messages[1]["u"] + 1


def test_aiohttp_rest_and_websocket(sim: Simulator) -> None:
    async def run() -> tuple[int, str, dict[str, object]]:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{sim.rest_url}/fapi/v1/depth", params={"symbol": "BTCUSDT", "limit": "5"}) as response:
                status, weight = response.status, response.headers["X-MBX-USED-WEIGHT-1M"]
                await response.json()
            async with session.ws_connect(f"{sim.usdm_ws_url}/public/stream?streams=btcusdt@depth@0ms") as ws:
                message = await asyncio.wait_for(ws.receive_json(), TIMEOUT_S)
        return status, weight, message

    status, weight, message = asyncio.run(run())
    assert (status, weight) == (200, "2")
    assert message["stream"] == "btcusdt@depth@0ms"
