"""`ldc run CONFIG` (ldc.supervisor, issue 8 "What to build" 3): the restart backoff as a pure function, a bad
config refused before any child starts, a feeder killed with SIGKILL restarted while a reader in this process
sees the writer die and come back with no torn slot, and SIGTERM stopping every child cleanly.
"""

from __future__ import annotations

import os
import pwd
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from feeder_helpers import Processes, check_truth, group_table, processes, unique_group, wait_until, write_config
from ldc.config import endpoints, load_config
from ldc.errors import LdcError, OutOfSync, WriterDead
from ldc.io.governor import governor_key
from ldc.shm.layout import State, Status, segment_path
from ldc.shm.reader import Reader
from ldc.sim import Simulator
from ldc.supervisor import (
    FOREIGN_WRITER_RECHECK_S,
    HEALTHY_RUN_S,
    RESTART_BACKOFF_CAP_S,
    RESTART_BACKOFF_INITIAL_S,
    RESTART_JITTER_FRACTION,
    failures_after_exit,
    restart_delay_s,
)

pytestmark = pytest.mark.timeout(90)

EXIT_TIMEOUT_S = 20.0
ME = pwd.getpwuid(os.geteuid()).pw_name  # the owner of the segments this test's feeders create


def test_restart_delay_doubles_from_the_initial_delay_up_to_the_cap() -> None:
    no_jitter = _FixedUniform(0.0)
    delays = [restart_delay_s(n, rng=no_jitter) for n in range(1, 12)]
    assert delays[:4] == [RESTART_BACKOFF_INITIAL_S * k for k in (1, 2, 4, 8)]
    assert delays[-1] == RESTART_BACKOFF_CAP_S and max(delays) == RESTART_BACKOFF_CAP_S
    assert all(b >= a for a, b in zip(delays, delays[1:]))
    assert restart_delay_s(0, rng=no_jitter) == RESTART_BACKOFF_INITIAL_S  # out of range: the first delay


def test_backoff_resets_after_a_short_healthy_run() -> None:
    """Issue 14: a crash 8 s after a restart waited 37 s (the reset needed 30 s up). A child up HEALTHY_RUN_S
    (5 s) restarts after the initial delay; a quicker death doubles the delay."""
    no_jitter = _FixedUniform(0.0)
    crash_loop = 6  # six quick deaths: the next (seventh) delay is 32 s
    assert restart_delay_s(failures_after_exit(crash_loop, 1.0), rng=no_jitter) == RESTART_BACKOFF_INITIAL_S * 2 ** crash_loop
    assert HEALTHY_RUN_S <= 8.0
    assert failures_after_exit(crash_loop, 8.0) == 1
    assert restart_delay_s(failures_after_exit(crash_loop, 8.0), rng=no_jitter) == RESTART_BACKOFF_INITIAL_S
    assert failures_after_exit(crash_loop, HEALTHY_RUN_S) == 1 and failures_after_exit(0, HEALTHY_RUN_S - 0.01) == 1
    assert failures_after_exit(3, HEALTHY_RUN_S - 0.01) == 4


def test_restart_delay_jitter_stays_within_its_fraction_and_is_seeded() -> None:
    low, high = 1.0 - RESTART_JITTER_FRACTION, 1.0 + RESTART_JITTER_FRACTION
    assert restart_delay_s(3, rng=_FixedUniform(-RESTART_JITTER_FRACTION)) == 4 * RESTART_BACKOFF_INITIAL_S * low
    assert restart_delay_s(3, rng=_FixedUniform(RESTART_JITTER_FRACTION)) == 4 * RESTART_BACKOFF_INITIAL_S * high
    rng = random.Random(7)
    drawn = [restart_delay_s(20, rng=rng) for _ in range(500)]
    assert all(RESTART_BACKOFF_CAP_S * low <= d <= RESTART_BACKOFF_CAP_S * high for d in drawn)
    assert len(set(drawn)) == 500  # feeders restarted together do not reconnect in lock-step
    assert drawn == [restart_delay_s(20, rng=r) for r in [random.Random(7)] for _ in range(500)]


