"""`ldc demo`: the whole product on one machine with no network and no config.

It starts the local exchange simulator (127.0.0.1), writes a two-group config (spot and USD-M futures)
into a temporary directory, runs `ldc run` on it — a supervisor and one feeder process per group, as in
production — and reads the shared-memory segments from this process like any strategy would: a live
ladder of one market, the state of every market, and a running check of each snapshot against the
simulator's ground truth at the same update id. Ctrl-C or `--duration` ends it; the exit status is 0 when
every market synced and every checked snapshot equalled the exchange's book.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import posix_ipc

from ldc.cli import child_command
from ldc.config import GROUP_NAME_RE
from ldc.errors import LdcError, SegmentNotFound
from ldc.io.governor import governor_key, unlink_governor
from ldc.shm.layout import Status, segment_name, waiters_name
from ldc.shm.reader import Reader, Snapshot
from ldc.sim import SimConfig, Simulator
from ldc.supervisor import die_with_parent

SPOT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT")
USDM_SYMBOLS = ("BTCUSDT", "ETHUSDT")
DEPTH = 20
LADDER_LEVELS = 10
REFRESH_S = 0.5
START_TIMEOUT_S = 20.0  # segments must appear within this
STOP_TIMEOUT_S = 15.0
DEFAULT_DURATION_S = 20.0
SIM_RATE = 40.0  # model events per second per market: lively but light on 2 cores
GROUP_SUFFIXES = ("spot", "usdm")
# Ctrl-C, `kill`, and the terminal closing (SIGHUP of the session) all end the demo the same clean way
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class Verification:
    """Snapshots compared with the simulator's truth at their update id."""

    checked: int = 0
    equal: int = 0
    unavailable: int = 0  # the update id had already left the simulator's bounded history
    mismatches: list[str] = field(default_factory=list)


def _config_text(group_prefix: str, sim: Simulator) -> str:
    def table(name: str, exchange: str, symbols: tuple[str, ...], ws_url: str) -> str:
        quoted = ", ".join(f'"{s}"' for s in symbols)
        return (f'[[group]]\nname = "{group_prefix}-{name}"\nexchange = "{exchange}"\nsymbols = [{quoted}]\n'
                f'depth = {DEPTH}\nrest_url = "{sim.rest_url}"\nws_url = "{ws_url}"\n\n')  # fmt: skip

    return table("spot", "binance.com", SPOT_SYMBOLS, sim.ws_url) + table(
        "usdm", "binance.com-futures", USDM_SYMBOLS, sim.usdm_ws_url
    )


def _levels_equal(levels: list[list[float]], truth: list[list[str]]) -> bool:
    return len(levels) == len(truth) and all(
        float(p) == lp and float(q) == lq for (lp, lq), (p, q) in zip(levels, truth)
    )


def verify(sim: Simulator, snap: Snapshot, family: str, result: Verification) -> None:
    """Compare one reader snapshot with the exchange's book at the same update id."""
    truth = sim.truth(snap.symbol, update_id=snap.update_id, limit=DEPTH, family=family)
    if truth is None:
        result.unavailable += 1
        return
    result.checked += 1
    if _levels_equal(snap.bids.tolist(), truth["bids"]) and _levels_equal(snap.asks.tolist(), truth["asks"]):  # type: ignore[arg-type]
        result.equal += 1
    else:
        result.mismatches.append(f"{family} {snap.symbol} at update id {snap.update_id}")


def render(readers: dict[str, Reader], focus: tuple[str, str], result: Verification, elapsed_s: float) -> str:
    lines = [f"ldc demo: simulator + `ldc run` (2 feeders) + this reader process   {elapsed_s:5.1f} s", ""]
    lines.append(f"{'group':<12} {'market':<9} {'state':<10} {'update id':>13} {'best bid':>12} {'best ask':>12} {'updates':>8}")
    for group, reader in readers.items():
        for symbol in reader.markets():
            st = reader.status(symbol)
            state = "synced" if st.in_sync else (Status(st.status).name or "-").lower()[:10]
            bid, ask = reader.best(symbol) if st.in_sync else (None, None)
            lines.append(
                f"{group:<12} {symbol:<9} {state:<10} {st.update_id:>13} {_price(bid):>12} {_price(ask):>12} "
                f"{st.counters['updates']:>8}"
            )
    group, symbol = focus
    lines += ["", f"{group} {symbol}, top {LADDER_LEVELS}:", f"{'bid qty':>14} {'bid':>12} | {'ask':<12} {'ask qty':<14}"]
    try:
        snap = readers[group].snapshot(symbol, LADDER_LEVELS)
        for i in range(LADDER_LEVELS):
            b = snap.bids[i] if i < len(snap.bids) else None
            a = snap.asks[i] if i < len(snap.asks) else None
            left = f"{b[1]:>14.5f} {b[0]:>12.2f}" if b is not None else " " * 27
            right = f"{a[0]:<12.2f} {a[1]:<14.5f}" if a is not None else ""
            lines.append(f"{left} | {right}")
    except LdcError as exc:
        lines.append(f"  ({exc})")
    lines += ["", f"checked against the exchange's truth at the same update id: {result.equal}/{result.checked} equal"]
    return "\n".join(lines)


def _price(level: tuple[float, float] | None) -> str:
    return "-" if level is None else f"{level[0]:.2f}"


def _attach(groups: dict[str, str], deadline: float, stopped: Callable[[], bool]) -> dict[str, Reader]:
    readers: dict[str, Reader] = {}
    while len(readers) < len(groups) and not stopped():
        for group in groups:
            if group not in readers:
                try:
                    readers[group] = Reader(group)
                except SegmentNotFound:
                    pass
        if time.monotonic() > deadline:
            missing = sorted(set(groups) - readers.keys())
            raise LdcError(f"segments {missing} did not appear within {START_TIMEOUT_S:.0f} s")
        time.sleep(0.1)
    return readers


