"""What the hot standby's GIL switch interval while it waits (``ldc.standby.WAITING_SWITCH_INTERVAL_S``) costs
the standby: its process CPU while it keeps a busy group's books, with that interval and with the interpreter's
5 ms, alternated; prints JSON.

A simulator (in this process) serves ``--markets`` spot markets at ``--rate`` events a second each; the group's
writer (``ldc feed --standby``, started first: it becomes the writer) and a standby (``ldc feed --standby``,
the interval set as asked before the CLI runs) keep them. Once the standby is in sync, its CPU clock
(utime + stime, /proc) is read over ``--seconds``; each repeat runs both intervals, the order alternating.

    .venv/bin/python scripts/bench_standby_cpu.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ldc.io.governor import governor_key, unlink_governor
from ldc.shm.layout import lock_path, segment_path, temp_paths
from ldc.shm.reader import Reader
from ldc.sim import SimConfig, Simulator
from ldc.standby import WAITING_SWITCH_INTERVAL_S, attached_standbys

INTERPRETER_INTERVAL_S = 0.005
LAUNCH = "import sys, ldc.standby as s; s.WAITING_SWITCH_INTERVAL_S = float(sys.argv[1]); from ldc.cli import main; sys.exit(main(sys.argv[2:]))"


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(check: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def one_run(config: Path, group: str, interval_s: float, seconds: float, markets: tuple[str, ...]) -> float:
    """The standby's CPU seconds per wall second while it keeps ``markets`` with ``interval_s``."""
    feed = ["feed", str(config), "--group", group, "--standby"]
    writer = subprocess.Popen([sys.executable, "-c", LAUNCH, str(INTERPRETER_INTERVAL_S), *feed], stderr=subprocess.DEVNULL)
    standby: subprocess.Popen[bytes] | None = None
    try:
        with Reader(group, attach_timeout_s=30.0) as reader:
            wait_for(lambda: all(reader.status(s).in_sync for s in markets), 30.0, "the writer in sync")
        standby = subprocess.Popen([sys.executable, "-c", LAUNCH, str(interval_s), *feed], stderr=subprocess.DEVNULL)
        wait_for(lambda: any(a.pid == standby.pid for a in attached_standbys(group)), 30.0, "the standby attached")
        time.sleep(3.0)  # its snapshots loaded and its books in sync
        start_cpu, start = cpu_s(standby.pid), time.monotonic()
        time.sleep(seconds)
        return (cpu_s(standby.pid) - start_cpu) / (time.monotonic() - start)
    finally:
        for proc in (standby, writer):
            if proc is not None:
                proc.terminate()
                proc.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--markets", type=int, default=30)
    parser.add_argument("--rate", type=float, default=1000.0, help="simulator events a second per market")
    parser.add_argument("--seconds", type=float, default=10.0, help="CPU measured over this long per run")
    args = parser.parse_args()
    markets = tuple(f"S{i}USDT" for i in range(1, args.markets + 1))
    sim = Simulator(SimConfig(spot_symbols=markets, rate=args.rate, history_events=50_000)).start()
    group = f"benchsbc{os.getpid()}"
    runs: dict[str, list[float]] = {"interpreter": [], "standby": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "ldc.toml"
            config.write_text(f'[[group]]\nname = "{group}"\nexchange = "binance.com"\nsymbols = {json.dumps(list(markets))}\n'
                              f'depth = 20\ncapacity = {2 * len(markets)}\nrest_url = "{sim.rest_url}"\nws_url = "{sim.ws_url}"\n')  # fmt: skip
            for repeat in range(args.repeats):
                order = [("interpreter", INTERPRETER_INTERVAL_S), ("standby", WAITING_SWITCH_INTERVAL_S)]
                for name, interval in order if repeat % 2 == 0 else order[::-1]:
                    runs[name].append(one_run(config, group, interval, args.seconds, markets))
    finally:
        sim.stop()
        unlink_governor(governor_key(sim.rest_url))
        for path in (segment_path(group), lock_path(group), *temp_paths(group)):
            try:
                os.unlink(path)
            except OSError:
                pass
    medians = {name: statistics.median(values) for name, values in runs.items()}
    print(json.dumps({"markets": len(markets), "rate_per_market": args.rate, "seconds": args.seconds, "load_average": os.getloadavg(),
                      "switch_interval_s": {"interpreter": INTERPRETER_INTERVAL_S, "standby": WAITING_SWITCH_INTERVAL_S},
                      "standby_cpu_per_wall_s": {n: [round(v, 4) for v in vs] for n, vs in runs.items()},
                      "median": {n: round(v, 4) for n, v in medians.items()},
                      "ratio_standby_to_interpreter": round(medians["standby"] / medians["interpreter"], 3)}))  # fmt: skip


if __name__ == "__main__":
    main()
