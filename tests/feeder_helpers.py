"""Helpers for the feeder, supervisor and demo tests: a feeder run in a thread against a simulator, reader
checks against the simulator's truth, subprocesses that are always killed, segments that are always unlinked.

Truth comparisons follow DESIGN.md ("a published book is either exactly the exchange's book at its update
id, or it is marked out of sync"): a snapshot the reader sees as in sync must equal ``/_sim/book`` at the
same update id, level for level, over the published depth.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from ldc.config import GroupConfig, endpoints
from ldc.errors import LdcError, MarketNotFound
from ldc.feeder import Feeder
from ldc.io.governor import governor_key, unlink_governor
from ldc.io.ws import WsOptions
from ldc.shm.reader import Reader, Snapshot
from ldc.sim import Simulator
from shm_helpers import unlink_group

EXCHANGES = {"spot": "binance.com", "usdm": "binance.com-futures", "coinm": "binance.com-coin_futures"}
WAIT_S = 20.0  # generous: the suite runs on a loaded 2-core machine
POLL_S = 0.02
STOP_PROCESS_S = 10.0


def unique_group(tag: str) -> str:
    return f"tf{os.getpid()}-{tag}-{uuid.uuid4().hex[:6]}"


def wait_until(predicate: Callable[[], Any], *, timeout_s: float = WAIT_S, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(POLL_S)


def ws_base(sim_urls: dict[str, Any] | Simulator, family: str) -> str:
    if isinstance(sim_urls, Simulator):
        return {"spot": sim_urls.ws_url, "usdm": sim_urls.usdm_ws_url, "coinm": sim_urls.coinm_ws_url}[family]
    return str(sim_urls[{"spot": "ws", "usdm": "ws_usdm", "coinm": "ws_coinm"}[family]])


def group_config(sim: Simulator, family: str, symbols: tuple[str, ...], **fields: Any) -> GroupConfig:
    values: dict[str, Any] = dict(
        name=unique_group(family), exchange=EXCHANGES[family], symbols=symbols, depth=10,
        rest_url=sim.rest_url, ws_url=ws_base(sim, family), rest_timeout_s=2.0, refresh_interval_s=0.0,
    )  # fmt: skip
    values.update(fields)
    return GroupConfig(**values)


def fast_ws_options(**fields: Any) -> WsOptions:
    """Reconnect quickly: the tests wait for the backoff, not for production's half second."""
    values: dict[str, Any] = dict(backoff_initial_s=0.1, backoff_cap_s=0.5, control_msgs_per_s=4.0)
    values.update(fields)
    return WsOptions(**values)


@dataclass
class FeederRun:
    """A feeder in a thread of this process, and a reader of its segment."""

    feeder: Feeder
    reader: Reader
    sim: Simulator
    family: str
    thread: threading.Thread
    errors: list[BaseException] = field(default_factory=list)

    @property
    def group(self) -> GroupConfig:
        return self.feeder.group

    def status(self, symbol: str) -> Any:
        return self.reader.status(symbol)

    def counters(self, symbol: str) -> dict[str, int]:
        return dict(self.reader.status(symbol).counters)

    def in_sync(self, symbol: str) -> bool:
        try:
            return bool(self.reader.status(symbol).in_sync)
        except MarketNotFound:
            return False

    def all_in_sync(self) -> bool:
        return all(self.in_sync(s) for s in self.reader.markets())

    def wait_synced(self, *symbols: str, timeout_s: float = WAIT_S) -> None:
        names = symbols or tuple(self.group.symbols)
        wait_until(lambda: all(self.in_sync(s) for s in names), timeout_s=timeout_s, what=f"{names} in sync")

    def check_truth(self, symbol: str) -> bool | None:
        """Read ``symbol`` once: None when not in sync or its id left the truth's history, else equality."""
        return check_truth(self.sim, self.reader, symbol, self.family, self.group.depth)


