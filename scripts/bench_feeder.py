#!/usr/bin/env python3
"""End-to-end benchmark of one feeder process (``ldc feed``); prints JSON.

Three processes per run: the simulator (``ldc sim``) replaying Binance's genuine spot captures (the two
BTCUSDT files, the second continuing the first: 6,495 diffs) as pre-encoded frames, the feeder under test
(``ldc feed CONFIG --group G``, unchanged, depth 20), and this process as a reader of its segment.
Medians over ``--repeats`` runs:

- ``throughput``: the captures replayed as fast as the feeder reads (``--replay-pace client``) for 1 and
  10 markets (renamed copies). Diff messages and level updates per second from frame in to slot published
  (wall), and the feeder's CPU per diff (its process CPU clock, read once it is idle again at the end), over
  the interval from "every market's snapshot joined" to "every market on the captures' last update id".
  Diffs older than the snapshot (the simulator runs ahead by the socket buffers) are skipped cheaply and
  fall outside it. ``busy_fraction`` = feeder CPU / wall: below 1 the feeder waited for frames. At the end
  every market's published top 20 is compared with the simulator's book at the same update id.
- ``source``: the simulator's own send rate for the same replay into a raw-socket reader that only counts
  frames, in the same run; and ``source_snapshot_s``, its time to answer one REST snapshot at the end of
  the replay: it walks its replay book forward on its one event loop and sends nothing meanwhile (a few
  ms since the replay keeps one known book per capture; it was ~1 s), so a slow answer would stall the
  replay and the wall rate would measure the simulator (``busy_fraction`` says how much: ~0.95 now); the
  CPU figure is the feeder's alone either way.
- ``latency``: receive-to-publish (the slot's ``publish_time_ns - recv_time_ns``) at ~5,000 diffs/s
  (10 markets at 50x the recorded pace), for every diff publish this reader catches while polling.
- ``cold_start``: 500 generated markets synced, from the feeder's spawn, against the time the weight
  budget allows: ``(ceil(W / B) - 1) * T`` for W = exchangeInfo + 500 snapshots and B the budget per window
  T. The window is shortened to seconds in both the simulator and the feeder's governor
  (bench_feeder_procs.py), so the bound is seconds, not minutes; ``overhead_s`` (measured - bound: process
  start, the last window's round trips and first diffs) does not scale with the window, so the ratio at
  Binance's 60 s window is 1 + overhead_s / (bound_s * 60 / window_s).

Targets (issue 8): >= 90,000 spot diffs per CPU-second; p99 receive-to-publish <= 200 us; cold start
<= 1.2x the weight bound. Peers (reference/binance-and-peers.md §4, same kind of replay): cryptofeed
17,300 and ccxt 18,200 diffs per CPU-second. The host is shared and noisy: the load average is printed.

- ``tls`` (with ``--tls``): the throughput and latency runs again over TLS (``ldc sim --tls``; the feeder's
  group trusts the simulator's CA with ``ca_file``, certificates and host names verified as against the
  exchange), each TLS run right after its plain twin; diffs per CPU-second with and without TLS and their
  ratio, medians. The TLS record layer (AES-GCM, in OpenSSL) and ``ssl.SSLSocket.recv_into`` are on the
  feeder's CPU, as against Binance. The latency pair is not TLS's cost: the receive stamp is taken when a
  read returns, after its record is decrypted, and a TLS read returns one record (at most 16 KB), so fewer
  frames wait behind one stamp than in a plain read (LATENCY_NOTE).

    .venv/bin/python scripts/bench_feeder.py [--repeats 3] [--quick] [--tls]
    .venv/bin/python scripts/bench_feeder.py --record [--repeats 5]   # recording off vs on (issue 17)

- ``record`` (with ``--record``, alone): the throughput run with recording off and on, alternated; the
  feeder's CPU per diff over the whole replay (every frame is recorded, those before the snapshot too),
  medians and their ratio (target <= 1.15x). The compressor is not the feeder's CPU (its own process, at
  idle priority, turning the closed spool into its .gz after the feeder stops) and is reported apart from
  what it logs: its CPU per MB of spool and per frame recorded, the deflate alone and its whole processes
  (interpreter start included), and the spool-to-gz size ratio. The recording is read back: frames,
  snapshots and files counted.
"""

from __future__ import annotations

import argparse
import bisect
import gzip
import itertools
import json
import math
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_feeder_procs import FeederProcess, SimProcess, config_text, raw_reader_rate  # noqa: E402

from ldc._fastbook import parse_depth  # noqa: E402
from ldc.errors import LayoutError, SegmentNotFound  # noqa: E402
from ldc.shm.layout import COUNTER_FIELDS, is_in_sync  # noqa: E402
from ldc.shm.reader import Reader, SnapshotBuffer  # noqa: E402
from ldc.sim.replay import captures_dir