def _remove_segments(groups: Iterable[str]) -> None:
    """The demo's segments go with it, unless a writer still holds one (a feeder of the same group name
    that is not ours)."""
    for group in groups:
        try:
            with Reader(group) as reader:
                if reader.writer_alive():
                    continue
        except LdcError:
            continue
        for name in (segment_name(group), waiters_name(group)):
            try:
                posix_ipc.unlink_shared_memory(name)
            except posix_ipc.ExistentialError:
                pass


def _start_supervisor(config: Path) -> subprocess.Popen[bytes]:
    """`ldc run` in a session of its own: this process alone decides when it stops (the terminal's Ctrl-C or
    hang-up reaches the demo, which stops it with SIGTERM), and it gets SIGTERM if the demo dies unannounced."""
    return subprocess.Popen(child_command("run", str(config), "--log-level", "WARNING"), start_new_session=True,
                            preexec_fn=functools.partial(die_with_parent, os.getpid()))  # fmt: skip


def _show(text: str) -> bool:
    """Write a block to the terminal; False once it cannot be written (the terminal was closed: stop)."""
    if not text:
        return True
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except OSError:  # EIO from a hung-up terminal, EPIPE from a closed pipe
        return False
    return True


def group_prefix_error(prefix: str) -> str | None:
    """None when PREFIX-spot and PREFIX-usdm are valid group names, else the error naming the rule."""
    if all(GROUP_NAME_RE.fullmatch(f"{prefix}-{suffix}") for suffix in GROUP_SUFFIXES):
        return None
    longest = max(len(s) for s in GROUP_SUFFIXES) + 1
    return (f"--group-prefix expected letters, digits, '_' and '-', starting with a letter or digit, so that "
            f"PREFIX-{'/-'.join(GROUP_SUFFIXES)} match {GROUP_NAME_RE.pattern} ({longest} characters are added), "
            f"found {prefix!r}")  # fmt: skip


def run(duration_s: float, group_prefix: str, *, interactive: bool) -> int:
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    for signum in STOP_SIGNALS:
        signal.signal(signum, on_signal)
    groups = {f"{group_prefix}-{suffix}": suffix for suffix in GROUP_SUFFIXES}
    result = Verification()
    synced_once: set[tuple[str, str]] = set()
    with Simulator(SimConfig(spot_symbols=SPOT_SYMBOLS, usdm_symbols=USDM_SYMBOLS, rate=SIM_RATE, history_events=20_000)) as sim, \
            tempfile.TemporaryDirectory(prefix="ldc-demo-") as tmp:  # fmt: skip
        config = Path(tmp) / "ldc.toml"
        config.write_text(_config_text(group_prefix, sim))
        supervisor = _start_supervisor(config)
        readers: dict[str, Reader] = {}
        try:
            started = time.monotonic()
            readers = _attach(groups, started + START_TIMEOUT_S, lambda: stop)
            focus = (f"{group_prefix}-spot", SPOT_SYMBOLS[0])
            last_plain = 0.0
            while not stop and (duration_s <= 0 or time.monotonic() - started < duration_s):
                for group, family in groups.items():
                    for symbol in readers[group].markets():
                        try:
                            verify(sim, readers[group].snapshot(symbol), family, result)
                        except LdcError:
                            continue  # not synced yet (or refreshing): nothing to check
                        synced_once.add((group, symbol))
                elapsed = time.monotonic() - started
                shown = True
                if interactive:
                    shown = _show("\x1b[H\x1b[2J" + render(readers, focus, result, elapsed))
                elif elapsed - last_plain >= 2.0:
                    last_plain = elapsed
                    shown = _show(render(readers, focus, result, elapsed))
                if not shown:  # only ever set here: `stop |= ...` could undo a signal handled during the write
                    stop = True
                time.sleep(REFRESH_S)
            # a market counts once it was read in sync: at the very end one may be refreshing its snapshot
            synced = len(synced_once)
            total = sum(len(r.markets()) for r in readers.values())
        finally:
            for reader in readers.values():
                reader.close()
            supervisor.send_signal(signal.SIGTERM)
            try:
                supervisor.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                supervisor.kill()
                supervisor.wait()
            _remove_segments(groups)
            unlink_governor(governor_key(sim.rest_url))  # the ledger of this demo's own simulator
    _show(f"\n{synced}/{total} markets synced; {result.equal}/{result.checked} snapshots equal to the exchange's book"
          f" at their update id; {len(result.mismatches)} mismatches")  # fmt: skip
    _show("\n".join(f"  mismatch: {line}" for line in result.mismatches[:10]))
    return 0 if synced == total and result.checked > 0 and not result.mismatches else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ldc demo", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION_S,
                        help=f"seconds to run, 0 = until Ctrl-C (default {DEFAULT_DURATION_S:g})")  # fmt: skip
    parser.add_argument("--group-prefix", default="demo", help="segments are /ldc-PREFIX-spot and -usdm (default demo)")
    parser.add_argument("--plain", action="store_true", help="print a status block every 2 s instead of redrawing")
    args = parser.parse_args(argv)
    bad_prefix = group_prefix_error(args.group_prefix)
    if bad_prefix:
        print(f"ldc demo: {bad_prefix}", file=sys.stderr)
        return 2
    interactive = sys.stdout.isatty() and not args.plain and os.environ.get("TERM") != "dumb"
    try:
        return run(args.duration, args.group_prefix, interactive=interactive)
    except LdcError as exc:
        print(f"ldc demo: {exc}", file=sys.stderr)
        return 1
