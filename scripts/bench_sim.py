"""Benchmark of the local exchange simulator (ldc sim): diff messages per second it sustains.

Runs `ldc sim` as its own process (one core: asyncio is single-threaded) with N USD-M markets and a
reader that subscribes to every `<symbol>@depth@0ms` stream (one message per model event, 10 events
per simulated second per market) on one combined connection and counts frames with a bare RFC 6455
parser. For each clock speed it reports the delivered msg/s and the
simulator's CPU seconds; msg per simulator CPU-second is the rate one core sustains. Baseline (same
run): the simulator at the same speed with no subscriber, i.e. the model alone, so the ratio shows what
encoding and fan-out add. A second part replays a genuine capture under 10 names as fast as the reader
drains (what the feeder benchmark consumes).

A third part, ``replay_snapshot``, times a REST depth snapshot (limit 1000) of the spot capture once all
3,451 diffs were sent, for 1 and 10 copies: over HTTP from a running ``ldc sim`` (the reader drained the
whole replay first; each copy asked in turn), and in-process. The baseline in the same run is the cold
rebuild a snapshot costs when the capture's known book was not walked at start (the snapshot plus every
diff, once per capture); ``warm`` is what the simulator does: the walk is paid at start (inside
``load_and_prepare_ms``, and the HTTP runs' ``startup_s``) and copies share it, so a snapshot is one sort
of the book's levels, and copies at one index share that too.

    .venv/bin/python scripts/bench_sim.py [--markets 500] [--seconds 5] [--speeds 2,4,6] [--replay-snapshot-only]

Prints one JSON object. On a shared machine read `msg_per_sim_cpu_s` (what one core sustains) with
`sim_cpu_fraction` (how much of a core the simulator actually got) and the calibration ratio.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ldc.sim.replay import captures_dir  # noqa: E402

CAPTURE = captures_dir() / "spot_btcusdt_20240808.gz"
CAPTURE_DIFFS = 3451
CLK_TCK = os.sysconf("SC_CLK_TCK")
READ_CHUNK_BYTES = 1 << 20


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def start_sim(*args: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen([sys.executable, "-m", "ldc.cli", "sim", "--port", "0", *args], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def open_ws(port: int, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    if b" 101 " not in head.split(b"\r\n")[0]:
        raise RuntimeError(f"upgrade refused: {head[:200]!r}")
    return sock


def count_frames(sock: socket.socket, seconds: float, *, stop_at: int = 0) -> tuple[int, float]:
    """Text frames received in ``seconds`` (or until ``stop_at`` frames); pings are answered."""
    buf = b""
    frames = 0
    start = time.monotonic()
    deadline = start + seconds
    sock.settimeout(0.5)
    while time.monotonic() < deadline and not (stop_at and frames >= stop_at):
        try:
            chunk = sock.recv(READ_CHUNK_BYTES)
        except socket.timeout:
            continue
        if not chunk:
            break
        buf += chunk
        pos = 0
        while len(buf) - pos >= 2:
            opcode, length = buf[pos] & 0x0F, buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if len(buf) - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if len(buf) - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if len(buf) - pos < head + length:
                break
            if opcode == 0x1:
                frames += 1
            elif opcode == 0x9:  # answer pings so the server keeps us
                payload = buf[pos + head : pos + head + length]
                mask = os.urandom(4)
                masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                sock.sendall(bytes((0x8A, 0x80 | len(payload))) + mask + masked)
            pos += head + length
        buf = buf[pos:]
    return frames, time.monotonic() - start


def model_run(markets: int, speed: float, seconds: float, *, subscribe: bool) -> dict[str, float]:
    """USD-M markets on `@depth@0ms`: every model event is one diff message (rate 10/s x speed)."""
    proc, urls = start_sim("--usdm-markets", str(markets), "--rate", "10", "--speed", str(speed), "--history", "200")
    try:
        port = int(urls["rest"].rsplit(":", 1)[1])
        names = "/".join(f"{s.lower()}@depth@0ms" for s in urls["markets"]["usdm"])
        sock = open_ws(port, f"/usdm/public/stream?streams={names}") if subscribe else None
        time.sleep(0.5)
        cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
        if sock is not None:
            frames, _ = count_frames(sock, seconds)
        else:
            frames = 0
            time.sleep(seconds)
        wall, cpu = time.monotonic() - wall0, cpu_seconds(proc.pid) - cpu0
        if sock is not None:
            sock.close()
        return {"speed": speed, "msgs": frames, "wall_s": round(wall, 3), "sim_cpu_s": round(cpu, 3), "msg_per_s": round(frames / wall), "msg_per_cpu_s": round(frames / cpu) if cpu else 0}
    finally:
        stop(proc)


def replay_run(copies: int, seconds: float) -> dict[str, float]:
    proc, urls = start_sim("--replay", str(CAPTURE), "--replay-copies", str(copies), "--replay-pace", "client")
    try:
        port = int(urls["rest"].rsplit(":", 1)[1])
        names = "/".join(f"{s.lower()}@depth@100ms" for s in urls["markets"]["spot"])
        sock = open_ws(port, f"/stream?streams={names}")
        cpu0 = cpu_seconds(proc.pid)
        frames, wall = count_frames(sock, seconds, stop_at=CAPTURE_DIFFS * copies)
        cpu = cpu_seconds(proc.pid) - cpu0
        sock.close()
        return {"copies": copies, "msgs": frames, "wall_s": round(wall, 3), "sim_cpu_s": round(cpu, 3), "msg_per_s": round(frames / wall)}
    finally:
        stop(proc)


SNAPSHOT_LIMIT = 1000
SNAPSHOT_ASKS_PER_COPY = 3


def http_snapshot_run(copies: int) -> dict[str, Any]:
    """Snapshots of every copy after the reader drained the whole replay at client pace."""
    import requests

    started = time.monotonic()
    proc, urls = start_sim("--replay", str(CAPTURE), "--replay-copies", str(copies), "--replay-pace", "client")
    startup_s = time.monotonic() - started
    try:
        port = int(urls["rest"].rsplit(":", 1)[1])
        symbols = urls["markets"]["spot"]
        sock = open_ws(port, "/stream?streams=" + "/".join(f"{s.lower()}@depth@100ms" for s in symbols))
        frames, _ = count_frames(sock, 60.0, stop_at=CAPTURE_DIFFS * copies)
        times_ms = []
        for _ in range(SNAPSHOT_ASKS_PER_COPY):
            for symbol in symbols:
                t0 = time.perf_counter()
                response = requests.get(f"{urls['rest']}/api/v3/depth", params={"symbol": symbol, "limit": SNAPSHOT_LIMIT}, timeout=30)
                times_ms.append((time.perf_counter() - t0) * 1000)
                response.raise_for_status()
        sock.close()
        first_round = times_ms[: len(symbols)]
        return {"copies": copies, "frames_read": frames, "startup_s": round(startup_s, 3), "first_round_total_ms": round(sum(first_round), 2), "snapshot_ms_median": round(statistics.median(times_ms), 2)}
    finally:
        stop(proc)


def in_process_snapshot_run(copies: int) -> dict[str, float]:
    """Cold: a fresh capture, its first snapshot after the last diff (the known book walked from the
    recorded snapshot on the spot). Warm: the simulator's way, walked at load, then every copy asks."""
    from ldc.sim.config import ReplaySource
    from ldc.sim.replay import load_captures, load_replays

    sources = (ReplaySource(path=str(CAPTURE)),)
    capture = load_captures(sources)[0]
    t0 = time.perf_counter()
    capture.known().levels_at(len(capture.payloads), SNAPSHOT_LIMIT)
    cold_ms = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    markets = load_replays(sources, copies=copies, pace="client")
    load_ms = (time.perf_counter() - t0) * 1000
    for market in markets:
        market.sent_index = len(market.capture.payloads)
    t0 = time.perf_counter()
    for market in markets:
        market.snapshot(SNAPSHOT_LIMIT)
    warm_ms = (time.perf_counter() - t0) * 1000
    return {"cold_rebuild_ms": cold_ms, "load_and_prepare_ms": load_ms, "warm_all_copies_ms": warm_ms}


