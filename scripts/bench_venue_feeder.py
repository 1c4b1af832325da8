#!/usr/bin/env python3
"""End-to-end feeder benchmark for a 10-market OKX group and a 10-market Bybit group beside Binance's; JSON.

Issue 12 item 9: diffs per CPU-second of the feeder (``ldc feed``, unchanged, depth 20) within 20% of
Binance's. Per run, three processes as in ``bench_feeder.py``: the simulator, the feeder, this reader.

- OKX: ``okx_books400_20220513`` ``BTC-USDT`` (97 updates, 400 levels), ``--replay-copies 10`` and
  ``--replay-loops`` so each market gets about as many updates as Binance's capture has diffs (6,495):
  each pass after the first starts with one update back to the recorded snapshot (recorded checksums stay
  valid, and the feeder verifies every one).
- Bybit: ``bybit_v5_orderbook200_20260809`` linear ``BTCUSDT`` (413 deltas, 200 levels), the same way.
- Binance: ``bench_feeder.run_throughput`` on 10 markets (the spot BTCUSDT captures), in the same run.

Every venue is replayed client-paced (``--replay-pace client``: the simulator writes while the feeder's
socket takes it). The three runs alternate (Binance, OKX, Bybit) per repeat; medians. Diffs are counted from
"every market published" to "every market on the last id", the feeder's CPU from its process clock once it
is idle at the end. Every final book is compared with the simulator's ``/_sim/book`` at the same id.

    .venv/bin/python scripts/bench_venue_feeder.py [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_feeder import (  # noqa: E402
    CAPTURES,
    DEPTH,
    IDLE_SETTLE_S,
    THROUGHPUT_POLL_S,
    _difference,
    attach,
    load_index,
    new_group,
    poll_until,
    run_throughput,
)
from bench_feeder_procs import FeederProcess, SimProcess  # noqa: E402

from ldc.shm.reader import Reader  # noqa: E402
from ldc.sim.replay import captures_dir  # noqa: E402
from ldc.sim.venue_replay import bybit_replay_markets, okx_replay_markets, read_recording  # noqa: E402
from ldc.sim.venue_replay_copies import bybit_copies, okx_copies, okx_copy_name  # noqa: E402

VENUES_DIR = Path(os.environ.get("LDC_VENUES_DIR") or captures_dir().parent / "venues")  # shared/data/venues
OKX_FILE = VENUES_DIR / "okx_books400_20220513.jsonl.gz"
BYBIT_FILE = VENUES_DIR / "bybit_v5_orderbook200_20260809.jsonl.gz"
OKX_SYMBOL = "BTC-USDT"
BYBIT_CATEGORY, BYBIT_SYMBOL = "linear", "BTCUSDT"
MARKETS = 10
TARGET_RATIO = 0.8  # issue 12 item 9: within 20% of Binance's diffs per CPU-second


@dataclass(frozen=True)
class VenueRun:
    """What one venue group needs: its simulator arguments, feeder configuration and the served ids."""

    name: str
    path: Path
    exchange: str
    channel: str
    symbols: list[str]
    ids: dict[str, list[int]]  # per market: the id after each served message (snapshot first)
    levels: dict[str, list[int]]  # per market: level updates in messages [0, i)
    loops: int
    truth_params: dict[str, str]

    def sim_args(self) -> list[str]:
        return ["--replay", str(self.path), "--replay-pace", "client", "--replay-copies", str(len(self.symbols)), "--replay-loops", str(self.loops)]

    def config(self, group: str, urls: dict[str, Any]) -> str:
        quoted = ", ".join(f'"{s}"' for s in self.symbols)
        venue = urls[self.name]
        return (f'[[group]]\nname = "{group}"\nexchange = "{self.exchange}"\nsymbols = [{quoted}]\nchannel = "{self.channel}"\n'
                f'depth = {DEPTH}\nrest_url = "{venue["rest"]}"\nws_url = "{venue["ws"]}"\n')  # fmt: skip


def _cumulative(counts: list[int]) -> list[int]:
    out = [0]
    for c in counts:
        out.append(out[-1] + c)
    return out


def okx_run(markets: int, diffs_per_market: int) -> VenueRun:
    base = next(m for m in okx_replay_markets(read_recording(str(OKX_FILE)), pace=None) if m.inst_id == OKX_SYMBOL)
    loops = max(1, math.ceil(diffs_per_market / (len(base.messages) - 1)))
    served = {m.inst_id: m for m in okx_copies([base], copies=markets, loops=loops, pace=None)}
    symbols = [OKX_SYMBOL] + [okx_copy_name(OKX_SYMBOL, n) for n in range(2, markets + 1)]
    levels = {s: _cumulative([len(m.item["bids"]) + len(m.item["asks"]) for m in served[s].messages]) for s in symbols}
    return VenueRun("okx", OKX_FILE, "okx", "books", symbols, {s: served[s].seq_ids for s in symbols}, levels, loops, {})


def bybit_run(markets: int, diffs_per_market: int) -> VenueRun:
    found = bybit_replay_markets(read_recording(str(BYBIT_FILE)), pace=None)
    base = next(m for m in found if (m.category, m.symbol) == (BYBIT_CATEGORY, BYBIT_SYMBOL))
    loops = max(1, math.ceil(diffs_per_market / (len(base.book_data) - 1)))
    served = {m.symbol: m for m in bybit_copies([base], copies=markets, loops=loops, pace=None)}
    symbols = [BYBIT_SYMBOL] + [f"{BYBIT_SYMBOL}{n}" for n in range(2, markets + 1)]
    ids = {s: [int(d["u"]) for d in served[s].book_data] for s in symbols}
    levels = {s: _cumulative([len(d["b"]) + len(d["a"]) for d in served[s].book_data]) for s in symbols}
    params = {"category": BYBIT_CATEGORY, "depth": str(base.depth)}
    return VenueRun("bybit", BYBIT_FILE, f"bybit-{BYBIT_CATEGORY}", f"orderbook.{base.depth}", symbols, ids, levels, loops, params)


def run_venue(run: VenueRun) -> dict[str, Any]:
    group = new_group(f"{run.name}{len(run.symbols)}")
    with SimProcess(run.sim_args()) as sim, FeederProcess(group, run.config(group, sim.urls)) as feeder:
        reader = attach(group, len(run.symbols))
        try:
            samples = poll_until(reader, run.symbols, feeder, lambda s: all(x.update_id >= run.ids[sym][-1] for sym, x in zip(run.symbols, s.slots)), THROUGHPUT_POLL_S)
            time.sleep(IDLE_SETTLE_S)
            idle_cpu_ns = feeder.cpu_ns()
            books = final_books(reader, sim.urls[run.name]["rest"], run)
        finally:
            reader.close()
        feeder.stop()
    start = next(s for s in samples if s.all_published)
    end = samples[-1]
    diffs = levels = 0
    for symbol, a, b in zip(run.symbols, start.slots, end.slots):
        ids = run.ids[symbol]
        i, j = ids.index(a.update_id), ids.index(b.update_id)
        diffs, levels = diffs + j - i, levels + run.levels[symbol][j + 1] - run.levels[symbol][i + 1]
    cpu = (idle_cpu_ns - start.cpu_ns) / 1e9
    wall = (max(s.publish_time_ns for s in end.slots) - start.wall_ns) / 1e9
    counters = {k: sum(s.counters[k] for s in end.slots) for k in ("resyncs", "gaps", "snapshots")}
    return {"diffs": diffs, "levels_per_diff": round(levels / diffs, 1), "wall_s": wall, "diffs_per_s": diffs / wall,
            "diffs_per_cpu_s": diffs / cpu, "levels_per_cpu_s": levels / cpu, "cpu_us_per_diff": cpu / diffs * 1e6,
            "busy_fraction": cpu / wall, **counters, "final_books": books, "exit_status": feeder.returncode}  # fmt: skip


def final_books(reader: Reader, rest: str, run: VenueRun) -> dict[str, Any]:
    """Every market's published top DEPTH against the venue's ``/_sim/book`` at the same id."""
    tally: dict[str, Any] = {"equal": 0, "differ": 0}
    for symbol in run.symbols:
        snap = reader.snapshot(symbol, DEPTH, allow_out_of_sync=True)
        query = {"symbol": symbol, "update_id": str(snap.update_id), "limit": str(DEPTH), **run.truth_params}
        truth = requests.get(f"{rest}/_sim/book", params=query, timeout=10).json()
        bids, asks = snap.bids.tolist(), snap.asks.tolist()
        true_bids = [[float(p), float(q)] for p, q in truth["bids"]]
        true_asks = [[float(p), float(q)] for p, q in truth["asks"]]
        if not snap.in_sync or truth["update_id"] != snap.update_id or bids != true_bids or asks != true_asks:
            tally["differ"] += 1
            tally.setdefault("first_differ", _difference(symbol, snap, truth, bids, true_bids, asks, true_asks))
        else:
            tally["equal"] += 1
    return tally


KEYS = ["diffs_per_cpu_s", "cpu_us_per_diff", "diffs_per_s", "busy_fraction", "wall_s", "diffs"]


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {k: _round(statistics.median(r[k] for r in runs)) for k in KEYS}
    out["runs_diffs_per_cpu_s"] = [round(r["diffs_per_cpu_s"]) for r in runs]
    for key in ("levels_per_diff", "levels_per_cpu_s"):
        out[key] = _round(statistics.median(r[key] for r in runs))
    for key in ("resyncs", "gaps"):
        out[key] = max(r[key] for r in runs)
    books = [r["final_books"] for r in runs]
    out["final_books"] = {k: sum(b.get(k, 0) for b in books) for k in ("equal", "differ", "equal_incomplete", "differ_flagged") if any(k in b for b in books)}
    firsts = [b["first_differ"] for b in books if "first_differ" in b]
    if firsts:
        out["final_books"]["first_differ"] = firsts[0]
    out["exit_status"] = sorted({r["exit_status"] for r in runs})
    return out


def _round(value: float) -> float:
    return round(value) if abs(value) >= 100 else round(value, 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="alternated runs per group (default 3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repeat, 2 markets, fewer loops")
    args = parser.parse_args()
    repeats = 1 if args.quick else max(1, args.repeats)
    markets = 2 if args.quick else MARKETS
    load_start = round(os.getloadavg()[0], 2)
    index = load_index(CAPTURES)
    per_market = 500 if args.quick else len(index.final_ids)
    venues = [okx_run(markets, per_market), bybit_run(markets, per_market)]
    runs: dict[str, list[dict[str, Any]]] = {"binance": [], **{v.name: [] for v in venues}}
    for _ in range(repeats):
        run = run_throughput(index, markets)
        per_diff = run["levels_per_s"] / run["diffs_per_s"]  # the three groups' diffs differ in size: levels too
        runs["binance"].append({**run, "levels_per_diff": per_diff, "levels_per_cpu_s": per_diff * run["diffs_per_cpu_s"]})
        for venue in venues:
            runs[venue.name].append(run_venue(venue))
    groups = {name: summary(r) for name, r in runs.items()}
    binance = groups["binance"]["diffs_per_cpu_s"]
    for venue in venues:
        ratio = groups[venue.name]["diffs_per_cpu_s"] / binance
        levels_ratio = groups[venue.name]["levels_per_cpu_s"] / groups["binance"]["levels_per_cpu_s"]
        groups[venue.name].update(loops=venue.loops, ratio_to_binance=round(ratio, 2), target_met=ratio >= TARGET_RATIO,
                                  levels_per_cpu_s_ratio_to_binance=round(levels_ratio, 2))  # fmt: skip
    result = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_avg_1m": [load_start, round(os.getloadavg()[0], 2)]},
        "markets": markets,
        "repeats": repeats,
        "recordings": {"binance": [p.name for p in CAPTURES], "okx": f"{OKX_FILE.name} {OKX_SYMBOL}", "bybit": f"{BYBIT_FILE.name} {BYBIT_CATEGORY} {BYBIT_SYMBOL}"},
        "target": f"venue diffs per CPU-second >= {TARGET_RATIO} x Binance's",
        "groups": groups,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
