"""`ldc demo`: the whole product on one machine with no network and no config.

It starts the local exchange simulator (127.0.0.1) with every venue of :data:`VENUE_DEMOS` (Binance spot and
USD-M, OKX, Bybit, HTX, Coinbase, Kraken), writes a config with one group per venue (PREFIX-spot, PREFIX-usdm,
PREFIX-okx, PREFIX-bybit, PREFIX-htx, PREFIX-coinbase, PREFIX-kraken) into a temporary directory, runs `ldc run` on it — a
supervisor and one feeder process per group, as in production — and reads the shared-memory segments from this process like any strategy would:
the venues' books side by side, the state of every market, and a running check of each snapshot against
the simulator's ground truth for that venue at the same update id. Ctrl-C or `--duration` ends it; the
exit status is 0 when every market synced, every venue had snapshots checked and every checked snapshot
equalled the exchange's book.
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
from typing import Any

import posix_ipc

from ldc.cli import child_command
from ldc.config import GROUP_NAME_RE
from ldc.errors import LdcError, SegmentNotFound, SimError
from ldc.io.governor import governor_key, unlink_governor
from ldc.shm.layout import Status, segment_name, waiters_name
from ldc.shm.reader import Reader, Snapshot
from ldc.sim import SimConfig, Simulator
from ldc.supervisor import die_with_parent
from ldc.tools import decimals, fixed
from ldc.venues import VENUES

SPOT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT")
USDM_SYMBOLS = ("BTCUSDT", "ETHUSDT")
DEPTH = 20
LADDER_LEVELS = 5  # per venue, side by side
LADDERS_PER_ROW = 2  # 2 x LADDER_WIDTH fits an 80-column terminal
LADDER_WIDTH = 38
REFRESH_S = 0.5
START_TIMEOUT_S = 20.0  # segments must appear within this
STOP_TIMEOUT_S = 15.0
DEFAULT_DURATION_S = 20.0
SIM_RATE = 40.0  # model events per second per market: lively but light on 2 cores
# Ctrl-C, `kill`, and the terminal closing (SIGHUP of the session) all end the demo the same clean way
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# the simulator's Binance families: their truth is Simulator.truth(family=...), their URLs the main port's
BINANCE_WS_URLS = {"spot": "ws_url", "usdm": "usdm_ws_url"}


@dataclass(frozen=True, slots=True)
class VenueDemo:
    """One venue the demo shows: group PREFIX-``suffix`` of ``exchange`` (a name of ``ldc.venues.VENUES``),
    fed by the simulator's ``sim_family`` ("spot" / "usdm" for Binance, else the venue family of
    ``Simulator.families``) whose markets are the SimConfig field ``sim_symbols``; ``truth_args`` are the
    extra ``/_sim/book`` parameters of that family (docs/SIM_VENUES.md)."""

    suffix: str
    exchange: str
    symbols: tuple[str, ...]
    sim_family: str
    sim_symbols: str
    channel: str = ""  # "" the venue's default
    truth_args: tuple[tuple[str, str | int], ...] = ()


# One line per venue; a venue whose client module is not in ldc.venues.VENUES is skipped (not shown, not fed)
VENUE_DEMOS: tuple[VenueDemo, ...] = (
    VenueDemo("spot", "binance.com", SPOT_SYMBOLS, "spot", "spot_symbols"),
    VenueDemo("usdm", "binance.com-futures", USDM_SYMBOLS, "usdm", "usdm_symbols"),
    VenueDemo("okx", "okx", ("BTC-USDT", "ETH-USDT-SWAP"), "okx", "okx_symbols", "books"),
    VenueDemo("bybit", "bybit-linear", ("BTCUSDT", "ETHUSDT"), "bybit", "bybit_linear_symbols", "orderbook.50",
              (("category", "linear"), ("depth", 50))),  # fmt: skip
    VenueDemo("htx", "htx", ("btcusdt",), "htx", "htx_symbols", "mbp.150"),
    # Coinbase numbers messages per connection: the truth is looked up on every connection, newest first (the
    # demo's feeder has one)
    VenueDemo("coinbase", "coinbase", ("BTC-USD",), "coinbase", "coinbase_symbols"),
    # Kraken has no update id: its segment's is the message timestamp in µs, the simulator's truth key; the truth
    # is the book a client of the channel's depth holds
    VenueDemo("kraken", "kraken", ("BTC/USD",), "kraken", "kraken_symbols", "book.25", (("depth", 25),)),
)


def venue_demos() -> tuple[VenueDemo, ...]:
    """The venues of :data:`VENUE_DEMOS` whose client venue exists."""
    return tuple(v for v in VENUE_DEMOS if v.exchange in VENUES)


@dataclass
class Verification:
    """Snapshots compared with the simulator's truth at their update id."""

    checked: int = 0
    equal: int = 0
    unavailable: int = 0  # the update id had already left the simulator's bounded history
    unavailable_reason: str = ""  # the simulator's last word on why (shown when nothing could be checked)
    checked_by_symbol: dict[str, int] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)