DATA_DIR = captures_dir()
CAPTURES = (DATA_DIR / "spot_btcusdt_20240808.gz", DATA_DIR / "spot_btcusdt_20240809.gz")  # the second continues the first
SYMBOL = "BTCUSDT"
DEPTH = 20
STREAM_SUFFIX = "@depth@100ms"
# Targets and peers (issue 8; reference/binance-and-peers.md §4)
TARGET_DIFFS_PER_CPU_S = 90_000
TARGET_P99_US = 200.0
TARGET_COLD_RATIO = 1.2
PEER_DIFFS_PER_CPU_S = {"cryptofeed 2.4.1": 17_300, "ccxt 4.5.90 pro": 18_200, "python-binance 1.0.37 (queue 100k)": 9_700}
# Polling
THROUGHPUT_POLL_S = 0.0005
IDLE_SETTLE_S = 0.02  # after the last diff: the feeder blocks in recv, its CPU clock is exact again
RECORD_SETTLE_S = 0.5  # --record: the spool's writer thread writes what is pending every 0.1 s
COMPRESS_TIMEOUT_S = 120.0  # --record: the compressor (SCHED_IDLE) turns the last spool into its .gz after the feeder stops
COMPRESSED_LINE = re.compile(r"compressed \S+: (\d+) -> (\d+) bytes .*?, ([\d.]+) s CPU at (\S+) ")
COMPRESSOR_DONE = re.compile(r"compressor done: (\d+) files, ([\d.]+) s CPU for the whole process")
TARGET_RECORD_RATIO = 1.15  # issue 17: recording on costs at most 15% more CPU per diff
LATENCY_POLL_S = 0.00005  # sleeps ~0.1-0.3 ms on a loaded 2-core host
COLD_POLL_S = 0.05
RUN_TIMEOUT_S = 120.0
ATTACH_TIMEOUT_S = 30.0
# Latency run: 10 markets at 50x the recorded ~10 diffs/s each
LATENCY_MARKETS = 10
LATENCY_PACE = "x50"
LATENCY_WARMUP_S = 0.3
# Cold start
EXCHANGE_INFO_WEIGHT = 20  # spot exchangeInfo, fetched once at start to validate the symbols
SNAPSHOT_WEIGHT = 5  # spot depth limit 100 (the feeder's limit for depth 20)
SNAPSHOT_LIMIT = 100
COLD_WINDOWS = 4  # the budget covers a quarter of the weight: the bound is three windows
COLD_RATE = 5.0  # model events per second per generated market
BUDGET_FRACTION = 0.8  # the feeder's default weight_budget_fraction


@dataclass(frozen=True)
class CaptureIndex:
    """The capture's diffs in order: final update ids and cumulative level counts, to count the diffs and
    level updates between two update ids a slot showed."""

    final_ids: list[int]
    levels_before: list[int]  # levels_before[i]: level updates in diffs [0, i)

    @property
    def last_id(self) -> int:
        return self.final_ids[-1]

    def position(self, update_id: int) -> int:
        """Diffs of the capture up to and including ``update_id``."""
        return bisect.bisect_right(self.final_ids, update_id)

    def between(self, first_id: int, last_id: int) -> tuple[int, int]:
        """(diffs, level updates) with final id in (first_id, last_id]."""
        a, b = self.position(first_id), self.position(last_id)
        return b - a, self.levels_before[b] - self.levels_before[a]


def load_index(paths: tuple[Path, ...]) -> CaptureIndex:
    final_ids, levels = [], [0]
    for path in paths:
        with gzip.open(path, "rb") as f:
            for line in f:
                raw = line.rstrip(b"\n").partition(b" ")[2]
                if b'"depthUpdate"' in raw[:120]:
                    diff = parse_depth(raw)
                    assert diff is not None
                    final_ids.append(diff.final_id)
                    levels.append(levels[-1] + diff.level_count)
    return CaptureIndex(final_ids, levels)


def replay_args(pace: str, copies: int, *, tls: bool = False) -> list[str]:
    tls_arg = ["--tls"] if tls else []  # every connection TLS, the feeder trusting the simulator's CA (ca_file)
    return ["--replay", ",".join(str(p) for p in CAPTURES), "--replay-pace", pace, "--replay-copies", str(copies), *tls_arg]


# ---------------------------------------------------------------- reading the segment


def symbols_of(n: int) -> list[str]:
    return [SYMBOL] + [f"{SYMBOL}{i}" for i in range(2, n + 1)]


def streams_of(symbols: list[str]) -> list[str]:
    return [s.lower() + STREAM_SUFFIX for s in symbols]


