"""Benchmark of the OKX and Bybit simulator families: book messages and level changes per simulator CPU-second.

Runs ``ldc sim`` as its own process with N markets of one venue at a fast model clock and one reader that
subscribes every market's fastest book channel on one connection (OKX ``books-l2-tbt``, 10 ms windows;
Bybit linear ``orderbook.50``, 20 ms windows) and counts messages and level changes. Baseline in the same
run: the Binance family with N USD-M markets and ``<symbol>@depth@0ms`` (one message per model event),
the stream the feeder benchmarks read. Venues alternate run by run; medians are reported.

    .venv/bin/python scripts/bench_sim_venues.py [--markets 10] [--seconds 4] [--runs 3] [--rate 200]

Prints one JSON object. ``levels_per_sim_cpu_s`` is what one core sustains; ``sim_cpu_fraction`` how much
of a core the simulator got (on a shared machine, read both).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import websocket

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
OKX_NAMES = ("BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT", "DOGE-USDT", "ADA-USDT", "LTC-USDT", "DOT-USDT", "TRX-USDT", "LINK-USDT")
BYBIT_NAMES = tuple(n.replace("-", "") for n in OKX_NAMES)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def start_sim(*args: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen([sys.executable, "-m", "ldc.cli", "sim", "--port", "0", *args], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def plan(venue: str, markets: int, rate: float) -> tuple[list[str], Any, Any]:
    """(ldc sim arguments, websocket URL from the first line, subscribe message or None)."""
    common = ["--rate", str(rate), "--history", "200"]
    if venue == "okx":
        names = OKX_NAMES[:markets]
        args = ["--okx-symbols", ",".join(names), *common]
        request = {"op": "subscribe", "args": [{"channel": "books-l2-tbt", "instId": n} for n in names]}
        return args, lambda urls: urls["okx"]["ws_public"], request
    if venue == "bybit":
        names = BYBIT_NAMES[:markets]
        args = ["--bybit-linear-symbols", ",".join(names), *common]
        request = {"op": "subscribe", "args": [f"orderbook.50.{n}" for n in names]}
        return args, lambda urls: urls["bybit"]["ws_linear"], request
    names = BYBIT_NAMES[:markets]
    args = ["--usdm-symbols", ",".join(names), "--symbols", "", *common]
    streams = "/".join(f"{n.lower()}@depth@0ms" for n in names)
    return args, lambda urls: f"{urls['ws_usdm']}/stream?streams={streams}", None


def levels_in(message: Any) -> int:
    if "data" in message and isinstance(message["data"], list):  # OKX
        return sum(len(item.get("bids", [])) + len(item.get("asks", [])) for item in message["data"])
    data = message.get("data", {})
    if isinstance(data, dict):  # Bybit "b"/"a", Binance combined {"stream","data":{"b","a"}}
        return len(data.get("b", [])) + len(data.get("a", []))
    return 0


def run(venue: str, markets: int, seconds: float, rate: float) -> dict[str, float]:
    args, url_of, request = plan(venue, markets, rate)
    proc, urls = start_sim(*args)
    try:
        ws = websocket.create_connection(url_of(urls), timeout=5)
        if request is not None:
            ws.send(json.dumps(request))
        time.sleep(0.5)  # acks and snapshots pass
        while True:
            ws.settimeout(0.05)
            try:
                ws.recv()
            except websocket.WebSocketTimeoutException:
                break
        ws.settimeout(5)
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        messages = levels = 0
        while time.monotonic() - t0 < seconds:
            message = json.loads(ws.recv())
            found = levels_in(message)
            if found:
                messages += 1
                levels += found
        wall, cpu = time.monotonic() - t0, cpu_seconds(proc.pid) - cpu0
        ws.close()
    finally:
        proc.terminate()
        proc.wait(10)
    return {"msg_per_s": messages / wall, "levels_per_s": levels / wall, "sim_cpu_fraction": cpu / wall, "levels_per_sim_cpu_s": levels / max(cpu, 1e-9)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markets", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200.0, help="model events per second per market")
    opts = parser.parse_args()
    venues = ("binance", "okx", "bybit")
    results: dict[str, list[dict[str, float]]] = {v: [] for v in venues}
    for _ in range(opts.runs):
        for venue in venues:  # alternated, so a noisy neighbour hits every venue alike
            results[venue].append(run(venue, opts.markets, opts.seconds, opts.rate))
    medians = {v: {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]} for v, runs in results.items()}
    base = medians["binance"]["levels_per_sim_cpu_s"]
    out = {
        "machine": platform.machine(), "python": platform.python_version(), "markets": opts.markets, "rate": opts.rate,
        "seconds": opts.seconds, "runs": opts.runs, "medians": medians, "baseline": "binance usdm @depth@0ms",
        "levels_per_sim_cpu_s_vs_baseline": {v: round(medians[v]["levels_per_sim_cpu_s"] / base, 3) for v in venues},
    }  # fmt: skip
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
