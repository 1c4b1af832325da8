"""``ldc book GROUP SYMBOL [--depth N] [--json]``: print one consistent snapshot of a market.

Exit status: 0 the book is in sync, 1 it is shown but not in sync (or its writer is gone), 2 no
such segment or market, or the segment is unreadable.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from ldc.errors import SegmentError
from ldc.shm.reader import Reader, Snapshot
from ldc.tools import flag_names, group_name_error, header_line, ladder, levels_json, resolve_symbol


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ldc book", description="print one consistent snapshot of a market")
    parser.add_argument("group", help="market group (segment /dev/shm/ldc-GROUP)")
    parser.add_argument("symbol", help="market symbol in the venue's syntax, e.g. BTCUSDT, BTC-USDT-SWAP, BTC/USD (any case)")
    parser.add_argument("--depth", type=int, default=None, help="levels per side (default: all published)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a ladder")
    return parser.parse_args(argv)


def to_json(snap: Snapshot, *, writer_alive: bool, exchange: str = "") -> dict[str, object]:
    return {
        "symbol": snap.symbol,
        "exchange": exchange,
        "update_id": snap.update_id,
        "synced": snap.in_sync and writer_alive,
        "status": flag_names(snap.status),
        "event_time_ms": snap.event_time_ms,
        "recv_time_ns": snap.recv_time_ns,
        "publish_time_ns": snap.publish_time_ns,
        "writer_alive": writer_alive,
        "bids": levels_json(snap.bids.tolist()),
        "asks": levels_json(snap.asks.tolist()),
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.depth is not None and args.depth < 1:
        print(f"ldc book: --depth must be >= 1, got {args.depth}", file=sys.stderr)
        return 2
    bad_group = group_name_error(args.group)
    if bad_group:
        print(f"ldc book: {bad_group}", file=sys.stderr)
        return 2
    try:
        with Reader(args.group) as reader:
            symbol = resolve_symbol(reader, args.symbol)
            snap = reader.snapshot(symbol, args.depth, allow_out_of_sync=True)
            alive = reader.writer_alive()
            message = reader.status(symbol).message
            exchange = reader.info().exchange
    except SegmentError as exc:
        print(f"ldc book: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(to_json(snap, writer_alive=alive, exchange=exchange)))
    else:
        print(header_line(snap, time.time_ns(), exchange) + ("" if alive else "  (writer not running)"))
        if message:
            print(f"message: {message}")
        print("\n".join(ladder(snap)))
    return 0 if snap.in_sync and alive else 1