def attach(group: str, markets: int) -> Reader:
    deadline = time.monotonic() + ATTACH_TIMEOUT_S
    while True:
        try:
            reader = Reader(group)
            if len(reader.markets()) >= markets:
                return reader
            reader.close()
        except (SegmentNotFound, LayoutError):  # not there yet, or still being made (magic written last)
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"segment of {group} with {markets} markets did not appear in {ATTACH_TIMEOUT_S} s")
        time.sleep(0.01)


class Slot(NamedTuple):
    """What one poll reads of a market (a consistent seqlock copy)."""

    update_id: int
    in_sync: bool
    recv_time_ns: int
    publish_time_ns: int
    counters: dict[str, int]

    @property
    def updates(self) -> int:
        return self.counters["updates"]


class Poller:
    """Reads markets' slots through ``Reader.read_into`` (~1 us; ``status()`` allocates, ~60 us)."""

    def __init__(self, reader: Reader, symbols: list[str]) -> None:
        self.reader, self.symbols = reader, symbols
        self._buffers = [reader.new_buffer() for _ in symbols]

    def read(self, i: int) -> Slot:
        buf = self.reader.read_into(self.symbols[i], self._buffers[i], allow_out_of_sync=True)
        return Slot(buf.update_id, is_in_sync(buf.status), buf.recv_time_ns, buf.publish_time_ns,
                    dict(zip(COUNTER_FIELDS, buf.counters)))  # fmt: skip

    def read_all(self) -> list[Slot]:
        return [self.read(i) for i in range(len(self.symbols))]


@dataclass(frozen=True)
class Sample:
    t: float  # perf_counter
    wall_ns: int  # time.time_ns(), the clock of the slots' stamps
    cpu_ns: int  # the feeder's CPU
    slots: list[Slot]

    @property
    def all_synced(self) -> bool:
        return all(s.in_sync and s.update_id > 0 for s in self.slots)

    @property
    def all_published(self) -> bool:
        """Every market's snapshot joined its diffs (INCOMPLETE while a refresh is pending still applies them)."""
        return all(s.update_id > 0 for s in self.slots)

    def all_at(self, update_id: int) -> bool:
        return all(s.update_id >= update_id for s in self.slots)


def sample(poller: Poller, feeder: FeederProcess) -> Sample:
    cpu = feeder.cpu_ns()
    return Sample(time.perf_counter(), time.time_ns(), cpu, poller.read_all())


def new_group(tag: str) -> str:
    return f"bench-feeder-{os.getpid()}-{tag}-{next(_RUNS)}"


_RUNS = itertools.count(1)


# ---------------------------------------------------------------- throughput


def run_throughput(index: CaptureIndex, markets: int, *, record: str | None = None,
                   settle_s: float = IDLE_SETTLE_S, tls: bool = False, group_keys: dict[str, object] | None = None) -> dict[str, Any]:  # fmt: skip
    """``record``: the group records into this directory (``--record``); ``settle_s``: wait this long for the
    feeder (and its recording writer, which flushes every second) to be idle before its CPU clock is read;
    ``tls``: the simulator speaks TLS and the group trusts its CA (``--tls``); ``group_keys``: more keys of
    the group's TOML table (``bench_mirror.py``: ``notify_paced_us``)."""
    symbols = symbols_of(markets)
    group = new_group(f"tp{markets}")
    sim_args = replay_args("client", markets, tls=tls)
    keys: dict[str, object] = {"depth": DEPTH, **(group_keys or {})}
    if record is not None:
        keys["record"] = f'"{record}"'
    with SimProcess(sim_args) as sim, FeederProcess(group, config_text(group, sim, symbols, **keys)) as feeder:
        reader = attach(group, markets)
        attached_cpu_ns = feeder.cpu_ns()  # markets added, connections not yet open: before the first frame
        try:
            samples = poll_until(reader, symbols, feeder, lambda s: s.all_at(index.last_id), THROUGHPUT_POLL_S)
            time.sleep(settle_s)
            idle_cpu_ns = feeder.cpu_ns()
            books = final_books(reader, sim, symbols)
        finally:
            reader.close()
        feeder.stop()
        compressor = compressor_figures(feeder, record) if record is not None else {}
    start = next(s for s in samples if s.all_published)
    end = samples[-1]
    diffs = levels = 0
    for a, b in zip(start.slots, end.slots):
        d, lv = index.between(a.update_id, b.update_id)
        diffs, levels = diffs + d, levels + lv
    publishes = sum(b.counters["updates"] - a.counters["updates"] for a, b in zip(start.slots, end.slots))
    wall = (max(s.publish_time_ns for s in end.slots) - start.wall_ns) / 1e9
    cpu = (idle_cpu_ns - start.cpu_ns) / 1e9
    whole_cpu = feeder.rusage.ru_utime + feeder.rusage.ru_stime
    return {
        "diffs": diffs,
        "publishes": publishes,
        "wall_s": wall,
        "diffs_per_s": diffs / wall,
        "levels_per_s": levels / wall,
        "cpu_us_per_diff": cpu / diffs * 1e6,
        # every frame of the replay, the ones before the snapshot too: what a per-frame cost (recording) adds to
        "replay_cpu_us_per_diff": (idle_cpu_ns - attached_cpu_ns) / 1e3 / (len(index.final_ids) * markets),
        "busy_fraction": cpu / wall,  # below 1: the feeder waited for frames (e.g. the simulator answering a snapshot)
        "diffs_per_cpu_s": diffs / cpu,
        "whole_process_cpu_s": whole_cpu,
        "whole_process_diffs_per_cpu_s": len(index.final_ids) * markets / whole_cpu,
        "resyncs": sum(s.counters["resyncs"] for s in end.slots),
        "gaps": sum(s.counters["gaps"] for s in end.slots),
        "snapshots": sum(s.counters["snapshots"] for s in end.slots),
        "ignored": sum(s.counters["ignored"] for s in end.slots),
        "final_books": books,
        "exit_status": feeder.returncode,
        "compressor": compressor,
    }


