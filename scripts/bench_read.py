"""Benchmark: validated top-20 reads from a shared-memory segment, from Python and from C.

    .venv/bin/python scripts/bench_read.py [--seconds 1.5] [--rate 100000]

Prints one JSON object: median ns per validated read via ``Reader.read_into``, ``Reader.snapshot``
and the C reader (readers/c/ldc_bench.c), each with the writer idle and with a writer process
publishing ``--rate`` times per second; retries per read; torn reads seen (every copy in the latency
phase is checked against the payload invariant); publish-to-observe latency for a spinning reader,
for one sleeping in ``wait_for_update`` and for a coroutine in ``wait_for_update_async`` (alternated). Baseline, measured in the same run: a pure-Python
seqlock read (memoryview seq + bytes slice, correct only on x86-64), the fastest pure-Python path in
docs/reference measurements; ``ratio`` is ours / baseline. Medians over batches; the machine is
noisy, compare ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ldc.shm.layout import SLOT_HEADER, Status, segment_name, waiters_name
from ldc.shm.reader import Reader
from ldc.shm.writer import SegmentWriter

ROOT = Path(__file__).resolve().parents[1]
DEPTH = 20
SYMBOL = "BENCHUSDT"
BATCH_S = 0.0002  # each timed batch lasts about this long: short enough that most batches run
                  # without being preempted on a busy 2-core machine, so the median is the real cost
PAYLOADS = 1000
WAIT_RATE_HZ = 1000  # publish rate while measuring wake-up latency
BURST_PERIOD_S = 0.001  # the writer publishes what is due, then sleeps this long
TARGETS_NS = {"read_into": 300, "snapshot": 2000, "c": 100}  # issue 2, on a 2-core machine


def payload(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Publish k: bid prices k, k-1, ..., ask prices k+1, k+2, ...: any mix of two publishes is visible."""
    steps = np.arange(DEPTH, dtype=np.float64)
    bids = np.ascontiguousarray(np.column_stack([k - steps, np.full(DEPTH, k * 2.0)]))
    asks = np.ascontiguousarray(np.column_stack([k + 1 + steps, np.full(DEPTH, k * 3.0)]))
    return bids, asks


EXPECTED = [payload(k) for k in range(PAYLOADS)]


def torn(update_id: int, bids: np.ndarray, asks: np.ndarray) -> bool:
    eb, ea = EXPECTED[update_id % PAYLOADS]
    return not (np.array_equal(bids, eb) and np.array_equal(asks, ea))


# ---------------------------------------------------------------- writer process


def run_writer(group: str, rate: float, notify_each: bool) -> None:
    """Publish ``rate`` times per second (0: idle) until SIGTERM; print the achieved rate.

    Publishes go out in bursts every BURST_PERIOD_S, as a feeder publishes after each websocket
    frame; busy pacing at 10 us would take a whole core of a 2-core machine from the readers."""
    stop: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    with SegmentWriter(group, depth=DEPTH, capacity=4) as w:
        slot = w.add_market(SYMBOL)
        payloads = [payload(k) for k in range(PAYLOADS)]
        publish = w.publish
        bids, asks = payloads[0]
        publish(slot, update_id=0, event_time_ms=0, recv_time_ns=time.time_ns(), status=Status.SYNCED,
                bids=bids, asks=asks, n_bids=DEPTH, n_asks=DEPTH)
        print("ready", flush=True)
        start = time.monotonic()
        k = 1
        while not stop:
            due = int((time.monotonic() - start) * rate) + 1 if rate else k
            while k < due:
                bids, asks = payloads[k % PAYLOADS]
                publish(slot, update_id=k, event_time_ms=k, recv_time_ns=time.time_ns(), status=Status.SYNCED,
                        bids=bids, asks=asks, n_bids=DEPTH, n_asks=DEPTH)
                if notify_each:
                    w.notify()
                k += 1
            time.sleep(BURST_PERIOD_S)
            if k % 100 == 0 or not rate:
                w.heartbeat()  # layout 2.0 readers flag a writer STALE once its heartbeat is old
        elapsed = time.monotonic() - start
        print(json.dumps({"publishes": k - 1, "rate_per_s": round((k - 1) / elapsed)}), flush=True)