@contextmanager
def feeder_in_thread(sim: Simulator, family: str, symbols: tuple[str, ...], *, ws_options: WsOptions | None = None,
                     config_path: str | None = None, **fields: Any) -> Iterator[FeederRun]:  # fmt: skip
    group = group_config(sim, family, symbols, **fields)
    feeder = Feeder(group, config_path=config_path, ws_options=ws_options or fast_ws_options())
    errors: list[BaseException] = []

    def run() -> None:
        try:
            feeder.run()
        except BaseException as exc:  # surfaced by the test's teardown
            errors.append(exc)
            raise

    thread = threading.Thread(target=run, name=f"feeder-{group.name}", daemon=True)
    thread.start()
    reader: Reader | None = None
    try:
        reader = Reader(group.name, attach_timeout_s=WAIT_S)
        yield FeederRun(feeder, reader, sim, family, thread, errors)
    finally:
        feeder.request_stop()
        thread.join(STOP_PROCESS_S)
        if reader is not None:
            reader.close()
        unlink_group(group.name)
        unlink_governor(governor_key(endpoints(group).rest_url))
    assert not thread.is_alive(), "the feeder thread did not stop"
    assert not errors, f"the feeder thread raised {errors!r}"


def levels_equal(levels: Any, truth: list[list[str]]) -> bool:
    rows = [tuple(row) for row in levels.tolist()]
    return len(rows) == len(truth) and all(float(p) == lp and float(q) == lq for (lp, lq), (p, q) in zip(rows, truth))


def snapshot_equals_truth(truth: dict[str, Any], snap: Snapshot) -> bool:
    return int(truth["update_id"]) == snap.update_id and levels_equal(snap.bids, truth["bids"]) and levels_equal(snap.asks, truth["asks"])


def check_truth(sim: Simulator, reader: Reader, symbol: str, family: str, depth: int) -> bool | None:
    try:
        snap = reader.snapshot(symbol)
    except LdcError:
        return None
    truth = sim.truth(symbol, update_id=snap.update_id, limit=depth, family=family)
    if truth is None:
        return None
    return snapshot_equals_truth(truth, snap)


def truth_over_http(rest_url: str, symbol: str, family: str, update_id: int, depth: int) -> dict[str, Any] | None:
    """The simulator's ``/_sim/book`` (for a simulator in another process); None when out of its history."""
    params: dict[str, str | int] = {"symbol": symbol, "update_id": update_id, "limit": depth, "family": family}
    response = requests.get(f"{rest_url}/_sim/book", params=params, timeout=10)
    if response.status_code != 200:
        return None
    body: dict[str, Any] = response.json()
    return body


def sim_stats(rest_url: str) -> dict[str, Any]:
    body: dict[str, Any] = requests.get(f"{rest_url}/_sim/stats", timeout=10).json()
    return body


def post_fault(rest_url: str, **rule: Any) -> None:
    response = requests.post(f"{rest_url}/_sim/faults", json=rule, timeout=10)
    assert response.status_code == 200, response.text


# -- processes -----------------------------------------------------------------------------------------


@dataclass
class Processes:
    """Every process a test starts; ``kill_all`` in teardown, whatever happened."""

    procs: list[subprocess.Popen[Any]] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    governors: list[str] = field(default_factory=list)

    def start(self, *args: str, **popen: Any) -> subprocess.Popen[Any]:
        proc: subprocess.Popen[Any] = subprocess.Popen([sys.executable, *args], **popen)
        self.procs.append(proc)
        return proc

    def ldc(self, *args: str, **popen: Any) -> subprocess.Popen[Any]:
        return self.start("-m", "ldc.cli", *args, **popen)

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_PROCESS_S
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for group in self.groups:
            unlink_group(group)
        for key in self.governors:
            unlink_governor(key)


@contextmanager
def processes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.kill_all()


def write_config(path: Path, groups: list[dict[str, Any]]) -> Path:
    """A TOML file of ``[[group]]`` tables (strings quoted, tuples as arrays)."""
    lines: list[str] = []
    for table in groups:
        lines.append("[[group]]")
        for key, value in table.items():
            lines.append(f"{key} = {_toml(value)}")
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def group_table(name: str, family: str, symbols: tuple[str, ...], urls: dict[str, Any] | Simulator, **extra: Any) -> dict[str, Any]:
    rest = urls.rest_url if isinstance(urls, Simulator) else urls["rest"]
    table: dict[str, Any] = {"name": name, "exchange": EXCHANGES[family], "symbols": list(symbols), "depth": 10,
                             "rest_url": rest, "ws_url": ws_base(urls, family), "rest_timeout_s": 2.0}  # fmt: skip
    table.update(extra)
    return table