def compressor_figures(feeder: FeederProcess, directory: str) -> dict[str, Any]:
    """Wait for the compressor processes the feeder started (the last at its close) to leave no spool, and
    add up what they logged: bytes in and out and their CPU, apart from the feeder's (their own processes)."""
    deadline = time.monotonic() + COMPRESS_TIMEOUT_S
    while any(p.name.endswith((".spool", ".part")) for d in Path(directory).iterdir() for p in d.iterdir()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"spools still in {directory} {COMPRESS_TIMEOUT_S} s after the feeder stopped")
        time.sleep(0.05)
    time.sleep(0.2)  # the "compressor done" line follows the last file's
    lines = feeder.log_lines()
    files = [COMPRESSED_LINE.search(line) for line in lines]
    done = [COMPRESSOR_DONE.search(line) for line in lines]
    spool = sum(int(m.group(1)) for m in files if m)
    return {"spool_bytes": spool, "gz_bytes": sum(int(m.group(2)) for m in files if m),
            "compress_cpu_s": sum(float(m.group(3)) for m in files if m),
            "process_cpu_s": sum(float(m.group(2)) for m in done if m),  # interpreter start included
            "processes": sum(1 for m in done if m), "priority": sorted({m.group(4) for m in files if m})}  # fmt: skip


def poll_until(reader: Reader, symbols: list[str], feeder: FeederProcess, done: Callable[[Sample], bool],
               period_s: float) -> list[Sample]:  # fmt: skip
    poller = Poller(reader, symbols)
    samples = []
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        s = sample(poller, feeder)
        samples.append(s)
        if done(s):
            return samples
        if time.monotonic() > deadline or feeder.proc.poll() is not None:
            tail = "\n".join(feeder.log_lines()[-10:])
            raise RuntimeError(f"feeder did not finish within {RUN_TIMEOUT_S} s; ids {[x.update_id for x in s.slots]}\n{tail}")
        time.sleep(period_s)


def final_books(reader: Reader, sim: SimProcess, symbols: list[str]) -> dict[str, Any]:
    """Every market's published top DEPTH against the simulator's book at the same update id. A market
    flagged INCOMPLETE (its snapshot no longer covers DEPTH levels, a refresh pending) may have holes: a
    difference there is counted apart ("differ_flagged"); only a difference in a book marked in sync is wrong."""
    tally: dict[str, Any] = {"equal": 0, "equal_incomplete": 0, "differ": 0, "differ_flagged": 0}
    for symbol in symbols:
        snap = reader.snapshot(symbol, DEPTH, allow_out_of_sync=True)
        query: dict[str, str | int] = {"symbol": symbol, "update_id": snap.update_id, "limit": DEPTH}
        truth = requests.get(f"{sim.urls['rest']}/_sim/book", params=query, timeout=10, verify=sim.verify).json()
        bids, asks = snap.bids.tolist(), snap.asks.tolist()
        true_bids = [[float(p), float(q)] for p, q in truth["bids"]][: len(bids)]
        true_asks = [[float(p), float(q)] for p, q in truth["asks"]][: len(asks)]
        complete = len(bids) == len(asks) == DEPTH
        if truth["update_id"] != snap.update_id or bids != true_bids or asks != true_asks:
            key = "differ" if snap.in_sync else "differ_flagged"
            tally[key] += 1
            tally.setdefault(f"first_{key}", _difference(symbol, snap, truth, bids, true_bids, asks, true_asks))
        else:
            tally["equal" if complete and snap.in_sync else "equal_incomplete"] += 1
    return tally