def replay_snapshot(repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {"capture": CAPTURE.name, "diffs": CAPTURE_DIFFS, "limit": SNAPSHOT_LIMIT}
    for copies in (1, 10):
        runs = [in_process_snapshot_run(copies) for _ in range(repeats)]
        cold = statistics.median(r["cold_rebuild_ms"] for r in runs)
        warm = statistics.median(r["warm_all_copies_ms"] for r in runs)
        http = [http_snapshot_run(copies) for _ in range(repeats)]
        out[f"copies_{copies}"] = {
            "baseline_cold_rebuild_ms_median": round(cold, 2),
            "estimate_unshared_all_copies_ms": round(cold * copies, 2),  # computed: one cold rebuild per copy
            "warm_all_copies_ms_median": round(warm, 2),
            "ratio_cold_rebuild_to_warm_all_copies": round(cold / warm, 1) if warm else None,
            "load_and_prepare_ms_median": round(statistics.median(r["load_and_prepare_ms"] for r in runs), 1),
            "http_snapshot_ms_median": statistics.median(r["snapshot_ms_median"] for r in http),
            "http_first_round_all_copies_ms_median": statistics.median(r["first_round_total_ms"] for r in http),
            "http_runs": http,
        }
    return out


def calibration_ops_per_s() -> float:
    """A fixed pure-Python workload (parse + re-encode one genuine USD-M diff), to compare runs on
    machines under different load: the simulator's figures move with it."""
    import orjson

    sample = b'{"e":"depthUpdate","E":1723161256299,"T":1723161256298,"s":"BTCUSDT","U":5123107832006,"u":5123107837557,"pu":5123107831937,"b":[["58710.20","0.014"],["61496.50","0.010"],["61510.90","0.000"]],"a":[["61800.30","2.510"],["61801.00","0.004"]]}'
    count = 50_000
    start = time.process_time()
    for _ in range(count):
        orjson.dumps(orjson.loads(sample))
    return count / (time.process_time() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--speeds", default="2,4,6")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--replay-snapshot-only", action="store_true", help="only the replay_snapshot part")
    args = parser.parse_args()
    if args.replay_snapshot_only:
        if not CAPTURE.exists():
            print(f"capture not found: {CAPTURE}", file=sys.stderr)
            return 1
        print(json.dumps({"bench": "sim", "load_avg": os.getloadavg(), "replay_snapshot": replay_snapshot(args.repeats)}, indent=2))
        return 0
    speeds = [float(s) for s in args.speeds.split(",")]
    runs: dict[str, list[dict[str, float]]] = {}
    baseline: dict[str, list[dict[str, float]]] = {}
    for _ in range(args.repeats):
        for speed in speeds:
            runs.setdefault(str(speed), []).append(model_run(args.markets, speed, args.seconds, subscribe=True))
            baseline.setdefault(str(speed), []).append(model_run(args.markets, speed, args.seconds, subscribe=False))
    summary = {}
    for speed in speeds:
        key = str(speed)
        delivered = statistics.median(r["msg_per_s"] for r in runs[key])
        cpu_with = statistics.median(r["sim_cpu_s"] / r["wall_s"] for r in runs[key])
        cpu_alone = statistics.median(r["sim_cpu_s"] / r["wall_s"] for r in baseline[key])
        summary[key] = {
            "offered_msg_per_s": round(args.markets * 10 * speed),
            "delivered_msg_per_s_median": delivered,
            "sim_cpu_fraction_median": round(cpu_with, 3),
            "msg_per_sim_cpu_s_median": statistics.median(r["msg_per_cpu_s"] for r in runs[key]),
            "baseline_model_only_cpu_fraction_median": round(cpu_alone, 3),
            "ratio_cpu_with_fanout_to_model_only": round(cpu_with / cpu_alone, 2) if cpu_alone else None,
        }
    calibrations = [calibration_ops_per_s() for _ in range(args.repeats)]
    best = max(summary.values(), key=lambda s: s["delivered_msg_per_s_median"])
    result = {
        "bench": "sim",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(), "load_avg": os.getloadavg()},
        "markets": args.markets,
        "seconds_per_run": args.seconds,
        "repeats": args.repeats,
        "by_speed": summary,
        "sustained_msg_per_s": best["delivered_msg_per_s_median"],
        "msg_per_sim_cpu_s": max(s["msg_per_sim_cpu_s_median"] for s in summary.values()),
        "baseline_calibration_ops_per_s_median": round(statistics.median(calibrations)),
        "ratio_msg_per_sim_cpu_s_to_calibration": round(max(s["msg_per_sim_cpu_s_median"] for s in summary.values()) / statistics.median(calibrations), 4),
        "target_msg_per_s_one_core": 20_000,
        "ratio_msg_per_sim_cpu_s_to_target": round(max(s["msg_per_sim_cpu_s_median"] for s in summary.values()) / 20_000, 2),
        "ratio_delivered_to_target": round(best["delivered_msg_per_s_median"] / 20_000, 2),
    }
    if CAPTURE.exists():
        replays = [replay_run(10, 30.0) for _ in range(args.repeats)]
        result["replay_client_pace_10_copies"] = {"msg_per_s_median": statistics.median(r["msg_per_s"] for r in replays), "runs": replays}
        result["replay_snapshot"] = replay_snapshot(args.repeats)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