def sim_config(venues: Iterable[VenueDemo]) -> SimConfig:
    markets: dict[str, Any] = {"spot_symbols": ()}  # SimConfig serves BTCUSDT spot unless told otherwise
    markets.update({v.sim_symbols: v.symbols for v in venues})
    return SimConfig(**markets, rate=SIM_RATE, history_events=20_000)


def endpoints(sim: Simulator, venue: VenueDemo) -> tuple[str, str]:
    """(rest_url, ws_url) of the venue's simulator family: bases, the client adds the venue's own paths."""
    if venue.sim_family in BINANCE_WS_URLS:
        return sim.rest_url, getattr(sim, BINANCE_WS_URLS[venue.sim_family])
    urls = sim.families.urls()[venue.sim_family]
    assert isinstance(urls, dict)
    return urls["rest"], urls["ws"]


def config_text(group_prefix: str, sim: Simulator, venues: Iterable[VenueDemo]) -> str:
    tables = []
    for venue in venues:
        rest_url, ws_url = endpoints(sim, venue)
        quoted = ", ".join(f'"{s}"' for s in venue.symbols)
        channel = f'channel = "{venue.channel}"\n' if venue.channel else ""
        tables.append(f'[[group]]\nname = "{group_prefix}-{venue.suffix}"\nexchange = "{venue.exchange}"\n'
                      f'symbols = [{quoted}]\ndepth = {DEPTH}\n{channel}rest_url = "{rest_url}"\nws_url = "{ws_url}"\n\n')  # fmt: skip
    return "".join(tables)


def _levels_equal(levels: list[list[float]], truth: list[list[str]]) -> bool:
    return len(levels) == len(truth) and all(
        float(p) == lp and float(q) == lq for (lp, lq), (p, q) in zip(levels, truth)
    )


def truth_at(sim: Simulator, venue: VenueDemo, symbol: str, update_id: int) -> dict[str, Any] | str:
    """The venue's book at ``update_id`` from the simulator, or why it has none (out of its history)."""
    if venue.sim_family in BINANCE_WS_URLS:
        found = sim.truth(symbol, update_id=update_id, limit=DEPTH, family=venue.sim_family)
        return f"update id {update_id} is outside the kept history" if found is None else found
    try:
        return sim.venue_truth(venue.sim_family, symbol, update_id=update_id, limit=DEPTH, **dict(venue.truth_args))  # type: ignore[arg-type]
    except SimError as exc:
        return str(exc)


def verify(sim: Simulator, venue: VenueDemo, snap: Snapshot, result: Verification) -> None:
    """Compare one reader snapshot with the venue's book at the same update id."""
    truth = truth_at(sim, venue, snap.symbol, snap.update_id)
    if isinstance(truth, str):
        result.unavailable += 1
        result.unavailable_reason = truth
        return
    result.checked += 1
    result.checked_by_symbol[snap.symbol] = result.checked_by_symbol.get(snap.symbol, 0) + 1
    if _levels_equal(snap.bids.tolist(), truth["bids"]) and _levels_equal(snap.asks.tolist(), truth["asks"]):
        result.equal += 1
    else:
        result.mismatches.append(f"{venue.exchange} {snap.symbol} at update id {snap.update_id}")