def final_tally(books: list[dict[str, Any]]) -> dict[str, Any]:
    tally: dict[str, Any] = {k: sum(b[k] for b in books) for k in ("equal", "equal_incomplete", "differ", "differ_flagged")}
    for key in ("first_differ", "first_differ_flagged"):
        firsts = [b[key] for b in books if key in b]
        if firsts:
            tally[key] = firsts[0]
    return tally


def _difference(symbol: str, snap: Any, truth: dict[str, Any], *sides: list[list[float]]) -> str:
    bids, true_bids, asks, true_asks = sides
    for side, ours, theirs in (("bid", bids, true_bids), ("ask", asks, true_asks)):
        for i, (a, b) in enumerate(itertools.zip_longest(ours, theirs)):
            if a != b:
                return f"{symbol} at update id {snap.update_id} (truth {truth['update_id']}, status {snap.status!r}): {side} {i} is {a}, expected {b}"
    return f"{symbol}: update id {snap.update_id}, truth {truth['update_id']}"


def run_source(index: CaptureIndex, markets: int, *, tls: bool = False) -> dict[str, float]:
    """The simulator's send rate into a reader that only counts frames; then the time it takes to answer a
    REST snapshot at the end of the replay (it walks its replay book forward for a snapshot on its one event loop
    and sends nothing meanwhile, as during the feeder's syncs and refreshes)."""
    symbols = symbols_of(markets)
    with SimProcess(replay_args("client", markets, tls=tls)) as sim:
        result = raw_reader_rate(sim.port, streams_of(symbols), len(index.final_ids) * markets, RUN_TIMEOUT_S, ca_file=sim.ca_file)
        start = time.perf_counter()
        query: dict[str, str | int] = {"symbol": symbols[0], "limit": SNAPSHOT_LIMIT}
        requests.get(f"{sim.urls['rest']}/api/v3/depth", params=query, timeout=RUN_TIMEOUT_S, verify=sim.verify)
        result["snapshot_s"] = time.perf_counter() - start
        return result


# ---------------------------------------------------------------- latency


def run_latency(seconds: float, *, tls: bool = False) -> dict[str, Any]:
    symbols = symbols_of(LATENCY_MARKETS)
    group = new_group("lat")
    sim_args = replay_args(LATENCY_PACE, LATENCY_MARKETS, tls=tls)
    with SimProcess(sim_args) as sim, FeederProcess(group, config_text(group, sim, symbols, depth=DEPTH)) as feeder:
        reader = attach(group, LATENCY_MARKETS)
        try:
            poll_until(reader, symbols, feeder, lambda s: s.all_synced, COLD_POLL_S)
            time.sleep(LATENCY_WARMUP_S)
            result = sample_latency(reader, symbols, feeder, seconds)
        finally:
            reader.close()
        feeder.stop()
    return result


def sample_latency(reader: Reader, symbols: list[str], feeder: FeederProcess, seconds: float) -> dict[str, Any]:
    """publish - receive of every diff publish caught; a publish that reuses the receive time already seen
    (the book republished after a snapshot, not a diff) is not a receive-to-publish sample."""
    poller = Poller(reader, symbols)
    markets = range(len(symbols))
    slots = [poller.read(i) for i in markets]
    last, last_recv = [s.updates for s in slots], [s.recv_time_ns for s in slots]
    first = list(last)
    latencies: list[int] = []
    start, cpu0 = time.perf_counter(), feeder.cpu_ns()
    while time.perf_counter() - start < seconds:
        for i in markets:
            slot = poller.read(i)
            if slot.updates != last[i]:
                last[i] = slot.updates
                if slot.recv_time_ns != last_recv[i]:
                    last_recv[i] = slot.recv_time_ns
                    latencies.append(slot.publish_time_ns - slot.recv_time_ns)
        time.sleep(LATENCY_POLL_S)
    elapsed, cpu = time.perf_counter() - start, (feeder.cpu_ns() - cpu0) / 1e9
    published = sum(last) - sum(first)
    latencies.sort()
    return {
        "publishes_per_s": published / elapsed,
        "sampled": len(latencies),
        "sampled_fraction": len(latencies) / max(1, published),
        "p50_us": percentile(latencies, 0.50) / 1e3,
        "p99_us": percentile(latencies, 0.99) / 1e3,
        "max_us": latencies[-1] / 1e3 if latencies else float("nan"),
        "over_200_us_fraction": sum(1 for v in latencies if v > TARGET_P99_US * 1e3) / max(1, len(latencies)),
        "feeder_cpu_fraction": cpu / elapsed,
    }


def percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return float(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))])


# ---------------------------------------------------------------- cold start


@dataclass(frozen=True)
class WeightPlan:
    markets: int
    window_s: float
    weight: int  # exchangeInfo + one snapshot per market
    budget: int  # per window: what the feeder may spend
    limit: int  # per window: the simulator's limit (budget = limit * BUDGET_FRACTION)

    @property
    def bound_s(self) -> float:
        """The earliest the last snapshot can be sent when any window of T holds at most B."""
        return (math.ceil(self.weight / self.budget) - 1) * self.window_s


def weight_plan(markets: int, window_s: float) -> WeightPlan:
    weight = EXCHANGE_INFO_WEIGHT + markets * SNAPSHOT_WEIGHT
    budget = math.ceil(weight / COLD_WINDOWS)
    limit = math.ceil(budget / BUDGET_FRACTION)
    while int(limit * BUDGET_FRACTION) < budget:
        limit += 1
    return WeightPlan(markets, window_s, weight, int(limit * BUDGET_FRACTION), limit)


def run_cold_start(plan: WeightPlan) -> dict[str, Any]:
    sim_args = ["--markets", str(plan.markets), "--rate", str(COLD_RATE), "--weight-limit", str(plan.limit),
                "--weight-window-s", str(plan.window_s)]  # fmt: skip
    with SimProcess(sim_args) as sim:
        symbols = sim.urls["markets"]["spot"]
        group = new_group("cold")
        config = config_text(group, sim, symbols, depth=DEPTH, weight_limit_per_min=plan.limit,
                             capacity=2 * len(symbols))  # fmt: skip
        with FeederProcess(group, config, window_ms=int(plan.window_s * 1000)) as feeder:
            reader = attach(group, len(symbols))
            try:
                samples = poll_until(reader, symbols, feeder, lambda s: s.all_synced, COLD_POLL_S)
            finally:
                reader.close()
            measured = samples[-1].t - feeder.started
            startup = samples[0].t - feeder.started  # spawn to a segment holding every market (imports, config)
            feeder.stop()
        counters = sim.stats()["counters"]
    return {
        "measured_s": measured,
        "ratio": measured / plan.bound_s,
        "overhead_s": measured - plan.bound_s,  # what the window length does not scale: startup, last round trips
        "startup_s": startup,
        "ratio_after_startup": (measured - startup) / plan.bound_s,
        "snapshots_served": counters.get("snapshots", 0),
        "rest_429": counters.get("rest_429", 0),
        "rest_418": counters.get("rest_418", 0),
    }


# ---------------------------------------------------------------- report


def run_record_comparison(index: CaptureIndex, markets: int, repeats: int) -> dict[str, Any]:
    """Recording off and on, alternated, the same settle time for both; the recording is read back and its
    frames counted. The feeder's CPU per diff is compared; the compressor's (a process of its own, at idle
    priority, after the spool is closed) is reported apart, per MB of spool and per diff recorded."""
    from ldc.record import read_recording, recording_files

    off, on, recorded = [], [], []
    for _ in range(repeats):
        off.append(run_throughput(index, markets, settle_s=RECORD_SETTLE_S))
        with tempfile.TemporaryDirectory(prefix="ldc-bench-record-") as directory:
            on.append(run_throughput(index, markets, record=directory, settle_s=RECORD_SETTLE_S))
            files = [f for d in Path(directory).iterdir() for f in recording_files(str(d))]
            lines = [line for f in files for line in read_recording(f).lines]
            recorded.append({"files": [Path(f).suffix for f in files],
                             "frames": sum(1 for _, p in lines if p.startswith(b'{"stream"')),
                             "snapshots": sum(1 for _, p in lines if p.startswith(b'{"rest"')),
                             "compressed_bytes": sum(os.path.getsize(f) for f in files)})  # fmt: skip
    keys = ["replay_cpu_us_per_diff", "cpu_us_per_diff", "diffs_per_cpu_s", "diffs_per_s", "diffs"]
    med_off, med_on = median_of(off, keys), median_of(on, keys)
    metric = "replay_cpu_us_per_diff"  # the recording copies every frame, not only those after the snapshot
    return {
        "off": {**med_off, "runs_replay_cpu_us_per_diff": [round(r[metric], 2) for r in off]},
        "on": {**med_on, "runs_replay_cpu_us_per_diff": [round(r[metric], 2) for r in on]},
        "cpu_per_diff_ratio_on_off": round(med_on[metric] / med_off[metric], 3),
        "pair_ratios": [round(b[metric] / a[metric], 3) for a, b in zip(off, on)],
        "recorded": recorded,
        "compressor": compressor_summary([r["compressor"] for r in on], [r["frames"] for r in recorded]),
        "final_books_on": final_tally([r["final_books"] for r in on]),
        "target_ratio": TARGET_RECORD_RATIO,
    }


