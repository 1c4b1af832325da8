#!/usr/bin/env python3
"""Benchmark of the websocket receive path (ldc.io.ws) on Binance's genuine spot capture; prints JSON.

A source process serves the capture's diff messages as pre-encoded websocket frames over loopback, as fast
as the client reads (one ``sendall`` of a prebuilt buffer per round: the source is not what is measured;
its own rate into a null reader is printed as ``source``). The client side, in this process:

- ``pool``: ``WsPool`` with a handler that only counts frames (frame in -> ``on_message(conn_id, raw,
  recv_time_ns)``), the feeder's receive path: websocket-client's handshake, then 64 KB socket reads parsed
  by ``ldc.io.ws._FrameParser``;
- ``baseline_raw``: the same connection read by the stock websocket-client loop (``recv_data_frame`` with
  ``skip_utf8_validation=True``), the way the pool read before: the baseline;
- ``baseline_default``: websocket-client's default ``recv()`` (UTF-8 validated in pure Python), on a
  slice of the frames: why validation is skipped;
- ``parser_only``: ``_FrameParser`` over the same bytes already in memory (no socket, no handler): the
  parsing share of ``pool``.

Figures: frames/s (wall) and CPU microseconds per frame of this process, medians over ``--repeats``;
``ratio_raw_cpu_to_pool`` is the baseline's CPU per frame over the pool's (the speed-up).

    .venv/bin/python scripts/bench_ws.py [--repeats 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import multiprocessing
import os
import platform
import socket
import statistics
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

import websocket

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ldc.io.ws import CloseReason, WsOptions, WsPool, _FrameParser  # noqa: E402
from ldc.venues.binance import STREAM_PROTOCOL  # noqa: E402
from ldc.sim.replay import captures_dir

CAPTURE = captures_dir() / "spot_btcusdt_20240808.gz"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455
DEFAULT_SLICE = 500  # frames read through the UTF-8-validating recv(): it is ~20x slower


def load_frames(path: Path) -> list[bytes]:
    frames = []
    with gzip.open(path, "rb") as fh:
        for line in fh:
            _, _, raw = line.rstrip(b"\n").partition(b" ")
            if b"@depth" in raw[:40]:
                frames.append(raw)
    return frames


def encode_text_frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x81, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x81, 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 127, n)
    return head + payload


def handshake(conn: socket.socket) -> None:
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError("client left during the handshake")
        request += chunk
    key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key"))
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")  # fmt: skip


def serve(port_out: Any, rounds: int) -> None:
    """The source process: every connection gets the capture ``rounds`` times, then a close frame."""
    frames = load_frames(CAPTURE)
    blob = b"".join(encode_text_frame(f) for f in frames)
    close = struct.pack("!BBH", 0x88, 2, 1000)
    listener = socket.create_server(("127.0.0.1", 0))
    port_out.put(port_out_value(listener.getsockname()[1], len(frames), len(blob)))

    def blast(conn: socket.socket) -> None:
        try:
            handshake(conn)
            for _ in range(rounds):
                conn.sendall(blob)
            conn.sendall(close)
            time.sleep(0.5)
        except OSError:
            pass
        finally:
            conn.close()

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=blast, args=(conn,), daemon=True).start()


def port_out_value(port: int, frames: int, size: int) -> dict[str, int]:
    return {"port": port, "frames": frames, "bytes": size}


def run_source_rate(url_port: int, total_bytes: int) -> float:
    """Bytes/s the source sends into a reader that discards them (raw socket): its ceiling."""
    sock = socket.create_connection(("127.0.0.1", url_port))
    sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")  # fmt: skip
    buf = bytearray(1 << 20)
    got, start = 0, time.perf_counter()
    while got < total_bytes:
        n = sock.recv_into(buf)
        if not n:
            break
        got += n
    elapsed = time.perf_counter() - start
    sock.close()
    return got / elapsed


def run_raw(port: int, total: int) -> tuple[float, float]:
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/stream", skip_utf8_validation=True, enable_multithread=False)
    count, wall, cpu = 0, time.perf_counter(), time.process_time()
    while count < total:
        opcode, frame = ws.recv_data_frame(True)
        if opcode == websocket.ABNF.OPCODE_TEXT:
            count += 1
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    ws.close()
    return count / wall, cpu / count * 1e6


def run_default(port: int, total: int) -> tuple[float, float]:
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/stream")
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(total):
        ws.recv()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    ws.shutdown()  # type: ignore[no-untyped-call]
    return total / wall, cpu / total * 1e6


class Counter:
    def __init__(self, total: int) -> None:
        self.total, self.count = total, 0
        self.done = threading.Event()

    def on_open(self, conn_id: int, streams: tuple[str, ...], replaces: int | None) -> None:
        pass

    def on_message(self, conn_id: int, raw: bytes, recv_time_ns: int) -> None:
        self.count += 1
        if self.count == self.total:
            self.done.set()

    def on_close(self, conn_id: int, reason: CloseReason, streams: tuple[str, ...]) -> None:
        pass


def run_pool(port: int, total: int) -> tuple[float, float]:
    counter = Counter(total)
    pool = WsPool(f"ws://127.0.0.1:{port}/stream", counter, protocol=STREAM_PROTOCOL, options=WsOptions(backoff_initial_s=5.0))
    wall, cpu = time.perf_counter(), time.process_time()
    pool.start(["btcusdt@depth@100ms"])
    if not counter.done.wait(120):
        raise RuntimeError(f"pool read {counter.count} of {total} frames in 120 s")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    pool.stop()
    return total / wall, cpu / total * 1e6


def run_parser(blob: bytes, frames: int, rounds: int) -> tuple[float, float]:
    """``_FrameParser`` fed ``blob`` ``rounds`` times in reads of the size it offers, from memory."""
    parser, view, count = _FrameParser(), memoryview(blob), 0
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        pos = 0
        while pos < len(blob):
            space = parser.space()
            n = min(len(space), len(blob) - pos)
            space[:n] = view[pos : pos + n]
            pos += n
            count += len(parser.feed(n))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if count != frames * rounds:
        raise RuntimeError(f"parser returned {count} frames, expected {frames * rounds}")
    return count / wall, cpu / count * 1e6


def median_of(runs: list[tuple[float, float]]) -> dict[str, float]:
    return {
        "frames_per_s": round(statistics.median(r[0] for r in runs)),
        "cpu_us_per_frame": round(statistics.median(r[1] for r in runs), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="times the capture is sent per connection")
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    source = ctx.Process(target=serve, args=(queue, args.rounds), daemon=True)
    source.start()
    try:
        info = queue.get(timeout=60)
        port, total = info["port"], info["frames"] * args.rounds
        source_rate = [run_source_rate(port, info["bytes"] * args.rounds) for _ in range(args.repeats)]
        raw = [run_raw(port, total) for _ in range(args.repeats)]
        pool = [run_pool(port, total) for _ in range(args.repeats)]
        default = [run_default(port, min(DEFAULT_SLICE, total)) for _ in range(args.repeats)]
        frames = load_frames(CAPTURE)
        blob = b"".join(encode_text_frame(f) for f in frames)
        parsed = [run_parser(blob, len(frames), args.rounds) for _ in range(args.repeats)]
    finally:
        source.kill()
        source.join(5)
    avg_frame = info["bytes"] / info["frames"]
    result = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "capture": CAPTURE.name,
        "frames_per_run": total,
        "mean_frame_bytes": round(avg_frame),
        "source": {"frames_per_s_into_null_reader": round(statistics.median(source_rate) / avg_frame)},
        "pool": median_of(pool),
        "baseline_raw": median_of(raw),
        "baseline_default": median_of(default),
        "parser_only": median_of(parsed),
    }
    result["ratio_raw_cpu_to_pool"] = round(result["baseline_raw"]["cpu_us_per_frame"] / result["pool"]["cpu_us_per_frame"], 2)
    result["ratio_default_cpu_to_raw"] = round(
        result["baseline_default"]["cpu_us_per_frame"] / result["baseline_raw"]["cpu_us_per_frame"], 1
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
