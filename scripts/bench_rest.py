#!/usr/bin/env python3
"""CPU per REST depth snapshot GET, ldc's client against a ``requests.Session``; prints JSON.

The feeder's snapshot workers share the GIL with the websocket thread that applies diffs: every
microsecond of Python a GET costs is taken from the books, and a long stretch of it delays the frames
queued behind it. This measures the calling thread's CPU clock (``time.thread_time_ns``) per
``GET /api/v3/depth`` against the simulator (``ldc sim``, loopback, keep-alive), for:

- ``ldc``: ``ldc.io.rest.RestClient.snapshot`` (urllib3 pool, no governor), body and headers read;
- ``baseline_requests``: a ``requests.Session`` with the same keep-alive pool doing the same GET and
  reading the same two headers (how ``RestClient`` was built before, and what python-binance and
  UNICORN use).

Alternated in ``--repeats`` rounds of ``--requests`` each, per snapshot limit; medians of the round
medians, and ``ratio`` = baseline / ldc. The simulator's answer time is not in the CPU figure.

    .venv/bin/python scripts/bench_rest.py [--repeats 5] [--requests 40]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_feeder_procs import SimProcess  # noqa: E402

from ldc.io.rest import RestClient  # noqa: E402
from ldc.venues.binance import REST_PROTOCOL, USED_WEIGHT_HEADER  # noqa: E402

DEPTH_PATH = "/api/v3/depth"
SYMBOL = "BTCUSDT"
LIMITS = (100, 1000)
# the simulator's default spot limit is 6,000 weight a minute: 5 rounds x 2 clients x 40 x (5 + 50) fits only
# with a larger one; weights are not what is measured here
SIM_WEIGHT_LIMIT = 1_000_000


def _cpu_us_per_call(call: Callable[[], object], count: int) -> float:
    samples = []
    for _ in range(count):
        start = time.thread_time_ns()
        call()
        samples.append(time.thread_time_ns() - start)
    return statistics.median(samples) / 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="alternated rounds per client (default 5)")
    parser.add_argument("--requests", type=int, default=40, help="requests per round (default 40)")
    args = parser.parse_args()
    result: dict[str, object] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_avg_1m_at_start": round(os.getloadavg()[0], 2)},
        "repeats": args.repeats,
        "requests_per_round": args.requests,
    }
    with SimProcess(["--symbols", SYMBOL, "--weight-limit", str(SIM_WEIGHT_LIMIT)]) as sim:
        base = sim.urls["rest"]
        client = RestClient(base, governor=None, protocol=REST_PROTOCOL)
        session = requests.Session()
        limits: dict[str, object] = {}
        for limit in LIMITS:
            params = {"symbol": SYMBOL, "limit": limit}

            def ldc_get() -> object:
                return client.snapshot(DEPTH_PATH, symbol=SYMBOL, limit=limit, weight=1).body

            def requests_get() -> object:
                response = session.get(base + DEPTH_PATH, params=params, timeout=(3.0, 10.0))
                response.headers.get(USED_WEIGHT_HEADER), response.headers.get("Retry-After")
                return response.content

            rounds: dict[str, list[float]] = {"ldc": [], "baseline_requests": []}
            for _ in range(args.repeats):
                rounds["ldc"].append(_cpu_us_per_call(ldc_get, args.requests))
                rounds["baseline_requests"].append(_cpu_us_per_call(requests_get, args.requests))
            ldc_us = statistics.median(rounds["ldc"])
            baseline_us = statistics.median(rounds["baseline_requests"])
            limits[str(limit)] = {
                "ldc_cpu_us_per_get": round(ldc_us, 1),
                "baseline_requests_cpu_us_per_get": round(baseline_us, 1),
                "ratio": round(baseline_us / ldc_us, 2),
                "runs_ldc": [round(x, 1) for x in rounds["ldc"]],
                "runs_baseline": [round(x, 1) for x in rounds["baseline_requests"]],
            }
        client.close()
        session.close()
    result["limits"] = limits
    result["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
