"""Benchmark: ``get_asks(market, limit_count=10)`` through ldc.compat.unicorn against UNICORN's own call on the
same book, in one process, in the same run.

    .venv/bin/python -m pip install -e '.[unicorn]'     # UNICORN Binance Local Depth Cache from PyPI
    .venv/bin/python scripts/bench_compat.py [--batches 31] [--calls 200]

The simulator (ldc.sim, in process) streams BTCUSDT; the facade starts its feeder as a child process and
reads the shared-memory segment. UNICORN's manager is made without its constructor (which builds REST and
websocket clients that would reach for the exchange: nothing here leaves 127.0.0.1) and loaded through
its own ``_add_depthcache`` / ``_apply_updates`` with the simulator's truth at the update id the facade
read (1,000 levels a side, what UNICORN keeps); both answers are checked equal before any timing. Batches
of ``--calls`` calls alternate between the two; prints one JSON object with the median us per call of each
and the ratio (UNICORN / facade). The facade's book keeps moving while it is timed; UNICORN's does not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any

from ldc.compat.unicorn import BinanceLocalDepthCacheManager as FacadeManager
from ldc.sim import SimConfig, Simulator

MARKET = "btcusdt"
LIMIT_COUNT = 10
UNICORN_BOOK_LEVELS = 1000  # UNICORN trims each side to 1,000 levels after every update
SYNC_TIMEOUT_S = 30.0


def unicorn_manager(truth: dict[str, Any]) -> Any:
    """UNICORN's manager holding ``truth`` as a synced book, loaded through its own code."""
    from unicorn_binance_local_depth_cache import manager as unicorn

    ubldc = unicorn.BinanceLocalDepthCacheManager.__new__(unicorn.BinanceLocalDepthCacheManager)
    ubldc.depth_caches, ubldc.threading_lock_ask, ubldc.threading_lock_bid = {}, {}, {}
    ubldc.default_refresh_interval, ubldc.stop_request = None, False
    ubldc._add_depthcache(market=MARKET)
    ubldc.depth_caches[MARKET]["is_synchronized"] = True
    ubldc._apply_updates(asks=truth["asks"], bids=truth["bids"], market=MARKET)
    ubldc.depth_caches[MARKET]["stop_request"] = False
    return ubldc


def per_call_us(call: Any, calls: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        call(MARKET, limit_count=LIMIT_COUNT)
    return (time.perf_counter_ns() - start) / calls / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=31)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    try:
        import unicorn_binance_local_depth_cache as unicorn_package
    except ImportError:
        print("bench_compat: UNICORN is not installed: .venv/bin/python -m pip install -e '.[unicorn]'", file=sys.stderr)
        return 2
    sim = Simulator(SimConfig(spot_symbols=(MARKET.upper(),), rate=20.0, history_events=20000)).start()
    try:
        facade = FacadeManager(exchange="binance.com", rest_url=sim.rest_url, ws_url=sim.ws_url)
        with facade:
            facade.create_depthcache(MARKET)
            deadline = time.monotonic() + SYNC_TIMEOUT_S
            while not facade.is_depth_cache_synchronized(MARKET):
                if time.monotonic() > deadline:
                    raise SystemExit(f"bench_compat: {MARKET} not in sync within {SYNC_TIMEOUT_S:g} s")
                time.sleep(0.05)
            ours = facade.get_asks(MARKET, limit_count=LIMIT_COUNT)
            truth = sim.truth(MARKET.upper(), update_id=facade.last_read_update_id, limit=UNICORN_BOOK_LEVELS, family="spot")
            assert truth is not None, "the facade's update id left the simulator's history"
            ubldc = unicorn_manager(truth)
            theirs = ubldc.get_asks(MARKET, limit_count=LIMIT_COUNT)
            if theirs != ours:
                raise SystemExit(f"bench_compat: the two answers differ on the same book:\n ldc     {ours}\n UNICORN {theirs}")
            facade_us, unicorn_us = [], []
            for _ in range(args.batches):
                facade_us.append(per_call_us(facade.get_asks, args.calls))
                unicorn_us.append(per_call_us(ubldc.get_asks, args.calls))
            levels = len(ubldc.depth_caches[MARKET]["asks"])
    finally:
        sim.stop()
    facade_median, unicorn_median = statistics.median(facade_us), statistics.median(unicorn_us)
    print(json.dumps({
        "bench": "compat_get_asks_limit_count_10",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "unicorn_version": getattr(unicorn_package, "__version__", None) or _unicorn_version(),
        "batches": args.batches,
        "calls_per_batch": args.calls,
        "unicorn_book_levels_per_side": levels,
        "facade_depth": facade.depth,
        "answers_equal": True,
        "facade_us_median": round(facade_median, 3),
        "unicorn_us_median": round(unicorn_median, 3),
        "ratio_unicorn_over_facade": round(unicorn_median / facade_median, 1),
    }, indent=2))  # fmt: skip
    return 0


def _unicorn_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("unicorn-binance-local-depth-cache")
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
