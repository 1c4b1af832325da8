"""``ldc top GROUP SYMBOL [--depth N] [--duration S]``: a live ladder of one market.

Redraws after every publish of the market (sleeping on the segment's notify word, no polling),
at most ``--max-fps`` times a second. Ctrl-C or ``--duration`` ends it (exit 0).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Final, TextIO

from ldc.errors import LdcError, SegmentError
from ldc.shm.reader import Reader
from ldc.tools import group_name_error, header_line, ladder, resolve_symbol

CLEAR_SCREEN: Final = "\x1b[H\x1b[2J"
IDLE_REDRAW_S: Final = 1.0  # redraw at least this often, so ages and a dead writer show


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ldc top", description="a live ladder of a market in the terminal")
    parser.add_argument("group", help="market group (segment /dev/shm/ldc-GROUP)")
    parser.add_argument("symbol", help="market symbol in the venue's syntax, e.g. BTCUSDT, BTC-USDT-SWAP, BTC/USD (any case)")
    parser.add_argument("--depth", type=int, default=10, help="levels per side (default 10)")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--max-fps", type=float, default=20.0, help="redraws per second at most (default 20)")
    return parser.parse_args(argv)


def frame(reader: Reader, symbol: str, depth: int, exchange: str = "") -> str:
    snap = reader.snapshot(symbol, depth, allow_out_of_sync=True)
    status = reader.status(symbol)
    lines = [header_line(snap, time.time_ns(), exchange)]
    if not reader.writer_alive():
        lines.append("writer not running: showing its last book")
    if status.message:
        lines.append(f"message: {status.message}")
    counters = "  ".join(f"{name} {value}" for name, value in status.counters.items())
    lines += [counters, *ladder(snap)]
    return "\n".join(lines)


def run(reader: Reader, args: argparse.Namespace, out: TextIO) -> None:
    deadline = None if args.duration is None else time.monotonic() + args.duration
    min_gap = 1.0 / args.max_fps
    tty = out.isatty()
    symbol, exchange = resolve_symbol(reader, args.symbol), reader.info().exchange
    while True:
        text = frame(reader, symbol, args.depth, exchange)
        out.write((CLEAR_SCREEN + text + "\n") if tty else (text + "\n\n"))
        out.flush()
        if deadline is not None and time.monotonic() >= deadline:
            return
        time.sleep(min_gap)
        remaining = IDLE_REDRAW_S if deadline is None else min(IDLE_REDRAW_S, max(0.0, deadline - time.monotonic()))
        reader.wait_for_update(symbol, timeout=remaining)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.depth < 1 or args.max_fps <= 0:
        print(f"ldc top: --depth must be >= 1 and --max-fps > 0, got {args.depth} and {args.max_fps}", file=sys.stderr)
        return 2
    bad_group = group_name_error(args.group)
    if bad_group:
        print(f"ldc top: {bad_group}", file=sys.stderr)
        return 2
    try:
        with Reader(args.group) as reader:
            run(reader, args, sys.stdout)
    except KeyboardInterrupt:
        return 0
    except SegmentError as exc:
        print(f"ldc top: {exc}", file=sys.stderr)
        return 2
    except LdcError as exc:
        print(f"ldc top: {exc}", file=sys.stderr)
        return 1
    return 0
