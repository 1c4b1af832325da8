"""Shared fixtures: a running local exchange simulator (ldc.sim), in process or as an `ldc sim` process.

`sim` is a Simulator serving on a free 127.0.0.1 port with spot BTCUSDT + ETHUSDT, USD-M BTCUSDT and
COIN-M BTCUSD_PERP; use `sim.rest_url`, `sim.ws_url` (spot and root routes), `sim.usdm_ws_url`,
`sim.coinm_ws_url`, `sim.truth(symbol, update_id=...)`, `sim.add_fault(...)`.
`sim_urls` is `sim.urls()`. `sim_factory(**SimConfig fields)` starts more with your own settings. `sim_process` runs `ldc sim` in a
subprocess and yields the JSON of its first line ({"rest", "ws", "ws_usdm", "ws_coinm", "markets"}).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ldc.io.governor import governor_key, unlink_governor
from ldc.sim import SimConfig, Simulator

SIM_PROCESS_START_TIMEOUT_S = 20.0


@pytest.fixture
def sim_factory() -> Iterator[Callable[..., Simulator]]:
    started: list[Simulator] = []

    def start(**fields: Any) -> Simulator:
        sim = Simulator(SimConfig(**fields)).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()
        # a feeder or REST client pointed at it made the host's weight ledger for its port: gone with it
        unlink_governor(governor_key(sim.rest_url))


@pytest.fixture
def sim(sim_factory: Callable[..., Simulator]) -> Simulator:
    return sim_factory(spot_symbols=("BTCUSDT", "ETHUSDT"), usdm_symbols=("BTCUSDT",), coinm_symbols=("BTCUSD_PERP",), history_events=5000)


@pytest.fixture
def sim_urls(sim: Simulator) -> dict[str, Any]:
    """The running `sim`'s URLs as `ldc sim` prints them: {"rest", "ws", "ws_usdm", "ws_coinm", "markets"}."""
    return sim.urls()


def start_sim_process(*args: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """Start `ldc sim ARGS` and read its first stdout line (the URLs). The caller must kill it."""
    proc = subprocess.Popen([sys.executable, "-m", "ldc.cli", "sim", "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError(f"ldc sim exited without printing its urls: {proc.stderr.read() if proc.stderr else ''}")
    return proc, json.loads(line)


@pytest.fixture
def sim_process() -> Iterator[dict[str, Any]]:
    proc, urls = start_sim_process("--symbols", "BTCUSDT,ETHUSDT", "--usdm-symbols", "BTCUSDT", "--coinm-symbols", "BTCUSD_PERP")
    try:
        yield urls
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
