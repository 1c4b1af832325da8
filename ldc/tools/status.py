"""``ldc status [--json] [--group G ...] [--interval S]``: every ldc segment on this host.

Per segment: exchange, writer alive / state / pid, heartbeat age, takeovers, the pid of each hot standby
attached (``ldc feed --standby``). Per market: in sync
or not (with the flags and message), age of the last publish, feeder lag (receive time minus the
exchange's event time), updates per second over ``--interval``, and the slot counters.
Exit status: 0 when every listed writer is alive and every market in sync, 1 otherwise (or when
no segment exists), so monitoring can use it directly.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Final

from ldc.errors import SegmentError
from ldc.shm.layout import State
from ldc.shm.reader import MarketStatus, Reader, SegmentInfo
from ldc.standby import attached_standbys
from ldc.tools import flag_names, group_name_error, human_ms, list_groups

NS_PER_S: Final = 1_000_000_000
STATE_NAMES: Final[dict[int, str]] = {state: state.name.lower() for state in State}


@dataclass
class GroupReport:
    group: str
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    markets: list[dict[str, Any]] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return self.error is None and bool(self.info.get("writer_alive")) and all(m["synced"] for m in self.markets)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ldc status", description="every ldc segment on this host",
        epilog="exit status: 0 when every listed segment has a live writer and every market is in sync; 1 when any "
               "segment on the host (or given with --group) is unhealthy, or none exists; 2 for a bad argument",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    parser.add_argument("--group", action="append", default=None, help="only this group (repeatable)")
    parser.add_argument("--interval", type=float, default=0.5,
                        help="seconds between the two samples that give updates/s (0: no rates)")
    return parser.parse_args(argv)


def sample(reader: Reader) -> dict[str, MarketStatus]:
    statuses: dict[str, MarketStatus] = {}
    for symbol in reader.markets():
        try:
            statuses[symbol] = reader.status(symbol)
        except SegmentError:  # removed between the directory read and the slot read
            continue
    return statuses


def market_row(st: MarketStatus, before: MarketStatus | None, interval: float, now_ns: int, alive: bool) -> dict[str, Any]:
    rate = None
    if before is not None and interval > 0:
        rate = round((st.counters["updates"] - before.counters["updates"]) / interval, 1)
    published = st.publish_time_ns > 0
    lag_ms = st.recv_time_ns / 1e6 - st.event_time_ms if st.recv_time_ns > 0 and st.event_time_ms > 0 else None
    return {
        "symbol": st.symbol,
        "synced": st.in_sync and alive,
        "status": flag_names(st.status),
        "message": st.message,
        "update_id": st.update_id,
        "age_s": round((now_ns - st.publish_time_ns) / NS_PER_S, 3) if published else None,
        "lag_ms": round(lag_ms, 1) if lag_ms is not None else None,
        "updates_per_s": rate,
        "levels": [st.n_bids, st.n_asks],
        **st.counters,
    }


def _info_dict(info: SegmentInfo, now_ns: int) -> dict[str, Any]:
    return {
        "exchange": info.exchange,
        "writer_alive": info.alive,
        "state": STATE_NAMES.get(info.state, str(info.state)),
        "writer_pid": info.writer_pid,
        "heartbeat_age_s": round((now_ns - info.heartbeat_ns) / NS_PER_S, 3) if info.heartbeat_ns else None,
        "started_ns": info.start_time_ns,
        "takeovers": info.takeovers,
        "depth": info.depth,
        "capacity": info.capacity,
        "version": f"{info.version[0]}.{info.version[1]}",
    }


def collect(groups: list[str], interval: float) -> list[GroupReport]:
    """Sample every group, sleep ``interval`` once, sample again: rates need two samples."""
    readers: dict[str, Reader] = {}
    reports: dict[str, GroupReport] = {}
    for g in groups:
        try:
            readers[g] = Reader(g)
        except SegmentError as exc:
            reports[g] = GroupReport(g, error=str(exc))
    try:
        first = {g: sample(r) for g, r in readers.items()}
        if interval > 0 and readers:
            time.sleep(interval)
        for g, r in readers.items():
            info = r.info()
            now_ns = time.time_ns()
            rep = GroupReport(g, info=_info_dict(info, now_ns))
            rep.info["standbys"] = [s.pid for s in attached_standbys(g)]  # hot standbys (pid None: not ours to read)
            rep.markets = [market_row(st, first[g].get(s), interval, now_ns, info.alive) for s, st in sample(r).items()]
            reports[g] = rep
    finally:
        for r in readers.values():
            r.close()
    return [reports[g] for g in groups]


def as_json(reports: list[GroupReport]) -> dict[str, Any]:
    return {"segments": [{"group": r.group, "error": r.error, **r.info, "markets": r.markets} for r in reports]}


def as_text(reports: list[GroupReport]) -> str:
    lines: list[str] = []
    for r in reports:
        if r.error:
            lines += [f"{r.group}: {r.error}", ""]
            continue
        i = r.info
        alive = "alive" if i["writer_alive"] else "NOT RUNNING"
        lines.append(f"{r.group}  {i['exchange'] or '-'}  writer {alive} ({i['state']}, pid {i['writer_pid']}, "
                     f"heartbeat {_age(i['heartbeat_age_s'])} ago, takeovers {i['takeovers']}{_standbys(i['standbys'])})  "
                     f"{len(r.markets)}/{i['capacity']} markets, depth {i['depth']}")
        lines.append(f"  {'symbol':<16} {'sync':<5} {'age':>9} {'lag':>9} {'upd/s':>8} {'resyncs':>7} "
                     f"{'gaps':>5} {'ignored':>7}  status")
        for m in r.markets:
            flags = "|".join(m["status"]) or "no data yet"
            note = f"  {m['message']}" if m["message"] else ""
            lines.append(f"  {m['symbol']:<16} {'yes' if m['synced'] else 'NO':<5} {_age(m['age_s']):>9} "
                         f"{_ms(m['lag_ms']):>9} {_num(m['updates_per_s']):>8} {m['resyncs']:>7} {m['gaps']:>5} "
                         f"{m['ignored']:>7}  {flags}{note}")
        lines.append("")
    return "\n".join(lines).rstrip()


def _standbys(pids: list[int | None]) -> str:
    """", standby pid N" per hot standby attached (``ldc feed --standby``), nothing without one."""
    return "".join(f", standby pid {pid if pid is not None else '?'}" for pid in pids)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _ms(value: float | None) -> str:
    return "-" if value is None else human_ms(value)


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else human_ms(seconds * 1000.0)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    for group in args.group or ():
        bad_group = group_name_error(group)
        if bad_group:
            print(f"ldc status: {bad_group}", file=sys.stderr)
            return 2
    groups = args.group or list_groups()
    if not groups:
        print("ldc status: no ldc segments in /dev/shm (is a feeder running?)", file=sys.stderr)
        return 1
    reports = collect(groups, args.interval)
    print(json.dumps(as_json(reports)) if args.json else as_text(reports))
    return 0 if all(r.healthy for r in reports) else 1
