"""Benchmark: book fan-out over NATS (issue 16), origin publish -> mirror slot visible.

    .venv/bin/python scripts/bench_mirror.py [--seconds 4] [--repeat 3] [--rate 5000] [--coalesce-us 1000]

Everything runs on this host over loopback, each part its own process: a publisher writing an origin
segment (depth 20) at ``--rate`` updates/s spread evenly over its markets (stamping ``recv_time_ns``
at publish, which the relay and mirror carry unchanged), a real nats-server, ``ldc relay``, and 1 or
10 ``ldc mirror`` processes (each its own segment name). A probe process sleeps on mirror 0's notify
word and, for every market whose update id moved, records ``now - recv_time_ns``: origin publish to
mirror slot visible to a reader (including the probe's own futex wake-up).

Scenarios: 10 markets x 500 updates/s and 200 markets x 25 updates/s, with 1 and 10 mirrors. CPU per
update: the CPU time of the relay and of mirror 0 over the probe window (their process CPU clocks, exact,
not /proc's clock ticks), divided by the origin's
publishes in that window (its ``updates`` counters). Baseline in the same run, as a cluster-over-HTTP
design would serve the same books: an HTTP server (keep-alive, orjson) answering ``GET /books`` with
every market's top 20 read from the origin segment, and a client polling it back to back; latency is
``now - recv_time_ns`` of each new update id the poll sees, CPU per update is the server's.

The relay runs with ``--coalesce-us`` (its default unless given): one message per window carries every
market that changed, so CPU per update falls and latency rises with the window (docs/FANOUT.md).
``in_process_*``: the per-entry part of those CPU figures alone (the relay's copy and encode, the
mirror's decode and apply, no NATS), so the rest of a run's figure is what its messages cost.

Also measured: what a JetStream key-value bucket would cost the relay per update (``kv.put``) against
the plain publish it does (``nc.publish``), and a newcomer's fetch of 200 markets by request/reply
against ``kv.get``: the relay serves state by request/reply (README, "Past one host"). And the
feeder's diffs per CPU-second with the relay attached and without (bench_feeder.py's throughput run,
alternated).

Each probe also reports ``flagged``: updates it saw out of sync (a run that measured flagged mirrors
says so). ``BENCH_STDERR=1`` lets the children's logs through.

Prints one JSON object; figures are medians over ``--repeat`` runs. Targets (issue 16, loopback):
p99 <= 1 ms, relay <= 5 us and mirror <= 10 us CPU per update.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ldc.errors import SegmentError
from ldc.fanout import codec
from ldc.fanout.origin import Origin
from ldc.fanout.relay import DEFAULT_COALESCE_US
from ldc.fanout.demo import remove_segment_files
from ldc.fanout.server import NatsServer, free_port, stop_process
from ldc.shm.layout import DEFAULT_NOTIFY_PACED_US, DEFAULT_STALE_AFTER_MS, MIN_STALE_INTERVALS, Status, is_in_sync
from ldc.shm.reader import Reader
from ldc.shm.writer import SegmentWriter

ROOT = Path(__file__).resolve().parents[1]
DEPTH = 20
WARMUP_S = 1.5
READY_TIMEOUT_S = 60.0
TARGETS = {"p99_us": 1000, "relay_cpu_us_per_update": 5, "mirror_cpu_us_per_update": 10}
KV_OPS = 2000
STATE_MARKETS = 200


def symbols(n: int) -> list[str]:
    return [f"M{i:03d}USDT" for i in range(n)]


# ---------------------------------------------------------------- child roles


def run_publisher(group: str, markets: int, rate: float, stale_after_ms: int = DEFAULT_STALE_AFTER_MS,
                  paced_us: int = DEFAULT_NOTIFY_PACED_US) -> None:
    """The origin feeder's stand-in: round-robin publishes at ``rate``, each its own batch, and its
    heartbeat as a feeder keeps it (without it the origin reads STALE after ``stale_after_ms``, and so
    does every mirror: a run would measure flagged mirrors that apply nothing). ``paced_us``: its segment's
    notify_paced_us, as a feeder's ``[group] notify_paced_us`` (0: the relay sleeps its window on a timer)."""
    interval_ms = stale_after_ms // MIN_STALE_INTERVALS
    writer = SegmentWriter(group, depth=DEPTH, capacity=max(markets, 16), exchange="binance.com",
                           heartbeat_interval_ms=interval_ms, stale_after_ms=stale_after_ms, notify_paced_us=paced_us)
    heartbeat_s = interval_ms / 1000 / 2
    slots = [writer.add_market(s) for s in symbols(markets)]
    steps = np.arange(DEPTH, dtype=np.float64)
    books = [(np.ascontiguousarray(np.column_stack([100.0 - k * 0.01 - steps, np.full(DEPTH, 1.0 + k)])),
              np.ascontiguousarray(np.column_stack([101.0 + k * 0.01 + steps, np.full(DEPTH, 2.0 + k)]))) for k in range(16)]
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    uid = [0] * markets
    start, k = time.monotonic(), 0
    next_heartbeat = start
    while not stop:
        i = k % markets
        uid[i] += 1
        bids, asks = books[uid[i] % 16]
        writer.publish(slots[i], update_id=uid[i], event_time_ms=uid[i], recv_time_ns=time.time_ns(), status=Status.SYNCED,
                       bids=bids, asks=asks, n_bids=DEPTH, n_asks=DEPTH)
        writer.notify()
        k += 1
        now = time.monotonic()
        if now >= next_heartbeat:  # as a feeder does: without it readers, relay and mirrors judge the origin STALE
            writer.heartbeat()
            next_heartbeat = now + heartbeat_s
        delay = start + k / rate - now
        if delay > 0:
            time.sleep(delay)
    writer.close()


