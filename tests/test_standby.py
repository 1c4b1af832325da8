"""Hot standby (issue 17 item 3): ``ldc feed CONFIG --group G --standby``.

The main test kills the active feeder with SIGKILL under simulator traffic KILLS times in a row, each time
restarting the killed one as the standby (roles alternate), while a Python reader (``Reader``, every market)
and a C reader (``readers/c/ldc.h``, one market) spin. Per kill it checks: the standby took the segment over
and every market reads in sync again from its pid; the simulator served no depth snapshot between the kill
and that moment; and over the whole run, every book a reader accepted as in sync equals the simulator's truth
at its update id. Takeover times (kill -> first in-sync read from the new writer, the readers' view) and the
readers' gap without an in-sync read are printed (run with ``-s``); the assert on them is generous (a loaded
2-core host), the figures are reported.
"""

from __future__ import annotations

import json
import mmap
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from feeder_helpers import Processes, group_table, processes, snapshot_equals_truth, unique_group, wait_until, write_config
from ldc.config import endpoints, load_config
from ldc.errors import LdcError
from ldc.io.governor import governor_key
from ldc.shm.layout import DIR_ENTRY, HEADER, SLOT_HEADER, Status, temp_paths
from ldc.shm.reader import Reader
from ldc.sim import Simulator
from shm_helpers import build_c_tool

pytestmark = pytest.mark.timeout(300)

SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT")
C_SYMBOL = "BTCUSDT"
KILLS = int(os.environ.get("LDC_STANDBY_KILLS", "20"))
DEPTH = 10
TAKEOVER_BOUND_MS = 2000.0  # generous: the figures are reported; the design target is 50 ms
SPIN_MS = 600_000  # the readers stop when the last writer stops cleanly; this bounds a hang
READY_TIMEOUT_S = 30.0
SPIN_PY = str(Path(__file__).with_name("standby_spin.py"))


@pytest.fixture
def spot(sim_factory: Callable[..., Simulator]) -> Simulator:
    return sim_factory(spot_symbols=SYMBOLS, rate=50.0, history_events=50_000)