def render(readers: dict[str, Reader], venues: dict[str, VenueDemo], results: dict[str, Verification], elapsed_s: float) -> str:
    lines = [f"ldc demo: simulator + `ldc run` ({len(readers)} feeders) + this reader process   {elapsed_s:5.1f} s", ""]
    lines.append(f"{'group':<14} {'exchange':<20} {'market':<14} {'state':<10} {'update id':>14} {'best bid':>10} "
                 f"{'best ask':>10} {'updates':>8} {'checked':>8}")  # fmt: skip
    for group, reader in readers.items():
        for symbol in reader.markets():
            st = reader.status(symbol)
            state = "synced" if st.in_sync else (Status(st.status).name or "-").lower()[:10]
            bid, ask = _prices(*(reader.best(symbol) if st.in_sync else (None, None)))
            checked = results[group].checked_by_symbol.get(symbol, 0)
            lines.append(f"{group:<14} {venues[group].exchange:<20} {symbol:<14} {state:<10} {st.update_id:>14} {bid:>10} "
                         f"{ask:>10} {st.counters['updates']:>8} {checked:>8}")  # fmt: skip
    blocks = [_ladder_block(group, venues[group].symbols[0], reader) for group, reader in readers.items()]
    for row in range(0, len(blocks), LADDERS_PER_ROW):
        lines.append("")
        part = blocks[row:row + LADDERS_PER_ROW]
        lines += ["".join(f"{block[i]:<{LADDER_WIDTH}}" for block in part).rstrip() for i in range(LADDER_LEVELS + 2)]
    equal, checked = sum(r.equal for r in results.values()), sum(r.checked for r in results.values())
    lines += ["", f"checked against the exchange's truth at the same update id: {equal}/{checked} equal"]
    return "\n".join(lines)


def _ladder_block(group: str, symbol: str, reader: Reader) -> list[str]:
    """LADDER_LEVELS + 2 lines: a title, a header and the top levels of one market, bids left, asks right."""
    lines = [f"{group} {symbol}, top {LADDER_LEVELS}:", f"{'bid qty':>10} {'bid':>9} | {'ask':<9} {'ask qty':<10}"]
    try:
        snap = reader.snapshot(symbol, LADDER_LEVELS)
    except LdcError as exc:
        return lines + [f"  ({str(exc)[:LADDER_WIDTH - 4]})"] + [""] * (LADDER_LEVELS - 1)
    bids, asks = snap.bids.tolist(), snap.asks.tolist()
    price_places, qty_places = decimals(p for p, _ in bids + asks), decimals(q for _, q in bids + asks)
    for i in range(LADDER_LEVELS):
        left = f"{fixed(bids[i][1], qty_places):>10} {fixed(bids[i][0], price_places):>9}" if i < len(bids) else " " * 20
        right = f"{fixed(asks[i][0], price_places):<9} {fixed(asks[i][1], qty_places):<10}" if i < len(asks) else ""
        lines.append(f"{left} | {right}")
    return lines


def _prices(*levels: tuple[float, float] | None) -> list[str]:
    """Each level's price ("-" for none), all in the decimals of the finest (149.90 beside 149.89)."""
    places = decimals(level[0] for level in levels if level is not None)
    return ["-" if level is None else fixed(level[0], places) for level in levels]


def _attach(groups: Iterable[str], deadline: float, stopped: Callable[[], bool]) -> dict[str, Reader]:
    readers: dict[str, Reader] = {}
    groups = tuple(groups)
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
    return {group: readers[group] for group in groups if group in readers}  # in the venue table's order, not attach order


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
    """None when PREFIX-SUFFIX is a valid group name for every venue's suffix, else the error naming the rule."""
    suffixes = [v.suffix for v in venue_demos()]
    if all(GROUP_NAME_RE.fullmatch(f"{prefix}-{suffix}") for suffix in suffixes):
        return None
    longest = max(len(s) for s in suffixes) + 1
    return (f"--group-prefix expected letters, digits, '_' and '-', starting with a letter or digit, so that "
            f"PREFIX-{'/-'.join(suffixes)} match {GROUP_NAME_RE.pattern} (up to {longest} characters are added), "
            f"found {prefix!r}")  # fmt: skip