def run_probe(group: str, seconds: float) -> None:
    """Sleep on the mirror's notify word; for each market whose update id moved, now - recv_time_ns."""
    origin = _attach(group)
    last: dict[str, int] = {}
    latencies: list[int] = []
    flagged = 0  # updates seen out of sync: a run whose mirror was flagged measured something else
    depth = origin.geometry.depth
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        word = origin.notify_word()
        changes = origin.changes()
        now = time.time_ns()
        for change in changes:
            update = codec.decode_entry(change.entry, depth)
            flagged += not is_in_sync(update.status)
            if update.update_id > last.get(change.symbol, -1):
                if change.symbol in last:
                    latencies.append(now - update.field("recv_time_ns"))
                last[change.symbol] = update.update_id
        if not changes:
            origin.wait(word, 0.05)
    print(json.dumps({**_percentiles(latencies), "flagged": flagged}))


def _attach(group: str) -> Origin:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            return Origin(group, epoch=0)
        except SegmentError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def run_http_server(group: str, port: int) -> None:
    reader = Reader(group, attach_timeout_s=READY_TIMEOUT_S)
    names = reader.markets()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as any serious poller uses

        def setup(self) -> None:
            super().setup()
            # headers and body leave in two writes: without this, Nagle holds the body for the client's
            # delayed ACK (~40 ms a poll), which would make the baseline look worse than it is
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self) -> None:  # noqa: N802
            books = {}
            for symbol in names:
                snap = reader.snapshot(symbol, allow_out_of_sync=True)
                books[symbol] = {"u": snap.update_id, "recv": snap.recv_time_ns, "bids": snap.bids, "asks": snap.asks}
            body = orjson.dumps(books, option=orjson.OPT_SERIALIZE_NUMPY)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def run_http_poller(port: int, seconds: float) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    last: dict[str, int] = {}
    latencies: list[int] = []
    polls = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        conn.request("GET", "/books")
        books = orjson.loads(conn.getresponse().read())
        now = time.time_ns()
        polls += 1
        for symbol, book in books.items():
            if book["u"] > last.get(symbol, -1):
                if symbol in last:
                    latencies.append(now - book["recv"])
                last[symbol] = book["u"]
    print(json.dumps({**_percentiles(latencies), "polls_per_s": polls / seconds}))