def compressor_summary(runs: list[dict[str, Any]], frames: list[int]) -> dict[str, Any]:
    """The compressor's CPU, medians over the runs: per MB of spool and per frame recorded (the deflate
    alone, and its whole processes with their interpreter start), and the size ratio."""
    return {
        "cpu_ms_per_spool_mb": _round(statistics.median(r["compress_cpu_s"] * 1e3 / (r["spool_bytes"] / 1e6) for r in runs)),
        "cpu_us_per_frame": _round(statistics.median(r["compress_cpu_s"] / f * 1e6 for r, f in zip(runs, frames))),
        "process_cpu_us_per_frame": _round(statistics.median(r["process_cpu_s"] / f * 1e6 for r, f in zip(runs, frames))),
        "spool_to_gz_ratio": _round(statistics.median(r["spool_bytes"] / r["gz_bytes"] for r in runs)),
        "runs": runs,
    }


def median_of(runs: list[dict[str, Any]], keys: list[str]) -> dict[str, Any]:
    return {k: _round(statistics.median(r[k] for r in runs)) for k in keys}


def _round(value: float) -> float:
    if isinstance(value, int) or abs(value) >= 100:
        return round(value)
    return round(value, 2)


TP_KEYS = ["diffs_per_s", "levels_per_s", "cpu_us_per_diff", "diffs_per_cpu_s", "busy_fraction", "wall_s", "diffs",
           "whole_process_diffs_per_cpu_s"]  # fmt: skip
LATENCY_KEYS = ["publishes_per_s", "p50_us", "p99_us", "max_us", "over_200_us_fraction", "sampled", "sampled_fraction", "feeder_cpu_fraction"]


def throughput_summary(runs: list[dict[str, Any]], sources: list[dict[str, float]]) -> dict[str, Any]:
    med = median_of(runs, TP_KEYS)
    source_rate = statistics.median(s["frames_per_s"] for s in sources)
    return {
        **med,
        "runs_diffs_per_cpu_s": [round(r["diffs_per_cpu_s"]) for r in runs],
        "source_frames_per_s": round(source_rate),
        "source_to_feeder_wall_ratio": round(source_rate / med["diffs_per_s"], 2),
        "source_to_feeder_cpu_ratio": round(source_rate / med["diffs_per_cpu_s"], 2),
        "source_snapshot_s": round(statistics.median(s["snapshot_s"] for s in sources), 3),
        "snapshots": max(r["snapshots"] for r in runs),
        "resyncs": max(r["resyncs"] for r in runs),
        "gaps": max(r["gaps"] for r in runs),
        "final_books": final_tally([r["final_books"] for r in runs]),
        "exit_status": sorted({r["exit_status"] for r in runs}),
    }