def start_feeder(procs: Processes, config: Path, group: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        return procs.ldc("feed", str(config), "--group", group, "--standby", stdout=sink, stderr=subprocess.STDOUT)


def standby_ready(group: str, pid: int, count: int) -> bool:
    """The standby ``pid``'s unnamed file (found by its header's writer_pid; the test runs as root, the file
    is 0600; it has no magic yet) has ``count`` markets, every one SYNCED."""
    for path in temp_paths(group):
        try:
            with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mm:
                if _u(mm, HEADER.offset("writer_pid"), 4) != pid:
                    continue
                capacity, slots, slot_size, directory, entry = (_u(mm, HEADER.offset(name), 4) for name in (
                    "capacity", "slots_offset", "slot_size", "directory_offset", "directory_entry_size"))  # fmt: skip
                statuses = [_u(mm, slots + i * slot_size + SLOT_HEADER.offset("status"), 4) for i in range(capacity)
                            if _u(mm, directory + i * entry + DIR_ENTRY.offset("gen"), 8)]  # fmt: skip
                return len(statuses) == count and all(s == Status.SYNCED for s in statuses)
        except (OSError, ValueError):
            continue
    return False


def _u(mm: mmap.mmap, offset: int, size: int) -> int:
    return int.from_bytes(mm[offset : offset + size], "little")


def all_in_sync_from(reader: Reader, pid: int) -> bool:
    try:
        return all(reader.status(s).in_sync for s in SYMBOLS) and reader.info().writer_pid == pid
    except LdcError:
        return False


def snapshots_served(sim: Simulator) -> int:
    return int(sim.stats()["counters"].get("snapshots", 0))


def holds_ledger(pid: int, key: str) -> bool:
    """The process has the host's REST weight ledger of ``key`` open (it books its weight there)."""
    fds = Path(f"/proc/{pid}/fd")
    return any(os.readlink(fd).endswith(f"ldc-governor-{key}") for fd in fds.iterdir() if fd.is_symlink())


def takeover_figures(runs: list[list[int]], kills: list[tuple[int, int, int]]) -> list[tuple[float, float]]:
    """Per kill (kill time, old pid, new pid): (kill -> first in-sync read from the new pid, ms; the gap
    between the old pid's last in-sync read and that one, ms) from one reader's runs of one market."""
    out = []
    for t_kill, old, new in kills:
        first = min(r[1] for r in runs if r[0] == new and r[1] > t_kill)
        last_old = max((r[2] for r in runs if r[0] == old and r[2] <= first), default=t_kill)
        out.append(((first - t_kill) / 1e6, (first - last_old) / 1e6))
    return out


def wrong_books(sim: Simulator, samples: list[Any]) -> tuple[int, int]:
    """(checked, wrong) of a reader's sampled in-sync books against the truth at their update ids."""
    checked = wrong = 0
    for symbol, rows in samples:
        for update_id, bids, asks in rows:
            truth = sim.truth(symbol, update_id=update_id, limit=DEPTH, family="spot")
            if truth is None:
                continue
            checked += 1
            snap = type("S", (), {"update_id": update_id, "bids": _Levels(bids), "asks": _Levels(asks)})
            wrong += not snapshot_equals_truth(truth, snap)  # type: ignore[arg-type]
    return checked, wrong


class _Levels:
    def __init__(self, rows: list[list[float]]) -> None:
        self._rows = rows

    def tolist(self) -> list[list[float]]:
        return self._rows


def test_sigkill_the_active_20_times_alternating_roles_the_standby_takes_over_in_sync(
    tmp_path: Path, spot: Simulator, tmp_path_factory: pytest.TempPathFactory
) -> None:
    c_tool = build_c_tool(tmp_path_factory.mktemp("c"))
    group = unique_group("sb")
    config = write_config(tmp_path / "ldc.toml", [group_table(group, "spot", SYMBOLS, spot, depth=DEPTH, refresh_interval_s=0.0)])
    key = governor_key(endpoints(load_config(config).group(group)).rest_url)
    log = tmp_path / "feeders.log"
    kills: list[tuple[int, int, int]] = []
    snapshots_during: list[int] = []
    with processes() as procs:
        procs.groups.append(group)
        procs.governors.append(key)
        active = start_feeder(procs, config, group, log)
        with Reader(group, attach_timeout_s=READY_TIMEOUT_S) as reader:
            wait_until(lambda: all_in_sync_from(reader, active.pid), timeout_s=READY_TIMEOUT_S, what="the first writer in sync")
            standby = start_feeder(procs, config, group, log)
            wait_until(lambda: standby_ready(group, standby.pid, len(SYMBOLS)), timeout_s=READY_TIMEOUT_S, what="the standby in sync")
            assert holds_ledger(active.pid, key) and holds_ledger(standby.pid, key)  # one host-wide weight ledger
            spin_py = procs.start(SPIN_PY, group, str(SPIN_MS), *SYMBOLS, stdout=subprocess.PIPE, text=True,
                                  env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})  # fmt: skip
            spin_c = subprocess.Popen([str(c_tool), "timeline", group, C_SYMBOL, str(SPIN_MS)], stdout=subprocess.PIPE, text=True)
            procs.procs.append(spin_c)
            time.sleep(1.0)  # the Python reader imports numpy first
            for _ in range(KILLS):
                before = snapshots_served(spot)
                t_kill = time.monotonic_ns()
                os.kill(active.pid, signal.SIGKILL)
                active.wait()
                wait_until(lambda: all_in_sync_from(reader, standby.pid), timeout_s=READY_TIMEOUT_S, what="the takeover")
                snapshots_during.append(snapshots_served(spot) - before)
                kills.append((t_kill, active.pid, standby.pid))
                restarted = start_feeder(procs, config, group, log)
                wait_until(lambda: standby_ready(group, restarted.pid, len(SYMBOLS)), timeout_s=READY_TIMEOUT_S,
                           what="the restarted feeder in sync as the standby")  # fmt: skip
                active, standby = standby, restarted
        standby.send_signal(signal.SIGTERM)  # the standby first: the active's clean stop would hand over to it
        assert standby.wait(timeout=15) == 0
        active.send_signal(signal.SIGTERM)
        assert active.wait(timeout=15) == 0  # STOPPED: the readers finish
        py_out, _ = spin_py.communicate(timeout=30)
        c_out, _ = spin_c.communicate(timeout=30)
    python, c = json.loads(py_out), json.loads(c_out)
    figures = {f"python {s}": takeover_figures(python["runs"][s], kills) for s in SYMBOLS}
    figures["c " + C_SYMBOL] = takeover_figures(c["runs"], kills)
    per_kill = [max(f[i][0] for f in figures.values()) for i in range(len(kills))]  # the segment in sync again
    gaps = [g for f in figures.values() for _, g in f]
    checked, wrong = wrong_books(spot, [(s, python["samples"][s]) for s in SYMBOLS] + [(C_SYMBOL, c["samples"])])
    took = [line for line in log.read_text().splitlines() if " took over " in line and " ms after" in line]
    logged = [float(line.split(" took over ")[1].split(" ms")[0]) for line in took]  # lock granted -> named
    granted = [int(line.split("CLOCK_MONOTONIC ")[1].split(" ns")[0]) for line in took]
    released = [(g - t_kill) / 1e6 for g, (t_kill, _, _) in zip(granted, kills)]  # SIGKILL -> the kernel released the lock
    print(f"\nstandby takeovers: {len(kills)}; kill -> every market in sync again (readers' view): median "
          f"{statistics.median(per_kill):.1f} ms, max {max(per_kill):.1f} ms; readers' in-sync gap: median "
          f"{statistics.median(gaps):.1f} ms, max {max(gaps):.1f} ms; lock granted -> file named (standby's log): "
          f"median {statistics.median(logged):.3f} ms, max {max(logged):.3f} ms; SIGKILL -> lock granted: median "
          f"{statistics.median(released):.1f} ms, max {max(released):.1f} ms; snapshots during takeovers "
          f"{sum(snapshots_during)}; books checked {checked}, wrong {wrong}")  # fmt: skip
    assert len(kills) == KILLS and len(logged) == KILLS
    assert snapshots_during == [0] * KILLS
    assert wrong == 0 and checked >= KILLS
    assert max(per_kill) < TAKEOVER_BOUND_MS, figures