def _percentiles(latencies_ns: list[int]) -> dict[str, Any]:
    if not latencies_ns:
        return {"n": 0}
    us = np.array(latencies_ns, dtype=np.float64) / 1000.0
    return {"n": len(us), "p50_us": round(float(np.percentile(us, 50)), 1), "p99_us": round(float(np.percentile(us, 99)), 1),
            "max_us": round(float(us.max()), 1)}


# ---------------------------------------------------------------- orchestration


def child(*args: str, stdout: Any = subprocess.DEVNULL) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=stdout, stderr=None if os.environ.get("BENCH_STDERR") else subprocess.DEVNULL, text=True)


def stop(*procs: subprocess.Popen[str]) -> None:
    for proc in procs:
        stop_process(proc)


def cpu_s(pid: int) -> float:
    """The process's CPU time (all its threads, those gone included), exact to the nanosecond: its
    CPUCLOCK_SCHED process clock (clock_getcpuclockid's id, ``(~pid << 3) | 2``). /proc/<pid>/stat's
    utime + stime are whole clock ticks (10 ms): over a 4 s window a relay's ~100 ms of CPU were
    quantised to +-10 %."""
    return time.clock_gettime_ns(((~pid) << 3) | 2) / 1e9


def origin_updates(reader: Reader, names: list[str]) -> int:
    return sum(reader.status(s).counters["updates"] for s in names)