class _FixedUniform(random.Random):
    """A generator whose ``uniform`` always answers ``value``: the jitter's bounds, exactly."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def uniform(self, a: float, b: float) -> float:
        return self.value


@pytest.fixture
def spot(sim_factory: Callable[..., Simulator]) -> Simulator:
    return sim_factory(spot_symbols=("BTCUSDT", "ETHUSDT"), usdm_symbols=("BTCUSDT",), rate=20.0, history_events=5000)


def start_run(procs: Processes, config: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    for group in load_config(config).groups:
        procs.groups.append(group.name)
        procs.governors.append(governor_key(endpoints(group).rest_url))
    with log.open("wb") as sink:
        return procs.ldc("run", str(config), *args, stdout=sink, stderr=subprocess.STDOUT)


@dataclass(frozen=True)
class GroupRun:
    group: str
    config: Path
    log: Path
    procs: Processes
    supervisor: subprocess.Popen[bytes]
    reader: Reader


@contextmanager
def one_group_run(tmp_path: Path, sim: Simulator, tag: str, *run_args: str) -> Iterator[GroupRun]:
    """`ldc run` of a one-group config (spot BTCUSDT), a reader attached and the market in sync."""
    group = unique_group(tag)
    config = write_config(tmp_path / "ldc.toml", [group_table(group, "spot", ("BTCUSDT",), sim)])
    log = tmp_path / "run.log"
    with processes() as procs:
        supervisor = start_run(procs, config, log, *run_args)
        with Reader(group, attach_timeout_s=EXIT_TIMEOUT_S) as reader:
            wait_until(lambda: _all_synced(reader), what=f"{group} in sync")
            yield GroupRun(group, config, log, procs, supervisor, reader)


def test_bad_config_exits_2_and_starts_no_feeder(tmp_path: Path, spot: Simulator) -> None:
    group = unique_group("bad")
    config = write_config(tmp_path / "ldc.toml", [group_table(group, "spot", ("BTCUSDT",), spot, exchange="binance.moon")])
    with processes() as procs:
        procs.groups.append(group)
        proc = procs.ldc("run", str(config), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate(timeout=EXIT_TIMEOUT_S)
    assert proc.returncode == 2 and out == b""
    message = err.decode().strip()
    assert message.startswith(f"ldc run: {config}: group '{group}': key 'exchange' expected one of binance.com, ")
    assert message.endswith(", found 'binance.moon'")
    assert not os.path.exists(segment_path(group))
    assert spot.stats()["connections"] == 0


def test_feeder_killed_with_sigkill_is_restarted_and_readers_see_it_die_and_come_back(tmp_path: Path, spot: Simulator) -> None:
    group = unique_group("kill")
    config = write_config(tmp_path / "ldc.toml", [group_table(group, "spot", ("BTCUSDT", "ETHUSDT"), spot)])
    with processes() as procs:
        supervisor = start_run(procs, config, tmp_path / "run.log")
        with Reader(group, attach_timeout_s=EXIT_TIMEOUT_S) as reader:
            wait_until(lambda: _all_synced(reader), what="both markets in sync")
            first = reader.info()
            os.kill(first.writer_pid, signal.SIGKILL)
            wait_until(lambda: not reader.writer_alive(), what="the reader to see the writer dead")
            with pytest.raises((WriterDead, OutOfSync)):
                reader.snapshot("BTCUSDT")
            # the last book stays readable, marked stale, until the new writer takes over
            dead = reader.status("BTCUSDT")
            assert Status.STALE in dead.status and not dead.in_sync
            wait_until(lambda: reader.writer_alive() and reader.info().writer_pid != first.writer_pid, what="a new writer")
            wait_until(lambda: _all_synced(reader), what="both markets in sync again")
            second = reader.info()
            assert (second.state, second.takeovers, second.instance_id != first.instance_id) == (State.RUNNING, first.takeovers + 1, True)
            for symbol in ("BTCUSDT", "ETHUSDT"):  # no slot left torn: every one reads, and equals the truth
                assert reader.status(symbol).in_sync
                assert check_truth(spot, reader, symbol, "spot", 10) in (True, None)
        assert supervisor.poll() is None
    log = (tmp_path / "run.log").read_text()
    assert f"feeder {group} exited with signal SIGKILL; restarting in " in log


def test_sigterm_stops_every_feeder_and_marks_their_segments_stopped(tmp_path: Path, spot: Simulator) -> None:
    spot_group, usdm_group = unique_group("s"), unique_group("u")
    config = write_config(tmp_path / "ldc.toml", [
        group_table(spot_group, "spot", ("BTCUSDT",), spot),
        group_table(usdm_group, "usdm", ("BTCUSDT",), spot),
    ])  # fmt: skip
    with processes() as procs:
        supervisor = start_run(procs, config, tmp_path / "run.log")
        readers = [Reader(g, attach_timeout_s=EXIT_TIMEOUT_S) for g in (spot_group, usdm_group)]
        try:
            for reader in readers:
                wait_until(lambda: _all_synced(reader), what=f"{reader.name} in sync")
            supervisor.send_signal(signal.SIGTERM)
            assert supervisor.wait(EXIT_TIMEOUT_S) == 0
            assert [(r.info().state, r.writer_alive()) for r in readers] == [(State.STOPPED, False)] * 2
        finally:
            for reader in readers:
                reader.close()


def _all_synced(reader: Reader) -> bool:
    markets = reader.markets()
    return bool(markets) and all(reader.status(s).in_sync for s in markets)


def test_sighup_starts_added_groups_stops_removed_ones_and_ignores_a_broken_file(tmp_path: Path, spot: Simulator) -> None:
    first, second = unique_group("h1"), unique_group("h2")
    path = tmp_path / "ldc.toml"
    write_config(path, [group_table(first, "spot", ("BTCUSDT",), spot)])
    log = tmp_path / "run.log"
    with processes() as procs:
        procs.groups.append(second)
        supervisor = start_run(procs, path, log)
        with Reader(first, attach_timeout_s=EXIT_TIMEOUT_S) as one:
            wait_until(lambda: _all_synced(one), what=f"{first} in sync")
            write_config(path, [group_table(first, "spot", ("BTCUSDT",), spot), group_table(second, "usdm", ("BTCUSDT",), spot)])
            supervisor.send_signal(signal.SIGHUP)
            with Reader(second, attach_timeout_s=EXIT_TIMEOUT_S) as two:
                wait_until(lambda: _all_synced(two), what=f"{second} started and in sync")
                path.write_text("[[group]]\nname = ")
                supervisor.send_signal(signal.SIGHUP)
                wait_until(lambda: "reload ignored, the running groups stay as they are" in log.read_text(), what="the error logged")
                assert one.writer_alive() and two.writer_alive()
                write_config(path, [group_table(second, "usdm", ("BTCUSDT",), spot)])
                supervisor.send_signal(signal.SIGHUP)
                wait_until(lambda: one.info().state == State.STOPPED, what=f"{first} stopped")
                assert two.writer_alive() and _all_synced(two) and one.info().takeovers == 0
        assert supervisor.poll() is None
    text = log.read_text()
    assert f"group {second} added by reload" in text and f"group {first} removed by reload" in text


def test_feeders_die_with_a_supervisor_killed_by_sigkill(tmp_path: Path, spot: Simulator) -> None:
    with one_group_run(tmp_path, spot, "orphan") as run:
        reader = run.reader
        feeder_pid = reader.info().writer_pid
        run.supervisor.kill()
        run.supervisor.wait(EXIT_TIMEOUT_S)
        # no orphan keeps the segment locked: the feeder got SIGTERM and stopped cleanly
        wait_until(lambda: reader.info().state == State.STOPPED, what="the orphaned feeder to stop")
        assert not reader.writer_alive()
        wait_until(lambda: not _pid_alive(feeder_pid), what=f"feeder pid {feeder_pid} gone")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:  # a zombie waiting for init to reap it is gone too
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_sighup_restarts_a_feeder_whose_depth_changed(tmp_path: Path, spot: Simulator) -> None:
    group = unique_group("depth")
    path = tmp_path / "ldc.toml"
    log = tmp_path / "run.log"
    write_config(path, [group_table(group, "spot", ("BTCUSDT",), spot, depth=10)])
    with processes() as procs:
        supervisor = start_run(procs, path, log)
        with Reader(group, attach_timeout_s=EXIT_TIMEOUT_S) as reader:
            wait_until(lambda: _all_synced(reader), what="in sync")
            first_pid = reader.info().writer_pid
        write_config(path, [group_table(group, "spot", ("BTCUSDT",), spot, depth=15)])
        supervisor.send_signal(signal.SIGHUP)
        wait_until(lambda: _depth_synced(group) == 15, what="the feeder restarted with depth 15")
        with Reader(group) as reader:
            assert reader.info().writer_pid != first_pid and len(reader.snapshot("BTCUSDT").bids) == 15
            assert check_truth(spot, reader, "BTCUSDT", "spot", 15) in (True, None)
        assert supervisor.poll() is None
    assert f"group {group}: depth changed, restarting its feeder" in log.read_text()


def _depth_synced(group: str) -> int:
    try:
        with Reader(group) as reader:
            return reader.depth if reader.writer_alive() and _all_synced(reader) else 0
    except LdcError:
        return 0


def test_a_second_run_on_the_same_config_refuses_once_and_clearly(tmp_path: Path, spot: Simulator) -> None:
    with one_group_run(tmp_path, spot, "twice") as run:
        before = run.reader.info()
        second = run.procs.ldc("run", str(run.config), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = second.communicate(timeout=EXIT_TIMEOUT_S)
        assert (second.returncode, out) == (2, "")
        assert err.splitlines() == [f"ldc run: already fed by another process: {run.group} (pid {before.writer_pid}, user {ME}); "
                                    "one feeder per group (another `ldc run` on this file, an `ldc feed` or a systemd "
                                    "unit?): stop it first"]  # fmt: skip
        after = run.reader.info()
        assert (after.writer_pid, after.takeovers, after.instance_id) == (before.writer_pid, before.takeovers, before.instance_id)
        assert run.supervisor.poll() is None and _all_synced(run.reader)


def test_a_group_added_by_sighup_that_another_process_feeds_waits_logged_once(tmp_path: Path, spot: Simulator) -> None:
    mine, theirs = unique_group("mine"), unique_group("theirs")
    their_config = write_config(tmp_path / "theirs.toml", [group_table(theirs, "spot", ("BTCUSDT",), spot)])
    my_config = write_config(tmp_path / "mine.toml", [group_table(mine, "spot", ("BTCUSDT",), spot)])
    log = tmp_path / "mine.log"
    with processes() as procs:
        start_run(procs, their_config, tmp_path / "theirs.log")
        supervisor = start_run(procs, my_config, log)
        with Reader(theirs, attach_timeout_s=EXIT_TIMEOUT_S) as reader, Reader(mine, attach_timeout_s=EXIT_TIMEOUT_S) as own:
            wait_until(lambda: _all_synced(reader) and _all_synced(own), what="both in sync")
            owner = reader.info()
            write_config(my_config, [group_table(mine, "spot", ("BTCUSDT",), spot), group_table(theirs, "spot", ("BTCUSDT",), spot)])
            supervisor.send_signal(signal.SIGHUP)
            wait_until(lambda: "is fed by another process" in log.read_text(), what="the foreign writer logged")
            time.sleep(FOREIGN_WRITER_RECHECK_S + 1.0)  # at least one more probe: it must not log again nor start
            after = reader.info()
            assert (after.writer_pid, after.takeovers) == (owner.writer_pid, owner.takeovers)
            assert supervisor.poll() is None and _all_synced(reader) and _all_synced(own)
    text = log.read_text()
    expected = f"group {theirs} is fed by another process (pid {owner.writer_pid}, user {ME}): not starting a feeder until it stops"
    assert text.count(expected) == 1 and "live writer" not in text


def test_a_feeder_whose_heartbeat_stops_is_killed_and_restarted(tmp_path: Path, spot: Simulator) -> None:
    """Issue 13 item 7: a SIGSTOPped feeder keeps its lock and its SYNCED slots; `ldc run --watchdog` sees its
    heartbeat age and replaces it."""
    with one_group_run(tmp_path, spot, "frozen", "--watchdog", "2") as run:
        reader, group = run.reader, run.group
        frozen = reader.info().writer_pid
        os.kill(frozen, signal.SIGSTOP)
        try:
            wait_until(lambda: reader.writer_alive() and reader.info().writer_pid != frozen and _all_synced(reader),
                       what="a new feeder in sync")  # fmt: skip
            assert not _pid_alive(frozen) and run.supervisor.poll() is None
            assert check_truth(spot, reader, "BTCUSDT", "spot", 10) in (True, None)
        finally:
            if _pid_alive(frozen):
                os.kill(frozen, signal.SIGKILL)
    text = run.log.read_text()
    assert re.search(rf"feeder {group} \(pid {frozen}\) stored no heartbeat for \d+\.\d s \(limit 2 s\): killing it", text), text
    assert f"feeder {group} exited with signal SIGKILL; restarting in " in text


def test_a_group_another_account_feeds_is_refused_naming_that_account(tmp_path: Path, spot: Simulator) -> None:
    """A live writer of another local account (a service, or a squatter that pre-created the segment) is named
    with its user, so the operator sees who holds the group."""
    group = unique_group("other")
    config = write_config(tmp_path / "ldc.toml", [group_table(group, "spot", ("BTCUSDT",), spot)])
    hold = ("import sys, time; sys.path.insert(0, sys.argv[2]); from ldc.shm.writer import SegmentWriter\n"
            "with SegmentWriter(sys.argv[1], depth=5, capacity=1):\n    print('ready', flush=True); time.sleep(60)")  # fmt: skip
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    with processes() as procs:
        procs.groups.append(group)
        squatter = subprocess.Popen([*as_nobody, sys.executable, "-c", hold, group, str(Path(__file__).resolve().parents[1])],
                                    stdout=subprocess.PIPE, cwd="/", text=True)  # fmt: skip
        procs.procs.append(squatter)
        assert squatter.stdout is not None and squatter.stdout.readline() == "ready\n"
        proc = procs.ldc("run", str(config), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, err = proc.communicate(timeout=EXIT_TIMEOUT_S)
    assert proc.returncode == 2
    assert err.startswith(f"ldc run: already fed by another process: {group} (pid {squatter.pid}, user nobody); ")