def run(duration_s: float, group_prefix: str, *, interactive: bool) -> int:
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    for signum in STOP_SIGNALS:
        signal.signal(signum, on_signal)
    venues = {f"{group_prefix}-{v.suffix}": v for v in venue_demos()}
    results = {group: Verification() for group in venues}
    synced_once: set[tuple[str, str]] = set()
    with Simulator(sim_config(venues.values())) as sim, tempfile.TemporaryDirectory(prefix="ldc-demo-") as tmp:
        config = Path(tmp) / "ldc.toml"
        config.write_text(config_text(group_prefix, sim, venues.values()))
        supervisor = _start_supervisor(config)
        readers: dict[str, Reader] = {}
        try:
            started = time.monotonic()
            readers = _attach(venues, started + START_TIMEOUT_S, lambda: stop)
            last_plain = 0.0
            while not stop and (duration_s <= 0 or time.monotonic() - started < duration_s):
                for group, venue in venues.items():
                    for symbol in readers[group].markets():
                        try:
                            verify(sim, venue, readers[group].snapshot(symbol), results[group])
                        except LdcError:
                            continue  # not synced yet (or refreshing): nothing to check
                        synced_once.add((group, symbol))
                elapsed = time.monotonic() - started
                shown = True
                if interactive:
                    shown = _show("\x1b[H\x1b[2J" + render(readers, venues, results, elapsed))
                elif elapsed - last_plain >= 2.0:
                    last_plain = elapsed
                    shown = _show(render(readers, venues, results, elapsed))
                if not shown:  # only ever set here: `stop |= ...` could undo a signal handled during the write
                    stop = True
                time.sleep(REFRESH_S)
            # a market counts once it was read in sync: at the very end one may be refreshing its snapshot
            markets = {g: readers[g].markets() if g in readers else list(v.symbols) for g, v in venues.items()}
        finally:
            for reader in readers.values():
                reader.close()
            supervisor.send_signal(signal.SIGTERM)
            try:
                supervisor.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                supervisor.kill()
                supervisor.wait()
            _remove_segments(venues)
            unlink_governor(governor_key(sim.rest_url))  # the ledger of this demo's own simulator
    return _summarize(venues, markets, synced_once, results)


def _summarize(venues: dict[str, VenueDemo], markets: dict[str, list[str]], synced_once: set[tuple[str, str]],
               results: dict[str, Verification]) -> int:
    """Print one line per venue and the totals; 0 when every market synced, every venue had snapshots
    checked and none differed from the truth."""
    lines = [""]
    for group, venue in venues.items():
        r, synced = results[group], sum((group, s) in synced_once for s in markets[group])
        why = f" (no truth: {r.unavailable_reason})" if r.checked == 0 and r.unavailable_reason else ""
        lines.append(f"  {venue.exchange:<20} {group:<16} {synced}/{len(markets[group])} markets synced, "
                     f"{r.equal}/{r.checked} snapshots equal, {len(r.mismatches)} mismatches{why}")  # fmt: skip
    synced, total = len(synced_once), sum(len(m) for m in markets.values())
    equal, checked = sum(r.equal for r in results.values()), sum(r.checked for r in results.values())
    mismatches = [line for r in results.values() for line in r.mismatches]
    lines.append(f"{synced}/{total} markets synced; {equal}/{checked} snapshots equal to the exchange's book"
                 f" at their update id; {len(mismatches)} mismatches")  # fmt: skip
    _show("\n".join(lines))
    _show("\n".join(f"  mismatch: {line}" for line in mismatches[:10]))
    every_venue_checked = all(r.checked > 0 for r in results.values())
    return 0 if synced == total and every_venue_checked and not mismatches else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ldc demo", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION_S,
                        help=f"seconds to run, 0 = until Ctrl-C (default {DEFAULT_DURATION_S:g})")  # fmt: skip
    parser.add_argument("--group-prefix", default="demo", help="segments are /ldc-PREFIX-spot, -usdm, -okx, -bybit, ... (default demo)")
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