def wait_in_sync(group: str, names: list[str]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with Reader(group) as reader:
                if all(reader.status(s).in_sync for s in names):
                    return
        except (SegmentError, KeyError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"mirror {group} did not get in sync within {READY_TIMEOUT_S} s")


def nats_run(nats: NatsServer, tag: str, markets: int, mirrors: int, rate: float, seconds: float, coalesce_us: int | None,
             paced_us: int, relay_args: tuple[str, ...] = ()) -> dict[str, Any]:
    script = str(Path(__file__).resolve())
    group = f"bm{os.getpid()}{tag}"
    locals_ = [f"{group}m{i}" for i in range(mirrors)]
    names = symbols(markets)
    procs = [child(script, "--role", "publisher", group, str(markets), str(rate), str(DEFAULT_STALE_AFTER_MS), str(paced_us))]
    try:
        window = [] if coalesce_us is None else ["--coalesce-us", str(coalesce_us)]
        relay = child("-m", "ldc.cli", "relay", "--group", group, "--nats", nats.url, "--log-level", "WARNING", *window, *relay_args)
        procs.append(relay)
        for local in locals_:
            procs.append(child("-m", "ldc.cli", "mirror", "--group", group, "--nats", nats.url, "--local-group", local, "--log-level", "WARNING"))
        wait_in_sync(locals_[0], names)
        time.sleep(WARMUP_S)
        origin = Reader(group)
        probe = child(script, "--role", "probe", locals_[0], str(seconds), stdout=subprocess.PIPE)
        mirror0 = procs[2]
        before = (origin_updates(origin, names), cpu_s(relay.pid), cpu_s(mirror0.pid), time.monotonic())
        out, _ = probe.communicate(timeout=seconds + READY_TIMEOUT_S)
        after = (origin_updates(origin, names), cpu_s(relay.pid), cpu_s(mirror0.pid), time.monotonic())
        origin.close()
        updates = max(after[0] - before[0], 1)
        elapsed = after[3] - before[3]
        return {**json.loads(out), "updates": updates,
                "relay_cpu_ms_per_s": round((after[1] - before[1]) / elapsed * 1e3, 2),  # at a low --rate: its idle cost
                "mirror_cpu_ms_per_s": round((after[2] - before[2]) / elapsed * 1e3, 2),
                "relay_cpu_us_per_update": round((after[1] - before[1]) / updates * 1e6, 2),
                "mirror_cpu_us_per_update": round((after[2] - before[2]) / updates * 1e6, 2)}
    finally:
        stop(*procs)
        for g in [group, *locals_]:
            remove_segment_files(g)


def http_run(tag: str, markets: int, rate: float, seconds: float) -> dict[str, Any]:
    script = str(Path(__file__).resolve())
    group = f"bm{os.getpid()}{tag}"
    names = symbols(markets)
    port = free_port()
    procs = [child(script, "--role", "publisher", group, str(markets), str(rate))]
    try:
        wait_in_sync(group, names)
        server = child(script, "--role", "http-server", group, str(port))
        procs.append(server)
        time.sleep(WARMUP_S)
        origin = Reader(group)
        poller = child(script, "--role", "http-poller", str(port), str(seconds), stdout=subprocess.PIPE)
        before = (origin_updates(origin, names), cpu_s(server.pid), time.monotonic())
        out, _ = poller.communicate(timeout=seconds + READY_TIMEOUT_S)
        after = (origin_updates(origin, names), cpu_s(server.pid))
        origin.close()
        updates = max(after[0] - before[0], 1)
        return {**json.loads(out), "updates": updates,
                "server_cpu_us_per_update": round((after[1] - before[1]) / updates * 1e6, 2)}
    finally:
        stop(*procs)
        remove_segment_files(group)


async def state_fetch(url: str) -> dict[str, float]:
    """Relay-side cost per update of a KV put vs a plain publish, and a newcomer's fetch of
    STATE_MARKETS markets by request/reply vs kv.get (payloads of a depth-20 update's size)."""
    import nats as nats_client

    nc = await nats_client.connect(url)
    payload = os.urandom(16 * 2 * DEPTH + 200)
    js = nc.jetstream()
    kv = await js.create_key_value(bucket=f"bench{os.getpid()}", history=1)
    keys = symbols(STATE_MARKETS)

    async def cpu_per(op: Any) -> float:
        t0 = time.process_time()
        for i in range(KV_OPS):
            await op(keys[i % STATE_MARKETS])
        await nc.flush()
        return (time.process_time() - t0) / KV_OPS * 1e6

    publish_us = await cpu_per(lambda key: nc.publish(f"bench.{key}", payload))
    put_us = await cpu_per(lambda key: kv.put(key, payload))

    async def respond(msg: Any) -> None:
        await msg.respond(payload)

    await nc.subscribe("bench.state", cb=respond)
    t0 = time.perf_counter()
    await asyncio.gather(*(nc.request("bench.state", key.encode(), timeout=5) for key in keys))
    request_ms = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    await asyncio.gather(*(kv.get(key) for key in keys))
    kv_get_ms = (time.perf_counter() - t0) * 1e3
    await nc.close()
    return {"publish_cpu_us": round(publish_us, 2), "kv_put_cpu_us": round(put_us, 2),
            f"request_reply_{STATE_MARKETS}_markets_ms": round(request_ms, 2), f"kv_get_{STATE_MARKETS}_markets_ms": round(kv_get_ms, 2)}


def feeder_relay_on_off(nats: NatsServer, repeats: int, markets: int = 10) -> dict[str, Any]:
    """bench_feeder.py's throughput run (the genuine spot capture replayed as fast as the feeder reads,
    ``markets`` copies), alternately without and with ``ldc relay`` (asleep on the notify word, which the
    feeder bumps and wakes after every batch whether anyone sleeps or not, and on notify_paced): the
    feeder's diffs per CPU-second each way (issue 16: the relay must not slow the feeder); and without the
    relay with ``notify_paced_us = 0`` (``unpaced``: what keeping the paced word costs the feeder)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_feeder

    index = bench_feeder.load_index(bench_feeder.CAPTURES)
    new_group = bench_feeder.new_group
    modes: dict[str, list[str] | None] = {"off": None, "unpaced": None, "relay": []}
    runs: dict[str, list[float]] = {mode: [] for mode in modes}
    for r in range(repeats):
        for mode, extra in modes.items():
            if extra is None:  # "unpaced": the segment's notify_paced word off (what pacing costs the feeder)
                keys = {"notify_paced_us": 0} if mode == "unpaced" else None
                runs[mode].append(bench_feeder.run_throughput(index, markets, group_keys=keys)["diffs_per_cpu_s"])
                continue
            group = f"bench-feeder-{os.getpid()}-{mode}-{r}"
            relay = child("-m", "ldc.cli", "relay", "--group", group, "--nats", nats.url, "--log-level", "WARNING", *extra)
            bench_feeder.new_group = lambda tag: group  # the run's group is the one the relay waits for
            try:
                runs[mode].append(bench_feeder.run_throughput(index, markets)["diffs_per_cpu_s"])
            finally:
                bench_feeder.new_group = new_group
                stop(relay)
    off = statistics.median(runs["off"])
    result: dict[str, Any] = {"markets": markets, "diffs_per_cpu_s_relay_off": round(off)}
    for mode in ("unpaced", "relay"):
        result[f"diffs_per_cpu_s_{mode}"] = round(statistics.median(runs[mode]))
        result[f"ratio_{mode}_over_off"] = round(statistics.median(runs[mode]) / off, 3)
    result["runs"] = {mode: [round(x) for x in found] for mode, found in runs.items()}
    return result


def in_process(markets: int, rounds: int) -> dict[str, float]:
    """CPU per update of the work done per market entry, without NATS: the relay's copy and encode
    (``Origin.collect``, C) and the mirror's decode and apply (``handle_batch``), every
    market changed each round. What a message costs on top is the run's figure minus this."""
    from ldc.fanout.conn import options_from_url
    from ldc.fanout.mirror import Mirror

    group, local = f"bmi{os.getpid()}o{markets}", f"bmi{os.getpid()}m{markets}"
    names = symbols(markets)
    writer = SegmentWriter(group, depth=DEPTH, capacity=max(markets, 16), markets=names)
    mirror = Mirror(group, options_from_url("nats://127.0.0.1:1"), symbols=names, local_group=local, depth=DEPTH)
    origin = Origin(group, epoch=1)
    steps = np.arange(DEPTH, dtype=np.float64)
    bids = np.ascontiguousarray(np.column_stack([100.0 - steps, np.ones(DEPTH)]))
    asks = np.ascontiguousarray(np.column_stack([101.0 + steps, np.ones(DEPTH)]))
    relay_s = mirror_s = 0.0
    try:
        for r in range(1, rounds + 1):
            for slot in range(markets):
                writer.publish(slot, update_id=r, event_time_ms=r, recv_time_ns=r, status=Status.SYNCED, bids=bids, asks=asks,
                               n_bids=DEPTH, n_asks=DEPTH)
            t0 = time.process_time()
            batches = origin.collect(codec.MAX_BATCH_BYTES)  # the relay's scan, copy and encode (C)
            t1 = time.process_time()
            for batch in batches:
                mirror.handle_batch(batch, codec.BATCH_TOKEN, from_stream=True)
            mirror_s += time.process_time() - t1
            relay_s += t1 - t0
    finally:
        origin.close()
        mirror.writer.close()
        writer.close()
        remove_segment_files(group)
        remove_segment_files(local)
    if mirror.stats.applied != rounds * markets:
        raise RuntimeError(f"in-process mirror applied {mirror.stats.applied} of {rounds * markets} updates")
    n = rounds * markets
    return {"relay_cpu_us_per_update": round(relay_s / n * 1e6, 2), "mirror_cpu_us_per_update": round(mirror_s / n * 1e6, 2)}


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float))]
    return {k: statistics.median(r[k] for r in runs if k in r) for k in keys}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--rate", type=float, default=5000.0, help="origin updates per second, all markets together")
    p.add_argument("--coalesce-us", type=int, default=None,
                   help="the relay's coalescing window (default: the origin's pace, --paced-us)")
    p.add_argument("--paced-us", type=int, default=DEFAULT_NOTIFY_PACED_US,
                   help=f"the origin segment's notify_paced_us (default {DEFAULT_NOTIFY_PACED_US}; 0: not paced, the relay's window on a timer)")
    p.add_argument("--timer-baseline", action="store_true",
                   help=f"also run each nats part with an origin that does not pace and the relay's timer window of "
                        f"{DEFAULT_COALESCE_US} us (the previous default), alternated in the same rounds: *_timer keys")
    p.add_argument("--syscalls-baseline", action="store_true",
                   help="also run each nats part with the relay's paced sends and sleeps on send() and futex() "
                        "(ldc relay --no-io-uring), alternated in the same rounds: *_syscalls keys")
    p.add_argument("--only", help="comma-separated parts to run: nats10x1,nats10x10,nats200x1,nats200x10,inprocess,http10,http200,state,feeder")
    p.add_argument("--role", help=argparse.SUPPRESS)
    p.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role == "publisher":
        run_publisher(args.args[0], int(args.args[1]), float(args.args[2]), *map(int, args.args[3:5]))
        return 0
    if args.role == "probe":
        run_probe(args.args[0], float(args.args[1]))
        return 0
    if args.role == "http-server":
        run_http_server(args.args[0], int(args.args[1]))
        return 0
    if args.role == "http-poller":
        run_http_poller(int(args.args[0]), float(args.args[1]))
        return 0
    result: dict[str, Any] = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
                              "rate_updates_per_s": args.rate, "coalesce_us": args.coalesce_us, "paced_us": args.paced_us, "seconds": args.seconds, "repeat": args.repeat, "targets": TARGETS}
    runs: dict[str, list[dict[str, Any]]] = {}
    wanted = set(args.only.split(",")) if args.only else None
    js_dir = Path(tempfile.mkdtemp(prefix="ldc-bench-js-"))
    with NatsServer(extra_conf=f'jetstream: {{ store_dir: "{js_dir}" }}') as nats:
        for r in range(args.repeat):  # rounds interleave the parts, so a burst of host load hits them alike
            for markets, mirrors in ((10, 1), (10, 10), (200, 1), (200, 10)):
                if wanted is None or f"nats{markets}x{mirrors}" in wanted:
                    runs.setdefault(f"nats_{markets}_markets_{mirrors}_mirrors", []).append(
                        nats_run(nats, f"n{markets}x{mirrors}r{r}", markets, mirrors, args.rate, args.seconds, args.coalesce_us,
                                 args.paced_us))
                    if args.timer_baseline:
                        runs.setdefault(f"nats_{markets}_markets_{mirrors}_mirrors_timer", []).append(
                            nats_run(nats, f"t{markets}x{mirrors}r{r}", markets, mirrors, args.rate, args.seconds,
                                     DEFAULT_COALESCE_US, 0))
                    if args.syscalls_baseline:
                        runs.setdefault(f"nats_{markets}_markets_{mirrors}_mirrors_syscalls", []).append(
                            nats_run(nats, f"s{markets}x{mirrors}r{r}", markets, mirrors, args.rate, args.seconds,
                                     args.coalesce_us, args.paced_us, ("--no-io-uring",)))
            for markets in (10, 200):
                if wanted is None or "inprocess" in wanted:
                    runs.setdefault(f"in_process_{markets}_markets", []).append(in_process(markets, 40_000 // markets))
                if wanted is None or f"http{markets}" in wanted:
                    runs.setdefault(f"http_json_poll_{markets}_markets", []).append(http_run(f"h{markets}r{r}", markets, args.rate, args.seconds))
        result.update({name: median_of(found) for name, found in runs.items()})
        if wanted is None or "state" in wanted:
            result["state_for_newcomers"] = asyncio.run(state_fetch(nats.url))
        if wanted is None or "feeder" in wanted:
            result["feeder_with_relay"] = feeder_relay_on_off(nats, args.repeat)
    shutil.rmtree(js_dir, ignore_errors=True)
    for markets in (10, 200):
        nats_p99 = result.get(f"nats_{markets}_markets_1_mirrors", {}).get("p99_us")
        http_p99 = result.get(f"http_json_poll_{markets}_markets", {}).get("p99_us")
        if nats_p99 and http_p99:
            result[f"ratio_p99_http_over_nats_{markets}_markets"] = round(http_p99 / nats_p99, 2)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