def latency_summary(runs: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    return {"markets": LATENCY_MARKETS, "pace": LATENCY_PACE, "seconds": seconds, **median_of(runs, LATENCY_KEYS),
            "runs_p99_us": [round(r["p99_us"]) for r in runs]}  # fmt: skip


LATENCY_NOTE = "receive stamped after decryption; a TLS read returns one record, fewer frames per stamp: not the cost of TLS"


def tls_comparison(plain: dict[str, Any], tls: dict[str, Any], plain_latency: dict[str, Any], tls_latency: dict[str, Any]) -> dict[str, Any]:
    """TLS against plain, medians of runs interleaved in this one run (the host's load drifts alike for both)."""
    out: dict[str, Any] = {}
    for key, with_tls in tls.items():
        without = plain[key]
        out[key] = {
            "diffs_per_cpu_s": {"plain": without["diffs_per_cpu_s"], "tls": with_tls["diffs_per_cpu_s"],
                                "tls_to_plain": round(with_tls["diffs_per_cpu_s"] / without["diffs_per_cpu_s"], 2)},
            "cpu_us_per_diff": {"plain": without["cpu_us_per_diff"], "tls": with_tls["cpu_us_per_diff"],
                                "tls_extra_us": round(with_tls["cpu_us_per_diff"] - without["cpu_us_per_diff"], 2)},
            "runs_diffs_per_cpu_s": {"plain": without["runs_diffs_per_cpu_s"], "tls": with_tls["runs_diffs_per_cpu_s"]},
            "tls_detail": with_tls,
        }  # fmt: skip
    out["latency"] = {k: {"plain": plain_latency[k], "tls": tls_latency[k]} for k in ("p50_us", "p99_us", "feeder_cpu_fraction")}
    out["latency"]["runs_p99_us"] = {"plain": plain_latency["runs_p99_us"], "tls": tls_latency["runs_p99_us"]}
    out["latency"]["note"] = LATENCY_NOTE
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (default 3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repeat, 2 markets, short latency, 50-market cold start")
    parser.add_argument("--record", action="store_true", help="only: CPU per diff with recording off vs on, alternated")
    parser.add_argument("--tls", action="store_true", help="also every throughput and latency run over TLS (ldc sim --tls, the feeder "
                        "trusting its CA), interleaved with the plain ones; the comparison is under \"tls\"")
    args = parser.parse_args()
    repeats = 1 if args.quick else max(1, args.repeats)
    many = 2 if args.quick else 10
    if args.record:
        index = load_index(CAPTURES)
        load_start = round(os.getloadavg()[0], 2)
        record = {f"{m}_markets": run_record_comparison(index, m, repeats) for m in (1, many)}
        print(json.dumps({"load_avg_1m": [load_start, round(os.getloadavg()[0], 2)], "repeats": repeats,
                          "capture_diffs": len(index.final_ids), "record": record}, indent=2))  # fmt: skip
        return 0
    cold_markets, window_s = (50, 1.2) if args.quick else (500, 3.0)  # window ms a multiple of the governor's 60 buckets
    latency_s = 1.0 if args.quick else 3.0
    modes = (False, True) if args.tls else (False,)

    load_start = round(os.getloadavg()[0], 2)
    index = load_index(CAPTURES)
    throughput: dict[str, dict[str, Any]] = {}
    tls_throughput: dict[str, dict[str, Any]] = {}
    for markets in (1, many):
        runs: dict[bool, list[dict[str, Any]]] = {tls: [] for tls in modes}
        sources: dict[bool, list[dict[str, float]]] = {tls: [] for tls in modes}
        for _ in range(repeats):
            for tls in modes:
                runs[tls].append(run_throughput(index, markets, tls=tls))
                sources[tls].append(run_source(index, markets, tls=tls))
        throughput[f"{markets}_markets"] = throughput_summary(runs[False], sources[False])
        if args.tls:
            tls_throughput[f"{markets}_markets"] = throughput_summary(runs[True], sources[True])
    latency_runs: dict[bool, list[dict[str, Any]]] = {tls: [] for tls in modes}
    for _ in range(repeats):
        for tls in modes:
            latency_runs[tls].append(run_latency(latency_s, tls=tls))
    plan = weight_plan(cold_markets, window_s)
    cold_runs = [run_cold_start(plan) for _ in range(repeats)]

    one = throughput["1_markets"]
    result = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_avg_1m_at_start": load_start, "load_avg_1m_at_end": round(os.getloadavg()[0], 2)},  # fmt: skip
        "capture": {"files": [p.name for p in CAPTURES], "diffs": len(index.final_ids), "levels": index.levels_before[-1]},
        "repeats": repeats,
        "throughput": throughput,
        "latency": latency_summary(latency_runs[False], latency_s),
        "cold_start": {"markets": plan.markets, "window_s": plan.window_s, "weight": plan.weight, "budget_per_window": plan.budget,
                       "simulator_limit_per_window": plan.limit, "bound_s": plan.bound_s,
                       **median_of(cold_runs, ["measured_s", "ratio", "overhead_s", "startup_s", "ratio_after_startup"]),
                       "runs_ratio": [round(r["ratio"], 2) for r in cold_runs],
                       "rest_429": sum(r["rest_429"] for r in cold_runs), "rest_418": sum(r["rest_418"] for r in cold_runs)},  # fmt: skip
        "targets": {
            "diffs_per_cpu_s": {"target": TARGET_DIFFS_PER_CPU_S, "measured_1_market": one["diffs_per_cpu_s"],
                                "ratio": round(one["diffs_per_cpu_s"] / TARGET_DIFFS_PER_CPU_S, 2)},  # fmt: skip
            "p99_us": {"target": TARGET_P99_US, "measured": None},
            "cold_start_ratio": {"target": TARGET_COLD_RATIO, "measured": None},
        },
        "peers_diffs_per_cpu_s": PEER_DIFFS_PER_CPU_S,
        "ratio_to_fastest_peer": round(one["diffs_per_cpu_s"] / max(PEER_DIFFS_PER_CPU_S.values()), 2),
    }
    result["targets"]["p99_us"]["measured"] = result["latency"]["p99_us"]
    result["targets"]["cold_start_ratio"]["measured"] = result["cold_start"]["ratio"]
    if args.tls:
        result["tls"] = tls_comparison(throughput, tls_throughput, result["latency"], latency_summary(latency_runs[True], latency_s))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