class Writer:
    def __init__(self, group: str, rate: float, *, notify_each: bool = False) -> None:
        args = [sys.executable, __file__, "--writer", group, str(rate)] + (["--notify-each"] if notify_each else [])
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"writer did not start: {line!r}")

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=60)
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result


# ---------------------------------------------------------------- measurements


def _batch_size(fn: Callable[[], object]) -> int:
    t0 = time.perf_counter_ns()
    for _ in range(100):
        fn()
    return max(10, int(BATCH_S * 1e9 * 100 / max(time.perf_counter_ns() - t0, 1)))


def _batch(fn: Callable[[], object], batch: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(batch):
        fn()
    return (time.perf_counter_ns() - t0) / batch


def median_ns(fn: Callable[[], object], seconds: float) -> float:
    """Median over short batches of the mean ns per call."""
    return interleaved_medians({"fn": fn}, seconds)["fn"]


def interleaved_medians(fns: dict[str, Callable[[], object]], seconds: float) -> dict[str, float]:
    """Batches of every function in turn, so each sees the same machine load; median per function."""
    batches = {name: _batch_size(fn) for name, fn in fns.items()}
    samples: dict[str, list[float]] = {name: [] for name in fns}
    deadline = time.monotonic() + seconds * len(fns)
    while time.monotonic() < deadline or min(len(v) for v in samples.values()) < 5:
        for name, fn in fns.items():
            samples[name].append(_batch(fn, batches[name]))
    return {name: round(statistics.median(v), 1) for name, v in samples.items()}


def python_reads(group: str, seconds: float) -> dict[str, float]:
    with Reader(group) as r:
        buf = r.new_buffer()
        read_into, snapshot = r.read_into, r.snapshot
        before = r._seg.retries
        reads = _calls(seconds, lambda: read_into(SYMBOL, buf))
        retries = (r._seg.retries - before) / max(reads, 1)
        figures = interleaved_medians({
            "read_into_ns": lambda: read_into(SYMBOL, buf),
            "snapshot_ns": lambda: snapshot(SYMBOL),
            "baseline_pure_python_ns": _pure_python_reader(r),
            "empty_call_ns": lambda: None,
        }, seconds)
    figures["read_into_retries_per_read"] = round(retries, 6)
    return figures


def _calls(seconds: float, fn: Callable[[], object]) -> int:
    n = 0
    deadline = time.monotonic() + seconds / 2
    while time.monotonic() < deadline:
        for _ in range(1000):
            fn()
        n += 1000
    return n


def _pure_python_reader(r: Reader) -> Callable[[], bytes]:
    """The baseline: seq via memoryview.cast('Q'), payload via one bytes slice, no fences (x86 only)."""
    g = r.geometry
    slot = r._slots.get(SYMBOL) or r._resolve(SYMBOL)
    base = g.slot_offset(slot[0])
    words = memoryview(r._mm).cast("Q")
    seq_index = (base + SLOT_HEADER.offset("seq")) // 8
    mm, end = r._mm, base + g.asks_offset + DEPTH * 16

    def read() -> bytes:
        while True:
            s1 = words[seq_index]
            if s1 & 1:
                continue
            raw = mm[base:end]
            if words[seq_index] == s1:
                return raw

    return read


def c_reads(group: str, seconds: float, exe: Path | None) -> dict[str, float] | None:
    if exe is None:
        return None
    out = subprocess.run([str(exe), group, SYMBOL, str(seconds)], capture_output=True, text=True, check=True, timeout=120)
    parsed = json.loads(out.stdout)
    figures = {"c_read_ns": parsed["median_ns_per_read"], "c_retries_per_read": parsed["retries_per_read"],
               "c_not_ok": parsed["not_ok"]}
    if parsed["observed_publishes"] > 0:
        figures["c_publish_to_observe_ns"] = parsed["publish_to_observe_ns"]
    return figures


def build_c() -> Path | None:
    if shutil.which("cc") is None:
        return None
    exe = Path(tempfile.mkdtemp(prefix="ldc-bench-")) / "ldc_bench"
    subprocess.run(["cc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(exe),
                    str(ROOT / "readers" / "c" / "ldc_bench.c")], check=True)
    return exe


def spin_latency(group: str, seconds: float) -> dict[str, float]:
    """A reader spinning on read_into: publish_time_ns -> first observation, CLOCK_REALTIME both sides."""
    lat: list[int] = []
    bad = reads = 0
    with Reader(group) as r:
        buf = r.new_buffer()
        last = -1
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            r.read_into(SYMBOL, buf)
            now = time.time_ns()
            reads += 1
            if buf.update_id != last:
                last = buf.update_id
                lat.append(now - buf.publish_time_ns)
                bad += torn(buf.update_id, buf.bids, buf.asks)
    return {"spin_publish_to_observe_ns": float(statistics.median(lat)) if lat else -1.0,
            "spin_observed_publishes": len(lat), "torn_reads": bad}


def wait_latency(group: str, seconds: float) -> dict[str, float]:
    """A reader sleeping in wait_for_update while the writer publishes and notifies WAIT_RATE_HZ times a second."""
    lat: list[int] = []
    bad = 0
    with Reader(group) as r:
        buf = r.new_buffer()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if r.wait_for_update(SYMBOL, timeout=0.5):
                r.read_into(SYMBOL, buf)
                lat.append(time.time_ns() - buf.publish_time_ns)
                bad += torn(buf.update_id, buf.bids, buf.asks)
    return {"wait_publish_to_observe_ns": float(statistics.median(lat)) if lat else -1.0,
            "wait_observed_publishes": len(lat), "wait_torn_reads": bad}


def async_wait_latency(group: str, seconds: float) -> dict[str, float]:
    """The same as wait_latency from a coroutine: ``await wait_for_update_async`` (ldc/shm/aio.py's one waiter
    thread wakes, then hands the result to the event loop)."""
    import asyncio

    lat: list[int] = []
    bad = 0

    async def run(r: Reader) -> None:
        nonlocal bad
        buf = r.new_buffer()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if await r.wait_for_update_async(SYMBOL, timeout=0.5):
                r.read_into(SYMBOL, buf)
                lat.append(time.time_ns() - buf.publish_time_ns)
                bad += torn(buf.update_id, buf.bids, buf.asks)

    with Reader(group) as r:
        asyncio.run(run(r))
    return {"async_wait_publish_to_observe_ns": float(statistics.median(lat)) if lat else -1.0,
            "async_wait_observed_publishes": len(lat), "async_wait_torn_reads": bad}


def handoff_floor_ns(seconds: float) -> float:
    """The asyncio floor any thread-to-loop wake pays: a thread's ``call_soon_threadsafe`` to the coroutine
    resuming (median ns), with no shared memory involved."""
    import asyncio
    import queue

    requests: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def firer() -> None:
        while (job := requests.get()) is not None:
            loop, future = job
            time.sleep(0.0005)  # the coroutine is asleep in the loop's selector by then
            loop.call_soon_threadsafe(future.set_result, time.perf_counter_ns())

    async def run() -> list[int]:
        loop, lat = asyncio.get_running_loop(), []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            future = loop.create_future()
            requests.put((loop, future))
            fired = await future
            lat.append(time.perf_counter_ns() - fired)
        return lat

    thread = threading.Thread(target=firer, daemon=True)
    thread.start()
    try:
        lat = asyncio.run(run())
    finally:
        requests.put(None)
        thread.join()
    return float(statistics.median(lat))


def wake_latencies(group: str, seconds: float) -> dict[str, float]:
    """Blocking and asyncio waits, alternated twice (half the time each) so that both see the same machine."""
    runs: dict[str, list[dict[str, float]]] = {"wait": [], "async_wait": []}
    for _ in range(2):
        runs["wait"].append(wait_latency(group, seconds / 2))
        runs["async_wait"].append(async_wait_latency(group, seconds / 2))
    out: dict[str, float] = {}
    for kind, halves in runs.items():
        out[f"{kind}_publish_to_observe_ns"] = float(statistics.median(h[f"{kind}_publish_to_observe_ns"] for h in halves))
        out[f"{kind}_observed_publishes"] = sum(h[f"{kind}_observed_publishes"] for h in halves)
        out[f"{kind}_torn_reads"] = sum(h[f"{kind}_torn_reads"] for h in halves)
    out["async_vs_blocking_wake"] = round(out["async_wait_publish_to_observe_ns"] / out["wait_publish_to_observe_ns"], 2)
    out["asyncio_handoff_floor_ns"] = handoff_floor_ns(seconds / 2)
    return out


def publish_cost(seconds: float) -> dict[str, float]:
    """Writer side, for the feeder's budget: one publish with and without the level copy."""
    group = f"benchpub{os.getpid()}"
    try:
        with SegmentWriter(group, depth=DEPTH, capacity=1) as w:
            slot = w.add_market(SYMBOL)
            bids, asks = payload(1)
            publish = w.publish
            return interleaved_medians({
                "publish_top20_ns": lambda: publish(slot, update_id=1, event_time_ms=1, recv_time_ns=1, status=1,
                                                    bids=bids, asks=asks, n_bids=DEPTH, n_asks=DEPTH),
                "publish_ids_only_ns": lambda: publish(slot, update_id=1, event_time_ms=1, recv_time_ns=1, status=1,
                                                       copy_levels=False),
                "notify_no_waiter_ns": w.notify,
            }, seconds)
    finally:
        cleanup(group)


def cleanup(group: str) -> None:
    import posix_ipc

    for name in (segment_name(group), waiters_name(group), segment_name(group) + ".lock"):
        try:
            posix_ipc.unlink_shared_memory(name)
        except posix_ipc.ExistentialError:
            pass


def machine() -> dict[str, Any]:
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": model, "cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "kernel": platform.release(), "arch": platform.machine()}


