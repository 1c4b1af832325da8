#!/usr/bin/env python3
"""Benchmark of the book hot path on Binance's genuine captures; prints JSON.

Per capture (``shared/data/binance``), replayed like a client receives it: the diffs before the REST
snapshot are buffered by ``BookSync``, the snapshot joins them, and the diffs after it are timed:

- ``full``: raw message bytes -> ``parse_depth`` -> ``BookSync.on_diff`` -> ``FastBook`` -> top-20 into
  numpy buffers, after every diff;
- ``parsed``: the same with parsing excluded (diffs parsed beforehand);
- ``book_only``: parsed diffs straight into FastBook + top-20, without BookSync (the C part alone);
- ``baseline_full`` / ``baseline_parsed``: in the same run, on the same diffs, a ``SortedDict`` per side
  with ``json.loads`` (or pre-parsed dicts) and a top-20 slice after every diff;
- ``top20``: FastBook top-20 extraction after a change of the best level, and the SortedDict slice.

Figures are medians over ``--repeats`` runs (throughput) and over every timed diff (latency). The
machine is shared and noisy: compare the ratios, which are measured in the same run.

    .venv/bin/python scripts/bench_book.py [--repeats 5] [--capture spot_btcusdt_20240808.gz]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import orjson
from sortedcontainers import SortedDict

from ldc._fastbook import FastBook, ParsedDiff, parse_depth
from ldc.depth import DepthSnapshot
from ldc.sync import BookSync, FetchSnapshot, SequenceRule, SnapshotPurpose, SnapshotResult, SyncConfig
from ldc.sim.replay import captures_dir

DATA_DIR = captures_dir()
CAPTURES = {  # file -> sequence rule
    "spot_btcusdt_20240808.gz": SequenceRule.SPOT,
    "usdm_btcusdt_20240808.gz": SequenceRule.FUTURES,
    "coinm_btcusd_perp_20240808.gz": SequenceRule.FUTURES,
}
DEPTH = 20  # levels per side read after every diff
SNAPSHOT_LIMIT = 1000  # the captures' snapshots were requested with limit=1000
TOP_CALLS = 200_000  # top-20 extractions timed per repeat
NS_PER_S = 1e9


@dataclass(frozen=True)
class Capture:
    name: str
    rule: SequenceRule
    before: list[tuple[bytes, float]]  # (raw diff, receive time s) received before the snapshot
    snapshot: DepthSnapshot
    timed: list[tuple[bytes, float]]  # diffs received after the snapshot: the timed part
    levels: int  # level updates in the timed diffs


def load_capture(path: Path, rule: SequenceRule) -> Capture:
    before: list[tuple[bytes, float]] = []
    timed: list[tuple[bytes, float]] = []
    snapshot: DepthSnapshot | None = None
    with gzip.open(path, "rb") as f:
        for line in f:
            stamp, raw = line.rstrip(b"\n").split(b" ", 1)
            if b'"lastUpdateId"' in raw[:40] and snapshot is None:
                snapshot = snapshot_of(orjson.loads(raw))
            elif b'"depthUpdate"' in raw[:120]:
                (timed if snapshot else before).append((raw, int(stamp) / NS_PER_S))
    if snapshot is None:
        raise SystemExit(f"{path.name}: no snapshot line, expected one")
    levels = 0
    for raw, _ in timed:
        diff = parse_depth(raw)
        assert diff is not None
        levels += diff.level_count
    return Capture(path.name, rule, before, snapshot, timed, levels)


def snapshot_of(msg: dict[str, Any]) -> DepthSnapshot:
    def side(levels: list[list[str]]) -> list[tuple[float, float]]:
        return [(float(p), float(q)) for p, q in levels]

    return DepthSnapshot(msg["lastUpdateId"], side(msg["bids"]), side(msg["asks"]), SNAPSHOT_LIMIT)


def synced(capture: Capture) -> BookSync:
    """A BookSync that buffered the pre-snapshot diffs and joined them to the snapshot."""
    config = SyncConfig(rule=capture.rule, depth=DEPTH, snapshot_limit=SNAPSHOT_LIMIT, refresh_interval_s=None,
                        stale_after_s=3600.0)
    sync = BookSync(capture.name, lambda: FastBook(depth=DEPTH), config)
    purpose = SnapshotPurpose.LIVE
    for raw, now in capture.before:
        for action in sync.feed(parse_depth(raw), now):  # type: ignore[arg-type]
            if isinstance(action, FetchSnapshot):
                purpose = action.purpose
    sync.feed(SnapshotResult(capture.snapshot, purpose), capture.before[-1][1])
    if not sync.synced:
        raise SystemExit(f"{capture.name}: not synced after the snapshot (state {sync.state.name})")
    return sync


Clock = tuple[float, float]  # (wall s, this thread's CPU s)
Run = tuple[Clock, list[float], Any]  # elapsed, per-diff ns (timed runs only), final state


def clock() -> Clock:
    return time.perf_counter(), time.thread_time()


def elapsed(start: Clock) -> Clock:
    """Wall and CPU seconds since start: CPU time is what other processes on the machine cannot
    inflate, wall time what a caller waits."""
    return time.perf_counter() - start[0], time.thread_time() - start[1]


def run_full(capture: Capture, timer: Callable[[], int] | None) -> tuple[Clock, list[float], BookSync]:
    """raw bytes -> parse -> sync -> book -> top-20 per diff; returns (seconds, per-diff ns, sync)."""
    sync = synced(capture)
    bids, asks = np.zeros((DEPTH, 2)), np.zeros((DEPTH, 2))
    on_diff, parse = sync.on_diff, parse_depth
    per_diff: list[float] = []
    start = clock()
    if timer is None:
        for raw, now in capture.timed:
            on_diff(parse(raw), now)  # type: ignore[arg-type]
            sync.book.top(DEPTH, bids, asks)  # type: ignore[union-attr]
    else:
        for raw, now in capture.timed:
            t0 = timer()
            on_diff(parse(raw), now)  # type: ignore[arg-type]
            sync.book.top(DEPTH, bids, asks)  # type: ignore[union-attr]
            per_diff.append(timer() - t0)
    return elapsed(start), per_diff, sync


def run_parsed(capture: Capture, timer: Callable[[], int] | None) -> tuple[Clock, list[float], BookSync]:
    """The same as run_full with the diffs parsed beforehand."""
    sync = synced(capture)
    diffs = [(parse_depth(raw), now) for raw, now in capture.timed]
    bids, asks = np.zeros((DEPTH, 2)), np.zeros((DEPTH, 2))
    on_diff = sync.on_diff
    per_diff: list[float] = []
    start = clock()
    if timer is None:
        for diff, now in diffs:
            on_diff(diff, now)  # type: ignore[arg-type]
            sync.book.top(DEPTH, bids, asks)  # type: ignore[union-attr]
    else:
        for diff, now in diffs:
            t0 = timer()
            on_diff(diff, now)  # type: ignore[arg-type]
            sync.book.top(DEPTH, bids, asks)  # type: ignore[union-attr]
            per_diff.append(timer() - t0)
    return elapsed(start), per_diff, sync


def run_book_only(capture: Capture, timer: Callable[[], int] | None) -> tuple[Clock, list[float], BookSync]:
    """Parsed diffs straight into the synced FastBook + top-20, no BookSync: the C part alone."""
    sync = synced(capture)
    book = sync.book
    assert book is not None
    diffs = [parse_depth(raw) for raw, _ in capture.timed]
    bids, asks = np.zeros((DEPTH, 2)), np.zeros((DEPTH, 2))
    apply, top = book.apply_diff, book.top
    per_diff: list[float] = []
    start = clock()
    for diff in diffs:
        t0 = timer() if timer else 0
        apply(diff)  # type: ignore[arg-type]
        top(DEPTH, bids, asks)
        if timer:
            per_diff.append(timer() - t0)
    return elapsed(start), per_diff, sync


def baseline_book(capture: Capture) -> tuple[SortedDict, SortedDict]:
    """The snapshot plus the buffered diffs it does not contain (absolute quantities, so a diff
    ending at the snapshot's id is harmless to reapply)."""
    bids, asks = SortedDict(), SortedDict()
    for side, levels in ((bids, capture.snapshot.bids), (asks, capture.snapshot.asks)):
        side.update(levels)
    for raw, _ in capture.before:
        data = json.loads(raw)["data"]
        if data["u"] >= capture.snapshot.last_update_id:
            baseline_apply(bids, asks, data)
    return bids, asks


def baseline_apply(bids: SortedDict, asks: SortedDict, data: dict[str, Any]) -> None:
    for side, levels in ((bids, data["b"]), (asks, data["a"])):
        for p, q in levels:
            qty = float(q)
            if qty == 0.0:
                side.pop(float(p), None)
            else:
                side[float(p)] = qty


def run_baseline(capture: Capture, parsed: bool, timer: Callable[[], int] | None) -> Run:
    """SortedDict per side + json.loads (or pre-parsed dicts) + top-20 slice per diff."""
    bids, asks = baseline_book(capture)
    loads = json.loads
    messages: list[Any] = [loads(raw) for raw, _ in capture.timed] if parsed else [raw for raw, _ in capture.timed]
    per_diff: list[float] = []
    start = clock()
    for message in messages:
        t0 = timer() if timer else 0
        data = (message if parsed else loads(message))["data"]
        baseline_apply(bids, asks, data)
        top = bids.items()[-DEPTH:], asks.items()[:DEPTH]
        if timer:
            per_diff.append(timer() - t0)
    del top
    return elapsed(start), per_diff, (bids, asks)


def time_top20(capture: Capture) -> dict[str, float]:
    """Top-20 extraction on the final spot book, right after a change of the best bid."""
    sync = synced(capture)
    for raw, now in capture.timed:
        sync.on_diff(parse_depth(raw), now)  # type: ignore[arg-type]
    book = sync.book
    assert isinstance(book, FastBook)
    best = book.best_bid()
    assert best is not None
    price = f"{best[0]:.8f}".encode()
    # two one-level diffs that alternate the best bid's quantity: every apply changes the top
    changes: list[ParsedDiff] = []
    for qty in (b"1.00000000", b"2.00000000"):
        raw = (b'{"e":"depthUpdate","E":1,"s":"X","U":1,"u":1,"b":[["' + price + b'","' + qty + b'"]],"a":[]}')
        diff = parse_depth(raw)
        assert diff is not None
        changes.append(diff)
    bids, asks = np.zeros((DEPTH, 2)), np.zeros((DEPTH, 2))
    apply, top, a, b = book.apply_diff, book.top, changes[0], changes[1]
    rounds = TOP_CALLS // 2
    start = time.perf_counter()
    for _ in range(rounds):
        apply(a)
        top(DEPTH, bids, asks)
        apply(b)
        top(DEPTH, bids, asks)
    with_top = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(rounds):
        apply(a)
        apply(b)
    without_top = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(TOP_CALLS):
        top(DEPTH, bids, asks)
    top_only = time.perf_counter() - start
    sd_bids, sd_asks = baseline_book(capture)
    start = time.perf_counter()
    for _ in range(TOP_CALLS // 10):
        sd_bids.items()[-DEPTH:], sd_asks.items()[:DEPTH]
    sortedict_top = time.perf_counter() - start
    return {
        "after_change_us": max(with_top - without_top, 0.0) / TOP_CALLS * 1e6,
        "settled_us": top_only / TOP_CALLS * 1e6,
        "sorteddict_slice_us": sortedict_top / (TOP_CALLS // 10) * 1e6,
    }


def summarise(capture: Capture, runs: list[Run]) -> dict[str, float]:
    untimed, timed = runs[: len(runs) // 2], runs[len(runs) // 2:]
    wall = statistics.median(run[0][0] for run in untimed)
    cpu = statistics.median(run[0][1] for run in untimed)
    per_diff = statistics.median(statistics.median(run[1]) for run in timed)
    return {
        "level_updates_per_s": capture.levels / wall,
        "level_updates_per_cpu_s": capture.levels / cpu,
        "diffs_per_s": len(capture.timed) / wall,
        "median_us_per_diff": per_diff / 1e3,
        "mean_us_per_diff": wall / len(capture.timed) * 1e6,
    }


def bench_capture(capture: Capture, repeats: int) -> dict[str, Any]:
    timer = time.perf_counter_ns
    results: dict[str, Any] = {
        "diffs": len(capture.timed),
        "level_updates": capture.levels,
        "levels_per_diff": capture.levels / len(capture.timed),
    }
    variants: dict[str, Callable[[Callable[[], int] | None], Run]] = {
        "full": lambda t: run_full(capture, t),
        "parsed": lambda t: run_parsed(capture, t),
        "book_only": lambda t: run_book_only(capture, t),
        "baseline_full": lambda t: run_baseline(capture, False, t),
        "baseline_parsed": lambda t: run_baseline(capture, True, t),
    }
    runs: dict[str, list[Run]] = {name: [] for name in variants}
    for name, run in variants.items():
        run(None)  # warm-up
    for with_timer in (None, timer):  # interleaved, so that noise hits every variant alike
        for _ in range(repeats):
            for name, run in variants.items():
                runs[name].append(run(with_timer))
    for name in variants:
        results[name] = summarise(capture, runs[name])
    for ours, theirs in (("full", "baseline_full"), ("parsed", "baseline_parsed")):
        results[f"{ours}_vs_baseline"] = results[ours]["level_updates_per_s"] / results[theirs]["level_updates_per_s"]
        results[f"{ours}_vs_baseline_cpu"] = (results[ours]["level_updates_per_cpu_s"]
                                              / results[theirs]["level_updates_per_cpu_s"])
    results["checks"] = final_checks(runs["full"][-1][2], runs["baseline_full"][-1][2])
    return results


def final_checks(sync: BookSync, baseline: tuple[SortedDict, SortedDict]) -> dict[str, Any]:
    """Where the sync ended, and whether the book's top 20, inside the prices it still knows exactly,
    equals the unpruned baseline's (a sanity check of the benchmark, not a proof)."""
    book = sync.book
    assert isinstance(book, FastBook)
    bid_floor, ask_ceiling = book.coverage()
    bids, asks = book.levels()
    sd_bids, sd_asks = baseline
    known_bids = [level for level in bids[:DEPTH] if level[0] >= bid_floor]
    known_asks = [level for level in asks[:DEPTH] if level[0] <= ask_ceiling]
    same = (known_bids == list(reversed(sd_bids.items()[-len(known_bids):])) if known_bids else True) and (
        known_asks == list(sd_asks.items()[: len(known_asks)]))
    counters = sync.counters()
    return {"state": sync.state.name, "gaps": counters.gaps, "resyncs": counters.resyncs,
            "covers_depth": book.covers(DEPTH), "known_top_levels": [len(known_bids), len(known_asks)],
            "known_top_equals_baseline": same}


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu": model,
            "cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per variant (median)")
    parser.add_argument("--capture", action="append", choices=sorted(CAPTURES), help="default: all three")
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"machine": machine(), "depth": DEPTH, "repeats": args.repeats, "captures": {}}
    for name in args.capture or list(CAPTURES):
        capture = load_capture(args.data / name, CAPTURES[name])
        report["captures"][name] = bench_capture(capture, args.repeats)
        if CAPTURES[name] is SequenceRule.SPOT:
            report["captures"][name]["top20"] = time_top20(capture)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