STREAM_KILLS = 3
BYBIT_SYMBOLS = ("BTCUSDT", "ETHUSDT")


def slot_counters(reader: Reader) -> dict[str, dict[str, int]]:
    return {s: {k: v for k, v in reader.status(s).counters.items() if k != "updates"} for s in BYBIT_SYMBOLS}


def test_the_stream_feeder_has_the_same_standby_bybit_taken_over_with_no_resync(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    """The lifecycle part is shared (ldc.standby): a Bybit group's standby takes over in sync, opening no
    connection and counting no resync or snapshot, killed STREAM_KILLS times alternating roles."""
    sim = sim_factory(spot_symbols=(), bybit_linear_symbols=BYBIT_SYMBOLS, rate=50.0, history_events=20_000)
    urls = sim.families.urls()["bybit"]
    assert isinstance(urls, dict)
    group = unique_group("sbb")
    table = {"name": group, "exchange": "bybit-linear", "symbols": list(BYBIT_SYMBOLS), "depth": DEPTH, "channel": "orderbook.50",
             "rest_url": urls["rest"], "ws_url": urls["ws"]}  # fmt: skip
    config = write_config(tmp_path / "ldc.toml", [table])
    log = tmp_path / "feeders.log"
    with processes() as procs:
        procs.groups.append(group)
        active = start_feeder(procs, config, group, log)
        with Reader(group, attach_timeout_s=READY_TIMEOUT_S) as reader:
            in_sync = lambda pid: all(reader.status(s).in_sync for s in BYBIT_SYMBOLS) and reader.info().writer_pid == pid  # noqa: E731
            wait_until(lambda: _quiet(in_sync, active.pid), timeout_s=READY_TIMEOUT_S, what="the first writer in sync")
            standby = start_feeder(procs, config, group, log)
            for _ in range(STREAM_KILLS):
                wait_until(lambda: standby_ready(group, standby.pid, len(BYBIT_SYMBOLS)), timeout_s=READY_TIMEOUT_S, what="the standby in sync")
                connections = sim.venue_stats("bybit")["counters"]["ws_connections"]  # type: ignore[index]
                os.kill(active.pid, signal.SIGKILL)
                active.wait()
                wait_until(lambda: _quiet(in_sync, standby.pid), timeout_s=READY_TIMEOUT_S, what="the takeover")
                counters = slot_counters(reader)
                assert sim.venue_stats("bybit")["counters"]["ws_connections"] == connections  # type: ignore[index]
                assert all(c["resyncs"] == 0 and c["gaps"] == 0 for c in counters.values()), counters
                active, standby = standby, start_feeder(procs, config, group, log)
    assert log.read_text().count(" took over ") >= 2 * STREAM_KILLS  # the writer's line and the standby's


def _quiet(check: Callable[[int], bool], pid: int) -> bool:
    try:
        return check(pid)
    except LdcError:
        return False
