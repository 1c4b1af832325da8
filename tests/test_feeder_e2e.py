"""End to end in separate processes (issue 8 "Proof", first item): `ldc sim` with 52 markets and faults on,
`ldc run` with two groups (spot and USD-M, one feeder process each) and one reader process per group; the
resyncs meet a 429 storm. Every
snapshot a reader saw marked synced equals the simulator's truth at that update id; the markets hit by faults
are flagged (status and counters), resync and end in sync; every other market keeps publishing untouched.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from conftest import start_sim_process
from feeder_helpers import (
    Processes,
    group_table,
    post_fault,
    processes,
    sim_stats,
    unique_group,
    wait_until,
    write_config,
)
from ldc.io.governor import governor_key
from ldc.shm.layout import Status
from ldc.shm.reader import Reader

pytestmark = pytest.mark.timeout(150)

SPOT_MARKETS = 40
USDM_MARKETS = 12
DEPTH = 10
READ_S = 8.0
HELPERS = str(Path(__file__).with_name("feeder_helpers.py"))
# faults, each on one market (generated names: the well-known ones, then SIMnnnnUSDT)
GAPPY_SPOT = "SIM0030USDT"  # three dropped diffs, each a gap; its snapshots are slow so readers see it resync
DUPLICATED_SPOT = "SIM0031USDT"  # three duplicated diffs: ignored and counted, never a gap
FAILING_SPOT = "SIM0032USDT"  # its first two snapshots answer 503
GAPPY_USDM = "SIM0011USDT"  # dropped diffs on the futures rule (pu)
DROPS = 3
STORM = 3
STREAM_FAULTS = (
    {"kind": "drop", "symbol": GAPPY_SPOT, "count": DROPS, "probability": 0.2},
    {"kind": "duplicate", "symbol": DUPLICATED_SPOT, "count": DROPS, "probability": 0.2},
    {"kind": "drop", "symbol": GAPPY_USDM, "count": DROPS, "probability": 0.2},  # + "conn": the USD-M feeder's
    {"kind": "rate_limit", "count": STORM},  # the resyncs' snapshots meet a 429 storm (Retry-After: 1 s)
)


def sim_args() -> list[str]:
    faults = [  # from the start; the stream faults are posted once every market is in sync (STREAM_FAULTS)
        f"rest_error:symbol={FAILING_SPOT},status=503,count=2",
        f"rest_delay:symbol={GAPPY_SPOT},ms=300",
        f"rest_delay:symbol={GAPPY_USDM},ms=300",
    ]
    args = ["--markets", str(SPOT_MARKETS), "--usdm-markets", str(USDM_MARKETS), "--rate", "8", "--history", "4000"]
    for fault in faults:
        args += ["--fault", fault]
    return args


def read_in_process(procs: Processes, group: str, family: str, rest: str) -> subprocess.Popen[str]:
    return procs.start(HELPERS, "read", group, family, rest, str(READ_S), str(DEPTH), stdout=subprocess.PIPE, text=True)


def test_two_groups_under_faults_every_synced_read_equals_the_truth(tmp_path: Path) -> None:
    spot_group, usdm_group = unique_group("e2es"), unique_group("e2eu")
    with processes() as procs:
        sim, urls = start_sim_process(*sim_args())
        procs.procs.append(sim)
        spot_symbols, usdm_symbols = tuple(urls["markets"]["spot"]), tuple(urls["markets"]["usdm"])
        assert len(spot_symbols) + len(usdm_symbols) == 52
        config = write_config(tmp_path / "ldc.toml", [
            group_table(spot_group, "spot", spot_symbols, urls, depth=DEPTH),
            group_table(usdm_group, "usdm", usdm_symbols, urls, depth=DEPTH),
        ])  # fmt: skip
        procs.groups += [spot_group, usdm_group]
        procs.governors.append(governor_key(urls["rest"]))
        with (tmp_path / "run.log").open("wb") as sink:
            procs.ldc("run", str(config), "--log-level", "WARNING", stdout=sink, stderr=subprocess.STDOUT)
        with Reader(spot_group, attach_timeout_s=30) as spot_reader, Reader(usdm_group, attach_timeout_s=30) as usdm_reader:
            pairs = ((spot_reader, spot_symbols), (usdm_reader, usdm_symbols))
            for reader, symbols in pairs:
                wait_until(lambda: _all_in_sync(reader, symbols), what=f"{reader.name} all in sync", timeout_s=40)
            readers = [read_in_process(procs, spot_group, "spot", urls["rest"]), read_in_process(procs, usdm_group, "usdm", urls["rest"])]
            for proc in readers:
                assert proc.stdout is not None and proc.stdout.readline() == "reading\n"
            usdm_conn = _usdm_connection(urls["rest"])  # spot lists a market of the same name
            for fault in STREAM_FAULTS:
                post_fault(urls["rest"], **fault, **({"conn": usdm_conn} if fault.get("symbol") == GAPPY_USDM else {}))
            seen: dict[str, dict[str, Any]] = {}
            for proc, group in zip(readers, (spot_group, usdm_group)):
                out, _ = proc.communicate(timeout=READ_S + 60)
                assert proc.returncode == 0, f"reader of {group} failed"
                seen[group] = json.loads(out)
            for reader, symbol in ((spot_reader, GAPPY_SPOT), (usdm_reader, GAPPY_USDM)):
                wait_until(lambda: _settled(reader, symbol), what=f"{symbol}: {DROPS} gaps, then back in sync")
            for reader, symbols in pairs:
                wait_until(lambda: _all_in_sync(reader, symbols), what=f"{reader.name} all in sync", timeout_s=30)
            final = {f"spot:{s}": spot_reader.status(s).counters for s in spot_symbols}
            final |= {f"usdm:{s}": usdm_reader.status(s).counters for s in usdm_symbols}
        stats = sim_stats(urls["rest"])

    spot_seen, usdm_seen = seen[spot_group], seen[usdm_group]
    assert sorted(spot_seen) == sorted(spot_symbols) and sorted(usdm_seen) == sorted(usdm_symbols)
    everything = {**{f"spot:{s}": e for s, e in spot_seen.items()}, **{f"usdm:{s}": e for s, e in usdm_seen.items()}}
    # the whole point: nothing a reader trusted differed from the exchange's book at its update id
    assert {name: e["mismatches"] for name, e in everything.items() if e["mismatches"]} == {}
    assert sum(e["checked"] for e in everything.values()) >= 200
    assert all(e["checked"] > 0 for e in everything.values())

    assert stats["faults_fired"]["drop"] == 2 * DROPS and stats["faults_fired"]["duplicate"] == DROPS
    assert stats["faults_fired"]["rate_limit"] == STORM
    # waited out: never banned, and the exchange's own weight count never refused a request (never over)
    assert "rest_418" not in stats["counters"] and "rest_429" not in stats["counters"]
    for name in (f"spot:{GAPPY_SPOT}", f"usdm:{GAPPY_USDM}"):
        # at most one snapshot per gap: a gap while a resync waits (for the storm's Retry-After, for its
        # snapshot) is repaired by that same resync
        assert final[name]["gaps"] == DROPS and 2 <= final[name]["snapshots"] <= 1 + DROPS, name
        assert 1 <= final[name]["resyncs"] <= DROPS, name
        # a reader saw it flagged: its snapshots are slow, so each resync lasts a while
        assert any(Status.RESYNCING in Status(f) and Status.SYNCED not in Status(f) for f in everything[name]["flags"]), name
    duplicated = final[f"spot:{DUPLICATED_SPOT}"]
    assert (duplicated["gaps"], duplicated["resyncs"], duplicated["snapshots"]) == (0, 0, 1)
    assert duplicated["ignored"] >= DROPS
    failing = final[f"spot:{FAILING_SPOT}"]
    assert (failing["snapshots"], failing["resyncs"]) == (1, 0)
    faulted = {f"spot:{GAPPY_SPOT}", f"spot:{DUPLICATED_SPOT}", f"spot:{FAILING_SPOT}", f"usdm:{GAPPY_USDM}"}
    for name, market in everything.items():
        if name in faulted:
            continue
        assert (final[name]["resyncs"], final[name]["gaps"], final[name]["snapshots"]) == (0, 0, 1), name
        assert market["flags"] == [Status.SYNCED], name  # never out of sync while the others were hit
        assert market["counters"]["updates"] > 1, name


def _usdm_connection(rest: str) -> int:
    conns = requests.get(f"{rest}/_sim/connections", timeout=10).json()["connections"]
    (found,) = [c["id"] for c in conns if c["path"].startswith("/usdm/")]
    return int(found)


def _all_in_sync(reader: Reader, symbols: tuple[str, ...]) -> bool:
    markets = set(reader.markets())
    return all(s in markets and reader.status(s).in_sync for s in symbols)


def _settled(reader: Reader, symbol: str) -> bool:
    st = reader.status(symbol)
    return bool(st.in_sync and st.counters["gaps"] == DROPS)