def bench(seconds: float, rate: float) -> dict[str, Any]:
    group = f"bench{os.getpid()}"
    exe = build_c()
    phases: dict[str, Any] = {}
    try:
        for label, publish_rate in (("idle", 0.0), (f"publishing_{int(rate)}_per_s", rate)):
            writer = Writer(group, publish_rate)
            try:
                phase: dict[str, Any] = python_reads(group, seconds)
                phase.update(c_reads(group, seconds, exe) or {})
                if publish_rate:
                    phase.update(spin_latency(group, seconds))
            finally:
                phase["writer"] = writer.stop()
            phases[label] = phase
        writer = Writer(group, WAIT_RATE_HZ, notify_each=True)
        try:
            phases[f"wake_{WAIT_RATE_HZ}_per_s"] = wake_latencies(group, seconds)
        finally:
            phases[f"wake_{WAIT_RATE_HZ}_per_s"]["writer"] = writer.stop()
    finally:
        cleanup(group)
    busy = phases[f"publishing_{int(rate)}_per_s"]
    return {
        "benchmark": "validated top-20 read",
        "machine": machine(),
        "load_average": os.getloadavg(),
        "depth": DEPTH,
        "phases": phases,
        "writer": publish_cost(seconds / 3),
        "ratio": {
            "read_into_vs_baseline_idle": round(phases["idle"]["read_into_ns"] / phases["idle"]["baseline_pure_python_ns"], 3),
            "read_into_vs_baseline_publishing": round(busy["read_into_ns"] / busy["baseline_pure_python_ns"], 3),
            "snapshot_vs_baseline_idle": round(phases["idle"]["snapshot_ns"] / phases["idle"]["baseline_pure_python_ns"], 3),
        },
        "targets_ns": TARGETS_NS,
        "within_target": {
            phase: {
                "read_into": figures["read_into_ns"] <= TARGETS_NS["read_into"],
                "snapshot": figures["snapshot_ns"] <= TARGETS_NS["snapshot"],
                "c": figures.get("c_read_ns", float("inf")) <= TARGETS_NS["c"],
            }
            for phase, figures in phases.items()
            if "read_into_ns" in figures
        },
    }


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--writer":
        run_writer(argv[1], float(argv[2]), "--notify-each" in argv)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="per measurement")
    parser.add_argument("--rate", type=float, default=100_000, help="publishes per second in the busy phase")
    args = parser.parse_args(argv)
    print(json.dumps(bench(args.seconds, args.rate), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
