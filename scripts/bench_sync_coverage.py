"""Snapshot size vs coverage loss, offline, on the genuine captures: a static limit beside the ladder.

Each capture (shared/data/binance) is replayed through ``BookSync`` on its recorded clock at depth 20.
The first snapshot is the capture's own, cut to the first limit asked for; every later request is
answered ``--rtt-s`` seconds (capture time) after it was made with a plain replay's book as it was half
way (when the exchange took the snapshot), cut to the requested limit: the diffs of the second half
are already applied to the live book when the answer arrives, as on a real connection. Ticks every
``TICK_S``. Printed as JSON per capture and configuration: diffs applied while the published top was
not known exactly (state not SYNCED), snapshot requests, their total request weight, the cold-start
weight (the first request), audits and their faults (must be 0), and bookTicker mismatches while SYNCED
(must be 0), and the state once the stream went idle with the answers still due delivered (SYNCED: a
refresh at the book's own id joins without waiting for a diff); then each ladder figure as a ratio of the static baseline measured in the same run.

    .venv/bin/python scripts/bench_sync_coverage.py [--rtt-s 0.25] [--depth 20]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

import ldc._fastbook as fastbook
from ldc.depth import DepthSnapshot
from ldc.sync import TICK, BookSync, FetchSnapshot, SnapshotPurpose, SnapshotResult, SyncConfig, SyncState
from ldc.venues import binance
from ldc.venues.binance import Exchange, parse_snapshot
from ldc.sim.replay import captures_dir

DATA = captures_dir()
CAPTURES = {
    "spot": (("spot_btcusdt_20240808.gz", "spot_btcusdt_20240809.gz"), "binance.com"),
    "usdm": (("usdm_btcusdt_20240808.gz",), "binance.com-futures"),
    "coinm": (("coinm_btcusd_perp_20240808.gz",), "binance.com-coin_futures"),
}
RECORDED_SNAPSHOT_LIMIT = 1000  # the captures' snapshots hold 1000 levels per side
DEFAULT_RTT_S = 0.25  # request to answer of one snapshot, queueing in the weight governor excluded
TICK_S = 1.0
NS_PER_S = 1_000_000_000


@dataclass
class Capture:
    events: list[tuple[float, bytes | DepthSnapshot]] = field(default_factory=list)  # (capture time s, event)
    tickers: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)


def load(names: tuple[str, ...]) -> Capture:
    capture = Capture()
    for name in names:
        with gzip.open(DATA / name, "rb") as lines:
            for line in lines:
                stamp, raw = line.rstrip(b"\n").split(b" ", 1)
                head = raw[:48]
                t = int(stamp) / NS_PER_S
                if head.startswith(b'{"lastUpdateId"'):
                    capture.events.append((t, parse_snapshot(raw, RECORDED_SNAPSHOT_LIMIT)))
                elif b"@depth" in head:
                    capture.events.append((t, raw))
                elif b"@bookTicker" in head:
                    d = orjson.loads(raw)["data"]
                    capture.tickers[d["u"]] = (float(d["b"]), float(d["B"]), float(d["a"]), float(d["A"]))
    return capture


class Truth:
    """The plain replay: the recorded snapshot, then every diff it does not contain, no pruning."""

    def __init__(self, futures: bool) -> None:
        self.futures = futures
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.update_id = -1
        self.early: list[Any] = []

    def load(self, snapshot: DepthSnapshot) -> None:
        self.bids, self.asks, self.update_id = dict(snapshot.bids), dict(snapshot.asks), snapshot.last_update_id
        for diff in self.early:
            self.apply(diff)

    def apply(self, diff: Any) -> None:
        if self.update_id < 0:
            self.early.append(diff)
            return
        if diff.final_id < self.update_id or (not self.futures and diff.final_id == self.update_id):
            return
        for side, levels in ((self.bids, diff.bids), (self.asks, diff.asks)):
            for price, qty in levels:
                if qty == 0.0:
                    side.pop(price, None)
                else:
                    side[price] = qty
        self.update_id = diff.final_id

    def snapshot(self, limit: int) -> DepthSnapshot:
        bids = sorted(self.bids.items(), reverse=True)[:limit]
        asks = sorted(self.asks.items())[:limit]
        return DepthSnapshot(self.update_id, bids, asks, limit)


@dataclass
class Request:
    action: FetchSnapshot
    taken_at: float  # capture time the exchange takes the snapshot
    due: float  # capture time the answer arrives
    snapshot: DepthSnapshot | None = None


def run(capture: Capture, venue: Exchange, depth: int, ladder: tuple[int, ...], rtt_s: float) -> dict[str, Any]:
    futures = venue.sequence_rule.name == "FUTURES"
    config = SyncConfig(rule=venue.sequence_rule, depth=depth, snapshot_limit=ladder[0], escalation_limits=ladder[1:],
                        refresh_interval_s=None, stale_after_s=1e9)  # fmt: skip
    sync = BookSync("CAPTURE", lambda: fastbook.FastBook(depth=depth), config)
    truth = Truth(futures)
    pending: list[Request] = []  # in request order
    cold_limit: int | None = None
    weights: list[int] = []
    limits: dict[int, int] = {}
    uncovered = mismatches = 0
    next_tick = None

    def carry_out(actions: tuple[Any, ...], t: float) -> None:
        nonlocal cold_limit
        for action in actions:
            if type(action) is FetchSnapshot:
                weights.append(venue.snapshot_weight(action.limit))
                limits[action.limit] = limits.get(action.limit, 0) + 1
                if cold_limit is None:
                    cold_limit = action.limit  # the cold start: answered by the capture's own snapshot
                else:
                    pending.append(Request(action, taken_at=t + rtt_s / 2, due=t + rtt_s))

    for t, event in capture.events:
        for request in pending:
            if request.snapshot is None and request.taken_at <= t:
                request.snapshot = truth.snapshot(request.action.limit)
        while pending and pending[0].due <= t:
            request = pending.pop(0)
            answer = request.snapshot or truth.snapshot(request.action.limit)
            carry_out(sync.feed(SnapshotResult(answer, request.action.purpose), request.due), request.due)
        if next_tick is None or t >= next_tick:
            carry_out(sync.feed(TICK, t), t)
            next_tick = t + TICK_S
        if isinstance(event, DepthSnapshot):
            truth.load(event)
            assert cold_limit is not None
            cut = DepthSnapshot(event.last_update_id, event.bids[:cold_limit], event.asks[:cold_limit], cold_limit)
            carry_out(sync.feed(SnapshotResult(cut, SnapshotPurpose.LIVE), t), t)
            continue
        diff = fastbook.parse_depth(event)
        assert diff is not None
        truth.apply(diff)
        carry_out(sync.on_diff(diff, t), t)  # type: ignore[arg-type]  # ParsedDiff has DepthDiff's attributes
        if sync.book is None:
            continue
        if sync.state is not SyncState.SYNCED:
            uncovered += 1
        elif diff.final_id in capture.tickers and sync.update_id == diff.final_id:
            bid, ask = sync.book.best_bid(), sync.book.best_ask()
            mismatches += (*bid, *ask) != capture.tickers[diff.final_id]  # type: ignore[misc]
    state_at_end = sync.state.name
    # the stream goes idle: the answers still due come at the book's own id and must join at once
    while pending:
        request = pending.pop(0)
        answer = request.snapshot or truth.snapshot(request.action.limit)
        carry_out(sync.feed(SnapshotResult(answer, request.action.purpose), request.due), request.due)
    counters = sync.counters()
    return {
        "ladder": list(ladder),
        "diffs_uncovered": uncovered,
        "snapshots": len(weights),
        "weight": sum(weights),
        "cold_start_weight": weights[0],
        "requests_by_limit": {str(k): v for k, v in sorted(limits.items())},
        "escalations": counters.limit_escalations,
        "audits": counters.audits,
        "audit_faults": counters.audit_faults,
        "audit_differences": counters.audit_differences,
        "gaps": counters.gaps,
        "book_ticker_mismatches_while_synced": mismatches,
        "state_at_last_diff": state_at_end,
        "state_once_idle": sync.state.name,  # SYNCED: no refresh waits for a diff that will not come
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtt-s", type=float, default=DEFAULT_RTT_S)
    parser.add_argument("--depth", type=int, default=20)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"depth": args.depth, "rtt_s": args.rtt_s, "captures": {}}
    for name, (files, exchange_name) in CAPTURES.items():
        venue = binance.exchange(exchange_name)
        capture = load(files)
        ladder = tuple(tier.limit for tier in binance.snapshot_ladder(venue, args.depth))
        runs: dict[str, Any] = {"static_baseline": run(capture, venue, args.depth, ladder[:1], args.rtt_s),
                "ladder": run(capture, venue, args.depth, ladder, args.rtt_s)}  # fmt: skip
        for limit in ladder[1:]:
            runs[f"static_{limit}"] = run(capture, venue, args.depth, (limit,), args.rtt_s)
        base, adaptive = runs["static_baseline"], runs["ladder"]
        runs["ladder_vs_baseline"] = {
            key: round(adaptive[key] / base[key], 3) if base[key] else None
            for key in ("diffs_uncovered", "snapshots", "weight", "cold_start_weight")
        }
        runs["span_s"] = round(capture.events[-1][0] - capture.events[0][0], 1)
        results["captures"][name] = runs
    json.dump(results, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
