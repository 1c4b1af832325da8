#!/usr/bin/env python3
"""Benchmark of the OKX and Bybit book paths on their genuine recordings (shared/data/venues); prints JSON.

Per venue, every book message of the recording, as received, in order (each market its own BookSync):

- ``full``: raw text -> the venue's reference parser -> ``BookSync`` (sequence rule, OKX's checksum of the top
  25 on every message carrying one) -> ``FastBook`` -> top 20 into numpy buffers, after every message;
- ``baseline``: in the same run, on the same messages, ``json.loads`` + a ``SortedDict`` per side + a top-20
  slice per message (no sequence check, no checksum): the usual Python book.

Figures are medians over ``--repeats`` runs: level updates per second (wall) and per CPU-second. The machine is
shared and noisy: compare the ratio, measured in the same run. OKX and Bybit have no C dialect yet: this is the
reference parser's speed (issue 12 item 9's target, >= 3 M level updates/s, needs the C dialects).

    .venv/bin/python scripts/bench_venues.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from sortedcontainers import SortedDict

from ldc._fastbook import FastBook
from ldc.depth import DepthSnapshot
from ldc.sim.replay import captures_dir
from ldc.sync import BookSync, SnapshotPurpose, SnapshotResult, SyncConfig
from ldc.venues import bybit, okx
from ldc.venues.base import Precision, SnapshotSource

DEPTH = 20
DATA = captures_dir().parent / "venues"
OKX_FILE = "okx_books400_20220513.jsonl.gz"
BYBIT_FILE = "bybit_v5_orderbook200_20260809.jsonl.gz"


def _records(name: str) -> list[dict[str, Any]]:
    with gzip.open(DATA / name, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def okx_messages() -> tuple[list[str], dict[str, Precision]]:
    precision: dict[str, Precision] = {}
    messages = []
    for record in _records(OKX_FILE):
        if record["t"] == "http" and "/instruments" in record["url"]:
            precision.update(okx.parse_instruments(record["data"]))
        elif record["t"] == "recv" and '"channel":"books"' in record["data"] and '"action"' in record["data"]:
            messages.append(record["data"])
    return messages, precision


def bybit_messages() -> list[tuple[str, str]]:
    return [(r["conn"], r["data"]) for r in _records(BYBIT_FILE)
            if r["t"] == "recv" and r["data"].startswith('{"topic":"orderbook.')]  # fmt: skip


def run_okx(messages: list[str], precision: dict[str, Precision]) -> int:
    syncs: dict[str, BookSync] = {}
    bids, asks = np.zeros((DEPTH, 2)), np.zeros((DEPTH, 2))
    for raw in messages:
        events = okx.parse_message(raw)
        assert isinstance(events, list)
        for event in events:
            sync = syncs.get(event.symbol)
            if sync is None:
                config = SyncConfig(rule=okx.SEQUENCE_RULE, depth=DEPTH, snapshot_limit=400, snapshot_source=SnapshotSource.STREAM,
                                    refresh_interval_s=None, checksum=okx.book_checksum(precision[event.symbol]))  # fmt: skip
                sync = syncs[event.symbol] = BookSync(event.symbol, lambda: FastBook(depth=DEPTH), config)
            if isinstance(event.event, DepthSnapshot):
                sync.feed(SnapshotResult(event.event, SnapshotPurpose.LIVE), 0.0)
            else:
                sync.on_diff(event.event, 0.0)
            sync.book.top(DEPTH, bids, asks)  # type: ignore[union-attr]
    return sum(s.checksum_mismatches + s.resyncs for s in syncs.values())


def run_bybit(messages: list[tuple[str, str]]) -> int:
    syncs: dict[tuple[str, str], BookSync] = {}
    bids, asks = np.zeros((DEPTH, 2)), np.zeros((DEPTH, 2))
    for conn, raw in messages:
        event = bybit.parse_message(raw)
        assert isinstance(event, bybit.BookEvent)
        key = (conn, event.topic)
        sync = syncs.get(key)
        if sync is None:
            config = SyncConfig(rule=bybit.SEQUENCE_RULE, depth=DEPTH, snapshot_limit=200,
                                snapshot_source=SnapshotSource.STREAM, refresh_interval_s=None)  # fmt: skip
            sync = syncs[key] = BookSync(event.topic, lambda: FastBook(depth=DEPTH), config)
        if isinstance(event.event, DepthSnapshot):
            sync.feed(SnapshotResult(event.event, SnapshotPurpose.LIVE), 0.0)
        else:
            sync.on_diff(event.event, 0.0)
        sync.book.top(DEPTH, bids, asks)  # type: ignore[union-attr]
    return sum(s.gaps + s.resyncs for s in syncs.values())


def baseline(levels_of: Callable[[Any], tuple[str, str, Any, Any]], messages: list[str]) -> None:
    """json.loads, a SortedDict per side (bids keyed negative), a top-20 slice after every message."""
    books: dict[str, tuple[SortedDict, SortedDict]] = {}
    for raw in messages:
        key, kind, bid_levels, ask_levels = levels_of(json.loads(raw))
        if kind == "snapshot" or key not in books:
            books[key] = (SortedDict(), SortedDict())
        book_bids, book_asks = books[key]
        for side, levels, sign in ((book_bids, bid_levels, -1.0), (book_asks, ask_levels, 1.0)):
            for level in levels:
                price, size = float(level[0]) * sign, float(level[1])
                if size == 0.0:
                    side.pop(price, None)
                else:
                    side[price] = size
        book_bids.items()[:DEPTH], book_asks.items()[:DEPTH]


def _okx_levels(msg: dict[str, Any]) -> tuple[str, str, Any, Any]:
    data = msg["data"][0]
    return msg["arg"]["instId"], msg["action"], data["bids"], data["asks"]


def _bybit_levels(msg: dict[str, Any]) -> tuple[str, str, Any, Any]:
    return msg["topic"], msg["type"], msg["data"]["b"], msg["data"]["a"]


def _timed(run: Callable[[], object], repeats: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def _level_updates(messages: list[str], levels_of: Callable[[Any], tuple[str, str, Any, Any]]) -> int:
    total = 0
    for raw in messages:
        _, _, bid_levels, ask_levels = levels_of(json.loads(raw))
        total += len(bid_levels) + len(ask_levels)
    return total


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        raise SystemExit(f"{DATA}: the venue recordings are not there")
    okx_raw, precision = okx_messages()
    bybit_raw = bybit_messages()
    venues = {
        "okx": (lambda: run_okx(okx_raw, precision), okx_raw, _okx_levels),
        "bybit": (lambda: run_bybit(bybit_raw), [raw for _, raw in bybit_raw], _bybit_levels),
    }
    out: dict[str, Any] = {"depth": DEPTH, "repeats": args.repeats, "venues": {}}
    for name, (run, raws, levels_of) in venues.items():
        faults = run()
        levels = _level_updates(raws, levels_of)
        wall, cpu = _timed(run, args.repeats)
        base_wall, base_cpu = _timed(lambda: baseline(levels_of, raws), args.repeats)
        out["venues"][name] = {
            "messages": len(raws), "level_updates": levels, "faults": faults,
            "full": {"level_updates_per_s": levels / wall, "level_updates_per_cpu_s": levels / cpu,
                     "us_per_message": wall / len(raws) * 1e6},
            "baseline": {"level_updates_per_s": levels / base_wall, "level_updates_per_cpu_s": levels / base_cpu},
            "full_vs_baseline_cpu": base_cpu / cpu,
        }  # fmt: skip
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