def replace_group(group: GroupConfig, **fields: Any) -> GroupConfig:
    return dataclasses.replace(group, **fields)


class Sampler:
    """Reads markets in a background thread and keeps what a strategy would have seen: every status
    transition per market and the truth checks of the snapshots read while in sync."""

    def __init__(self, run: FeederRun, symbols: tuple[str, ...], *, every_s: float = 0.003, check_truth: bool = True) -> None:
        self._run = run
        self._symbols = symbols
        self._every_s = every_s
        self._check = check_truth
        self._stop = threading.Event()
        self.states: dict[str, list[tuple[int, str]]] = {s: [] for s in symbols}  # (status flags, message) changes
        self.out_of_sync_seen: dict[str, int] = {s: 0 for s in symbols}
        self.checked = 0
        self.mismatches: list[str] = []
        self._reader = Reader(run.group.name)
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self._reader.close()

    def _loop(self) -> None:
        while not self._stop.wait(self._every_s):
            for symbol in self._symbols:
                self._sample(symbol)

    def _sample(self, symbol: str) -> None:
        try:
            st = self._reader.status(symbol)
        except LdcError:
            return
        history = self.states[symbol]
        if not history or history[-1] != (int(st.status), st.message):
            history.append((int(st.status), st.message))
        if not st.in_sync:
            self.out_of_sync_seen[symbol] += 1
            return
        if self._check:
            verdict = check_truth(self._run.sim, self._reader, symbol, self._run.family, self._run.group.depth)
            if verdict is not None:
                self.checked += 1
                if not verdict:
                    self.mismatches.append(symbol)


# -- a reader process (python tests/feeder_helpers.py read ...) ---------------------------------------------


def read_and_check(group: str, family: str, rest_url: str, duration_s: float, depth: int, *, announce: bool = False) -> dict[str, Any]:
    """What a strategy process sees for ``duration_s``: every market read in turn, each snapshot marked in sync
    compared with the exchange's truth at its update id (over HTTP), status flags seen, final counters."""
    per: dict[str, dict[str, Any]] = {}
    with Reader(group, attach_timeout_s=WAIT_S) as reader:
        if announce:
            print("reading", flush=True)  # the test starts its faults once every reader reads
        end = time.monotonic() + duration_s
        while time.monotonic() < end:
            for symbol in reader.markets():
                entry = per.setdefault(symbol, {"checked": 0, "unavailable": 0, "mismatches": [], "flags": [], "reads": 0})
                _read_one(reader, symbol, family, rest_url, depth, entry)
        for symbol, entry in per.items():
            st = reader.status(symbol)
            entry["final_status"], entry["final_message"], entry["counters"] = int(st.status), st.message, st.counters
    return per


def _read_one(reader: Reader, symbol: str, family: str, rest_url: str, depth: int, entry: dict[str, Any]) -> None:
    entry["reads"] += 1
    try:
        st = reader.status(symbol)
    except LdcError:
        return
    if int(st.status) not in entry["flags"]:
        entry["flags"].append(int(st.status))
    if not st.in_sync:
        return
    try:
        snap = reader.snapshot(symbol)
    except LdcError:
        return
    truth = truth_over_http(rest_url, symbol, family, snap.update_id, depth)
    if truth is None:
        entry["unavailable"] += 1
        return
    entry["checked"] += 1
    if not snapshot_equals_truth(truth, snap):
        entry["mismatches"].append(snap.update_id)


if __name__ == "__main__":
    import json

    _, command, group_arg, family_arg, rest_arg, duration_arg, depth_arg = sys.argv
    assert command == "read", f"usage: feeder_helpers.py read GROUP FAMILY REST_URL DURATION_S DEPTH, found {command!r}"
    print(json.dumps(read_and_check(group_arg, family_arg, rest_arg, float(duration_arg), int(depth_arg), announce=True)), flush=True)
